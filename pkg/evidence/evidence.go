package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/imgpromoter/promoter/pkg/referrers"
)

var timeZero time.Time

// Media types and predicate types the package reads.
const (
	// BundleMediaTypePrefix starts the media type of a sigstore bundle
	// ("application/vnd.dev.sigstore.bundle.v0.3+json"); cosign v3 attaches
	// bundles as referrers with it as artifactType and layer media type.
	BundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"
	// SimpleSigningMediaType is the layer media type of cosign's legacy
	// .sig images: the payload signed, with the signature in an annotation.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// DSSEMediaType is the layer media type of cosign's legacy .att images.
	DSSEMediaType = "application/vnd.dsse.envelope.v1+json"
	// SignatureAnnotation holds a legacy signature (base64).
	SignatureAnnotation = "dev.cosignproject.cosign/signature"

	// CosignSignPredicate is the predicate type of cosign v3's image
	// signatures (an in-toto statement about the image digest).
	CosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
	// CosignVulnPredicate is cosign's vulnerability scan predicate.
	CosignVulnPredicate = "https://cosign.sigstore.dev/attestation/vuln/v1"
	// InTotoVulnsPredicate is the in-toto vulnerabilities predicate.
	InTotoVulnsPredicate = "https://in-toto.io/attestation/vulns/v0.1"
	// TestResultPredicate is the in-toto test result predicate.
	TestResultPredicate = "https://in-toto.io/attestation/test-result/v0.1"
)

// BlobReader reads blobs; the referrer manifests come from package
// referrers, their layers from here. (*access.Client satisfies it.)
type BlobReader interface {
	FetchBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor) (io.ReadCloser, error)
}

// maxBlob bounds a signature or attestation layer read into memory.
const maxBlob = 32 << 20

// Form is how a signature is stored.
type Form string

// Signature forms. They are part of the JSON schema.
const (
	FormBundle Form = "sigstore-bundle"   // a bundle attached as a referrer (cosign v3)
	FormLegacy Form = "cosign-legacy-tag" // cosign's .sig / .att tags (cosign v2)
)

// Signature is one signature over the image that verified.
type Signature struct {
	Identity string `json:"identity"`
	Form     Form   `json:"form"`
	Artifact string `json:"artifact"` // digest of the manifest holding it
}

// Attestation is one attestation attached to the image.
type Attestation struct {
	PredicateType string `json:"predicateType"`
	// Identity verified it, bound to the image digest; empty: not
	// verified, and its content is not read.
	Identity  string          `json:"identity,omitempty"`
	Form      Form            `json:"form"`
	Artifact  string          `json:"artifact"`
	Predicate json.RawMessage `json:"-"`
}

// Verified reports whether the attestation's signature verified.
func (a Attestation) Verified() bool { return a.Identity != "" }

// Failure is a signature or attestation present that did not verify for
// any identity, and why.
type Failure struct {
	Artifact string `json:"artifact"`
	Reason   string `json:"reason"`
}

// Evidence is what is known about one image from what is attached to it.
type Evidence struct {
	Digest       string        `json:"digest"`
	Signatures   []Signature   `json:"signatures,omitempty"`
	Attestations []Attestation `json:"attestations,omitempty"`
	// SBOMs are cosign .sbom attachments (unsigned by construction).
	SBOMs    []string  `json:"sboms,omitempty"`
	Failures []Failure `json:"failures,omitempty"`
	// Vulns and Tests come from verified attestations only.
	Vulns *VulnSummary `json:"vulnerabilities,omitempty"`
	Tests *TestSummary `json:"tests,omitempty"`
}

// SignedBy reports whether a signature by one of ids verified.
func (e Evidence) SignedBy(ids ...string) bool {
	for _, s := range e.Signatures {
		if slices.Contains(ids, s.Identity) {
			return true
		}
	}
	return false
}

// AttestedBy reports whether an attestation of predicateType verified for
// one of ids.
func (e Evidence) AttestedBy(predicateType string, ids ...string) bool {
	for _, a := range e.Attestations {
		if a.PredicateType == predicateType && slices.Contains(ids, a.Identity) {
			return true
		}
	}
	return false
}

