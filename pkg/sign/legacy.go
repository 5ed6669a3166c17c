package sign

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
)

// Legacy cosign (v2) signature format: a simple-signing payload stored as a
// layer of the image tagged sha256-<hex>.sig, with the signature and its
// verification material in the layer's annotations.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	AnnotationSignature    = "dev.cosignproject.cosign/signature"
	AnnotationCertificate  = "dev.sigstore.cosign/certificate"
	AnnotationRekorBundle  = "dev.sigstore.cosign/bundle"
)

// LegacySignature is one layer of a `.sig` image.
type LegacySignature struct {
	Payload     []byte
	Annotations map[string]string
}

type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// SimpleSigningPayload is the payload cosign v2 signs for an image: the
// repository the signature is for (each destination's own) and the digest.
func SimpleSigningPayload(repo name.Repository, digest v1.Hash) ([]byte, error) {
	var p simpleSigning
	p.Critical.Identity.DockerReference = repo.Name()
	p.Critical.Image.DockerManifestDigest = digest.String()
	p.Critical.Type = "cosign container image signature"
	return json.Marshal(p)
}

// LegacyTag is the tag of the `.sig` image of digest.
func LegacyTag(digest v1.Hash) string {
	return fmt.Sprintf("%s-%s.sig", digest.Algorithm, digest.Hex)
}

// rekorBundle is cosign's dev.sigstore.cosign/bundle annotation.
type rekorBundle struct {
	SignedEntryTimestamp []byte             `json:"SignedEntryTimestamp"`
	Payload              rekorBundlePayload `json:"Payload"`
}

type rekorBundlePayload struct {
	Body           string `json:"body"`
	IntegratedTime int64  `json:"integratedTime"`
	LogIndex       int64  `json:"logIndex"`
	LogID          string `json:"logID"`
}

// SignLegacy signs a simple-signing payload for cosign's `.sig` tag and
// returns the layer: the payload and the annotations cosign v2 reads (the
// signature; keyless, the certificate; with the transparency log, the Rekor
// entry as cosign's bundle annotation).
func (s *Signer) SignLegacy(ctx context.Context, payload []byte) (*LegacySignature, error) {
	b, err := s.bundle(ctx, &sgsign.PlainData{Data: payload})
	if err != nil {
		return nil, err
	}
	ms := b.GetMessageSignature()
	if ms == nil {
		return nil, fmt.Errorf("sign: no message signature in bundle")
	}
	ann := map[string]string{AnnotationSignature: base64.StdEncoding.EncodeToString(ms.Signature)}
	if c := b.GetVerificationMaterial().GetCertificate(); c != nil {
		ann[AnnotationCertificate] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.RawBytes}))
	}
	if tl := b.GetVerificationMaterial().GetTlogEntries(); len(tl) > 0 {
		e := tl[0]
		rb := rekorBundle{
			SignedEntryTimestamp: e.GetInclusionPromise().GetSignedEntryTimestamp(),
			Payload: rekorBundlePayload{
				Body:           base64.StdEncoding.EncodeToString(e.GetCanonicalizedBody()),
				IntegratedTime: e.GetIntegratedTime(),
				LogIndex:       e.GetLogIndex(),
				LogID:          hex.EncodeToString(e.GetLogId().GetKeyId()),
			},
		}
		raw, err := json.Marshal(rb)
		if err != nil {
			return nil, err
		}
		ann[AnnotationRekorBundle] = string(raw)
	}
	return &LegacySignature{Payload: payload, Annotations: ann}, nil
}
