package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// wantPlain is testdata/plain.yaml as read from path.
func wantPlain(path string) *Manifest {
	p := func(line, col int) diag.Position { return diag.Position{File: path, Line: line, Column: col} }
	tag := func(name string, line, col int) Tag { return Tag{Name: name, Pos: p(line, col)} }
	return &Manifest{
		File:       path,
		ImagesFile: path,
		Pos:        p(2, 1),
		Registries: []Registry{
			{Name: "gcr.io/k8s-staging-foo", Src: true, Pos: p(3, 3)},
			{Name: "us-docker.pkg.dev/k8s-artifacts-prod/images/foo", ServiceAccount: "promoter@k8s-artifacts-prod.iam.gserviceaccount.com", Pos: p(5, 3)},
			{Name: "europe-docker.pkg.dev/k8s-artifacts-prod/images/foo", Pos: p(7, 3)},
		},
		Images: []Image{
			{Name: "bar", Pos: p(11, 3), Digests: []DigestEntry{
				{Digest: digA, Pos: p(14, 5), Tags: []Tag{tag("1.20", 14, 81), tag("1.20.1", 14, 89)}},
				{Digest: digB, Pos: p(15, 5), Tags: []Tag{
					tag("1.20", 16, 7), tag("1e3", 17, 7), tag("0x10", 18, 7), tag("010", 19, 7), tag("true", 20, 7), tag("yes", 21, 7),
				}},
				{Digest: digC, Pos: p(22, 5), Tags: []Tag{}},
			}},
			{Name: "baz/qux", Pos: p(23, 3), Digests: []DigestEntry{
				{Digest: digD, Pos: p(24, 10), Tags: []Tag{tag("v1", 24, 86)}},
			}},
			// The same name again: kept as its own entry, with its own place.
			{Name: "bar", Pos: p(25, 3), Digests: []DigestEntry{
				{Digest: digA, Pos: p(27, 5), Tags: []Tag{tag("latest-1.20", 28, 7)}},
			}},
		},
	}
}

func TestLoadFilePlain(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "plain.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Every variant must read to exactly the same model, positions included.
	variants := []struct {
		name string
		text string
	}{
		{"as committed (LF)", string(src)},
		{"CRLF line endings", strings.ReplaceAll(string(src), "\n", "\r\n")},
		{"UTF-8 byte order mark", "\ufeff" + string(src)},
		{"document start and end markers", "---\n" + string(src) + "...\n"},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			path := writeFile(t, "plain.yaml", v.text)
			want := wantPlain(path)
			if v.name == "document start and end markers" {
				want = shiftLines(wantPlain(path), 1)
			}
			m, probs := LoadFile(path)
			if len(probs) != 0 {
				t.Fatalf("unexpected problems:\n%s", fmtProbs(toProbs("", probs)))
			}
			if d := cmp.Diff(want, m); d != "" {
				t.Errorf("manifest (-want +got):\n%s", d)
			}
		})
	}
}

// shiftLines moves every position of m down by n lines.
func shiftLines(m *Manifest, n int) *Manifest {
	sh := func(p *diag.Position) { p.Line += n }
	sh(&m.Pos)
	for i := range m.Registries {
		sh(&m.Registries[i].Pos)
	}
	for i := range m.Images {
		img := &m.Images[i]
		sh(&img.Pos)
		for j := range img.Digests {
			d := &img.Digests[j]
			sh(&d.Pos)
			for k := range d.Tags {
				sh(&d.Tags[k].Pos)
			}
		}
	}
	return m
}

