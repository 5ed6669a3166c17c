package manifest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// within runs f and fails the test if it does not return in d: bad input must
// never hang the reader. Generous limits: they catch hangs, not slowness.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("did not finish within %v", d)
	}
}

// loadBoth reads text as a plain manifest and as a thin images file, and
// checks that every problem names the file.
func loadBoth(t *testing.T, text string) (manifestProbs, imagesProbs []diag.Problem) {
	t.Helper()
	path := writeFile(t, "m.yaml", text)
	within(t, 20*time.Second, func() {
		_, manifestProbs = LoadFile(path)
		_, imagesProbs = parseImagesFile(path)
	})
	for _, p := range append(append([]diag.Problem(nil), manifestProbs...), imagesProbs...) {
		if p.Pos.File != path {
			t.Errorf("problem %v: file %q, want %q", p, p.Pos.File, path)
		}
	}
	return manifestProbs, imagesProbs
}

func hasProblem(ps []diag.Problem, code diag.Code, msg string) bool {
	for _, p := range ps {
		if p.Code == code && strings.Contains(p.Message, msg) {
			return true
		}
	}
	return false
}

// billionLaughs is the classic bomb: nine levels of nine aliases, 9^9
// strings once expanded, in a few hundred bytes.
func billionLaughs(top string) string {
	var b strings.Builder
	b.WriteString("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for c := 'b'; c <= 'i'; c++ {
		p := string(c - 1)
		fmt.Fprintf(&b, "%c: &%c [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", c, c, p, p, p, p, p, p, p, p, p)
	}
	b.WriteString(top)
	return b.String()
}

// tagBomb expands along the path the reader walks: n image entries aliasing
// one image whose dmap has n digests, each aliasing one list of n tags:
// n^3 tags from O(n) lines.
func tagBomb(n int) string {
	var b strings.Builder
	b.WriteString("registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\nimages:\n- &img\n  name: x\n  dmap:\n")
	for i := range n {
		fmt.Fprintf(&b, "    \"sha256:%064x\": ", i)
		if i == 0 {
			b.WriteString("&tags [")
			for j := range n {
				if j > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, "t%d", j)
			}
			b.WriteString("]\n")
		} else {
			b.WriteString("*tags\n")
		}
	}
	for range n {
		b.WriteString("- *img\n")
	}
	return b.String()
}

// problemBomb expands into problems rather than values: every alias use is a
// list of n lists where tags are expected.
func problemBomb(n int) string {
	var b strings.Builder
	b.WriteString("registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\nimages:\n- name: x\n  dmap:\n    \"sha256:0\": &t [")
	for j := range n {
		if j > 0 {
			b.WriteString(",")
		}
		b.WriteString("[]")
	}
	b.WriteString("]\n")
	for i := 1; i < 3*n; i++ {
		fmt.Fprintf(&b, "    \"sha256:%d\": *t\n", i)
	}
	for range 4 * n {
		b.WriteString("- name: y\n  dmap: {\"sha256:1\": *t, \"sha256:2\": *t, \"sha256:3\": *t}\n")
	}
	return b.String()
}

