package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/internal/cli"
)

// TestValidateThinDirWithoutManifest checks that a thin directory whose
// project manifest is misspelt fails validation, as in kpromo, instead of
// passing as "0 manifests".
func TestValidateThinDirWithoutManifest(t *testing.T) {
	dir := t.TempDir()
	writeThin(t, dir, "p", "registries:\n- name: gcr.io/s\n  src: true\n- name: r.io/p\n", "[]\n")
	if err := os.Rename(filepath.Join(dir, "manifests", "p", "promoter-manifest.yaml"), filepath.Join(dir, "manifests", "p", "promoter-manifests.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "images")); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run(t, "validate", dir)
	if code != cli.ExitProblems || !strings.Contains(out, dir+": thin manifest directory has no project manifest") {
		t.Errorf("exit %d, want %d\n%s", code, cli.ExitProblems, out)
	}
}