// TestTagsReadAsWritten checks that a tag is the exact text written, whatever
// YAML type its plain form resolves to, in flow and block lists.
func TestTagsReadAsWritten(t *testing.T) {
	tests := []struct {
		written string
		want    string
	}{
		{"1.20", "1.20"},
		{"1.0", "1.0"},
		{"1.20.1", "1.20.1"},
		{"1e3", "1e3"},
		{"1E3", "1E3"},
		{"0x10", "0x10"},
		{"0o10", "0o10"},
		{"010", "010"},
		{"1_000", "1_000"},
		{"+1", "+1"},
		{"-1", "-1"},
		{".5", ".5"},
		{".inf", ".inf"},
		{".NaN", ".NaN"},
		{"true", "true"},
		{"True", "True"},
		{"FALSE", "FALSE"},
		{"yes", "yes"},
		{"no", "no"},
		{"on", "on"},
		{"off", "off"},
		{"y", "y"},
		{"2024-06-06", "2024-06-06"},
		{`"1.20"`, "1.20"},
		{`'1.20'`, "1.20"},
		{`"v1"`, "v1"},
		{"v1.30.0-rc.1", "v1.30.0-rc.1"},
	}
	for _, tt := range tests {
		for _, style := range []string{"flow", "block"} {
			t.Run(style+" "+tt.written, func(t *testing.T) {
				var list string
				if style == "flow" {
					list = " [" + tt.written + "] # trailing comment\n"
				} else {
					list = "\n    # comment before the tag\n    - " + tt.written + " # trailing comment\n"
				}
				text := "registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\nimages:\n- name: img\n  dmap:\n    " + digA + ":" + list
				m, probs := LoadFile(writeFile(t, "m.yaml", text))
				if len(probs) != 0 {
					t.Fatalf("unexpected problems:\n%s", fmtProbs(toProbs("", probs)))
				}
				got := m.Images[0].Digests[0].Tags
				if len(got) != 1 || got[0].Name != tt.want {
					t.Errorf("tags = %+v, want exactly %q", got, tt.want)
				}
			})
		}
	}
}

// TestDigestKeyForms checks every way a digest key is written in practice.
func TestDigestKeyForms(t *testing.T) {
	tests := []struct {
		name string
		dmap string // lines after "  dmap:", the key on line 8
		col  int
	}{
		{"plain", "    " + digA + ": [v1]\n", 5},
		{"double quoted", "    \"" + digA + "\": [v1]\n", 5},
		{"single quoted", "    '" + digA + "': [v1]\n", 5},
		{"explicit key", "    ? " + digA + "\n    : [v1]\n", 7},
		{"flow mapping", "    {" + digA + ": [v1]}\n", 6},
		{"comment first", "    # the key is on the next line\n" + "    " + digA + ": [v1]\n", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\nimages:\n- name: img\n  dmap:\n" + tt.dmap
			path := writeFile(t, "m.yaml", text)
			m, probs := LoadFile(path)
			if len(probs) != 0 {
				t.Fatalf("unexpected problems:\n%s", fmtProbs(toProbs("", probs)))
			}
			line := 8 + strings.Count(tt.dmap[:strings.Index(tt.dmap, digA)], "\n")
			want := []DigestEntry{{Digest: digA, Pos: diag.Position{File: path, Line: line, Column: tt.col}}}
			if d := cmp.Diff(want, m.Images[0].Digests, cmpIgnoreTags); d != "" {
				t.Errorf("dmap (-want +got):\n%s", d)
			}
			if got := m.Images[0].Digests[0].Tags; len(got) != 1 || got[0].Name != "v1" {
				t.Errorf("tags = %+v, want [v1]", got)
			}
		})
	}
}

var cmpIgnoreTags = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Tags" }, cmp.Ignore())

