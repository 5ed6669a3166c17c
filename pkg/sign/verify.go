package sign

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Identity is who must have signed. The caller states it: there is no
// "accept whatever signature is there". Either Key, or TrustedRoot with
// a certificate identity (exact or regular expression) and OIDC issuer.
type Identity struct {
	Key           crypto.PublicKey
	TrustedRoot   string // path of a trusted_root.json
	Subject       string
	SubjectRegexp string
	Issuer        string
	IssuerRegexp  string
}

// Verifier checks bundles attached to images against one identity.
type Verifier struct {
	v      *verify.Verifier
	policy verify.PolicyOption
	store  ReferrerStore
}

// NewVerifier checks the identity and returns a Verifier reading referrers
// through store.
func NewVerifier(id Identity, store ReferrerStore) (*Verifier, error) {
	switch {
	case id.Key != nil && id.TrustedRoot != "":
		return nil, &ConfigError{Reason: "give either a public key or a trusted root, not both"}
	case id.Key != nil:
		sv, err := signature.LoadVerifier(id.Key, crypto.SHA256)
		if err != nil {
			return nil, &KeyError{Reason: "loading public key", Err: err}
		}
		tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(sv, time.Time{}, time.Time{}), nil
		})
		v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
		if err != nil {
			return nil, err
		}
		return &Verifier{v: v, policy: verify.WithKey(), store: store}, nil
	case id.TrustedRoot != "":
		if id.Subject == "" && id.SubjectRegexp == "" {
			return nil, &ConfigError{Reason: "keyless verification needs --certificate-identity or --certificate-identity-regexp"}
		}
		if id.Issuer == "" && id.IssuerRegexp == "" {
			return nil, &ConfigError{Reason: "keyless verification needs --certificate-oidc-issuer"}
		}
		tr, err := root.NewTrustedRootFromPath(id.TrustedRoot)
		if err != nil {
			return nil, &ConfigError{Reason: "reading trusted root: " + err.Error()}
		}
		opts := []verify.VerifierOption{verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1)}
		if len(tr.CTLogs()) > 0 {
			// Require the certificate's SCT whenever the root names CT logs.
			opts = append(opts, verify.WithSignedCertificateTimestamps(1))
		}
		v, err := verify.NewVerifier(tr, opts...)
		if err != nil {
			return nil, err
		}
		ci, err := verify.NewShortCertificateIdentity(id.Issuer, id.IssuerRegexp, id.Subject, id.SubjectRegexp)
		if err != nil {
			return nil, &ConfigError{Reason: err.Error()}
		}
		return &Verifier{v: v, policy: verify.WithCertificateIdentity(ci), store: store}, nil
	}
	return nil, &ConfigError{Reason: "no identity to verify against: give --key, or --trusted-root with --certificate-identity[-regexp] and --certificate-oidc-issuer"}
}

// Found maps each predicate type to whether a bundle of it about the digest,
// signed by the identity, is attached.
type Found map[string]bool

// Check reads the referrers of digest in repo and reports, for each wanted
// predicate type, whether one verifies. Bundles that do not verify are
// ignored (another signer's, a tampered one); errors reading the registry
// are returned.
func (v *Verifier) Check(ctx context.Context, repo name.Repository, digest v1.Hash, want ...string) (Found, error) {
	found := Found{}
	for _, w := range want {
		found[w] = false
	}
	raw, err := hex.DecodeString(digest.Hex)
	if err != nil || digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("unsupported digest %s", digest)
	}
	descs, err := v.store.Referrers(ctx, repo, digest)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(descs, func(a, b v1.Descriptor) int { return cmpStr(a.Digest.String(), b.Digest.String()) })
	for _, d := range descs {
		// The index entry is only a hint (some registries report the
		// config media type as artifactType): the manifest is read.
		pt := d.Annotations[AnnotationPredicateType]
		if done, asked := found[pt]; pt != "" && (!asked || done) {
			continue
		}
		r, err := v.store.ReadReferrer(ctx, repo, d.Digest)
		if err != nil {
			return nil, err
		}
		for _, blob := range r.Blobs {
			if blob.MediaType != BundleMediaType {
				continue
			}
			var b bundle.Bundle
			if err := b.UnmarshalJSON(blob.Data); err != nil {
				continue
			}
			res, err := v.v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", raw), v.policy))
			if err != nil || res.Statement == nil {
				continue
			}
			if _, asked := found[res.Statement.PredicateType]; asked {
				found[res.Statement.PredicateType] = true
			}
		}
	}
	return found, nil
}

// ErrNotVerified is wrapped by errors of checks that found nothing valid.
var ErrNotVerified = errors.New("no valid signature by the expected identity")
