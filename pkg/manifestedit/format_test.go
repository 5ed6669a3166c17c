package manifestedit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/validate"
)

func TestFormatGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "fmt", "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			data := readTestdata(t, filepath.Join("fmt", name+".yaml"))
			out, err := Format(in, data)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("fmt", name+".golden"), out)

			again, err := Format(in, out)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("formatting twice changes the file (%v):\n%s", err, again)
			}
			if name == "canonical" && !bytes.Equal(out, data) {
				t.Errorf("a canonical file changed")
			}
			before, after := commentsOf(data), commentsOf(out)
			if name == "lists" { // tags sorted with their comments
				slices.Sort(before)
				slices.Sort(after)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("comments not kept in order (-before +after):\n%s", diff)
			}
			if bytes.Contains(data, []byte("\r\n")) && bytes.Count(out, []byte("\n")) != bytes.Count(out, []byte("\r\n")) {
				t.Errorf("a CRLF file got LF line breaks: %q", out)
			}
			plain := strings.HasPrefix(name, "plain")
			if diff := cmp.Diff(validation(t, data, plain), validation(t, out, plain)); diff != "" {
				t.Errorf("formatting changed what validation says (-before +after):\n%s", diff)
			}
			if plain {
				assertPlainValid(t, out)
			} else if name != "duplicates" { // repeated tags: a warning, kept on purpose
				assertValid(t, out)
			}
		})
	}
}

var commentRE = regexp.MustCompile(`(?:^|\s)(#.*?)\s*$`)

// commentsOf lists the comments of a test file in order (its strings hold
// no #).
func commentsOf(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if m := commentRE.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// validation is what pkg/validate says about a file, without positions
// (formatting moves lines), plus the edges.
func validation(t *testing.T, data []byte, plain bool) []string {
	t.Helper()
	var in manifest.Inputs
	if plain {
		path := filepath.Join(t.TempDir(), "manifest.yaml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		in.Files = []string{path}
	} else {
		in.ThinDirs = []string{writeThin(t, t.TempDir(), "team", testRegistries, data)}
	}
	return summarize(validate.Validate(manifest.Load(in)))
}

func summarize(res *validate.Result) []string {
	var out []string
	for _, p := range res.Problems {
		out = append(out, fmt.Sprintf("%s %s %s %s", p.Severity, p.Code, p.Entry, positionRE.ReplaceAllString(p.Message, "FILE:N")))
	}
	for _, g := range res.Groups {
		var tags []string
		for _, tag := range g.Tags {
			tags = append(tags, tag.Name)
		}
		var dests []string
		for _, d := range g.Dests {
			dests = append(dests, d.Name())
		}
		out = append(out, fmt.Sprintf("edge %s %v -> %v", g.Source, tags, dests))
	}
	slices.Sort(out)
	return out
}

var positionRE = regexp.MustCompile(`\S+\.yaml:\d+(:\d+)?`)

func TestFormatUnchanged(t *testing.T) {
	for name, data := range map[string]string{
		"empty":          "",
		"comments only":  "# No images yet.\n",
		"empty list":     "[] # nothing\n",
		"registries":     "registries:\n  - name:   r.example/s\n    src: true\n",
		"plain no image": "registries:\n- name: r.example/s\n  src: true\nimages: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			out, err := Format("f.yaml", []byte(data))
			if err != nil || string(out) != data {
				t.Errorf("Format = %q, %v; want the input unchanged", out, err)
			}
		})
	}
}

func TestFormatRefused(t *testing.T) {
	a := `"sha256:` + strings.Repeat("a", 64) + `"`
	tests := []struct {
		name, input, want string
	}{
		{"alias", "- name: app\n  dmap: &d\n    " + a + ": [v1]\n- name: other\n  dmap: *d\n", "f.yaml:2:9: anchors and aliases are not supported here"},
		{"yaml tag", "- name: !!str app\n  dmap:\n    " + a + ": [v1]\n", "f.yaml:1:9: YAML tags"},
		{"block scalar", "- name: |\n    app\n  dmap:\n    " + a + ": [v1]\n", "f.yaml:1:9: a value spread over several lines"},
		{"flow list", "[{name: app, dmap: {" + a + ": [v1]}}]\n", "f.yaml:1:1: the images list is written in flow style"},
		{"duplicate digest", "- name: app\n  dmap:\n    " + a + ": [v1]\n    " + a + ": [v2]\n", "f.yaml:4:5: duplicate digest key"},
		{"not yaml", "- name: [\n", "f.yaml: not valid YAML"},
		{"two images keys", "registries: []\nimages:\n- name: a\nimages:\n- name: b\n", "f.yaml:4:1: duplicate key images"},
		{"tag not a string", "- name: app\n  dmap:\n    " + a + ": [[v1]]\n", "f.yaml:3:81: a tag must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Format("f.yaml", []byte(tt.input))
			var ee *Error
			if !errors.As(err, &ee) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Format = %q, %v; want an *Error starting %q", out, err, tt.want)
			}
		})
	}
}