func TestAliasBomb(t *testing.T) {
	t.Run("billion laughs under an unknown key is never expanded", func(t *testing.T) {
		mp, _ := loadBoth(t, billionLaughs(""))
		if !hasProblem(mp, diag.CodeSyntax, `unknown key "a"`) {
			t.Errorf("problems = %v, want unknown keys", mp)
		}
	})
	t.Run("billion laughs as the images list", func(t *testing.T) {
		text := strings.ReplaceAll(billionLaughs(""), "\n", "\n  ")
		text = "registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\nbomb:\n  " + text + "\nimages: *i\n"
		mp, _ := loadBoth(t, text)
		if !hasProblem(mp, diag.CodeSyntax, "an image entry must be a mapping, found a list") {
			t.Errorf("problems = %v, want image entries that are lists", mp)
		}
	})
	t.Run("tags", func(t *testing.T) {
		text := tagBomb(1000) // 10^9 tags once expanded
		path := writeFile(t, "m.yaml", text)
		var m *Manifest
		var probs []diag.Problem
		start := time.Now()
		within(t, 20*time.Second, func() { m, probs = LoadFile(path) })
		t.Logf("%d bytes: %d problems in %v", len(text), len(probs), time.Since(start))
		if !hasProblem(probs, diag.CodeUnreadable, "YAML aliases expand to more than") {
			t.Fatalf("problems = %v, want an alias explosion", probs)
		}
		// Nothing half-read is kept as good.
		for _, img := range m.Images[1:] {
			if !img.Broken {
				t.Fatalf("image %+v after the explosion is not marked broken", img.Pos)
			}
		}
		tags := 0
		for _, img := range m.Images {
			for _, d := range img.Digests {
				tags += len(d.Tags)
			}
		}
		if limit := nodeBudget(len(text)); tags > limit {
			t.Errorf("%d tags read, more than the node budget %d", tags, limit)
		}
	})
	t.Run("problems", func(t *testing.T) {
		text := problemBomb(1000) // 10^7 problems once expanded
		plain, _ := loadBoth(t, text)
		// The same images as a thin images file.
		text = text[strings.Index(text, "- name: x"):]
		_, thin := loadBoth(t, text)
		for _, ps := range [][]diag.Problem{plain, thin} {
			if !hasProblem(ps, diag.CodeUnreadable, "YAML aliases expand to more than") {
				t.Fatalf("want an alias explosion, got %d problems", len(ps))
			}
			if limit := nodeBudget(len(text)) + 10; len(ps) > limit {
				t.Errorf("%d problems from %d bytes, want at most %d", len(ps), len(text), limit)
			}
		}
	})
	t.Run("thin images file", func(t *testing.T) {
		text := tagBomb(1000)
		text = text[strings.Index(text, "- &img"):]
		path := writeFile(t, "images.yaml", text)
		var probs []diag.Problem
		within(t, 20*time.Second, func() { _, probs = parseImagesFile(path) })
		if !hasProblem(probs, diag.CodeUnreadable, "YAML aliases expand to more than") {
			t.Errorf("problems = %v, want an alias explosion", probs)
		}
	})
}

// TestAliasesRead checks that modest, honest use of anchors and aliases is
// read like the expanded text.
func TestAliasesRead(t *testing.T) {
	text := strictHeader + "- name: a\n  dmap:\n    " + digA + ": &tags [v1, v2]\n    " + digB + ": *tags\n- name: b\n  dmap: {" + digC + ": *tags}\n"
	m, probs := LoadFile(writeFile(t, "m.yaml", text))
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	var got []string
	for _, img := range m.Images {
		for _, d := range img.Digests {
			for _, tag := range d.Tags {
				got = append(got, img.Name+"@"+d.Digest[7:8]+":"+tag.Name)
			}
		}
	}
	want := "a@a:v1 a@a:v2 a@b:v1 a@b:v2 b@c:v1 b@c:v2"
	if strings.Join(got, " ") != want {
		t.Errorf("read %v, want %s", got, want)
	}
}

