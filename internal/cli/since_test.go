package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/plan"
)

// commitAll commits the work tree and returns the commit hash.
func commitAll(t *testing.T, dir, msg string) string {
	t.Helper()
	testenv.Git(t, dir, "add", "-A")
	testenv.Git(t, dir, "commit", "-q", "-m", msg)
	return testenv.Git(t, dir, "rev-parse", "HEAD")
}

// sinceFixture is a repository whose manifests sit in promotion/: the base
// commit asks for app@d1:1.0, the work tree reformats that entry and adds
// app@d2:2.0 under an unquoted digest key. Both digests are in staging,
// neither in production.
type sinceFixture struct {
	repo, dir, base string
	prod            string
	d1, d2          string
}

func newSinceFixture(t *testing.T) sinceFixture {
	t.Helper()
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	d1 := testenv.PushImage(t, staging+"/s/app", 1).String()
	d2 := testenv.PushImage(t, staging+"/s/app", 2).String()
	repo := t.TempDir()
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	dir := filepath.Join(repo, "promotion")
	writeThin(t, dir, "p", fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\n", staging, prod),
		fmt.Sprintf("- name: app\n  dmap:\n    %q: [\"1.0\"]\n", d1))
	base := commitAll(t, repo, "base")
	if err := os.WriteFile(filepath.Join(dir, "images", "p", "images.yaml"),
		fmt.Appendf(nil, "# app\n- name: app\n  dmap:\n    %s:\n    - '2.0'\n    '%s':\n    - \"1.0\"\n", d2, d1), 0o644); err != nil {
		t.Fatal(err)
	}
	return sinceFixture{repo: repo, dir: dir, base: base, prod: prod, d1: d1, d2: d2}
}

