package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/manifestedit"
	"github.com/imgpromoter/promoter/pkg/validate"
)

func TestManifestAdd(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	v100 := testenv.PushImage(t, staging+"/s/app:v1.0.0", 1)
	testenv.PushImage(t, staging+"/s/app:v1.1.0", 2)
	testenv.PushImage(t, staging+"/s/app:1.1", 2)
	testenv.PushImage(t, staging+"/s/app:latest", 3)
	dir := t.TempDir()
	writeThin(t, dir, "p", fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: prod.example/p\n", staging),
		fmt.Sprintf("# released images\n- name: app\n  dmap:\n    %q: [\"v1.0.0\"] # GA\n", v100))
	file := filepath.Join(dir, "images", "p", "images.yaml")
	clean := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, dir, "DIR"), staging, "STAGING")
	}
	args := []string{"manifest", "add", "--thin-manifest-dir", dir, "--project", "p", "--image", "app"}

	code, out, errOut := run(t, append(args, "--tag", "v1.1.0,1.1", "--tag", "v1.0.0")...)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	testenv.Golden(t, "manifest-add.txt", []byte(clean(out)))
	data, _ := os.ReadFile(file)
	testenv.Golden(t, "manifest-add.yaml", data)
	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
	if len(res.Problems) > 0 || res.Stats.ValidEdges != 3 {
		t.Errorf("after add: %d valid edges, problems %v", res.Stats.ValidEdges, res.Problems)
	}

	code, out, _ = run(t, append(args, "--tag", "1.1", "-o", "json")...)
	var rep manifestedit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != cli.ExitOK {
		t.Fatalf("json: exit %d, %v\n%s", code, err, out)
	}
	if rep.SchemaVersion != manifestedit.SchemaVersion || rep.Changed || len(rep.Changes) != 1 || rep.Changes[0].Kind != manifestedit.Present {
		t.Errorf("json report = %+v", rep)
	}

	code, out, _ = run(t, append(args, "--tag-filter", "v1.*|latest", "--dry-run")...)
	if code != cli.ExitOK || !strings.Contains(out, "skipped app:latest") || !strings.Contains(out, "nothing to add") {
		t.Errorf("filter: exit %d\n%s", code, out)
	}

	code, out, _ = run(t, append(args, "--tag", "latest")...)
	if code != cli.ExitProblems {
		t.Errorf("latest: exit %d, want %d", code, cli.ExitProblems)
	}
	testenv.Golden(t, "manifest-add-refused.txt", []byte(clean(out)))
	if after, _ := os.ReadFile(file); string(after) != string(data) {
		t.Error("a refused add changed the file")
	}

	code, out, _ = run(t, append(args, "--tag", "latest", "--allow-latest", "--dry-run")...)
	if code != cli.ExitOK || !strings.Contains(out, "would write (dry run)") {
		t.Errorf("--allow-latest --dry-run: exit %d\n%s", code, out)
	}
	if after, _ := os.ReadFile(file); string(after) != string(data) {
		t.Error("a dry run changed the file")
	}
}

func TestManifestUsage(t *testing.T) {
	dir := t.TempDir()
	base := []string{"manifest", "add", "--thin-manifest-dir", dir, "--project", "p", "--image", "app"}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"help", []string{"manifest"}, cli.ExitOK},
		{"unknown subcommand", []string{"manifest", "grow"}, cli.ExitUsage},
		{"no project", []string{"manifest", "add", "--thin-manifest-dir", dir, "--image", "app", "--tag", "v1"}, cli.ExitUsage},
		{"nothing to add", base, cli.ExitUsage},
		{"bad digest", append(base, "--digest", "sha256:xyz"), cli.ExitUsage},
		{"bad filter", append(base, "--tag-filter", "("), cli.ExitUsage},
		{"bad output", append(base, "--tag", "v1", "-o", "yaml"), cli.ExitUsage},
		{"positional", append(base, "--tag", "v1", "extra"), cli.ExitUsage},
		{"no project dir", append(base, "--tag", "v1"), cli.ExitProblems},
		{"fmt without paths", []string{"manifest", "fmt"}, cli.ExitUsage},
		{"fmt missing path", []string{"manifest", "fmt", filepath.Join(dir, "nope")}, cli.ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.want {
				t.Errorf("exit = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.want, out, errOut)
			}
		})
	}
}

