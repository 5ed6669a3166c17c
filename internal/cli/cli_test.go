package cli_test

import (
	"bytes"
	"context"
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

const corpus = "../../testdata/corpus/k8s.io-2024-06/registry.k8s.io"

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateCorpus(t *testing.T) {
	code, out, _ := run(t, "validate", corpus)
	if code != cli.ExitProblems {
		t.Errorf("exit = %d, want %d", code, cli.ExitProblems)
	}
	testenv.Golden(t, "validate-corpus.txt", []byte(out))
	if !strings.HasSuffix(out, "75 manifests, 822 images, 20019 digests, 20086 tags, 720478 edges (720456 valid); 7 problems (3 errors, 4 warnings)\n") {
		t.Errorf("summary line wrong:\n%s", out)
	}

	code, out, _ = run(t, "validate", "-o", "json", "--thin-manifest-dir", corpus)
	if code != cli.ExitProblems {
		t.Errorf("json exit = %d", code)
	}
	var res struct {
		Stats struct {
			Edges, Errors int
		}
		Problems []struct {
			Code     string
			Position struct {
				File string
				Line int
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v", err)
	}
	if res.Stats.Edges != 720478 || res.Stats.Errors != 3 || len(res.Problems) != 7 {
		t.Errorf("json stats = %+v, %d problems", res.Stats, len(res.Problems))
	}
}

func TestExitCodes(t *testing.T) {
	clean := t.TempDir()
	writeThin(t, clean, "p", "registries:\n- name: r.example/s\n  src: true\n- name: r.example/p\n",
		"- name: a\n  dmap:\n    \"sha256:"+strings.Repeat("a", 64)+"\": [\"1.0\"]\n")
	garbage := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(garbage, []byte("\x00\x01binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"clean", []string{"validate", clean}, cli.ExitOK},
		{"problems", []string{"validate", corpus}, cli.ExitProblems},
		{"missing path", []string{"validate", filepath.Join(clean, "nope")}, cli.ExitUsage},
		{"no input", []string{"validate"}, cli.ExitUsage},
		{"unreadable input", []string{"validate", "--manifest", garbage}, cli.ExitUsage},
		{"bad flag", []string{"validate", "--frobnicate"}, cli.ExitUsage},
		{"bad output", []string{"validate", "-o", "yaml", clean}, cli.ExitUsage},
		{"unknown command", []string{"promote-everything"}, cli.ExitUsage},
		{"cip parse-only", []string{"cip", "--parse-only", "--thin-manifest-dir", clean}, cli.ExitOK},
		{"cip parse-only problems", []string{"cip", "--parse-only", "--thin-manifest-dir", corpus}, cli.ExitProblems},
		{"cip unsupported", []string{"cip", "--sign", "--thin-manifest-dir", clean}, cli.ExitUsage},
		{"bad jobs", []string{"plan", "--jobs", "0", clean}, cli.ExitUsage},
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

func writeThin(t *testing.T, root, project, manifest, images string) {
	t.Helper()
	for path, body := range map[string]string{
		filepath.Join(root, "manifests", project, "promoter-manifest.yaml"): manifest,
		filepath.Join(root, "images", project, "images.yaml"):               images,
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPlanRunCipInProcess(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	d := testenv.PushImage(t, staging+"/s/app", 1)
	dir := t.TempDir()
	writeThin(t, dir, "p", fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\n", staging, prod),
		fmt.Sprintf("- name: app\n  dmap:\n    %q: [\"1.0\"]\n", d))

	// plan and run without --confirm change nothing.
	for _, args := range [][]string{{"plan", dir}, {"run", dir}, {"cip", "--thin-manifest-dir", dir}} {
		code, out, errOut := run(t, args...)
		if code != cli.ExitOK {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		if !strings.Contains(out, "COPY") {
			t.Errorf("%v: plan output lacks the copy action:\n%s", args, out)
		}
	}
	if len(testenv.Digests(t, prod+"/p/app")) != 0 {
		t.Fatal("a dry run wrote to the destination")
	}
	// run without --confirm says it is a dry run, first and last.
	for _, args := range [][]string{{"run", dir}, {"run", "-o", "json", dir}} {
		_, _, errOut := run(t, args...)
		const first = "dry run: run without --confirm only plans; nothing will be written to any registry\n"
		const last = "dry run: nothing was written; to promote, run again with --confirm\n"
		if !strings.HasPrefix(errOut, first) || !strings.HasSuffix(errOut, last) {
			t.Errorf("%v: stderr\n%s\nwant it to start with\n%swant it to end with\n%s", args, errOut, first, last)
		}
	}
	if _, _, errOut := run(t, "run", "--confirm", "--jobs", "0", dir); strings.Contains(errOut, "dry run") {
		t.Errorf("run --confirm speaks of a dry run:\n%s", errOut)
	}

	code, out, _ := run(t, "plan", "-o", "json", dir)
	var p plan.Document
	if err := json.Unmarshal([]byte(out), &p); err != nil || code != 0 {
		t.Fatalf("plan json: exit %d, %v", code, err)
	}
	if p.SchemaVersion != plan.SchemaVersion || p.Counts[plan.Copy] != 1 {
		t.Errorf("plan json: %+v", p)
	}
	code, out, _ = run(t, "plan", "-o", "markdown", dir)
	if code != 0 || !strings.Contains(out, "| destination registry |") {
		t.Errorf("markdown plan: exit %d\n%s", code, out)
	}
	// The reviewers' table names the image with its platform, read from
	// staging.
	if !strings.Contains(out, "| `app` | `1.0` | `"+d.String()[:19]+"` | linux/amd64 |") {
		t.Errorf("markdown plan lacks the image row with its platform:\n%s", out)
	}

	// kpromo's spelling promotes.
	code, out, errOut := run(t, "cip", "--thin-manifest-dir", dir, "--confirm", "--use-service-account")
	if code != cli.ExitOK {
		t.Fatalf("cip --confirm: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "--use-service-account is a Google Cloud option") {
		t.Errorf("no notice for an ignored kpromo flag:\n%s", errOut)
	}
	if got := testenv.Digests(t, prod+"/p/app")["1.0"]; got != d {
		t.Errorf("app:1.0 = %s, want %s", got, d)
	}
	code, out, _ = run(t, "run", "--confirm", dir)
	if code != 0 || !strings.Contains(out, "Nothing to do") {
		t.Errorf("second run: exit %d\n%s", code, out)
	}
}