func TestTooLarge(t *testing.T) {
	tests := []struct {
		name string
		size int64
		msg  string
		line int
	}{
		{"one byte over the limit", MaxFileSize + 1, "larger than 16 MiB", 0},
		{"far over the limit", 4 * MaxFileSize, "larger than 16 MiB", 0},
		// At the limit the size is fine; this file fails on its NUL padding.
		{"at the limit", MaxFileSize, "NUL byte at offset 15", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "big.yaml")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("registries: []\n"); err != nil {
				t.Fatal(err)
			}
			// Sparse: quick to make, no disk used.
			if err := f.Truncate(tt.size); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			var m *Manifest
			var probs []diag.Problem
			within(t, 20*time.Second, func() { m, probs = LoadFile(path) })
			if m != nil {
				t.Errorf("manifest = %+v, want nil", m)
			}
			want := []prob{{Pos: diag.Position{File: path, Line: tt.line}.String(), Code: diag.CodeUnreadable, Msg: tt.msg}}
			if d := diffProbs("", probs, want); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestDeepNesting(t *testing.T) {
	const n = 100_000
	tests := []struct {
		name string
		text string
	}{
		{"open flow sequences", strings.Repeat("[", n)},
		{"closed flow sequences", strings.Repeat("[", n) + strings.Repeat("]", n)},
		{"open flow mappings", strings.Repeat("{a: ", n)},
		{"block sequences", strings.Repeat("- ", n) + "x\n"},
		{"as a tag list", strictHeader + "- name: a\n  dmap:\n    " + digA + ": " + strings.Repeat("[", n) + "\n"},
		{"as the images value", strictHeader[:len(strictHeader)-1] + " " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp, ip := loadBoth(t, tt.text)
			for _, ps := range [][]diag.Problem{mp, ip} {
				if !hasProblem(ps, diag.CodeUnreadable, "not valid YAML") {
					t.Errorf("problems = %v, want not valid YAML", ps)
				}
			}
		})
	}
	t.Run("deep but within the YAML limit", func(t *testing.T) {
		const d = 5000
		text := strictHeader + "- name: a\n  dmap:\n    " + digA + ": [" + strings.Repeat("[", d) + strings.Repeat("]", d) + "]\n"
		mp, _ := loadBoth(t, text)
		if d := diffProbs("", mp, nil); len(mp) != 1 || !strings.Contains(mp[0].Message, "tag must be a string, found a list") {
			t.Errorf("want one problem about the nested tag, got %v %s", mp, d)
		}
	})
}

func TestBinaryGarbage(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rnd.UintN(256))
	}
	utf16 := []byte{0xff, 0xfe}
	for _, r := range "registries: []\n" {
		utf16 = append(utf16, byte(r), 0)
	}
	tests := []struct {
		name string
		data []byte
		line int
		msg  string
	}{
		{"NUL byte on line 3", []byte("registries:\n- name: gcr.io/x\n  src: tr\x00ue\n"), 3, "not a text file (NUL byte at offset 38)"},
		{"only NUL bytes", make([]byte, 1000), 1, "not a text file"},
		{"invalid UTF-8 on line 2", []byte("registries: []\nimages: \xff\xfe\n"), 2, "not valid UTF-8 text (offset 23)"},
		{"truncated UTF-8 sequence", []byte("registries: []\n# caf\xc3"), 2, "not valid UTF-8"},
		{"UTF-16 with a byte order mark", utf16, 1, "not a text file"},
		{"random bytes", random, 1, ""},
		{"PNG header", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), 3, "NUL byte at offset 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp, ip := loadBoth(t, string(tt.data))
			for _, ps := range [][]diag.Problem{mp, ip} {
				if len(ps) != 1 || ps[0].Code != diag.CodeUnreadable || ps[0].Pos.Line != tt.line || !strings.Contains(ps[0].Message, tt.msg) {
					t.Errorf("problems = %v, want one unreadable problem on line %d saying %q", ps, tt.line, tt.msg)
				}
			}
		})
	}
}

func TestNotYAML(t *testing.T) {
	tests := []struct {
		name string
		text string
		line int
		msg  string
	}{
		// The line of the second document's "---".
		{"two documents", strictHeader + "---\n" + strictHeader, 6, "more than one YAML document"},
		{"two documents, the second empty", strictHeader + "---\n", 6, "more than one YAML document"},
		{"two documents, the first marked", "---\n" + strictHeader + "---\n" + strictHeader, 7, "more than one YAML document"},
		{"a broken second document", strictHeader + "---\n[\n", 0, "not valid YAML"},
		{"unclosed flow list", "registries: [\n", 1, "not valid YAML"},
		{"tab indentation", "registries:\n\t- name: x\n", 2, "not valid YAML"},
		{"unknown alias", "registries: *nope\n", 0, "not valid YAML"},
		{"bad indentation", "registries:\n  - name: x\n src: true\n", 2, "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp, ip := loadBoth(t, tt.text)
			for _, ps := range [][]diag.Problem{mp, ip} {
				if len(ps) != 1 || ps[0].Code != diag.CodeUnreadable || ps[0].Pos.Line != tt.line || !strings.Contains(ps[0].Message, tt.msg) {
					t.Errorf("problems = %v, want one unreadable problem on line %d saying %q", ps, tt.line, tt.msg)
				}
			}
		})
	}
}
