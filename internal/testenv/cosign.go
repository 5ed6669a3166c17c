package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The cosign CLI versions the supply-chain tests run, and the environment
// variables naming their binaries. .ci/run installs both and sets them.
const (
	CosignVersion  = "v3.1.3"
	CosignBinEnv   = "PROMOTER_COSIGN_BIN"
	Cosign2Version = "v2.6.5"
	Cosign2BinEnv  = "PROMOTER_COSIGN2_BIN"
)

// CosignBinary returns the cosign v3 binary: $PROMOTER_COSIGN_BIN, else a
// `cosign` on PATH reporting CosignVersion. When there is none the test fails
// under CI=true and is skipped elsewhere, saying how to install it.
func CosignBinary(t testing.TB) string {
	t.Helper()
	return cosignBinary(t, CosignBinEnv, CosignVersion, "github.com/sigstore/cosign/v3/cmd/cosign")
}

// Cosign2Binary returns the cosign v2 binary ($PROMOTER_COSIGN2_BIN, else a
// `cosign` on PATH reporting Cosign2Version), like CosignBinary.
func Cosign2Binary(t testing.TB) string {
	t.Helper()
	return cosignBinary(t, Cosign2BinEnv, Cosign2Version, "github.com/sigstore/cosign/v2/cmd/cosign")
}

func cosignBinary(t testing.TB, env, version, pkg string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("testenv: $%s: %v", env, err)
		}
		return p
	}
	if p, err := exec.LookPath("cosign"); err == nil {
		out, err := exec.CommandContext(t.Context(), p, "version").CombinedOutput()
		if err == nil && strings.Contains(string(out), strings.TrimPrefix(version, "v")) {
			return p
		}
	}
	msg := "cosign " + version + " not found: install it with `GOBIN=DIR go install " + pkg + "@" + version + "` and set $" + env + "=DIR/cosign"
	if os.Getenv("CI") == "true" {
		t.Fatal("testenv: " + msg)
	}
	t.Skip("testenv: " + msg)
	return ""
}
