// Package sigstoretest runs in-process fakes of Fulcio and Rekor (v1 API)
// on 127.0.0.1 for keyless signing tests, built on sigstore-go's testing CA
// (pkg/testing/ca), and writes the trusted root that verifies what they
// issue. The fake Fulcio only accepts identity tokens signed by the fake
// OIDC issuer (Token), so a test can also show a bad token is refused.
package sigstoretest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-openapi/runtime"
	ct "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"

	// Rekor entry kinds the fake log accepts.
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1"
)

// Issuer is the OIDC issuer URL the fake tokens carry.
const Issuer = "https://oidc.fake.test"

// Sigstore is a running fake Fulcio + Rekor.
type Sigstore struct {
	FulcioURL string
	RekorURL  string
	// TrustedRoot is the path of a trusted_root.json for the fakes.
	TrustedRoot string

	vs        *ca.VirtualSigstore
	rootCert  *x509.Certificate
	interCert *x509.Certificate
	interKey  *ecdsa.PrivateKey
	oidcKey   *ecdsa.PrivateKey
	ctKey     *ecdsa.PrivateKey

	mu      sync.Mutex
	entries int
}

// Start starts the fakes; they stop when the test ends.
func Start(t testing.TB) *Sigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	interCert, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	oidcKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sigstore{vs: vs, rootCert: rootCert, interCert: interCert, interKey: interKey, oidcKey: oidcKey, ctKey: ctKey}
	fulcio := httptest.NewServer(http.HandlerFunc(s.fulcio))
	t.Cleanup(fulcio.Close)
	rekor := httptest.NewServer(http.HandlerFunc(s.rekor))
	t.Cleanup(rekor.Close)
	s.FulcioURL, s.RekorURL = fulcio.URL, rekor.URL

	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{
			Root: rootCert, Intermediates: []*x509.Certificate{interCert},
			ValidityPeriodStart: time.Now().Add(-time.Hour), ValidityPeriodEnd: time.Now().Add(time.Hour),
			URI: fulcio.URL,
		}},
		s.ctLogs(), nil, rekorLogs(vs))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	s.TrustedRoot = filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(s.TrustedRoot, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// ctLogID is the CT log's ID: the SHA-256 of its public key.
func (s *Sigstore) ctLogID() [32]byte {
	der, _ := x509.MarshalPKIXPublicKey(s.ctKey.Public())
	return sha256.Sum256(der)
}

func (s *Sigstore) ctLogs() map[string]*root.TransparencyLog {
	id := s.ctLogID()
	return map[string]*root.TransparencyLog{hex.EncodeToString(id[:]): {
		BaseURL: "https://ctfe.fake.test", ID: id[:], HashFunc: crypto.SHA256, SignatureHashFunc: crypto.SHA256,
		PublicKey: s.ctKey.Public(), ValidityPeriodStart: time.Now().Add(-time.Hour),
	}}
}

// rekorLogs is the virtual log keyed as the trusted root file keys it:
// the log ID is the raw key hash (VirtualSigstore keeps it hex-encoded,
// which does not survive a round trip through trusted_root.json).
func rekorLogs(vs *ca.VirtualSigstore) map[string]*root.TransparencyLog {
	out := map[string]*root.TransparencyLog{}
	for id, l := range vs.RekorLogs() {
		c := *l
		c.ID, _ = hex.DecodeString(id)
		c.ValidityPeriodStart = time.Now().Add(-time.Hour)
		c.ValidityPeriodEnd = time.Time{}
		out[id] = &c
	}
	return out
}

// Token returns an identity token for subject from the fake issuer, signed
// with its key (ES256), as a CI system would hand it out.
func (s *Sigstore) Token(t testing.TB, subject string) string {
	t.Helper()
	return signJWT(t, s.oidcKey, subject)
}

// ForeignToken is a token for subject signed by some other key: Fulcio
// must refuse it.
func ForeignToken(t testing.TB, subject string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signJWT(t, k, subject)
}

func signJWT(t testing.TB, k *ecdsa.PrivateKey, subject string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	hdr := enc.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{
		"iss": Issuer, "sub": subject, "aud": "sigstore",
		"iat": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix(),
	})
	signing := hdr + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	r, sv, err := ecdsa.Sign(rand.Reader, k, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig)
}

// verifyJWT checks the token's ES256 signature with the fake issuer's key
// and returns its claims.
func (s *Sigstore) verifyJWT(tok string) (map[string]any, error) {
	parts := bytes.Split([]byte(tok), []byte("."))
	if len(parts) != 3 {
		return nil, fmt.Errorf("malformed token")
	}
	enc := base64.RawURLEncoding
	sig, err := enc.DecodeString(string(parts[2]))
	if err != nil || len(sig) != 64 {
		return nil, fmt.Errorf("malformed signature")
	}
	sum := sha256.Sum256(bytes.Join(parts[:2], []byte(".")))
	if !ecdsa.Verify(&s.oidcKey.PublicKey, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, fmt.Errorf("token not signed by the issuer")
	}
	payload, err := enc.DecodeString(string(parts[1]))
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	return claims, json.Unmarshal(payload, &claims)
}

var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

