package sign

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// Statement is the part of an in-toto statement needed to match a bundle to
// an image.
type Statement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate json.RawMessage `json:"predicate"`
}

// About reports whether the statement has the predicate type and names
// digest among its subjects.
func (st *Statement) About(predicateType string, digest v1.Hash) bool {
	if st.PredicateType != predicateType {
		return false
	}
	for _, s := range st.Subject {
		if s.Digest[digest.Algorithm] == digest.Hex {
			return true
		}
	}
	return false
}

// parsedBundle is a bundle's statement, signature and signer.
type parsedBundle struct {
	st   Statement
	pae  []byte
	sig  []byte
	cert *x509.Certificate // nil for key-based bundles
}

func parseBundle(raw []byte) (*parsedBundle, bool) {
	var b protobundle.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &b); err != nil {
		return nil, false
	}
	env := b.GetDsseEnvelope()
	if env == nil || len(env.GetSignatures()) != 1 || env.GetPayloadType() != InTotoPayloadType {
		return nil, false
	}
	p := &parsedBundle{pae: dsse.PAE(env.GetPayloadType(), env.GetPayload()), sig: env.GetSignatures()[0].GetSig()}
	if err := json.Unmarshal(env.GetPayload(), &p.st); err != nil {
		return nil, false
	}
	vm := b.GetVerificationMaterial()
	var der []byte
	if c := vm.GetCertificate(); c != nil {
		der = c.GetRawBytes()
	} else if ch := vm.GetX509CertificateChain(); ch != nil && len(ch.GetCertificates()) > 0 {
		der = ch.GetCertificates()[0].GetRawBytes()
	}
	if der != nil {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, false
		}
		p.cert = c
	}
	return p, true
}

// oidIssuer and oidIssuerV2 are Fulcio's OIDC issuer extensions.
var (
	oidIssuer   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

// certIdentity is a Fulcio certificate's subject alternative names and
// issuer, as one comparable string.
func certIdentity(c *x509.Certificate) string {
	var parts []string
	parts = append(parts, c.EmailAddresses...)
	for _, u := range c.URIs {
		parts = append(parts, u.String())
	}
	slices.Sort(parts)
	for _, e := range c.Extensions {
		if e.Id.Equal(oidIssuer) {
			parts = append(parts, "issuer="+string(e.Value))
		}
		if e.Id.Equal(oidIssuerV2) {
			var s string
			if _, err := asn1.Unmarshal(e.Value, &s); err == nil {
				parts = append(parts, "issuer="+s)
			}
		}
	}
	return string(bytes.Join(toBytes(parts), []byte{0}))
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// verifyWith checks an ECDSA signature over data's SHA-256.
func verifyWith(pub any, data, sig []byte) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return false
	}
	sum := sha256.Sum256(data)
	return ecdsa.VerifyASN1(k, sum[:], sig)
}

// signedByMe reports whether data carries a valid signature by this
// signer's identity: its key, or (keyless) a certificate naming the same
// identity and issuer as the signer's own certificate.
func (s *Signer) signedByMe(ctx context.Context, cert *x509.Certificate, data, sig []byte) (bool, error) {
	if s.o.key != nil {
		return cert == nil && verifyWith(s.o.key.Public(), data, sig), nil
	}
	if cert == nil {
		return false, nil
	}
	_, mine, err := s.material(ctx)
	if err != nil {
		return false, err
	}
	mc, err := x509.ParseCertificate(mine)
	if err != nil {
		return false, err
	}
	return certIdentity(cert) == certIdentity(mc) && verifyWith(cert.PublicKey, data, sig), nil
}

// BundleIsMine reports whether a bundle holds a statement of predicateType
// about digest, validly signed by this signer's identity. It is the
// idempotency check: a digest with such a bundle is not signed again.
func (s *Signer) BundleIsMine(ctx context.Context, bundle []byte, predicateType string, digest v1.Hash) (bool, error) {
	p, ok := parseBundle(bundle)
	if !ok || !p.st.About(predicateType, digest) {
		return false, nil
	}
	return s.signedByMe(ctx, p.cert, p.pae, p.sig)
}

// LegacyIsMine reports whether a `.sig` layer is this signer's signature
// of exactly payload.
func (s *Signer) LegacyIsMine(ctx context.Context, l LegacySignature, payload []byte) (bool, error) {
	if !bytes.Equal(l.Payload, payload) {
		return false, nil
	}
	sig, err := base64.StdEncoding.DecodeString(l.Annotations[AnnotationSignature])
	if err != nil {
		return false, nil
	}
	var cert *x509.Certificate
	if c := l.Annotations[AnnotationCertificate]; c != "" {
		b, _ := pem.Decode([]byte(c))
		if b == nil {
			return false, nil
		}
		if cert, err = x509.ParseCertificate(b.Bytes); err != nil {
			return false, nil
		}
	}
	return s.signedByMe(ctx, cert, l.Payload, sig)
}