func TestLoadFileEmptyAndCommentOnly(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "\n\n# comment\n   \n", "---\n# comment\n"} {
		t.Run(strings.TrimSpace(text), func(t *testing.T) {
			path := writeFile(t, "m.yaml", text)
			m, probs := LoadFile(path)
			if m == nil || !m.Broken {
				t.Fatalf("manifest = %+v, want a broken manifest", m)
			}
			if d := diffProbs(filepath.Dir(path), probs, []prob{{Pos: "m.yaml", Code: diag.CodeSyntax, Msg: "empty"}}); d != "" {
				t.Error(d)
			}
		})
	}
	t.Run("testdata/comment-only.yaml as an images file is an empty list", func(t *testing.T) {
		imgs, probs := parseImagesFile(filepath.Join("testdata", "comment-only.yaml"))
		if len(imgs) != 0 || len(probs) != 0 {
			t.Errorf("images = %v, problems = %v; want none", imgs, probs)
		}
	})
}

// strictHeader is a valid registries block; image entries start on line 6.
const strictHeader = "registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\nimages:\n"

// TestLoadFileStrict checks that every structural mistake is reported at the
// exact line and column, that all of them are reported, and that it excludes
// only the entry it is in.
func TestLoadFileStrict(t *testing.T) {
	good := "- name: good\n  dmap:\n    \"" + digB + "\": [v1]\n" // 3 lines
	tests := []struct {
		name       string
		text       string
		want       []prob
		broken     bool     // the manifest as a whole
		goodImages []string // names of the entries read without problems
	}{
		{
			name:       "unknown top-level key",
			text:       strictHeader + good + "imagez: []\n",
			want:       []prob{{Pos: "m.yaml:9:1", Code: diag.CodeSyntax, Msg: `unknown key "imagez" in a manifest`}},
			goodImages: []string{"good"},
		},
		{
			name:   "unknown key in a registry",
			text:   "registries:\n- name: gcr.io/src\n  src: true\n  nmae: r.io/dst\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:4:3", Code: diag.CodeSyntax, Entry: "registry #1", Msg: `unknown key "nmae"`}},
			broken: true,
		},
		{
			name:       "unknown key in an image",
			text:       strictHeader + "- name: a\n  tags: [v1]\n  dmap: {\"" + digA + "\": [v1]}\n" + good,
			want:       []prob{{Pos: "m.yaml:7:3", Code: diag.CodeSyntax, Entry: "image a", Msg: `unknown key "tags" in an image entry`}},
			goodImages: []string{"good"},
		},
		{
			name:   "duplicate top-level key",
			text:   strictHeader + good + "registries: []\n",
			want:   []prob{{Pos: "m.yaml:9:1", Code: diag.CodeSyntax, Related: "m.yaml:1:1", Msg: `duplicate key "registries"`}},
			broken: false, goodImages: []string{"good"},
		},
		{
			name:   "duplicate key in a registry",
			text:   "registries:\n- name: gcr.io/src\n  src: true\n  src: false\n- name: r.io/dst\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:4:3", Code: diag.CodeSyntax, Entry: "registry #1", Related: "m.yaml:3:3", Msg: `duplicate key "src"`}},
			broken: true,
		},
		{
			name:       "duplicate key in an image names the image by its first name",
			text:       strictHeader + good + "- name: a\n  name: b\n  dmap: {\"" + digA + "\": [v1]}\n",
			want:       []prob{{Pos: "m.yaml:10:3", Code: diag.CodeSyntax, Entry: "image a", Related: "m.yaml:9:3", Msg: `duplicate key "name"`}},
			goodImages: []string{"good"},
		},
		{
			name:       "duplicate digest key, quoted and not",
			text:       strictHeader + "- name: a\n  dmap:\n    \"" + digA + "\": [v1]\n    " + digA + ": [v2]\n" + good,
			want:       []prob{{Pos: "m.yaml:9:5", Code: diag.CodeSyntax, Entry: "image a", Related: "m.yaml:8:5", Msg: `duplicate digest key "` + digA + `"`}},
			goodImages: []string{"good"},
		},
		{
			name:       "duplicate digest key in a flow dmap",
			text:       strictHeader + "- name: a\n  dmap: {'" + digA + "': [], " + digA + ": [v2]}\n" + good,
			want:       []prob{{Pos: "m.yaml:7:89", Code: diag.CodeSyntax, Entry: "image a", Related: "m.yaml:7:10", Msg: "duplicate digest key"}},
			goodImages: []string{"good"},
		},
		{
			name:   "registries is a mapping",
			text:   "registries: {name: gcr.io/src}\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:1:13", Code: diag.CodeSyntax, Msg: "registries must be a list, found a mapping"}},
			broken: true,
		},
		{
			name:   "registry is a string",
			text:   "registries:\n- gcr.io/src\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:2:3", Code: diag.CodeSyntax, Entry: "registry #1", Msg: "a registry must be a mapping, found a str scalar"}},
			broken: true,
		},
		{
			name:   "src is a quoted string",
			text:   "registries:\n- name: gcr.io/src\n  src: \"true\"\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:3:8", Code: diag.CodeSyntax, Entry: "registry #1", Msg: "src must be true or false, found a str scalar"}},
			broken: true,
		},
		{
			name:   "src is a number",
			text:   "registries:\n- name: gcr.io/src\n  src: 1\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:3:8", Code: diag.CodeSyntax, Entry: "registry #1", Msg: "found a int scalar"}},
			broken: true,
		},
		{
			name:   "src with a verbatim tag",
			text:   "registries:\n- name: gcr.io/src\n  src: !<x> true\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:3:8", Code: diag.CodeSyntax, Entry: "registry #1", Msg: `found a scalar tagged "x"`}},
			broken: true,
		},
		{
			name:   "registry name is a list",
			text:   "registries:\n- name: [gcr.io/src]\n  src: true\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:2:9", Code: diag.CodeSyntax, Entry: "registry #1", Msg: "registry name must be a string, found a list"}},
			broken: true,
		},
		{
			name:   "service-account is a mapping",
			text:   "registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\n  service-account: {a: b}\nimages: []\n",
			want:   []prob{{Pos: "m.yaml:5:20", Code: diag.CodeSyntax, Entry: "registry #2", Msg: "service-account must be a string, found a mapping"}},
			broken: true,
		},
		{
			name: "images is a mapping",
			text: strictHeader[:len(strictHeader)-1] + " {name: a}\n",
			want: []prob{{Pos: "m.yaml:5:9", Code: diag.CodeSyntax, Msg: "images must be a list, found a mapping"}},
		},
		{
			name:       "image entry is a string",
			text:       strictHeader + "- just-a-name\n" + good,
			want:       []prob{{Pos: "m.yaml:6:3", Code: diag.CodeSyntax, Entry: "image #1", Msg: "an image entry must be a mapping, found a str scalar"}},
			goodImages: []string{"good"},
		},
		{
			name:       "image name is a mapping",
			text:       strictHeader + good + "- name: {a: b}\n  dmap: {}\n",
			want:       []prob{{Pos: "m.yaml:9:9", Code: diag.CodeSyntax, Entry: "image #2", Msg: "image name must be a string, found a mapping"}},
			goodImages: []string{"good"},
		},
		{
			name:       "dmap is a list",
			text:       strictHeader + "- name: a\n  dmap: [\"" + digA + "\"]\n" + good,
			want:       []prob{{Pos: "m.yaml:7:9", Code: diag.CodeSyntax, Entry: "image a", Msg: "dmap must be a mapping of digest to tag list, found a list"}},
			goodImages: []string{"good"},
		},
		{
			name:       "tag list is a string",
			text:       strictHeader + "- name: a\n  dmap:\n    " + digA + ": v1\n" + good,
			want:       []prob{{Pos: "m.yaml:8:78", Code: diag.CodeSyntax, Entry: "image a", Msg: "the tag list of " + digA + " must be a list, found a str scalar"}},
			goodImages: []string{"good"},
		},
		{
			name:       "tag list is a mapping",
			text:       strictHeader + "- name: a\n  dmap:\n    " + digA + ":\n      v1: v2\n" + good,
			want:       []prob{{Pos: "m.yaml:9:7", Code: diag.CodeSyntax, Entry: "image a", Msg: "must be a list, found a mapping"}},
			goodImages: []string{"good"},
		},
		{
			name: "tags that are not strings",
			text: strictHeader + "- name: a\n  dmap:\n    " + digA + ":\n    - v1\n    - {a: b}\n    - [v2]\n    - ~\n    -\n" + good,
			want: []prob{
				{Pos: "m.yaml:10:7", Code: diag.CodeSyntax, Entry: "image a", Msg: "tag must be a string, found a mapping"},
				{Pos: "m.yaml:11:7", Code: diag.CodeSyntax, Entry: "image a", Msg: "tag must be a string, found a list"},
				{Pos: "m.yaml:12:7", Code: diag.CodeSyntax, Entry: "image a", Msg: "tag must be a string, found null"},
				{Pos: "m.yaml:13:6", Code: diag.CodeSyntax, Entry: "image a", Msg: "tag must be a string, found null"},
			},
			goodImages: []string{"good"},
		},
		{
			name:       "digest key is a list",
			text:       strictHeader + "- name: a\n  dmap:\n    [x]: [v1]\n" + good,
			want:       []prob{{Pos: "m.yaml:8:5", Code: diag.CodeSyntax, Entry: "image a", Msg: "digest must be a string, found a list"}},
			goodImages: []string{"good"},
		},
		{
			name:   "manifest is a list",
			text:   "- registries: []\n",
			want:   []prob{{Pos: "m.yaml:1:1", Code: diag.CodeSyntax, Msg: "a manifest must be a mapping, found a list"}},
			broken: true,
		},
		{
			name:   "manifest is a string",
			text:   "registries\n",
			want:   []prob{{Pos: "m.yaml:1:1", Code: diag.CodeSyntax, Msg: "a manifest must be a mapping, found a str scalar"}},
			broken: true,
		},
		{
			name:   "manifest without registries",
			text:   "images:\n" + good,
			want:   []prob{{Pos: "m.yaml:1:1", Code: diag.CodeSyntax, Msg: "manifest has no registries"}},
			broken: true, goodImages: []string{"good"},
		},
		{
			name: "every problem is reported, not only the first",
			text: "registries:\n- name: gcr.io/src\n  src: true\n  extra: 1\n- name: r.io/dst\n  src: maybe\n" +
				"images:\n- name: a\n  dmap:\n    " + digA + ": [v1, [x]]\n    " + digA + ": []\n- name: b\n  dmap: 7\n  other: x\n" + good + "bogus: 1\n",
			want: []prob{
				{Pos: "m.yaml:4:3", Code: diag.CodeSyntax, Entry: "registry #1", Msg: `unknown key "extra"`},
				{Pos: "m.yaml:6:8", Code: diag.CodeSyntax, Entry: "registry #2", Msg: "src must be true or false"},
				{Pos: "m.yaml:10:83", Code: diag.CodeSyntax, Entry: "image a", Msg: "tag must be a string, found a list"},
				{Pos: "m.yaml:11:5", Code: diag.CodeSyntax, Entry: "image a", Related: "m.yaml:10:5", Msg: "duplicate digest key"},
				{Pos: "m.yaml:13:9", Code: diag.CodeSyntax, Entry: "image b", Msg: "dmap must be a mapping"},
				{Pos: "m.yaml:14:3", Code: diag.CodeSyntax, Entry: "image b", Msg: `unknown key "other"`},
				{Pos: "m.yaml:18:1", Code: diag.CodeSyntax, Msg: `unknown key "bogus"`},
			},
			broken: true, goodImages: []string{"good"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "m.yaml", tt.text)
			m, probs := LoadFile(path)
			if m == nil {
				t.Fatal("LoadFile returned no manifest for a readable file")
			}
			diag.Sort(probs)
			if d := diffProbs(filepath.Dir(path), probs, tt.want); d != "" {
				t.Error(d)
			}
			for _, p := range probs {
				if p.Pos.File != path {
					t.Errorf("problem %v: file %q, want %q", p, p.Pos.File, path)
				}
			}
			if m.Broken != tt.broken {
				t.Errorf("manifest Broken = %v, want %v", m.Broken, tt.broken)
			}
			var goodImages []string
			for _, img := range m.Images {
				if !img.Broken {
					goodImages = append(goodImages, img.Name)
				}
			}
			if d := cmp.Diff(tt.goodImages, goodImages); d != "" {
				t.Errorf("images read without problems (-want +got):\n%s", d)
			}
		})
	}
}

