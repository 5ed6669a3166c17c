package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The example GitHub Actions workflows are part of what users copy: they are
// linted with actionlint (and shellcheck, through actionlint), and held to
// the rules every workflow here follows.

// exampleWorkflows returns the example workflow files.
func exampleWorkflows(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../examples/github-actions/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example workflows (%v)", err)
	}
	return files
}

type workflow struct {
	Jobs map[string]struct {
		Steps []struct {
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			With map[string]any    `yaml:"with"`
			Run  string            `yaml:"run"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

var (
	pinned      = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$`)
	stagingRead = regexp.MustCompile(`(?s)if \[ -n "\$STAGING_READ_TOKEN" \]; then\s+echo "\$STAGING_READ_TOKEN" \| docker login staging\.example\.com --username "\$STAGING_READ_USER" --password-stdin\s+else\s+echo "STAGING_READ_TOKEN is not set: staging is read anonymously"\s+fi`)
)

// TestExampleWorkflowRules checks, without any tool, the rules of the
// example workflows: actions pinned by commit, checkouts without persisted
// credentials, the promoter installed by its action, one guard for staging
// logins, and the history that --since and --base read fetched.
func TestExampleWorkflowRules(t *testing.T) {
	for _, file := range exampleWorkflows(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wf workflow
			if err := yaml.Unmarshal(b, &wf); err != nil {
				t.Fatal(err)
			}
			for jobName, job := range wf.Jobs {
				var installs, checkouts int
				fullHistory := false
				for _, st := range job.Steps {
					if st.Uses != "" && !pinned.MatchString(st.Uses) {
						t.Errorf("job %s: uses %q: pin actions by their full commit hash", jobName, st.Uses)
					}
					action, _, _ := strings.Cut(st.Uses, "@")
					switch action {
					case "actions/checkout":
						checkouts++
						if st.With["persist-credentials"] != false {
							t.Errorf("job %s: checkout without persist-credentials: false", jobName)
						}
						if d, ok := st.With["fetch-depth"]; ok && d == 0 {
							fullHistory = true
						}
					case "imgpromoter/promoter":
						installs++
						if st.With["version"] != "${{ env.PROMOTER_VERSION }}" {
							t.Errorf("job %s: the promoter's action installs %v, want ${{ env.PROMOTER_VERSION }}", jobName, st.With["version"])
						}
					}
					if strings.Contains(st.Run, "go install") {
						t.Errorf("job %s: step %q builds the promoter with go install: use the promoter's action", jobName, st.Name)
					}
					if strings.Contains(st.Run, "STAGING_READ_TOKEN") && !stagingRead.MatchString(st.Run) {
						t.Errorf("job %s: step %q logs in to staging without the common guard (a public staging registry has no secret):\n%s", jobName, st.Name, st.Run)
					}
					if (strings.Contains(st.Run, "--since") || strings.Contains(st.Run, "--base")) && !fullHistory {
						t.Errorf("job %s: step %q uses --since or --base, but the checkout does not fetch the history (fetch-depth: 0)", jobName, st.Name)
					}
				}
				if checkouts > 1 || installs != 1 {
					t.Errorf("job %s: %d checkouts and %d installs of the promoter, want at most 1 and 1", jobName, checkouts, installs)
				}
			}
		})
	}
}

// lintTool finds a linter on PATH (or in env); in CI a missing one fails.
func lintTool(t *testing.T, name, env, install string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not on PATH (or in %s): %s", name, env, install)
	}
	t.Skipf("%s is not on PATH (or in %s): %s", name, env, install)
	return ""
}

// TestActionlint lints the example workflows, and action.yml through a
// workflow that uses it, with actionlint v1.7.12 and shellcheck; it also
// runs shellcheck on the action's install script.
func TestActionlint(t *testing.T) {
	actionlint := lintTool(t, "actionlint", "PROMOTER_ACTIONLINT_BIN", "go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12")
	shellcheck := lintTool(t, "shellcheck", "PROMOTER_SHELLCHECK_BIN", "apt-get install shellcheck")

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// action.yml is linted as actionlint reads a local action: from a
	// repository whose workflow uses it with `uses: ./`.
	repo := t.TempDir()
	for _, dir := range []string{".git", ".github/workflows", "action"} {
		if err := os.MkdirAll(filepath.Join(repo, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"action.yml", "action/install.sh"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	uses := `name: uses-action
on: push
permissions:
  contents: read
jobs:
  promoter:
    runs-on: ubuntu-latest
    steps:
      - id: promoter
        uses: ./
        with:
          version: v1.2.3
          run: promoter validate .
      - run: echo "${{ steps.promoter.outputs.path }}"
`
	if err := os.WriteFile(filepath.Join(repo, ".github/workflows/uses-action.yml"), []byte(uses), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-shellcheck", shellcheck, "-no-color"}
	for _, f := range exampleWorkflows(t) {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, abs)
	}
	for _, c := range []struct {
		dir  string
		args []string
	}{
		{root, args},
		{repo, []string{"-shellcheck", shellcheck, "-no-color", ".github/workflows/uses-action.yml"}},
	} {
		cmd := exec.Command(actionlint, c.args...)
		cmd.Dir = c.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("actionlint %s: %v\n%s", strings.Join(c.args, " "), err, out)
		}
	}
	if out, err := exec.Command(shellcheck, filepath.Join(root, "action", "install.sh")).CombinedOutput(); err != nil {
		t.Errorf("shellcheck action/install.sh: %v\n%s", err, out)
	}

	// A broken workflow is reported: the lint really runs.
	bad := filepath.Join(repo, ".github/workflows/bad.yml")
	if err := os.WriteFile(bad, []byte(strings.Replace(uses, "version: v1.2.3", "versoin: v1.2.3", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(actionlint, "-no-color", ".github/workflows/bad.yml")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `input "versoin" is not defined`) {
		t.Errorf("actionlint did not report an unknown input of the action (%v):\n%s", err, out)
	}
}
