package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
)

// Digests: 64 hex digits of one character each.
var (
	digA = "sha256:" + strings.Repeat("a", 64)
	digB = "sha256:" + strings.Repeat("b", 64)
	digC = "sha256:" + strings.Repeat("c", 64)
	digD = "sha256:" + strings.Repeat("d", 64)
)

// loadFiles writes plain manifests (name -> YAML) to a temporary directory and
// loads them; it returns the set and the directory.
func loadFiles(t *testing.T, files map[string]string) (*manifest.Set, string) {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return manifest.Load(manifest.Inputs{Files: paths}), dir
}

// doc builds a plain manifest from registries (a name starting with "src:"
// is a source) and image entries. Line 1 is "registries:", each registry
// takes one line (two for a source), then "images:", then the entries.
func doc(registries []string, images ...string) string {
	var b strings.Builder
	b.WriteString("registries:\n")
	for _, r := range registries {
		r, src := strings.CutPrefix(r, "src:")
		fmt.Fprintf(&b, "- name: %q\n", r)
		if src {
			b.WriteString("  src: true\n")
		}
	}
	b.WriteString("images:\n")
	for _, img := range images {
		b.WriteString(img)
	}
	return b.String()
}

// img is one image entry: a "- name:" line, a "dmap:" line and one line per
// digest (pairs of digest and flow tag list). On a digest line the digest is
// at column 5 and, for a 64-digit digest, the first tag at column 81.
func img(name string, dmap ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- name: %q\n  dmap:\n", name)
	for i := 0; i+1 < len(dmap); i += 2 {
		fmt.Fprintf(&b, "    %q: [%s]\n", dmap[i], dmap[i+1])
	}
	return b.String()
}

// prob is a problem in table form: positions "file:line:col" relative to the
// test directory, Msg a substring of the message.
type prob struct {
	Pos      string
	Severity diag.Severity
	Code     diag.Code
	Entry    string
	Related  string
	Msg      string
}

func relPos(base string, p diag.Position) string {
	if r, err := filepath.Rel(base, p.File); err == nil && base != "" {
		p.File = filepath.ToSlash(r)
	}
	return p.String()
}

func diffProbs(base string, got []diag.Problem, want []prob) string {
	g := make([]prob, 0, len(got))
	for _, p := range got {
		q := prob{Pos: relPos(base, p.Pos), Severity: p.Severity, Code: p.Code, Entry: p.Entry, Msg: p.Message}
		if p.Related != nil {
			q.Related = relPos(base, *p.Related)
		}
		g = append(g, q)
	}
	norm := func(ps []prob) []prob {
		out := make([]prob, len(ps))
		for i, p := range ps {
			p.Msg = ""
			if p.Severity == "" {
				p.Severity = diag.SeverityError
			}
			out[i] = p
		}
		return out
	}
	if want == nil {
		want = []prob{}
	}
	if d := cmp.Diff(norm(want), norm(g)); d != "" {
		var b strings.Builder
		for _, p := range g {
			fmt.Fprintf(&b, "\t%s %s %s [%s] %s (related %s)\n", p.Pos, p.Severity, p.Code, p.Entry, p.Msg, p.Related)
		}
		return "problems (-want +got):\n" + d + "got:\n" + b.String()
	}
	var b strings.Builder
	for i := range want {
		if !strings.Contains(g[i].Msg, want[i].Msg) {
			fmt.Fprintf(&b, "problem %d at %s: message %q does not contain %q\n", i, g[i].Pos, g[i].Msg, want[i].Msg)
		}
	}
	return b.String()
}

// group is an edge.Group in table form.
type group struct {
	Source string   // repository@digest-letter, e.g. "gcr.io/src/img@a"
	Dests  []string // repository names
	Tags   []string // "name@file:line:col"; with Tags nil the group is digest only
	Pos    string
}

func short(d string) string {
	if len(d) == len(digA) && strings.Count(d[7:], d[7:8]) == 64 {
		return d[7:8]
	}
	return d
}

func toGroups(base string, gs []*edge.Group) []group {
	out := make([]group, 0, len(gs))
	for _, g := range gs {
		if want := g.Source.DigestStr(); want != g.Digest.String() {
			panic("group digest and source digest differ: " + want + " " + g.Digest.String())
		}
		x := group{Source: g.Source.Context().Name() + "@" + short(g.Digest.String()), Pos: relPos(base, g.Pos)}
		for _, d := range g.Dests {
			x.Dests = append(x.Dests, d.Name())
		}
		for _, tag := range g.Tags {
			x.Tags = append(x.Tags, tag.Name+"@"+relPos(base, tag.Pos))
		}
		out = append(out, x)
	}
	return out
}

func diffGroups(base string, got []*edge.Group, want []group) string {
	if want == nil {
		want = []group{}
	}
	if d := cmp.Diff(want, toGroups(base, got)); d != "" {
		return "groups (-want +got):\n" + d
	}
	return ""
}