// TestLoadFileKeepsGoodParts checks that what surrounds a broken entry is
// read in full.
func TestLoadFileKeepsGoodParts(t *testing.T) {
	text := strictHeader +
		"- name: a\n  dmap:\n    " + digA + ": [v1, {x: y}, v2]\n" + // broken: tag is a mapping
		"- name: b\n  dmap:\n    " + digB + ": [v3]\n    " + digC + ": []\n"
	path := writeFile(t, "m.yaml", text)
	m, probs := LoadFile(path)
	if len(probs) != 1 {
		t.Fatalf("want 1 problem, got %v", probs)
	}
	if !m.Images[0].Broken || m.Images[1].Broken || m.Broken {
		t.Fatalf("broken flags: manifest %v, a %v, b %v; want false, true, false", m.Broken, m.Images[0].Broken, m.Images[1].Broken)
	}
	p := func(line, col int) diag.Position { return diag.Position{File: path, Line: line, Column: col} }
	want := Image{Name: "b", Pos: p(9, 3), Digests: []DigestEntry{
		{Digest: digB, Pos: p(11, 5), Tags: []Tag{{Name: "v3", Pos: p(11, 79)}}},
		{Digest: digC, Pos: p(12, 5), Tags: []Tag{}},
	}}
	if d := cmp.Diff(want, m.Images[1]); d != "" {
		t.Errorf("image b (-want +got):\n%s", d)
	}
	if len(m.Registries) != 2 || m.Registries[0].Name != "gcr.io/src" || !m.Registries[0].Src {
		t.Errorf("registries = %+v", m.Registries)
	}
}

func TestLoadFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	m, probs := LoadFile(path)
	if m != nil {
		t.Errorf("manifest = %+v, want nil", m)
	}
	if d := diffProbs("", probs, []prob{{Pos: path, Code: diag.CodeUnreadable, Msg: "cannot open"}}); d != "" {
		t.Error(d)
	}
}

func TestLoadSortsAndCollects(t *testing.T) {
	m := strictHeader + "- name: a\n  dmap: {\"" + digA + "\": [v1]}\n"
	root := writeTree(t, map[string]string{"b.yaml": m, "a.yaml": m + "oops: 1\n", "c.yaml": "{"})
	set := Load(Inputs{Files: []string{filepath.Join(root, "b.yaml"), filepath.Join(root, "c.yaml"), filepath.Join(root, "a.yaml")}})
	var files []string
	for _, m := range set.Manifests {
		rel, _ := filepath.Rel(root, m.File)
		files = append(files, rel)
	}
	if d := cmp.Diff([]string{"a.yaml", "b.yaml"}, files); d != "" {
		t.Errorf("manifests (-want +got):\n%s", d)
	}
	want := []prob{
		{Pos: "a.yaml:8:1", Code: diag.CodeSyntax, Msg: `unknown key "oops"`},
		{Pos: "c.yaml:1", Code: diag.CodeUnreadable, Msg: "not valid YAML"},
	}
	if d := diffProbs(root, set.Problems, want); d != "" {
		t.Error(d)
	}
	if !set.Unreadable() {
		t.Error("Unreadable() = false, want true (c.yaml is not YAML)")
	}
}