// fulcio answers POST /api/v2/signingCert: it checks the token and the
// proof of possession (the subject signed with the key to certify) and
// issues a ten-minute code-signing certificate naming the token's subject
// as a URI SAN and its issuer.
func (s *Sigstore) fulcio(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/signingCert" {
		http.NotFound(w, r)
		return
	}
	auth := r.Header.Get("Authorization")
	const bearer = "Bearer "
	if len(auth) <= len(bearer) || auth[:len(bearer)] != bearer {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	claims, err := s.verifyJWT(auth[len(bearer):])
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	sub, _ := claims["sub"].(string)
	var req struct {
		PublicKeyRequest struct {
			PublicKey struct {
				Content string `json:"content"`
			} `json:"publicKey"`
			ProofOfPossession string `json:"proofOfPossession"`
		} `json:"publicKeyRequest"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	blk, _ := pem.Decode([]byte(req.PublicKeyRequest.PublicKey.Content))
	if blk == nil {
		http.Error(w, "bad public key", http.StatusBadRequest)
		return
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ecPub, ok := pub.(*ecdsa.PublicKey)
	pop, _ := base64.StdEncoding.DecodeString(req.PublicKeyRequest.ProofOfPossession)
	sum := sha256.Sum256([]byte(sub))
	if !ok || !ecdsa.VerifyASN1(ecPub, sum[:], pop) {
		http.Error(w, "proof of possession failed", http.StatusBadRequest)
		return
	}
	u, err := url.Parse(sub)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	issV2, _ := asn1.MarshalWithParams(Issuer, "utf8")
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(10 * time.Minute),
		URIs:         []*url.URL{u},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{
			{Id: oidIssuerV1, Value: []byte(Issuer)},
			{Id: oidIssuerV2, Value: issV2},
		},
	}
	der, err := s.issueWithSCT(tmpl, pub)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	chain := []string{
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.interCert.Raw})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.rootCert.Raw})),
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"signedCertificateDetachedSct": map[string]any{"chain": map[string]any{"certificates": chain}},
	})
}

var (
	oidCTPoison = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	oidCTSCT    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

// issueWithSCT issues the certificate the way Fulcio does: a precertificate
// (with the CT poison extension) is "logged" with the fake CT log, whose
// signed certificate timestamp is embedded in the final certificate.
func (s *Sigstore) issueWithSCT(tmpl *x509.Certificate, pub any) ([]byte, error) {
	base := tmpl.ExtraExtensions
	tmpl.ExtraExtensions = append(slices.Clone(base), pkix.Extension{Id: oidCTPoison, Critical: true, Value: asn1.NullBytes})
	preDER, err := x509.CreateCertificate(rand.Reader, tmpl, s.interCert, pub, s.interKey)
	if err != nil {
		return nil, err
	}
	pre, err := ctx509.ParseCertificate(preDER)
	if err != nil {
		return nil, err
	}
	issuer, err := ctx509.ParseCertificate(s.interCert.Raw)
	if err != nil {
		return nil, err
	}
	ts := uint64(time.Now().UnixMilli())
	leaf, err := ct.MerkleTreeLeafFromChain([]*ctx509.Certificate{pre, issuer}, ct.PrecertLogEntryType, ts)
	if err != nil {
		return nil, err
	}
	sct := ct.SignedCertificateTimestamp{SCTVersion: ct.V1, LogID: ct.LogID{KeyID: s.ctLogID()}, Timestamp: ts}
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: *leaf})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, s.ctKey, sum[:])
	if err != nil {
		return nil, err
	}
	sct.Signature = ct.DigitallySigned{
		Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA},
		Signature: sig,
	}
	list, err := x509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{&sct})
	if err != nil {
		return nil, err
	}
	listBytes, err := cttls.Marshal(*list)
	if err != nil {
		return nil, err
	}
	ext, err := asn1.Marshal(listBytes)
	if err != nil {
		return nil, err
	}
	tmpl.ExtraExtensions = append(slices.Clone(base), pkix.Extension{Id: oidCTSCT, Value: ext})
	return x509.CreateCertificate(rand.Reader, tmpl, s.interCert, pub, s.interKey)
}

// rekor answers POST /api/v1/log/entries: it canonicalises the proposed
// entry (rekor's own types check the signature against the key or
// certificate) and logs it as the only leaf of a one-entry tree, with a
// signed entry timestamp and an inclusion proof under the virtual log key.
func (s *Sigstore) rekor(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/log/entries" {
		http.NotFound(w, r)
		return
	}
	pe, err := models.UnmarshalProposedEntry(io.LimitReader(r.Body, 4<<20), runtime.JSONConsumer())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	entry, err := types.UnmarshalEntry(pe)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body, err := types.CanonicalizeEntry(r.Context(), entry)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	logID, err := s.vs.RekorLogID()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	now := time.Now().Unix()
	b64 := base64.StdEncoding.EncodeToString(body)
	set, err := s.vs.RekorSignPayload(tlog.RekorPayload{Body: b64, IntegratedTime: now, LogIndex: 0, LogID: logID})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	proof, err := s.vs.GetInclusionProof(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	leaf := sha256.Sum256(append([]byte{0}, body...))
	uuid := hex.EncodeToString(leaf[:])
	s.mu.Lock()
	s.entries++
	s.mu.Unlock()
	idx := int64(0)
	resp := models.LogEntry{uuid: models.LogEntryAnon{
		Body:           b64,
		IntegratedTime: &now,
		LogID:          &logID,
		LogIndex:       &idx,
		Verification: &models.LogEntryAnonVerification{
			InclusionProof:       proof,
			SignedEntryTimestamp: set,
		},
	}}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("ETag", uuid)
	w.Header().Set("Location", "/api/v1/log/entries/"+uuid)
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(resp)
}

// Entries is how many entries the fake Rekor logged.
func (s *Sigstore) Entries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries
}

var _ crypto.PublicKey = (*ecdsa.PublicKey)(nil)
