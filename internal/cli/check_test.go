package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/testenv"
)

var (
	checkA = "sha256:" + strings.Repeat("a", 64)
	checkB = "sha256:" + strings.Repeat("b", 64)
	checkC = "sha256:" + strings.Repeat("c", 64)
)

const checkRegistries = "registries:\n- name: r.example/stg\n  src: true\n- name: r.example/prod\n- name: m.example/mirror\n"

// checkRepo commits a thin directory (in sub-folder promotion/) and a plain
// manifest, and returns the repository.
func checkRepo(t *testing.T) string {
	t.Helper()
	repo := t.TempDir()
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	writeThin(t, filepath.Join(repo, "promotion"), "p", checkRegistries,
		"- name: app\n  dmap:\n    \""+checkA+"\": [\"1.0\"]\n    \""+checkB+"\": [\"1.1\"]\n")
	writeFile(t, filepath.Join(repo, "plain.yaml"), "registries:\n- name: r.example/stg\n  src: true\n- name: r.example/prod\nimages:\n- name: lib\n  dmap:\n    \""+checkC+"\": []\n")
	commitAll(t, repo, "base")
	return repo
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	keyB := "r.example/stg/app@" + checkB
	tests := []struct {
		name   string
		images string // new images.yaml of project p ("" keeps it)
		plain  string // new plain.yaml ("" keeps it)
		args   []string
		code   int
		want   []string // substrings of stdout+stderr
		not    []string
	}{
		{name: "unchanged", code: cli.ExitOK, want: []string{"the change adds 0 edges; 0 removals or moves (0 allowed), 0 unused overrides; 0 problems (0 errors, 0 warnings): accepted"}},
		{
			name:   "only adds, reformatted",
			images: "- name: app\n  dmap:\n    " + checkB + ": ['1.1', '1.2']\n    '" + checkA + "':\n    - \"1.0\"\n",
			plain:  "registries: [{name: r.example/stg, src: true}, {name: r.example/prod}]\nimages: [{name: lib, dmap: {" + checkC + ": []}}]\n",
			code:   cli.ExitOK, want: []string{"the change adds 2 edges; 0 removals or moves", ": accepted"},
		},
		{
			name:   "digest removed",
			images: "- name: app\n  dmap:\n    \"" + checkA + "\": [\"1.0\"]\n",
			code:   cli.ExitProblems,
			want: []string{
				filepath.Join("promotion", "images", "p", "images.yaml") + ":4:5 at main: digest-removed: " + keyB + " (tags 1.1) is no longer promoted to destinations m.example/mirror/app, r.example/prod/app",
				"to allow it: --allow-removal " + keyB, ": rejected",
			},
		},
		{
			name:   "digest removed, allowed",
			images: "- name: app\n  dmap:\n    \"" + checkA + "\": [\"1.0\"]\n",
			args:   []string{"--allow-removal", keyB},
			code:   cli.ExitOK, want: []string{"allowed by --allow-removal " + keyB, "(1 allowed)", ": accepted"},
		},
		{
			name:   "digest removed, override left over",
			images: "- name: app\n  dmap:\n    \"" + checkA + "\": [\"1.0\"]\n",
			args:   []string{"--allow-removal", keyB, "--allow-removal", "r.example/stg/app:1.0"},
			code:   cli.ExitProblems, want: []string{"error: --allow-removal r.example/stg/app:1.0 matches no finding: remove it", "1 unused override", ": rejected"},
		},
		{
			name:  "plain manifest digest removed",
			plain: "registries:\n- name: r.example/stg\n  src: true\n- name: r.example/prod\nimages: []\n",
			code:  cli.ExitProblems, want: []string{"plain.yaml:8:5 at main: digest-removed: r.example/stg/lib@" + checkC + " (digest only)"},
		},
		{
			name:   "invalid entry added",
			images: "- name: app\n  dmap:\n    \"" + checkA + "\": [\"1.0\"]\n    \"" + checkB + "\": [\"1.1\", \"bad tag\"]\n",
			code:   cli.ExitProblems, want: []string{`invalid tag "bad tag"`, "0 removals or moves", "1 problem (1 error, 0 warnings): rejected"},
		},
		{
			name:   "unreadable",
			images: "\x00",
			code:   cli.ExitUsage, want: []string{"not a text file", ": rejected"},
		},
		{name: "no base", args: []string{"--base="}, code: cli.ExitUsage, want: []string{"--base REV is required"}},
		{name: "bad output", args: []string{"-o", "markdown"}, code: cli.ExitUsage, want: []string{"unknown output format"}},
		{name: "missing base", args: []string{"--base", "v9.9.9"}, code: cli.ExitUsage, want: []string{`git revision "v9.9.9" is not in the local clone`, "this clone has no remote to fetch it from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := checkRepo(t)
			if tt.images != "" {
				writeFile(t, filepath.Join(repo, "promotion", "images", "p", "images.yaml"), tt.images)
			}
			if tt.plain != "" {
				writeFile(t, filepath.Join(repo, "plain.yaml"), tt.plain)
			}
			// Relative paths, from a sub-folder of the repository.
			t.Chdir(filepath.Join(repo, "promotion", "images"))
			rel := filepath.Join("..", "..")
			args := append([]string{"check", "--base", "main", filepath.Join(rel, "promotion"), "-m", filepath.Join(rel, "plain.yaml")}, tt.args...)
			code, out, errOut := run(t, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			all := strings.ReplaceAll(out+errOut, rel+string(filepath.Separator), "")
			for _, s := range tt.want {
				if !strings.Contains(all, s) {
					t.Errorf("output lacks %q:\n%s", s, all)
				}
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	repo := checkRepo(t)
	images := filepath.Join(repo, "promotion", "images", "p", "images.yaml")
	writeFile(t, images, "- name: app\n  dmap:\n    \""+checkA+"\": [\"1.0\", \"1.1\"]\n    \""+checkB+"\": []\n")
	code, out, errOut := run(t, "check", "-o", "json", "--base", "HEAD", "--allow-removal", "r.example/stg/app:1.1", filepath.Join(repo, "promotion"))
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var rep struct {
		SchemaVersion    int
		Base, BaseCommit string
		Accepted         bool
		AddedEdges       int
		Findings         []struct {
			Kind, Key, Digest, NewDigest, Tag string
			Allowed, AtBase                   bool
			Position                          struct {
				File         string
				Line, Column int
			}
			Related      *struct{ Line int }
			Destinations []string
		}
		UnusedOverrides []string
		Problems        []json.RawMessage
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if rep.SchemaVersion != 1 || rep.Base != "HEAD" || len(rep.BaseCommit) != 40 || !rep.Accepted || rep.AddedEdges != 2 ||
		rep.UnusedOverrides == nil || len(rep.UnusedOverrides) != 0 || rep.Problems == nil || len(rep.Findings) != 1 {
		t.Fatalf("report:\n%s", out)
	}
	f := rep.Findings[0]
	if f.Kind != "tag-moved" || f.Key != "r.example/stg/app:1.1" || !f.Allowed || f.AtBase || f.Digest != checkB || f.NewDigest != checkA ||
		f.Position.File != images || f.Position.Line != 3 || f.Related == nil || f.Related.Line != 4 || len(f.Destinations) != 2 {
		t.Errorf("finding: %+v", f)
	}
}
