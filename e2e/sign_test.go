package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/cosigntest"
	"github.com/imgpromoter/promoter/internal/sigstoretest"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/attest"
	"github.com/imgpromoter/promoter/pkg/sign"
)

// promoterEnv runs the binary with extra environment variables.
func promoterEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := promoterCmd(ctx, t, args...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), code: -1}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if err != nil && r.code <= 0 {
		t.Fatalf("running promoter: %v\n%s", err, r)
	}
	return r
}

// cosign runs the cosign CLI and returns its exit code and output.
func cosign(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir(), "TUF_ROOT="+t.TempDir()), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatalf("running %s: %v", bin, err)
	}
	return 0, out.String()
}

// generateKeyPair makes a key pair with the real cosign: cosign.key in its
// encrypted format (password in COSIGN_PASSWORD) and cosign.pub.
func generateKeyPair(t *testing.T, bin, password string) (key, pub string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, "generate-key-pair")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+password, "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
}

// wantHasTags checks each tag of p resolves to its digest in dest.
func wantHasTags(t *testing.T, dest string, ps ...promo) {
	t.Helper()
	for _, p := range ps {
		got := tagsOf(t, dest+"/"+p.image)
		for _, tag := range p.tags {
			if got[tag] != p.digest {
				t.Errorf("%s/%s:%s = %v, want %s", dest, p.image, tag, got[tag], p.digest)
			}
		}
	}
}

