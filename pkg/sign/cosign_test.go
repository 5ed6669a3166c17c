package sign_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/imgpromoter/promoter/internal/cosigntest"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/attest"
	"github.com/imgpromoter/promoter/pkg/sign"
)

// cosignRun runs cosign and returns its exit code and output.
func cosignRun(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir(), "TUF_ROOT="+t.TempDir()), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return 0, out.String()
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("running %s: %v", bin, err)
	return -1, ""
}

func subjectOf(t *testing.T, ref string) v1.Descriptor {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

// writeKeyPair writes a fresh P-256 key as cosign would read it: the
// public key PEM, and the private key encrypted in cosign's format.
func writeKeyPair(t *testing.T, dir string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(p, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	return k, p
}

// TestKeySignedVerifiesWithCosign signs with a key (no transparency log) on
// a registry with the referrers API and on Distribution (fallback tag), and
// the real cosign CLI verifies the signature, the promotion attestation and
// (cosign v2) the legacy .sig on every destination.
func TestKeySignedVerifiesWithCosign(t *testing.T) {
	cosign := cosigntest.New(t, 3).Bin
	dir := t.TempDir()
	key, pubPath := writeKeyPair(t, dir)

	staging := testenv.InProcessRegistry(t)
	dests := []string{testenv.InProcessReferrersRegistry(t, true) + "/prod/app", testenv.StartDistribution(t, "prod").Host + "/mirror/app"}
	dig := testenv.PushImage(t, staging+"/team/app:v1", 1)
	for _, d := range dests {
		testenv.PushImage(t, d+":v1", 1)
	}
	signer, err := sign.New(sign.WithKey(sign.FromCryptoSigner(key)), sign.WithoutTransparencyLogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	cosign2 := cosigntest.New(t, 2).Bin
	emptyRoot := writeEmptyTrustedRoot(t)
	store := sign.NewRemoteStore(nil, nil)
	pub := &sign.Publisher{Signer: signer, Store: store, Legacy: store, Created: time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC), BuilderID: "https://example.test/promoter@v0"}
	img := sign.Image{Subject: subjectOf(t, staging+"/team/app@"+dig.String()), Source: mustRepo(t, staging+"/team/app")}
	for _, d := range dests {
		img.Destinations = append(img.Destinations, sign.Destination{Repo: mustRepo(t, d), Tags: []string{"v1"}})
	}
	actions, err := pub.Publish(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if !a.Written {
			t.Errorf("first run did not write %+v", a)
		}
	}
	// One signature bundle, byte-identical on every mirror.
	if actions[0].ArtifactDigest != actions[1].ArtifactDigest {
		t.Errorf("signature referrers differ between mirrors: %s vs %s", actions[0].ArtifactDigest, actions[1].ArtifactDigest)
	}

	for _, d := range dests {
		ref := d + "@" + dig.String()
		if code, out := cosignRun(t, cosign, nil, "verify", "--key", pubPath, "--insecure-ignore-tlog=true", "--allow-http-registry", ref); code != 0 {
			t.Errorf("cosign verify %s: exit %d\n%s", ref, code, out)
		}
		if code, out := cosignRun(t, cosign, nil, "verify-attestation", "--key", pubPath, "--insecure-ignore-tlog=true", "--allow-http-registry", "--type", attest.Promotion, ref); code != 0 {
			t.Errorf("cosign verify-attestation %s: exit %d\n%s", ref, code, out)
		}
		if code, out := cosignRun(t, cosign2, []string{"SIGSTORE_REKOR_PUBLIC_KEY=" + pubPath}, "verify", "--key", pubPath, "--insecure-ignore-tlog=true", "--allow-http-registry", "--trusted-root", emptyRoot, ref); code != 0 {
			t.Errorf("cosign v2 verify %s: exit %d\n%s", ref, code, out)
		}
	}

	// A second run finds everything and writes nothing.
	again, err := pub.Publish(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range again {
		if a.Written {
			t.Errorf("second run wrote %+v", a)
		}
	}

	// A different key does not verify (the check can fail).
	other, otherPub := writeKeyPair(t, t.TempDir())
	_ = other
	if code, _ := cosignRun(t, cosign, nil, "verify", "--key", otherPub, "--insecure-ignore-tlog=true", "--allow-http-registry", dests[0]+"@"+dig.String()); code == 0 {
		t.Error("cosign verify passed with another key")
	}
}

// writeEmptyTrustedRoot writes a trusted root naming no authority: cosign v2
// needs one to read bundles, and key-based verification uses none of it.
func writeEmptyTrustedRoot(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(p, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLegacyVerifiesWithCosign2: the legacy .sig signature alone (no
// bundle referrer: cosign v2 prefers bundles when there are any) verifies
// with cosign v2 on both kinds of registry, naming each destination's own
// repository; appending keeps existing signatures and is idempotent.
func TestLegacyVerifiesWithCosign2(t *testing.T) {
	cosign2 := cosigntest.New(t, 2).Bin
	key, pubPath := writeKeyPair(t, t.TempDir())
	signer, err := sign.New(sign.WithKey(sign.FromCryptoSigner(key)), sign.WithoutTransparencyLogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := writeKeyPair(t, t.TempDir())
	otherSigner, err := sign.New(sign.WithKey(sign.FromCryptoSigner(other)), sign.WithoutTransparencyLogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	store := sign.NewRemoteStore(nil, nil)
	for _, d := range []string{testenv.InProcessReferrersRegistry(t, true) + "/prod/app", testenv.StartDistribution(t, "prod").Host + "/mirror/app"} {
		dig := testenv.PushImage(t, d+":v1", 9)
		repo := mustRepo(t, d)
		payload, err := sign.SimpleSigningPayload(repo, dig)
		if err != nil {
			t.Fatal(err)
		}
		// Another signer's signature first: it must be kept.
		for _, s := range []*sign.Signer{otherSigner, signer} {
			l, err := s.SignLegacy(t.Context(), payload)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.AppendLegacy(t.Context(), repo, dig, l); err != nil {
				t.Fatal(err)
			}
		}
		sigs, err := store.LegacySignatures(t.Context(), repo, dig)
		if err != nil || len(sigs) != 2 {
			t.Fatalf("%s: %d legacy signatures (%v), want 2", d, len(sigs), err)
		}
		mine := 0
		for _, l := range sigs {
			if ok, _ := signer.LegacyIsMine(t.Context(), l, payload); ok {
				mine++
			}
		}
		if mine != 1 {
			t.Errorf("%s: %d signatures recognised as mine, want 1", d, mine)
		}
		ref := d + "@" + dig.String()
		// SIGSTORE_REKOR_PUBLIC_KEY keeps cosign v2 from fetching the public
		// trust root (no network here); the log is not checked anyway.
		env := []string{"SIGSTORE_REKOR_PUBLIC_KEY=" + pubPath}
		if code, out := cosignRun(t, cosign2, env, "verify", "--key", pubPath, "--insecure-ignore-tlog=true", "--allow-http-registry", ref); code != 0 {
			t.Errorf("cosign v2 verify (legacy .sig) %s: exit %d\n%s", ref, code, out)
		}
	}
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBundleReferrerShape pins what cosign v3 writes: artifact type, config,
// layer and annotations.
func TestBundleReferrerShape(t *testing.T) {
	sub := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 123, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}}
	r, err := sign.BundleReferrer(sub, []byte(`{"mediaType":"x"}`), attest.CosignSign, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "bundle-referrer.json", append(r.Manifest, '\n'))
}
