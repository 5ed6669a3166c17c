// Package cosigntest runs the real cosign CLI in tests: v3 (sigstore
// bundles attached as OCI referrers) and v2 (cosign's legacy .sig and .att
// tags), with a fresh key pair per test and no transparency log, against
// registries on 127.0.0.1.
package cosigntest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Pinned versions, installed by .ci/run with
// `go install github.com/sigstore/cosign/v3/cmd/cosign@V3Version` and
// `go install github.com/sigstore/cosign/v2/cmd/cosign@V2Version` into
// separate directories.
const (
	V3Version = "v3.1.3"
	V2Version = "v2.6.5"
	// V3Env and V2Env name the variables that point at the binaries.
	V3Env = "PROMOTER_COSIGN_BIN"
	V2Env = "PROMOTER_COSIGN2_BIN"
)

// password protects the test keys (cosign requires one).
const password = "promoter-test"

// Cosign is one cosign binary with a key pair in a temporary directory.
type Cosign struct {
	Bin   string
	Major int
	// Key and Pub are the private and public key files.
	Key, Pub string
	dir      string
}

// New finds cosign of the major version (3 or 2) and generates a key
// pair. Without the binary the test fails when CI=true and is skipped
// otherwise, saying how to install it.
func New(t testing.TB, major int) *Cosign {
	t.Helper()
	env, version, pkg := V3Env, V3Version, "github.com/sigstore/cosign/v3/cmd/cosign"
	if major == 2 {
		env, version, pkg = V2Env, V2Version, "github.com/sigstore/cosign/v2/cmd/cosign"
	}
	bin := os.Getenv(env)
	if bin == "" {
		msg := fmt.Sprintf("cosign %s not found: set $%s to a binary installed with `GOBIN=DIR go install %s@%s`", version, env, pkg, version)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	c := &Cosign{Bin: bin, Major: major, Key: filepath.Join(dir, "cosign.key"), Pub: filepath.Join(dir, "cosign.pub"), dir: dir}
	if out, err := c.run(t, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return c
}

// run runs cosign in the key directory with the key password and a home
// of its own (nothing read from or written to the user's).
func (c *Cosign) run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+password, "HOME="+c.dir, "COSIGN_EXPERIMENTAL=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// offline are the flags that keep signing local: no transparency log, no
// signing config fetched, plain HTTP to the loopback registry.
func (c *Cosign) offline() []string {
	flags := []string{"--tlog-upload=false", "--allow-http-registry", "-y"}
	if c.Major >= 3 {
		flags = append(flags, "--use-signing-config=false")
	}
	return flags
}

// Sign signs ref (host/repo@sha256:...) with the test key.
func (c *Cosign) Sign(t testing.TB, ref string, extra ...string) {
	t.Helper()
	args := append([]string{"sign", "--key", c.Key}, c.offline()...)
	args = append(append(args, extra...), ref)
	if out, err := c.run(t, args...); err != nil {
		t.Fatalf("cosign %d sign %s: %v\n%s", c.Major, ref, err, out)
	}
}

// Attest attaches a signed attestation of predicateType with predicate
// (JSON) to ref.
func (c *Cosign) Attest(t testing.TB, ref, predicateType string, predicate []byte) {
	t.Helper()
	f := filepath.Join(c.dir, fmt.Sprintf("predicate-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(f, predicate, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"attest", "--key", c.Key, "--type", predicateType, "--predicate", f}, c.offline()...)
	args = append(args, ref)
	if out, err := c.run(t, args...); err != nil {
		t.Fatalf("cosign %d attest %s: %v\n%s", c.Major, ref, err, out)
	}
}

// Verify runs `cosign verify` against ref with the public key (pub: "" for
// the test key) and returns its error (nil: exit status 0) and output.
func (c *Cosign) Verify(t testing.TB, ref, pub string) (string, error) {
	t.Helper()
	if pub == "" {
		pub = c.Pub
	}
	return c.run(t, "verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", ref)
}

// VerifyAttestation runs `cosign verify-attestation --type predicateType`.
func (c *Cosign) VerifyAttestation(t testing.TB, ref, predicateType string) (string, error) {
	t.Helper()
	return c.run(t, "verify-attestation", "--key", c.Pub, "--type", predicateType, "--insecure-ignore-tlog", "--allow-http-registry", ref)
}

// PublicKeyPEM returns the public key file's content.
func (c *Cosign) PublicKeyPEM(t testing.TB) []byte {
	t.Helper()
	raw, err := os.ReadFile(c.Pub)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Version returns `cosign version` output's GitVersion line.
func (c *Cosign) Version(t testing.TB) string {
	t.Helper()
	out, _ := c.run(t, "version")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "GitVersion:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "GitVersion:"))
		}
	}
	return ""
}

// UseKey makes c sign with other's key pair (cosign v2 and v3 read each
// other's keys), so that one public key verifies both.
func (c *Cosign) UseKey(other *Cosign) { c.Key, c.Pub = other.Key, other.Pub }
