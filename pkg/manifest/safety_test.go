package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// imagesCount counts the images read per project.
func imagesCount(ms []*Manifest) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		out[m.Project] = len(m.Images)
	}
	return out
}

// outside reports the problems placed in a file outside root: the loader
// must not even have opened one.
func outside(root string, ps []diag.Problem) []diag.Problem {
	var out []diag.Problem
	for _, p := range ps {
		if rel, err := filepath.Rel(root, p.Pos.File); err != nil || !filepath.IsLocal(rel) {
			out = append(out, p)
		}
	}
	return out
}

// TestImagesPathNeverRead checks that imagesPath, whatever it names (a file
// above the tree, an absolute path, the project's own images file), is
// never read: the images of project P come from images/P/images.yaml.
func TestImagesPathNeverRead(t *testing.T) {
	for _, named := range []string{"../../../../elsewhere/images.yaml", "/etc/passwd", "../../other/images.yaml"} {
		t.Run(named, func(t *testing.T) {
			top := writeTree(t, map[string]string{
				"elsewhere/images.yaml":                   thinImages + strings.Replace(thinImages, "img", "evil", 1),
				"tree/manifests/a/promoter-manifest.yaml": thinManifest + "imagesPath: " + named + "\n",
				"tree/images/a/images.yaml":               thinImages,
				"tree/other/images.yaml":                  thinImages + thinImages,
			})
			root := filepath.Join(top, "tree")
			ms, probs := LoadThinDir(root)
			if got := imagesCount(ms); got["a"] != 1 || len(ms) != 1 || ms[0].ImagesFile != filepath.Join(root, "images", "a", "images.yaml") {
				t.Fatalf("images = %v, file %q: want the one image of images/a/images.yaml", got, ms[0].ImagesFile)
			}
			if o := outside(root, probs); len(o) > 0 {
				t.Errorf("problems in files outside the tree: %v", o)
			}
			if d := diffProbs(root, probs, []prob{{Pos: "manifests/a/promoter-manifest.yaml:5:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated,
				Msg: "imagesPath is deprecated and ignored: it names " + `"` + named + `"`}}); d != "" {
				t.Error(d)
			}
		})
	}
}

// TestSymlinksRefused checks that no symbolic link in a thin directory is
// followed, whether it links a file, a project folder or a whole images/
// folder, and whether its target is inside or outside the tree; and that a
// plain manifest given as a link is refused too.
func TestSymlinksRefused(t *testing.T) {
	tests := []struct {
		name string
		link string // the link, relative to the tree
		to   string // its target, relative to the link's folder
		want []prob
	}{
		{"images file to outside", "images/a/images.yaml", "../../../elsewhere/images.yaml", []prob{
			{Pos: "images/a/images.yaml", Code: diag.CodeUnreadable, Msg: "cannot open: is a symbolic link (not followed: manifests are read only from regular files inside their tree)"},
		}},
		{"images file inside the tree", "images/a/images.yaml", "../../spare/images.yaml", []prob{
			{Pos: "images/a/images.yaml", Code: diag.CodeUnreadable, Msg: "cannot open: is a symbolic link"},
		}},
		{"promoter manifest", "manifests/b/promoter-manifest.yaml", "../../../elsewhere/promoter-manifest.yaml", []prob{
			{Pos: "manifests/b/promoter-manifest.yaml", Code: diag.CodeUnreadable, Msg: "cannot open: is a symbolic link"},
		}},
		{"project folder", "images/b", "../../elsewhere", []prob{
			{Pos: "images/b", Code: diag.CodeUnreadable, Msg: "is a symbolic link"},
			{Pos: "manifests/b/promoter-manifest.yaml", Code: diag.CodeLayout, Msg: "project b has no images file"},
		}},
		{"images folder", "images", "../elsewhere/images", []prob{
			{Pos: "images", Code: diag.CodeUnreadable, Msg: "is a symbolic link"},
			{Pos: "manifests/a/promoter-manifest.yaml", Code: diag.CodeLayout, Msg: "project a has no images file"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := writeTree(t, map[string]string{
				"elsewhere/images.yaml":                   thinImages + thinImages,
				"elsewhere/images/a/images.yaml":          thinImages + thinImages,
				"elsewhere/promoter-manifest.yaml":        thinManifest,
				"tree/manifests/a/promoter-manifest.yaml": thinManifest,
				"tree/images/a/images.yaml":               thinImages,
				"tree/spare/images.yaml":                  thinImages + thinImages,
			})
			root := filepath.Join(top, "tree")
			if strings.HasPrefix(tt.link, "images/a") || tt.link == "images" {
				if err := os.RemoveAll(filepath.Join(root, filepath.FromSlash(tt.link))); err != nil {
					t.Fatal(err)
				}
			}
			if tt.link == "manifests/b/promoter-manifest.yaml" || tt.link == "images/b" {
				writeFileAt(t, filepath.Join(root, "images/b/images.yaml"), thinImages)
				if tt.link == "images/b" {
					writeFileAt(t, filepath.Join(root, "manifests/b/promoter-manifest.yaml"), thinManifest)
					if err := os.RemoveAll(filepath.Join(root, "images/b")); err != nil {
						t.Fatal(err)
					}
				}
			}
			link := filepath.Join(root, filepath.FromSlash(tt.link))
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.FromSlash(tt.to), link); err != nil {
				t.Skip("no symbolic links here:", err)
			}
			ms, probs := LoadThinDir(root)
			for _, m := range ms {
				if len(m.Images) > 1 || (len(m.Images) == 1 && strings.Contains(tt.link, "/"+m.Project)) {
					t.Errorf("project %s: %d images read through a link", m.Project, len(m.Images))
				}
			}
			if d := diffProbs(root, probs, tt.want); d != "" {
				t.Error(d)
			}
		})
	}
	t.Run("plain manifest", func(t *testing.T) {
		top := writeTree(t, map[string]string{"real.yaml": strictHeader})
		link := filepath.Join(top, "m.yaml")
		if err := os.Symlink("real.yaml", link); err != nil {
			t.Skip("no symbolic links here:", err)
		}
		m, probs := LoadFile(link)
		if m != nil || diffProbs("", probs, []prob{{Pos: link, Code: diag.CodeUnreadable, Msg: "cannot open: is a symbolic link"}}) != "" {
			t.Errorf("manifest %v, problems %v: want the link refused", m, probs)
		}
		if _, err := ReadFile(link); !errors.Is(err, ErrSymlink) {
			t.Errorf("ReadFile = %v, want ErrSymlink", err)
		}
	})
}