// Collect verifies every artifact attached to subject (arts, as a
// referrers.Finder returns them) against ids and returns the evidence.
// Blobs are read from repo. With no identities nothing verifies: the
// attestations are listed by predicate type, unverified.
func Collect(ctx context.Context, blobs BlobReader, repo name.Repository, subject v1.Hash, arts []referrers.Artifact, ids []Identity) (Evidence, error) {
	ev := Evidence{Digest: subject.String()}
	digest, err := hex.DecodeString(subject.Hex)
	if err != nil || subject.Algorithm != "sha256" {
		return ev, fmt.Errorf("subject %s: only sha256 digests are verified", subject)
	}
	for _, a := range arts {
		if a.Subject != subject {
			continue // attached to an artifact, not to the image
		}
		art := a.Descriptor.Digest.String()
		if len(ids) == 0 {
			// Nothing can verify: list what is attached from the manifests
			// alone (no blob is read), unverified.
			ev.listUnverified(a, art)
			continue
		}
		switch {
		case strings.HasPrefix(a.Descriptor.ArtifactType, BundleMediaTypePrefix):
			for _, l := range layers(a.Manifest) {
				if !strings.HasPrefix(string(l.MediaType), BundleMediaTypePrefix) {
					continue
				}
				raw, err := readBlob(ctx, blobs, repo, l)
				if err != nil {
					return ev, err
				}
				var b bundle.Bundle
				if err := b.UnmarshalJSON(raw); err != nil {
					ev.Failures = append(ev.Failures, Failure{Artifact: art, Reason: "unreadable sigstore bundle: " + err.Error()})
					continue
				}
				ev.add(verifyEntity(&b, digest, ids), art, FormBundle, a.Descriptor.Annotations["dev.sigstore.bundle.predicateType"])
			}
		case a.Via == referrers.ViaCosign && strings.HasSuffix(a.Tag, ".sig"):
			for _, l := range layers(a.Manifest) {
				if l.MediaType != SimpleSigningMediaType {
					continue
				}
				payload, err := readBlob(ctx, blobs, repo, l)
				if err != nil {
					return ev, err
				}
				ev.add(verifyLegacySignature(payload, l.Annotations[SignatureAnnotation], subject, ids), art, FormLegacy, CosignSignPredicate)
			}
		case a.Via == referrers.ViaCosign && strings.HasSuffix(a.Tag, ".att"):
			for _, l := range layers(a.Manifest) {
				if l.MediaType != DSSEMediaType {
					continue
				}
				raw, err := readBlob(ctx, blobs, repo, l)
				if err != nil {
					return ev, err
				}
				var env dsse.Envelope
				if err := json.Unmarshal(raw, &env); err != nil {
					ev.Failures = append(ev.Failures, Failure{Artifact: art, Reason: "unreadable DSSE envelope: " + err.Error()})
					continue
				}
				ev.add(verifyEntity(&legacyEntity{content: &bundle.Envelope{Envelope: &env}}, digest, ids), art, FormLegacy, l.Annotations["predicateType"])
			}
		case a.Via == referrers.ViaCosign && strings.HasSuffix(a.Tag, ".sbom"):
			ev.SBOMs = append(ev.SBOMs, art)
		}
	}
	ev.summarise()
	return ev, nil
}

// outcome is the result of verifying one signed entity.
type outcome struct {
	identity      string
	predicateType string
	predicate     json.RawMessage
	err           error
}

func (ev *Evidence) add(o outcome, art string, form Form, declared string) {
	pt := o.predicateType
	if pt == "" {
		pt = declared
	}
	if o.err != nil {
		ev.Failures = append(ev.Failures, Failure{Artifact: art, Reason: o.err.Error()})
		if pt != "" && pt != CosignSignPredicate {
			ev.Attestations = append(ev.Attestations, Attestation{PredicateType: pt, Form: form, Artifact: art})
		}
		return
	}
	if pt == CosignSignPredicate {
		ev.Signatures = append(ev.Signatures, Signature{Identity: o.identity, Form: form, Artifact: art})
		return
	}
	ev.Attestations = append(ev.Attestations, Attestation{PredicateType: pt, Identity: o.identity, Form: form, Artifact: art, Predicate: o.predicate})
}

// errNoIdentity is the failure when no identity is configured.
var errNoIdentity = errors.New("no identity to verify against (no policy)")

// verifyEntity verifies a DSSE-signed in-toto statement for the image
// digest against each identity in turn; the first that verifies wins.
func verifyEntity(e verify.SignedEntity, digest []byte, ids []Identity) outcome {
	if len(ids) == 0 {
		return outcome{predicateType: declaredPredicate(e), err: errNoIdentity}
	}
	var errs []string
	for _, id := range ids {
		v, keyOpt, err := id.verifier()
		if err != nil {
			errs = append(errs, id.ID+": "+err.Error())
			continue
		}
		res, err := v.Verify(e, verify.NewPolicy(verify.WithArtifactDigest("sha256", digest), keyOpt))
		if err != nil {
			errs = append(errs, id.ID+": "+err.Error())
			continue
		}
		if res.Statement == nil {
			errs = append(errs, id.ID+": the bundle signs no in-toto statement about the image")
			continue
		}
		pred, err := json.Marshal(res.Statement.GetPredicate())
		if err != nil {
			errs = append(errs, id.ID+": "+err.Error())
			continue
		}
		return outcome{identity: id.ID, predicateType: res.Statement.GetPredicateType(), predicate: pred}
	}
	return outcome{predicateType: declaredPredicate(e), err: fmt.Errorf("not verified: %s", strings.Join(errs, "; "))}
}

