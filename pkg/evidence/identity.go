// Package evidence verifies the signatures and attestations attached to an
// image (found by package referrers) with sigstore-go, against identities
// the caller names, and extracts what a reviewer needs from the verified
// ones: who signed, which attestations are attached, a vulnerability
// summary and test results. It fails closed: content is only read from an
// attestation whose signature verified for one of the identities, bound to
// the image digest, and any error counts as "not verified".
package evidence

import (
	"crypto"
	"fmt"
	"os"
	"regexp"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Identity is one signer the caller trusts: a public key, or a keyless
// (Fulcio certificate) identity with the trust root that vouches for it.
// Build it with KeyIdentity or KeylessIdentity.
type Identity struct {
	// ID names the identity in reports ("key:keys/release.pub",
	// "keyless:<issuer> <subject>").
	ID string

	key     signature.Verifier
	keyless *verify.CertificateIdentity
	root    root.TrustedMaterial
}

// KeyIdentity is a signer holding the private key of a PEM public key. id
// names it in reports.
func KeyIdentity(id string, pemKey []byte) (Identity, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemKey)
	if err != nil {
		return Identity{}, fmt.Errorf("public key %s: %w", id, err)
	}
	v, err := signature.LoadDefaultVerifier(pub)
	if err != nil {
		return Identity{}, fmt.Errorf("public key %s: %w", id, err)
	}
	return Identity{ID: "key:" + id, key: v}, nil
}

// KeyIdentityFromFile reads a PEM public key file (see KeyIdentity).
func KeyIdentityFromFile(id, path string) (Identity, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, err
	}
	return KeyIdentity(id, raw)
}

// Keyless names a certificate identity: the OIDC issuer and the subject
// (SAN), each matched exactly or, in the Regexp fields, by a regular
// expression that is anchored (^...$) whether written so or not.
type Keyless struct {
	Issuer        string
	IssuerRegexp  string
	Subject       string
	SubjectRegexp string
}

// KeylessIdentity is a signer whose Fulcio certificate names k, under the
// trust root tm (a trusted_root.json read with root.NewTrustedRootFromPath).
func KeylessIdentity(k Keyless, tm root.TrustedMaterial) (Identity, error) {
	if tm == nil {
		return Identity{}, fmt.Errorf("keyless identity needs a trust root")
	}
	if (k.Issuer == "") == (k.IssuerRegexp == "") || (k.Subject == "") == (k.SubjectRegexp == "") {
		return Identity{}, fmt.Errorf("keyless identity needs exactly one of issuer/issuerRegexp and one of subject/subjectRegexp")
	}
	anchor := func(s string) (string, error) {
		if s == "" {
			return "", nil
		}
		a := "^(?:" + s + ")$"
		_, err := regexp.Compile(a)
		return a, err
	}
	ir, err := anchor(k.IssuerRegexp)
	if err != nil {
		return Identity{}, fmt.Errorf("issuerRegexp: %w", err)
	}
	sr, err := anchor(k.SubjectRegexp)
	if err != nil {
		return Identity{}, fmt.Errorf("subjectRegexp: %w", err)
	}
	ci, err := verify.NewShortCertificateIdentity(k.Issuer, ir, k.Subject, sr)
	if err != nil {
		return Identity{}, err
	}
	issuer, subject := k.Issuer, k.Subject
	if issuer == "" {
		issuer = "~" + k.IssuerRegexp
	}
	if subject == "" {
		subject = "~" + k.SubjectRegexp
	}
	return Identity{ID: "keyless:" + issuer + " " + subject, keyless: &ci, root: tm}, nil
}

// verifier builds the sigstore-go verifier and the policy option for the
// identity. Keys sign without a transparency log or timestamps in the
// setups this serves (cosign --tlog-upload=false), so a key is trusted at
// any time; a keyless certificate is short-lived, so its use must be
// proven by a transparency log entry and an observer timestamp.
func (id Identity) verifier() (*verify.Verifier, verify.PolicyOption, error) {
	if id.key != nil {
		tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(id.key, timeZero, timeZero), nil
		})
		v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
		return v, verify.WithKey(), err
	}
	if id.keyless == nil {
		return nil, nil, fmt.Errorf("identity %s has neither a key nor a certificate identity", id.ID)
	}
	opts := []verify.VerifierOption{verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1)}
	if len(id.root.CTLogs()) > 0 {
		opts = append(opts, verify.WithSignedCertificateTimestamps(1))
	}
	v, err := verify.NewVerifier(id.root, opts...)
	return v, verify.WithCertificateIdentity(*id.keyless), err
}

// PublicKey returns the identity's public key (nil for keyless).
func (id Identity) PublicKey() crypto.PublicKey {
	if id.key == nil {
		return nil
	}
	pub, _ := id.key.PublicKey()
	return pub
}