// TestFormatCorpus formats every images.yaml of the Kubernetes corpus: each
// must format, stay formatted, and validate to the same edges and problems.
func TestFormatCorpus(t *testing.T) {
	const corpus = "../../testdata/corpus/k8s.io-2024-06/registry.k8s.io"
	copyDir := t.TempDir()
	if err := os.CopyFS(copyDir, os.DirFS(corpus)); err != nil {
		t.Fatal(err)
	}
	files, err := Files(manifest.Inputs{ThinDirs: []string{copyDir}})
	if err != nil || len(files) < 70 {
		t.Fatalf("Files = %d files, %v", len(files), err)
	}
	changed := 0
	for _, f := range files {
		c, err := FormatFile(f, true)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if c {
			changed++
		}
		if again, err := FormatFile(f, false); err != nil || again {
			t.Errorf("%s: not stable (%v)", f, err)
		}
	}
	t.Logf("%d of %d files were not in canonical form", changed, len(files))
	before := summarize(validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{corpus}})))
	after := summarize(validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{copyDir}})))
	if len(before) != len(after) {
		t.Fatalf("validation differs: %d lines before, %d after", len(before), len(after))
	}
	for i := range before {
		if b, a := strings.ReplaceAll(before[i], corpus, "DIR"), strings.ReplaceAll(after[i], copyDir, "DIR"); b != a {
			t.Errorf("validation differs:\n  before: %s\n  after:  %s", b, a)
		}
	}
	// The comments of the corpus are all still there.
	err = filepath.WalkDir(corpus, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != manifest.ThinImagesFile {
			return err
		}
		rel, _ := filepath.Rel(corpus, path)
		a, _ := os.ReadFile(path)
		b, _ := os.ReadFile(filepath.Join(copyDir, rel))
		if diff := cmp.Diff(commentsOf(a), commentsOf(b)); diff != "" {
			t.Errorf("%s: comments (-before +after):\n%s", rel, diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFiles(t *testing.T) {
	dir := writeThin(t, t.TempDir(), "b", testRegistries, []byte("[]\n"))
	writeThin(t, dir, "a", testRegistries, []byte("[]\n"))
	got, err := Files(manifest.Inputs{ThinDirs: []string{dir}, Files: []string{"plain.yaml"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "images/a/images.yaml"), filepath.Join(dir, "images/b/images.yaml"), "plain.yaml"}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if _, err := Files(manifest.Inputs{ThinDirs: []string{filepath.Join(dir, "nope")}}); err == nil {
		t.Error("a missing directory is not an error")
	}
}

// TestFormatFileRefusesLinkKeepsMode checks that fmt never writes through a
// symbolic link (the link and its target stay as they are: a link can lead
// out of the manifest tree), and that a rewritten file keeps its mode.
func TestFormatFileRefusesLinkKeepsMode(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.yaml")
	link := filepath.Join(dir, "images.yaml")
	unformatted := "- name: app\n  dmap:\n    sha256:" + strings.Repeat("a", 64) + ": [v1]\n"
	if err := os.WriteFile(target, []byte(unformatted), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.yaml", link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	changed, err := FormatFile(link, true)
	if !errors.Is(err, manifest.ErrSymlink) || changed {
		t.Fatalf("FormatFile(link) = %v, %v; want the link refused", changed, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v", err)
	}
	if data, _ := os.ReadFile(target); string(data) != unformatted {
		t.Errorf("the link's target was rewritten:\n%s", data)
	}
	changed, err = FormatFile(target, true)
	if err != nil || !changed {
		t.Fatalf("FormatFile = %v, %v", changed, err)
	}
	fi, err := os.Stat(target)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if data, _ := os.ReadFile(target); !strings.Contains(string(data), `"sha256:`) {
		t.Errorf("not formatted:\n%s", data)
	}
}
