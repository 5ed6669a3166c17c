package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// Digests used across the tests: 64 hex digits of one letter each.
var (
	digA = "sha256:" + strings.Repeat("a", 64)
	digB = "sha256:" + strings.Repeat("b", 64)
	digC = "sha256:" + strings.Repeat("c", 64)
	digD = "sha256:" + strings.Repeat("d", 64)
)

// writeTree writes files (slash-separated path relative to a new temporary
// directory -> content) and returns the directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		path := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// writeFile writes one file in a new temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	return filepath.Join(writeTree(t, map[string]string{name: content}), name)
}

// prob is a problem in a form that is easy to write in a table: positions as
// "file:line:col" relative to a base directory, and Msg a substring of the
// message (checked separately, so that wording can improve freely).
type prob struct {
	Pos      string
	Severity diag.Severity
	Code     diag.Code
	Entry    string
	Related  string
	Msg      string
}

func relPos(base string, p diag.Position) string {
	if base != "" {
		if r, err := filepath.Rel(base, p.File); err == nil {
			p.File = filepath.ToSlash(r)
		}
	}
	return p.String()
}

func toProbs(base string, ps []diag.Problem) []prob {
	out := make([]prob, 0, len(ps))
	for _, p := range ps {
		q := prob{Pos: relPos(base, p.Pos), Severity: p.Severity, Code: p.Code, Entry: p.Entry, Msg: p.Message}
		if p.Related != nil {
			q.Related = relPos(base, *p.Related)
		}
		out = append(out, q)
	}
	return out
}

// diffProbs compares problems: everything exactly except the message, which
// must contain want's Msg.
func diffProbs(base string, got []diag.Problem, want []prob) string {
	g := toProbs(base, got)
	if len(want) == 0 {
		want = []prob{}
	}
	noMsg := func(ps []prob) []prob {
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
	if d := cmp.Diff(noMsg(want), noMsg(g)); d != "" {
		return "problems (-want +got):\n" + d + "\ngot:\n" + fmtProbs(g)
	}
	var b strings.Builder
	for i := range want {
		if !strings.Contains(g[i].Msg, want[i].Msg) {
			fmt.Fprintf(&b, "problem %d at %s: message %q does not contain %q\n", i, g[i].Pos, g[i].Msg, want[i].Msg)
		}
	}
	return b.String()
}

func fmtProbs(ps []prob) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\t%s %s %s [%s] %s (related %s)\n", p.Pos, p.Severity, p.Code, p.Entry, p.Msg, p.Related)
	}
	return b.String()
}