// declaredPredicate is the predicate type an unverified entity claims (for
// listing only; never trusted).
func declaredPredicate(e verify.SignedEntity) string {
	sc, err := e.SignatureContent()
	if err != nil || sc.EnvelopeContent() == nil {
		return ""
	}
	st, err := sc.EnvelopeContent().Statement()
	if err != nil {
		return ""
	}
	return st.GetPredicateType()
}

// simpleSigning is the payload of a legacy cosign signature.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// verifyLegacySignature verifies a cosign v2 simple-signing signature: the
// signature over the payload with a key identity (sigstore-go's message
// signature verification), then the payload must name the image digest.
func verifyLegacySignature(payload []byte, sigB64 string, subject v1.Hash, ids []Identity) outcome {
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil || len(sig) == 0 {
		return outcome{predicateType: CosignSignPredicate, err: errors.New("legacy signature layer has no usable signature annotation")}
	}
	if len(ids) == 0 {
		return outcome{predicateType: CosignSignPredicate, err: errNoIdentity}
	}
	sum := sha256.Sum256(payload)
	entity := &legacyEntity{content: bundle.NewMessageSignature(sum[:], "SHA2_256", sig)}
	var errs []string
	for _, id := range ids {
		if id.key == nil {
			errs = append(errs, id.ID+": legacy .sig signatures are verified with keys only")
			continue
		}
		v, keyOpt, err := id.verifier()
		if err == nil {
			_, err = v.Verify(entity, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(payload)), keyOpt))
		}
		if err != nil {
			errs = append(errs, id.ID+": "+err.Error())
			continue
		}
		var ss simpleSigning
		if err := json.Unmarshal(payload, &ss); err != nil {
			return outcome{predicateType: CosignSignPredicate, err: fmt.Errorf("signed payload is not simple signing JSON: %w", err)}
		}
		if ss.Critical.Image.DockerManifestDigest != subject.String() {
			return outcome{predicateType: CosignSignPredicate, err: fmt.Errorf("signature is for %s, not for this image", ss.Critical.Image.DockerManifestDigest)}
		}
		return outcome{identity: id.ID, predicateType: CosignSignPredicate}
	}
	return outcome{predicateType: CosignSignPredicate, err: fmt.Errorf("not verified: %s", strings.Join(errs, "; "))}
}

// legacyEntity presents a key-signed legacy signature or DSSE envelope to
// sigstore-go: a public key (found through the verifier's trusted
// material), the signature content, no log entries and no timestamps.
type legacyEntity struct {
	verify.BaseSignedEntity
	content verify.SignatureContent
}

func (e *legacyEntity) VerificationContent() (verify.VerificationContent, error) {
	return &bundle.PublicKey{}, nil
}

func (e *legacyEntity) SignatureContent() (verify.SignatureContent, error) {
	return e.content, nil
}

func (e *legacyEntity) Version() (string, error) { return "v0.3", nil }

func layers(raw []byte) []v1.Descriptor {
	var m struct {
		Layers []v1.Descriptor `json:"layers"`
	}
	_ = json.Unmarshal(raw, &m)
	return m.Layers
}

func readBlob(ctx context.Context, blobs BlobReader, repo name.Repository, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxBlob {
		return nil, fmt.Errorf("%s@%s: %d bytes is too large for a signature or attestation", repo, d.Digest, d.Size)
	}
	rc, err := blobs.FetchBlob(ctx, repo, d)
	if err != nil {
		return nil, fmt.Errorf("reading %s@%s: %w", repo, d.Digest, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxBlob+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s@%s: %w", repo, d.Digest, err)
	}
	sum := sha256.Sum256(raw)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.Digest.String() {
		return nil, fmt.Errorf("%s@%s: registry served a blob with digest %s", repo, d.Digest, got)
	}
	return raw, nil
}

// listUnverified records an artifact without verifying it: its declared
// predicate type (never trusted, only listed) from the manifest.
func (ev *Evidence) listUnverified(a referrers.Artifact, art string) {
	switch {
	case strings.HasPrefix(a.Descriptor.ArtifactType, BundleMediaTypePrefix):
		ev.add(outcome{err: errNoIdentity}, art, FormBundle, a.Descriptor.Annotations["dev.sigstore.bundle.predicateType"])
	case a.Via == referrers.ViaCosign && strings.HasSuffix(a.Tag, ".sig"):
		for _, l := range layers(a.Manifest) {
			if l.MediaType == SimpleSigningMediaType {
				ev.add(outcome{err: errNoIdentity}, art, FormLegacy, CosignSignPredicate)
			}
		}
	case a.Via == referrers.ViaCosign && strings.HasSuffix(a.Tag, ".att"):
		for _, l := range layers(a.Manifest) {
			if l.MediaType == DSSEMediaType {
				ev.add(outcome{err: errNoIdentity}, art, FormLegacy, l.Annotations["predicateType"])
			}
		}
	case a.Via == referrers.ViaCosign && strings.HasSuffix(a.Tag, ".sbom"):
		ev.SBOMs = append(ev.SBOMs, art)
	}
}