func writeFileAt(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNoProjectManifest checks that a thin directory without any project
// manifest (here, a misspelt file name) is an error, as in kpromo, not an
// empty set of manifests.
func TestNoProjectManifest(t *testing.T) {
	root := writeTree(t, map[string]string{
		"manifests/a/promoter-manifest.yml": thinManifest,
		"images/a/images.yaml":              thinImages,
	})
	ms, probs := LoadThinDir(root)
	if len(ms) != 0 {
		t.Errorf("manifests = %v", ms)
	}
	if d := diffProbs(root, probs, []prob{
		{Pos: ".", Code: diag.CodeLayout, Msg: "thin manifest directory has no project manifest (expected " + filepath.Join(root, "manifests", "<project>", "promoter-manifest.yaml") + ")"},
		{Pos: "images/a/images.yaml", Code: diag.CodeLayout, Msg: "has no promoter manifest"},
	}); d != "" {
		t.Error(d)
	}
	// An empty manifests/ folder is no better.
	root = writeTree(t, map[string]string{"manifests/README.md": "# nothing yet\n"})
	if _, probs := LoadThinDir(root); !hasProblem(probs, diag.CodeLayout, "has no project manifest") {
		t.Errorf("problems = %v, want no project manifest", probs)
	}
}

// TestAliasExpansionRefusedEarly checks that the aliases of a large file may
// expand it by a bounded number of nodes, not by a multiple of its size: a
// 2 MiB images file that repeats a 5,000-tag list by alias is refused after
// a few hundred thousand tags, not after millions (hundreds of MB).
func TestAliasExpansionRefusedEarly(t *testing.T) {
	text := aliasImages(2 << 20)
	path := writeFile(t, "images.yaml", text)
	imgs, probs := parseImagesFile(path)
	if !hasProblem(probs, diag.CodeUnreadable, "YAML aliases expand to more than") {
		t.Fatalf("want an alias explosion, got %d problems", len(probs))
	}
	tags := 0
	for _, img := range imgs {
		for _, d := range img.Digests {
			tags += len(d.Tags)
		}
	}
	if limit := 500_000; tags > limit {
		t.Errorf("%d tags read from a %d-byte file before the refusal, want at most %d", tags, len(text), limit)
	}
}

// TestReadWriteOutsideRoot checks that ReadFileIn and WriteFile refuse a
// path that leaves the root, by name or through a linked folder.
func TestReadWriteOutsideRoot(t *testing.T) {
	top := writeTree(t, map[string]string{"tree/images/a/images.yaml": thinImages, "outside/images.yaml": thinImages})
	root := filepath.Join(top, "tree")
	escape := filepath.Join(root, "..", "outside", "images.yaml")
	if _, err := ReadFileIn(root, escape); !errors.Is(err, ErrOutside) {
		t.Errorf("ReadFileIn(%s) = %v, want ErrOutside", escape, err)
	}
	if err := WriteFile(root, escape, []byte("x")); !errors.Is(err, ErrOutside) {
		t.Errorf("WriteFile(%s) = %v, want ErrOutside", escape, err)
	}
	if err := os.Symlink(filepath.Join(top, "outside"), filepath.Join(root, "images", "b")); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	through := filepath.Join(root, "images", "b", "images.yaml")
	if _, err := ReadFileIn(root, through); err == nil {
		t.Error("ReadFileIn read through a link out of the root")
	}
	if err := WriteFile(root, through, []byte("x")); err == nil {
		t.Error("WriteFile wrote through a link out of the root")
	}
	if data, _ := os.ReadFile(filepath.Join(top, "outside", "images.yaml")); string(data) != thinImages {
		t.Errorf("the file outside was changed: %q", data)
	}
	// Inside the root, a write replaces the file and keeps it regular.
	in := filepath.Join(root, "images", "a", "images.yaml")
	if err := WriteFile(root, in, []byte("[]\n")); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFileIn(root, in); err != nil || string(data) != "[]\n" {
		t.Errorf("after WriteFile: %q, %v", data, err)
	}
}
