package manifestedit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// golden compares got with testdata/<name>, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	testenv.Golden(t, name, got)
}

// hash is the digest whose hex is c repeated.
func hash(c string) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(c, 64)}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

const testRegistries = "registries:\n- name: staging.example/team\n  src: true\n- name: prod.example/team\n"

// writeThin lays out a thin manifest directory with one project.
func writeThin(t *testing.T, root, project, registries string, images []byte) string {
	t.Helper()
	files := map[string][]byte{
		filepath.Join(root, manifest.ThinManifestsDir, project, manifest.ThinManifestFile): []byte(registries),
	}
	if images != nil {
		files[filepath.Join(root, manifest.ThinImagesDir, project, manifest.ThinImagesFile)] = images
	}
	for path, body := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// assertValid reads images as a thin project with pkg/manifest and checks
// that pkg/validate finds nothing wrong.
func assertValid(t *testing.T, images []byte) {
	t.Helper()
	dir := writeThin(t, t.TempDir(), "team", testRegistries, images)
	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
	if len(res.Problems) > 0 {
		for _, p := range res.Problems {
			t.Errorf("after the edit: %v", p)
		}
	}
}

// assertPlainValid does the same for a plain manifest.
func assertPlainValid(t *testing.T, data []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	res := validate.Validate(manifest.Load(manifest.Inputs{Files: []string{path}}))
	if n := diag.Errors(res.Problems); n > 0 {
		t.Errorf("after formatting: %d errors: %v", n, res.Problems)
	}
}

// assertLinesKept checks that every line of before is in after, in order,
// byte for byte (line breaks included), except lines holding one of the
// strings in edited (a flow tag list extended in place, say).
func assertLinesKept(t *testing.T, before, after []byte, edited []string) {
	t.Helper()
	a := strings.SplitAfter(string(after), "\n")
	j := 0
	for i, line := range strings.SplitAfter(string(before), "\n") {
		if line == "" {
			continue
		}
		k := j
		for k < len(a) && a[k] != line {
			k++
		}
		if k < len(a) {
			j = k + 1
			continue
		}
		// A last line without a line break gets one when lines follow.
		if !strings.HasSuffix(line, "\n") && j < len(a) && strings.TrimRight(a[j], "\r\n") == line {
			j++
			continue
		}
		inPlace := false
		for _, d := range edited {
			if strings.Contains(line, strings.TrimPrefix(d, "sha256:")) {
				inPlace = true
			}
		}
		if !inPlace {
			t.Errorf("line %d of the input is not kept as it was: %q", i+1, line)
		}
	}
}