func TestPlanRunSince(t *testing.T) {
	f := newSinceFixture(t)

	// Without --since, both digests are planned.
	code, out, errOut := run(t, "plan", f.dir)
	if code != cli.ExitOK || !strings.Contains(out, f.d1) || !strings.Contains(out, f.d2) {
		t.Fatalf("plan: exit %d\n%s%s", code, out, errOut)
	}

	// With it, only what the change adds: d2, whatever the reformatting.
	for _, rev := range []string{"HEAD", "main", f.base} {
		code, out, errOut = run(t, "plan", "--since", rev, f.dir)
		if code != cli.ExitOK {
			t.Fatalf("plan --since %s: exit %d\n%s%s", rev, code, out, errOut)
		}
		if !strings.Contains(out, "COPY") || !strings.Contains(out, f.d2) || strings.Contains(out, f.d1) {
			t.Errorf("plan --since %s plans more or less than d2:\n%s", rev, out)
		}
		if !strings.HasPrefix(out, "Plan: 1 edge from 1 manifest (1 image, 1 digest, 1 tag)") {
			t.Errorf("plan --since %s: summary:\n%s", rev, out)
		}
		label := rev
		if rev == f.base {
			label = rev[:12] // a hash is shown short
		}
		if want := "change adds 1 edge (since " + label; !strings.Contains(errOut, want) {
			t.Errorf("plan --since %s: stderr lacks %q:\n%s", rev, want, errOut)
		}
	}

	code, out, _ = run(t, "plan", "-o", "json", "--since", "HEAD", f.dir)
	var p plan.Document
	if err := json.Unmarshal([]byte(out), &p); err != nil || code != cli.ExitOK {
		t.Fatalf("plan json: exit %d, %v", code, err)
	}
	if p.Counts[plan.Copy] != 1 || p.Counts.Total() != 1 || p.Stats.ValidEdges != 1 || len(p.Actions) != 1 || p.Actions[0].Digest != f.d2 || p.Actions[0].Tag != "2.0" {
		t.Errorf("plan json: %+v", p)
	}

	// run --confirm --since promotes d2 only.
	code, out, errOut = run(t, "run", "--confirm", "--since", "HEAD", f.dir)
	if code != cli.ExitOK {
		t.Fatalf("run --confirm --since: exit %d\n%s%s", code, out, errOut)
	}
	tags := testenv.Digests(t, f.prod+"/p/app")
	if len(tags) != 1 || tags["2.0"].String() != f.d2 {
		t.Errorf("production tags after run --since: %v", tags)
	}
	if testenv.HasManifest(t, f.prod+"/p/app@"+f.d1) {
		t.Error("run --since copied d1, which the change does not add")
	}

	// Once committed, the change is the base: nothing is added.
	commitAll(t, f.repo, "head")
	code, out, errOut = run(t, "plan", "--since", "HEAD", f.dir)
	if code != cli.ExitOK || !strings.Contains(errOut, "change adds 0 edges") || !strings.HasPrefix(out, "Plan: 0 edges") {
		t.Errorf("plan --since HEAD after commit: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, "plan", "-o", "json", "--since", "HEAD^", f.dir)
	p = plan.Document{}
	if err := json.Unmarshal([]byte(out), &p); err != nil || code != cli.ExitOK || !strings.Contains(errOut, "change adds 1 edge") || p.Counts[plan.Promoted] != 1 || p.Counts.Total() != 1 {
		t.Errorf("plan --since HEAD^ after commit: exit %d, %v, %+v\n%s", code, err, p.Counts, errOut)
	}
}

func TestCipProwManifestDiff(t *testing.T) {
	f := newSinceFixture(t)
	tests := []struct {
		name    string
		env     map[string]string
		code    int
		stderr  []string
		planned bool // d2 only is planned
	}{
		{"presubmit", map[string]string{"JOB_TYPE": "presubmit", "PULL_BASE_SHA": f.base}, cli.ExitOK, []string{"only the edges added since " + f.base + " (PULL_BASE_SHA)", "change adds 1 edge"}, true},
		{"batch", map[string]string{"JOB_TYPE": "batch", "PULL_BASE_SHA": f.base}, cli.ExitOK, []string{"change adds 1 edge"}, true},
		{"no job type", map[string]string{"JOB_TYPE": "", "PULL_BASE_SHA": f.base}, cli.ExitOK, []string{"change adds 1 edge"}, true},
		{"presubmit without base", map[string]string{"JOB_TYPE": "presubmit", "PULL_BASE_SHA": ""}, cli.ExitUsage, []string{"PULL_BASE_SHA is not set"}, false},
		{"nothing set", map[string]string{"JOB_TYPE": "", "PULL_BASE_SHA": ""}, cli.ExitUsage, []string{"needs PULL_BASE_SHA"}, false},
		{"periodic", map[string]string{"JOB_TYPE": "periodic", "PULL_BASE_SHA": f.base}, cli.ExitUsage, []string{"JOB_TYPE=periodic"}, false},
		{"base not fetched", map[string]string{"JOB_TYPE": "presubmit", "PULL_BASE_SHA": strings.Repeat("f", 40)}, cli.ExitUsage, []string{"is not in the local clone", "this clone has no remote to fetch it from"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, out, errOut := run(t, "cip", "--thin-manifest-dir", f.dir, "--use-prow-manifest-diff")
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			if tt.planned && (!strings.Contains(out, f.d2) || strings.Contains(out, f.d1)) {
				t.Errorf("plan is not d2 alone:\n%s", out)
			}
		})
	}

	// Postsubmit: the merged commit against its parent (HEAD^).
	commitAll(t, f.repo, "merge")
	t.Setenv("JOB_TYPE", "postsubmit")
	t.Setenv("PULL_BASE_SHA", "")
	code, out, errOut := run(t, "cip", "--thin-manifest-dir", f.dir, "--use-prow-manifest-diff", "--confirm")
	if code != cli.ExitOK || !strings.Contains(errOut, "since HEAD^ (JOB_TYPE=postsubmit)") {
		t.Fatalf("postsubmit: exit %d\n%s%s", code, out, errOut)
	}
	if tags := testenv.Digests(t, f.prod+"/p/app"); len(tags) != 1 || tags["2.0"].String() != f.d2 {
		t.Errorf("production tags after the postsubmit: %v", tags)
	}
	// --parse-only validates everything and needs no job environment.
	t.Setenv("JOB_TYPE", "periodic")
	if code, out, errOut := run(t, "cip", "--thin-manifest-dir", f.dir, "--use-prow-manifest-diff", "--parse-only"); code != cli.ExitOK {
		t.Errorf("parse-only: exit %d\n%s%s", code, out, errOut)
	}
}

// TestSinceErrors checks the usage errors of --since: a revision missing
// from a shallow clone (with how to fetch it), and manifests outside git.
func TestSinceErrors(t *testing.T) {
	f := newSinceFixture(t)
	commitAll(t, f.repo, "head")
	clone := t.TempDir()
	testenv.Git(t, f.repo, "clone", "-q", "--depth=1", "file://"+f.repo, clone)
	outside := t.TempDir()
	writeThin(t, outside, "p", "registries:\n- name: r.example/s\n  src: true\n- name: r.example/p\n", "[]\n")

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"shallow", []string{"plan", "--since", f.base, filepath.Join(clone, "promotion")},
			[]string{"is not in the local clone, which is shallow", "git fetch --depth=1 origin " + f.base, "git fetch --unshallow"}},
		{"shallow parent", []string{"run", "--confirm", "--since", "HEAD~1", filepath.Join(clone, "promotion")}, []string{"git fetch --deepen=N"}},
		{"check shallow", []string{"check", "--base", f.base, filepath.Join(clone, "promotion")}, []string{"git fetch --depth=1 origin " + f.base}},
		{"not in git", []string{"plan", "--since", "HEAD", outside}, []string{"is not inside a git work tree"}},
		{"option as revision", []string{"plan", "--since=--all", f.dir}, []string{`"--all" starts with '-'`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != cli.ExitUsage {
				t.Errorf("exit %d, want %d\n%s%s", code, cli.ExitUsage, out, errOut)
			}
			for _, s := range tt.want {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			if testenv.HasManifest(t, f.prod+"/p/app@"+f.d2) {
				t.Error("a refused run wrote to production")
			}
		})
	}
}