// TestRunSignKey: run --confirm --sign with a cosign-generated encrypted key
// and no transparency log, to Distribution (fallback tag) and to a registry
// with the referrers API. The real cosign v3 verifies signature and
// promotion attestation on every destination (index children too), cosign
// v2 the legacy .sig; `promoter verify` passes, fails once a signature is
// removed from one mirror, and passes again after a rerun restored it.
func TestRunSignKey(t *testing.T) {
	e2e(t)
	cosign3 := cosigntest.New(t, 3).Bin
	cosign2 := cosigntest.New(t, 2).Bin
	regs := startRegistries(t)
	dests := []string{regs.destA(), testenv.InProcessReferrersRegistry(t, true) + "/promoted"}
	spec := registrySpec{src: regs.src(), dests: dests}
	ps := []promo{pushImage(t, regs.src(), "app", 1, "v1", "v1.0"), pushIndex(t, regs.src(), "multi", 2, "v2")}
	dir, _ := thinDir(t, "sample", spec, entries(ps...))
	key, pub := generateKeyPair(t, cosign3, "s3cret")
	env := []string{"TEST_KEY_PASSWORD=s3cret"}
	emptyRoot := filepath.Join(t.TempDir(), "trusted_root.json")
	writeFile(t, emptyRoot, `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	// The same key, loaded by the library: to recognise the .sig layers.
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := sign.LoadPrivateKey(keyPEM, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	keySigner, err := sign.New(sign.WithKey(sign.FromCryptoSigner(priv)), sign.WithoutTransparencyLogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	signArgs := []string{"run", "--confirm", "--sign", "--signing-key", key, "--signing-key-password-env", "TEST_KEY_PASSWORD",
		"--tlog=false", "--sign-legacy", "--sign-index-children", dir}

	r := promoterEnv(t, env, signArgs...)
	wantExit(t, r, 0)
	wantContains(t, "signing summary", r.stderr, r, "signing:")
	for _, d := range dests {
		wantHasTags(t, d, ps...)
		for _, p := range ps {
			ref := d + "/" + p.image + "@" + p.digest.String()
			base := []string{"--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry"}
			if code, out := cosign(t, cosign3, nil, append(append([]string{"verify"}, base...), ref)...); code != 0 {
				t.Errorf("cosign verify %s: exit %d\n%s", ref, code, out)
			}
			if code, out := cosign(t, cosign3, nil, append(append([]string{"verify-attestation", "--type", attest.Promotion}, base...), ref)...); code != 0 {
				t.Errorf("cosign verify-attestation %s: exit %d\n%s", ref, code, out)
			}
			// cosign v2 reads the bundles when there are any (they verify
			// with the key; the empty trusted root only keeps it offline).
			if code, out := cosign(t, cosign2, []string{"SIGSTORE_REKOR_PUBLIC_KEY=" + pub}, append(append([]string{"verify", "--trusted-root", emptyRoot}, base...), ref)...); code != 0 {
				t.Errorf("cosign v2 verify %s: exit %d\n%s", ref, code, out)
			}
			// The legacy .sig names this destination's own repository and
			// verifies with the key (its format is checked against cosign v2
			// in pkg/sign's TestLegacyVerifiesWithCosign2).
			repo := parseRepo(t, d+"/"+p.image)
			payload, err := sign.SimpleSigningPayload(repo, p.digest)
			if err != nil {
				t.Fatal(err)
			}
			sigs, err := sign.NewRemoteStore(nil, nil).LegacySignatures(t.Context(), repo, p.digest)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, l := range sigs {
				if ok, _ := keySigner.LegacyIsMine(t.Context(), l, payload); ok {
					found = true
				}
			}
			if !found || len(sigs) != 1 {
				t.Errorf("%s: %d legacy signatures, ours found: %v", repo.Digest(p.digest.String()), len(sigs), found)
			}
			for _, c := range p.children {
				cref := d + "/" + p.image + "@" + c.String()
				if code, out := cosign(t, cosign3, nil, append(append([]string{"verify"}, base...), cref)...); code != 0 {
					t.Errorf("cosign verify child %s: exit %d\n%s", cref, code, out)
				}
			}
		}
	}

	// Nothing new on a second run.
	r = promoterEnv(t, env, signArgs...)
	wantExit(t, r, 0)
	wantContains(t, "second run", r.stderr, r, "signing: 0 signature/attestation artifact(s) written")

	r = promoter(t, "verify", "--key", pub, dir)
	wantExit(t, r, 0)

	// Remove the signature of app from the referrers-capable mirror.
	repo, err := name.NewRepository(dests[1] + "/app")
	if err != nil {
		t.Fatal(err)
	}
	store := sign.NewRemoteStore(nil, nil)
	descs, err := store.Referrers(t.Context(), repo, ps[0].digest)
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, d := range descs {
		if d.Annotations[sign.AnnotationPredicateType] == attest.CosignSign {
			if err := remote.Delete(repo.Digest(d.Digest.String()), remote.WithContext(t.Context())); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	if removed == 0 {
		t.Fatal("no signature referrer found to remove")
	}
	r = promoter(t, "verify", "--key", pub, dir)
	wantExit(t, r, 1)
	wantContains(t, "verify output", r.stdout, r, dests[1]+"/app@"+ps[0].digest.String()+": missing signature")
}

// TestRunSignFailedBeforeTags: the tags of one mirror fail to be written
// after signing (the registry refuses them). Nothing is served unsigned: the
// mirror has no tag, the other has signed tags. A rerun writes the missing
// tags and every tag in every mirror is signed.
func TestRunSignFailedBeforeTags(t *testing.T) {
	e2e(t)
	cosign3 := cosigntest.New(t, 3).Bin
	regs := startRegistries(t)
	// The first two tag writes to prod-a are refused: that is run one.
	proxy := testenv.NewFaultProxy(t, regs.prodA.Host, testenv.FaultRule{
		Method: http.MethodPut, Path: `/manifests/v[0-9][^/]*$`, First: 1, Last: 2, Kind: testenv.FaultStatus, Status: http.StatusForbidden,
	})
	dests := []string{proxy.Host() + "/" + prodAPrefix, regs.destB()}
	spec := registrySpec{src: regs.src(), dests: dests}
	ps := []promo{pushImage(t, regs.src(), "app", 11, "v1"), pushImage(t, regs.src(), "tool", 12, "v2")}
	dir, _ := thinDir(t, "sample", spec, entries(ps...))
	key, pub := generateKeyPair(t, cosign3, "pw")
	env := []string{"TEST_KEY_PASSWORD=pw"}
	args := []string{"run", "--confirm", "--sign", "--signing-key", key, "--signing-key-password-env", "TEST_KEY_PASSWORD", "--tlog=false", dir}
	verifyTags := func(dest string) {
		t.Helper()
		for _, p := range ps {
			for tag, dig := range tagsOf(t, dest+"/"+p.image) {
				if strings.HasPrefix(tag, "sha256-") {
					continue
				}
				ref := dest + "/" + p.image + ":" + tag
				if code, out := cosign(t, cosign3, nil, "verify", "--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry", ref); code != 0 {
					t.Errorf("tag %s (%s) is not signed: exit %d\n%s", ref, dig, code, out)
				}
			}
		}
	}

	r := promoterEnv(t, env, args...)
	wantExit(t, r, 1)
	for _, p := range ps {
		if tags := tagsOf(t, dests[0]+"/"+p.image); len(tags) != 0 && tags[p.tags[0]] == p.digest {
			t.Errorf("%s/%s has tag %s after a refused tag write", dests[0], p.image, p.tags[0])
		}
	}
	wantHasTags(t, dests[1], ps...)
	verifyTags(dests[1])

	r = promoterEnv(t, env, args...)
	wantExit(t, r, 0)
	for _, d := range dests {
		wantHasTags(t, d, ps...)
		verifyTags(d)
	}
	r = promoter(t, "verify", "--key", pub, dir)
	wantExit(t, r, 0)
}

// TestRunSignKeyless: keyless signing with an identity token file against
// the fake Fulcio and Rekor; the real cosign verifies with the fakes'
// trusted root, the identity regexp and the issuer, and so does
// `promoter verify`.
func TestRunSignKeyless(t *testing.T) {
	e2e(t)
	cosign3 := cosigntest.New(t, 3).Bin
	fake := sigstoretest.Start(t)
	regs := startRegistries(t)
	dests := []string{regs.destA(), testenv.InProcessReferrersRegistry(t, true) + "/promoted"}
	ps := []promo{pushImage(t, regs.src(), "app", 21, "v1")}
	dir, _ := thinDir(t, "sample", registrySpec{src: regs.src(), dests: dests}, entries(ps...))
	const identity = "https://github.com/example/release/.github/workflows/promote.yaml@refs/heads/main"
	tok := filepath.Join(t.TempDir(), "token")
	writeFile(t, tok, fake.Token(t, identity))

	r := promoter(t, "run", "--confirm", "--sign", "--identity-token", tok, "--fulcio-url", fake.FulcioURL, "--rekor-url", fake.RekorURL, dir)
	wantExit(t, r, 0)
	idArgs := []string{"--trusted-root", fake.TrustedRoot, "--certificate-identity-regexp", `^https://github\.com/example/release/`,
		"--certificate-oidc-issuer", sigstoretest.Issuer}
	for _, d := range dests {
		ref := d + "/app@" + ps[0].digest.String()
		if code, out := cosign(t, cosign3, nil, append(append([]string{"verify", "--allow-http-registry"}, idArgs...), ref)...); code != 0 {
			t.Errorf("cosign verify %s: exit %d\n%s", ref, code, out)
		}
		if code, out := cosign(t, cosign3, nil, append(append([]string{"verify-attestation", "--allow-http-registry", "--type", attest.Promotion}, idArgs...), ref)...); code != 0 {
			t.Errorf("cosign verify-attestation %s: exit %d\n%s", ref, code, out)
		}
	}
	r = promoter(t, append([]string{"verify"}, append(idArgs, dir)...)...)
	wantExit(t, r, 0)
	r = promoter(t, "verify", "--trusted-root", fake.TrustedRoot, "--certificate-identity", "https://github.com/evil/x", "--certificate-oidc-issuer", sigstoretest.Issuer, dir)
	wantExit(t, r, 1)
}
