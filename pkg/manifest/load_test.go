package manifest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// TestLoadThinDir reads testdata/thin: three projects (one with the
// deprecated imagesPath, one whose images file is only a comment) among
// OWNERS, README, scripts, a Go file and other YAML files, all ignored.
func TestLoadThinDir(t *testing.T) {
	root := filepath.Join("testdata", "thin")
	f := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	at := func(file string, line, col int) diag.Position {
		return diag.Position{File: file, Line: line, Column: col}
	}
	const sa = "promoter@k8s-artifacts-prod.iam.gserviceaccount.com"
	alpha, alphaImages := f("manifests/alpha/promoter-manifest.yaml"), f("images/alpha/images.yaml")
	beta, betaImages := f("manifests/beta/promoter-manifest.yaml"), f("images/beta/images.yaml")
	gamma, gammaImages := f("manifests/gamma/promoter-manifest.yaml"), f("images/gamma/images.yaml")
	want := []*Manifest{
		{
			File: alpha, ImagesFile: alphaImages, Project: "alpha", Pos: at(alpha, 2, 1),
			Registries: []Registry{
				{Name: "gcr.io/k8s-staging-alpha", Src: true, Pos: at(alpha, 3, 3)},
				{Name: "us-docker.pkg.dev/k8s-artifacts-prod/images/alpha", ServiceAccount: sa, Pos: at(alpha, 5, 3)},
				{Name: "asia-docker.pkg.dev/k8s-artifacts-prod/images/alpha", ServiceAccount: sa, Pos: at(alpha, 7, 3)},
			},
			Images: []Image{
				{Name: "one", Pos: at(alphaImages, 1, 3), Digests: []DigestEntry{
					{Digest: digA, Pos: at(alphaImages, 3, 5), Tags: []Tag{{Name: "v1.0.0", Pos: at(alphaImages, 3, 81)}}},
				}},
				{Name: "two/three", Pos: at(alphaImages, 4, 3), Digests: []DigestEntry{
					{Digest: digB, Pos: at(alphaImages, 6, 5), Tags: []Tag{}},
				}},
			},
		},
		{
			File: beta, ImagesFile: betaImages, Project: "beta", Pos: at(beta, 1, 1),
			Registries: []Registry{
				{Name: "gcr.io/k8s-staging-beta", Src: true, Pos: at(beta, 2, 3)},
				{Name: "us-docker.pkg.dev/k8s-artifacts-prod/images/beta", Pos: at(beta, 4, 3)},
			},
			Images: []Image{
				{Name: "four", Pos: at(betaImages, 1, 3), Digests: []DigestEntry{
					{Digest: digC, Pos: at(betaImages, 3, 5), Tags: []Tag{{Name: "v2", Pos: at(betaImages, 3, 81)}}},
				}},
			},
		},
		{
			File: gamma, ImagesFile: gammaImages, Project: "gamma", Pos: at(gamma, 1, 1),
			Registries: []Registry{
				{Name: "gcr.io/k8s-staging-gamma", Src: true, Pos: at(gamma, 2, 3)},
				{Name: "us-docker.pkg.dev/k8s-artifacts-prod/images/gamma", Pos: at(gamma, 4, 3)},
			},
		},
	}
	got, probs := LoadThinDir(root)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("manifests (-want +got):\n%s", d)
	}
	wantProbs := []prob{{Pos: "manifests/beta/promoter-manifest.yaml:5:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated, Msg: "imagesPath is deprecated"}}
	if d := diffProbs(root, probs, wantProbs); d != "" {
		t.Error(d)
	}

	// Load gives the same, through Inputs.
	set := Load(Inputs{ThinDirs: []string{root}})
	if d := cmp.Diff(want, set.Manifests); d != "" {
		t.Errorf("Load manifests (-want +got):\n%s", d)
	}
	if set.Unreadable() {
		t.Error("Unreadable() = true for a readable directory")
	}
}

// Thin-layout file contents for the tests below.
const (
	thinManifest = "registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\n"
	thinImages   = "- name: img\n  dmap:\n    \"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": [v1]\n"
)

func TestLoadThinDirLayout(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		want     []prob
		projects []string       // projects read
		images   map[string]int // images read per project
		broken   []string       // projects whose manifest is excluded
	}{
		{
			name: "manifest without its images file",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest,
				"manifests/b/promoter-manifest.yaml": thinManifest,
				"images/b/images.yaml":               thinImages,
			},
			want:     []prob{{Pos: "manifests/a/promoter-manifest.yaml", Code: diag.CodeLayout, Msg: "project a has no images file"}},
			projects: []string{"a", "b"},
			images:   map[string]int{"a": 0, "b": 1},
		},
		{
			name: "images file without a manifest",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest,
				"images/a/images.yaml":               thinImages,
				"images/orphan/images.yaml":          thinImages,
			},
			want:     []prob{{Pos: "images/orphan/images.yaml", Code: diag.CodeLayout, Msg: "images file of project orphan has no promoter manifest"}},
			projects: []string{"a"},
			images:   map[string]int{"a": 1},
		},
		{
			name: "nested manifest",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml":       thinManifest,
				"images/a/images.yaml":                     thinImages,
				"manifests/a/sub/promoter-manifest.yaml":   thinManifest,
				"manifests/b/c/d/promoter-manifest.yaml":   thinManifest,
				"manifests/promoter-manifest.yaml":         thinManifest,
				"manifests/a/sub/promoter-manifest.yaml.d": "ignored",
			},
			want: []prob{
				{Pos: "manifests/a/sub/promoter-manifest.yaml", Code: diag.CodeLayout, Msg: "must sit at manifests/<project>/promoter-manifest.yaml"},
				{Pos: "manifests/b/c/d/promoter-manifest.yaml", Code: diag.CodeLayout, Msg: "not deeper or shallower"},
				{Pos: "manifests/promoter-manifest.yaml", Code: diag.CodeLayout, Msg: "not deeper or shallower"},
			},
			projects: []string{"a"},
			images:   map[string]int{"a": 1},
		},
		{
			name: "nested images file",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest,
				"images/a/images.yaml":               thinImages,
				"images/a/old/images.yaml":           thinImages,
				"images/images.yaml":                 thinImages,
			},
			want: []prob{
				{Pos: "images/a/old/images.yaml", Code: diag.CodeLayout, Msg: "must sit at images/<project>/images.yaml"},
				{Pos: "images/images.yaml", Code: diag.CodeLayout, Msg: "must sit at images/<project>/images.yaml"},
			},
			projects: []string{"a"},
			images:   map[string]int{"a": 1},
		},
		{
			name: "no manifests folder",
			files: map[string]string{
				"images/a/images.yaml": thinImages,
			},
			want: []prob{
				{Pos: "images/a/images.yaml", Code: diag.CodeLayout, Msg: "has no promoter manifest"},
				{Pos: "manifests", Code: diag.CodeLayout, Msg: "no manifests/ folder"},
			},
		},
		{
			name: "no images folder",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest,
			},
			want:     []prob{{Pos: "manifests/a/promoter-manifest.yaml", Code: diag.CodeLayout, Msg: "has no images file"}},
			projects: []string{"a"},
			images:   map[string]int{"a": 0},
		},
		{
			name: "other files are ignored",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest,
				"manifests/a/OWNERS":                 "approvers: [x]\n",
				"manifests/a/README.md":              "# {[ not yaml\n",
				"manifests/a/manifest.yaml":          "{[",
				"images/a/images.yaml":               thinImages,
				"images/a/OWNERS":                    "approvers: [x]\n",
				"images/a/generate.sh":               "#!/bin/sh\n",
				"images/a/images.yml":                "{[",
				"images/a/main.go":                   "package main\n",
				"OWNERS":                             "approvers: [x]\n",
				"README.md":                          "# readme\n",
				"hack/promoter-manifest.yaml":        "{[",
			},
			projects: []string{"a"},
			images:   map[string]int{"a": 1},
		},
		{
			name: "deprecated imagesPath",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest + "imagesPath: ../../images/a/images.yaml\n",
				"images/a/images.yaml":               thinImages,
			},
			want:     []prob{{Pos: "manifests/a/promoter-manifest.yaml:5:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated, Msg: "imagesPath is deprecated"}},
			projects: []string{"a"},
			images:   map[string]int{"a": 1},
		},
		{
			// As kpromo: imagesPath is never read, whatever it names.
			name: "imagesPath to another place",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest + "imagesPath: ../../elsewhere/images.yaml\n",
				"elsewhere/images.yaml":              thinImages + thinImages,
			},
			want: []prob{
				{Pos: "manifests/a/promoter-manifest.yaml", Code: diag.CodeLayout, Msg: "project a has no images file"},
				{Pos: "manifests/a/promoter-manifest.yaml:5:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated,
					Msg: `imagesPath is deprecated and ignored: it names "../../elsewhere/images.yaml", but the images are read from images/a/images.yaml`},
			},
			projects: []string{"a"},
			images:   map[string]int{"a": 0},
		},
		{
			name: "imagesPath to a missing file",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest + "imagesPath: nope.yaml\n",
				"images/a/images.yaml":               thinImages,
			},
			want: []prob{
				{Pos: "manifests/a/promoter-manifest.yaml:5:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated,
					Msg: `imagesPath is deprecated and ignored: it names "nope.yaml", but the images are read from images/a/images.yaml`},
			},
			projects: []string{"a"},
			images:   map[string]int{"a": 1},
		},
		{
			name: "imagesPath is not a string",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest + "imagesPath: [x]\n",
				"images/a/images.yaml":               thinImages,
			},
			want:     []prob{{Pos: "manifests/a/promoter-manifest.yaml:5:13", Code: diag.CodeSyntax, Msg: "imagesPath must be a string"}},
			projects: []string{"a"},
			images:   map[string]int{"a": 1},
		},
		{
			name: "unreadable manifest: its images file is not an orphan",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": "registries: [\n",
				"images/a/images.yaml":               thinImages,
			},
			want: []prob{{Pos: "manifests/a/promoter-manifest.yaml:1", Code: diag.CodeUnreadable, Msg: "not valid YAML"}},
		},
		{
			name: "empty and comment-only files",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": "# nothing\n",
				"images/a/images.yaml":               thinImages,
				"manifests/b/promoter-manifest.yaml": thinManifest,
				"images/b/images.yaml":               "",
			},
			want:     []prob{{Pos: "manifests/a/promoter-manifest.yaml", Code: diag.CodeSyntax, Msg: "promoter manifest is empty"}},
			projects: []string{"a", "b"},
			images:   map[string]int{"a": 1, "b": 0},
			broken:   []string{"a"},
		},
		{
			name: "strict promoter manifest and images file",
			files: map[string]string{
				"manifests/a/promoter-manifest.yaml": thinManifest + "images: []\n",
				"images/a/images.yaml":               "images:\n" + thinImages,
				"manifests/b/promoter-manifest.yaml": "- " + thinManifest,
				"images/b/images.yaml":               thinImages,
				"manifests/c/promoter-manifest.yaml": "{}\n",
				"images/c/images.yaml":               thinImages + "- name: bad\n  dmap: {}\n  tags: []\n",
			},
			want: []prob{
				{Pos: "images/a/images.yaml:1:1", Code: diag.CodeSyntax, Msg: "images must be a list, found a mapping"},
				{Pos: "images/c/images.yaml:6:3", Code: diag.CodeSyntax, Entry: "image bad", Msg: `unknown key "tags"`},
				{Pos: "manifests/a/promoter-manifest.yaml:5:1", Code: diag.CodeSyntax, Msg: `unknown key "images" in a promoter manifest`},
				{Pos: "manifests/b/promoter-manifest.yaml:1:1", Code: diag.CodeSyntax, Msg: "a promoter manifest must be a mapping, found a list"},
				{Pos: "manifests/c/promoter-manifest.yaml:1:1", Code: diag.CodeSyntax, Msg: "promoter manifest has no registries"},
			},
			projects: []string{"a", "b", "c"},
			images:   map[string]int{"a": 0, "b": 1, "c": 2},
			broken:   []string{"b", "c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeTree(t, tt.files)
			ms, probs := LoadThinDir(root)
			if d := diffProbs(root, probs, tt.want); d != "" {
				t.Error(d)
			}
			var projects, broken []string
			images := map[string]int{}
			for _, m := range ms {
				projects = append(projects, m.Project)
				images[m.Project] = len(m.Images)
				if m.Broken {
					broken = append(broken, m.Project)
				}
			}
			if d := cmp.Diff(tt.broken, broken); d != "" {
				t.Errorf("broken projects (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.projects, projects); d != "" {
				t.Errorf("projects (-want +got):\n%s", d)
			}
			if tt.images == nil {
				tt.images = map[string]int{}
			}
			if d := cmp.Diff(tt.images, images); d != "" {
				t.Errorf("images per project (-want +got):\n%s", d)
			}
		})
	}
}

func TestLoadThinDirNotADirectory(t *testing.T) {
	file := writeFile(t, "file.yaml", thinManifest)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, root := range []string{file, missing} {
		t.Run(filepath.Base(root), func(t *testing.T) {
			ms, probs := LoadThinDir(root)
			if len(ms) != 0 {
				t.Errorf("manifests = %v, want none", ms)
			}
			if d := diffProbs("", probs, []prob{{Pos: root, Code: diag.CodeUnreadable, Msg: "cannot read thin manifest directory"}}); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestLoadThinDirUnreadableImages(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("needs a non-root Unix user for permission errors")
	}
	root := writeTree(t, map[string]string{
		"manifests/a/promoter-manifest.yaml": thinManifest,
		"images/a/images.yaml":               thinImages,
	})
	path := filepath.Join(root, "images", "a", "images.yaml")
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, probs := LoadThinDir(root)
	if d := diffProbs(root, probs, []prob{{Pos: "images/a/images.yaml", Code: diag.CodeUnreadable, Msg: "cannot open"}}); d != "" {
		t.Error(d)
	}
}
