package sign_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/imgpromoter/promoter/internal/cosigntest"
	"github.com/imgpromoter/promoter/internal/sigstoretest"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/attest"
	"github.com/imgpromoter/promoter/pkg/sign"
)

const workflowIdentity = "https://github.com/example/release/.github/workflows/promote.yaml@refs/heads/main"

func keylessSigner(t *testing.T, fake *sigstoretest.Sigstore, token string) *sign.Signer {
	t.Helper()
	tokPath := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokPath, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := sign.New(sign.WithKeyless(sign.TokenFromFile(tokPath), fake.FulcioURL), sign.WithRekor(fake.RekorURL))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKeylessBundleVerifies signs a statement keyless against the fake
// Fulcio and Rekor and verifies the bundle with sigstore-go against the
// fakes' trusted root, bound to the digest and the identity.
func TestKeylessBundleVerifies(t *testing.T) {
	fake := sigstoretest.Start(t)
	s := keylessSigner(t, fake, fake.Token(t, workflowIdentity))
	dig := testenv.BuildImage(t, testenv.ImageSpec{Seed: 7})
	h, err := dig.Digest()
	if err != nil {
		t.Fatal(err)
	}
	st, _ := attest.Sign(h).Marshal()
	raw, err := s.SignStatement(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	if fake.Entries() != 1 {
		t.Fatalf("Rekor has %d entries, want 1", fake.Entries())
	}
	tr, err := root.NewTrustedRootFromPath(fake.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		t.Fatal(err)
	}
	v, err := verify.NewVerifier(tr, verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1), verify.WithSignedCertificateTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString(h.Hex)
	id, err := verify.NewShortCertificateIdentity(sigstoretest.Issuer, "", workflowIdentity, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", want), verify.WithCertificateIdentity(id))); err != nil {
		t.Fatalf("verify: %v", err)
	}
	other, _ := verify.NewShortCertificateIdentity(sigstoretest.Issuer, "", "https://github.com/evil/x", "")
	if _, err := v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", want), verify.WithCertificateIdentity(other))); err == nil {
		t.Fatal("verified with another identity")
	}
	ok, err := s.BundleIsMine(t.Context(), raw, attest.CosignSign, h)
	if err != nil || !ok {
		t.Fatalf("BundleIsMine = %v, %v; want true", ok, err)
	}
}

// TestKeylessForeignTokenRefused: a token the OIDC issuer did not sign
// gets no certificate, and nothing is logged.
func TestKeylessForeignTokenRefused(t *testing.T) {
	fake := sigstoretest.Start(t)
	s := keylessSigner(t, fake, sigstoretest.ForeignToken(t, workflowIdentity))
	_, err := s.SignStatement(t.Context(), []byte(`{}`))
	var se *sign.ServiceError
	if !errors.As(err, &se) || se.Service != "Fulcio" {
		t.Fatalf("err = %v, want a Fulcio ServiceError", err)
	}
	if fake.Entries() != 0 {
		t.Fatalf("Rekor logged %d entries", fake.Entries())
	}
}

// TestKeylessVerifiesWithCosign: the real cosign verifies a keyless
// signature made against the fakes, with the fakes' trusted root.
func TestKeylessVerifiesWithCosign(t *testing.T) {
	cosign := cosigntest.New(t, 3).Bin
	fake := sigstoretest.Start(t)
	s := keylessSigner(t, fake, fake.Token(t, workflowIdentity))
	host := testenv.InProcessReferrersRegistry(t, true)
	dist := testenv.StartDistribution(t, "prod").Host
	dests := []string{host + "/prod/app", dist + "/mirror/app"}
	var img sign.Image
	for _, d := range dests {
		dig := testenv.PushImage(t, d+":v1", 3)
		img.Subject = subjectOf(t, d+"@"+dig.String())
		img.Destinations = append(img.Destinations, sign.Destination{Repo: mustRepo(t, d), Tags: []string{"v1"}})
	}
	store := sign.NewRemoteStore(nil, nil)
	p := &sign.Publisher{Signer: s, Store: store, Created: time.Now(), BuilderID: "https://example.test/promoter@v0"}
	if _, err := p.Publish(t.Context(), img); err != nil {
		t.Fatal(err)
	}
	for _, d := range dests {
		ref := d + "@" + img.Subject.Digest.String()
		common := []string{"--trusted-root", fake.TrustedRoot, "--certificate-identity-regexp", `^https://github\.com/example/release/`,
			"--certificate-oidc-issuer", sigstoretest.Issuer, "--allow-http-registry"}
		if code, out := cosignRun(t, cosign, nil, append(append([]string{"verify"}, common...), ref)...); code != 0 {
			t.Errorf("cosign verify %s: exit %d\n%s", ref, code, out)
		}
		if code, out := cosignRun(t, cosign, nil, append(append([]string{"verify-attestation", "--type", attest.Promotion}, common...), ref)...); code != 0 {
			t.Errorf("cosign verify-attestation %s: exit %d\n%s", ref, code, out)
		}
		wrong := []string{"verify", "--trusted-root", fake.TrustedRoot, "--certificate-identity", "https://github.com/evil/x",
			"--certificate-oidc-issuer", sigstoretest.Issuer, "--allow-http-registry", ref}
		if code, _ := cosignRun(t, cosign, nil, wrong...); code == 0 {
			t.Errorf("cosign verify %s passed for another identity", ref)
		}
	}
}