func TestManifestFmt(t *testing.T) {
	a := `"sha256:` + strings.Repeat("a", 64) + `"`
	dir := t.TempDir()
	writeThin(t, dir, "p", "registries:\n- name: r.example/s\n  src: true\n- name: r.example/p\n",
		"- name: app\n  dmap:\n    "+a+": [v1.0.0, '1.0']  # GA\n")
	writeThin(t, dir, "q", "registries:\n- name: r.example/s\n  src: true\n- name: r.example/q\n",
		"- name: app\n  dmap:\n    "+a+": [\"1.0\"]\n")
	p := filepath.Join(dir, "images", "p", "images.yaml")
	before, _ := os.ReadFile(p)

	code, out, errOut := run(t, "manifest", "fmt", "--check", dir)
	if want := "1 file not in canonical form; to fix, run: promoter manifest fmt " + dir + "\n"; code != cli.ExitProblems || out != p+"\n" || errOut != want {
		t.Errorf("--check: exit %d\nstdout:\n%s\nstderr:\n%s\nwant stderr:\n%s", code, out, errOut, want)
	}
	// The command names the inputs as given, quoted for the shell.
	spaced := filepath.Join(t.TempDir(), "it's here")
	writeThin(t, spaced, "p", "registries:\n- name: r.example/s\n  src: true\n- name: r.example/p\n",
		"- name: app\n  dmap:\n    "+a+": [v1.0.0, '1.0']\n")
	_, _, errOut = run(t, "manifest", "fmt", "--check", "--thin-manifest-dir", spaced)
	if want := "1 file not in canonical form; to fix, run: promoter manifest fmt --thin-manifest-dir '" + strings.ReplaceAll(spaced, "'", `'\''`) + "'\n"; errOut != want {
		t.Errorf("--check with a quoted path: stderr\n%s\nwant\n%s", errOut, want)
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Error("--check wrote")
	}

	code, out, _ = run(t, "manifest", "fmt", "--thin-manifest-dir", dir)
	if code != cli.ExitOK || out != p+"\n" {
		t.Errorf("fmt: exit %d\n%s", code, out)
	}
	after, _ := os.ReadFile(p)
	if want := "- name: app\n  dmap:\n    " + a + ": [\"1.0\", \"v1.0.0\"] # GA\n"; string(after) != want {
		t.Errorf("formatted:\n%s\nwant:\n%s", after, want)
	}
	code, out, _ = run(t, "manifest", "fmt", "--check", dir)
	if code != cli.ExitOK || out != "" {
		t.Errorf("--check after fmt: exit %d\n%s", code, out)
	}

	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte("- name: app\n  dmap: &x {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "manifest", "fmt", "-m", broken, dir)
	if code != cli.ExitProblems || !strings.Contains(errOut, broken+":2:9: anchors and aliases") {
		t.Errorf("broken file: exit %d\n%s", code, errOut)
	}
}

// TestManifestAddHostLimits checks that manifest add takes the per-host
// limits of every command that talks to registries: a staging registry that
// answers 429 with a long Retry-After costs at most --max-retry-wait.
func TestManifestAddHostLimits(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	testenv.PushImage(t, staging+"/s/app:v1.0.0", 1)
	proxy := testenv.NewFaultProxy(t, staging, testenv.FaultRule{Path: testenv.PathManifest, Kind: testenv.FaultStatus, Status: 429, RetryAfter: time.Minute})
	dir := t.TempDir()
	writeThin(t, dir, "p", fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: prod.example/p\n", proxy.Host()), "")
	start := time.Now()
	code, out, errOut := run(t, "manifest", "add", "--thin-manifest-dir", dir, "--project", "p", "--image", "app", "--tag", "v1.0.0",
		"--host-concurrency", "2", "--host-rate", "1000", "--max-retry-wait", "10ms")
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %v: the Retry-After of a minute was not capped by --max-retry-wait 10ms", took)
	}
	if proxy.Stats().Faults != 1 {
		t.Errorf("faults = %d, want the one 429", proxy.Stats().Faults)
	}
}
