package cli_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/testenv"
)

func imageDigest(t *testing.T, seed int64) v1.Hash {
	t.Helper()
	d, err := testenv.BuildImage(t, testenv.ImageSpec{Seed: seed}).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDriftAgainstDistribution: a real Distribution registry holding a
// moved tag, missing a listed digest and holding an unexpected tag gives
// exactly those three findings and exit status 1; once repaired, exit 0.
func TestDriftAgainstDistribution(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.StartDistribution(t, "prod").Host
	a, b, c := imageDigest(t, 1), imageDigest(t, 2), imageDigest(t, 3)
	path := filepath.Join(t.TempDir(), "promoter-manifest.yaml")
	yaml := fmt.Sprintf("registries:\n- name: %s\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n    %q: [\"2.0\"]\n    %q: []\n", staging, prod, a, b, c)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := prod + "/app"
	testenv.PushImage(t, repo+":1.0", 1)
	testenv.PushImage(t, repo, 2)                  // b, untagged
	moved := testenv.PushImage(t, repo+":2.0", 20) // 2.0 should be b
	evil := testenv.PushImage(t, repo+":evil", 666)
	// c is missing.

	code, out, errb := run(t, "drift", "-o", "json", path)
	if code != cli.ExitProblems {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errb)
	}
	var rep struct {
		Findings []map[string]string
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []map[string]string{
		{"kind": "missing-digest", "repository": repo, "digest": c.String()},
		{"kind": "moved-tag", "repository": repo, "tag": "2.0", "digest": moved.String(), "expected": b.String()},
		{"kind": "unexpected-tag", "repository": repo, "tag": "evil", "digest": evil.String()},
	}
	if got, _ := json.Marshal(rep.Findings); string(got) != mustJSON(want) {
		t.Errorf("findings:\n got %s\nwant %s", got, mustJSON(want))
	}

	code, out, _ = run(t, "drift", "--registry", prod, path)
	if code != cli.ExitProblems || !strings.HasSuffix(out, "drift: 3 findings (1 missing-digest, 1 moved-tag, 1 unexpected-tag)\n") {
		t.Errorf("text: exit %d\n%s", code, out)
	}

	// Repaired (the extra tag stays: tags never move, so the manifests
	// list it instead): clean.
	testenv.PushImage(t, repo+"@"+c.String(), 3)
	yaml = fmt.Sprintf("registries:\n- name: %s\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n    %q: []\n    %q: [\"2.0\"]\n    %q: []\n    %q: [\"evil\"]\n", staging, prod, a, b, moved, c, evil)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errb := run(t, "drift", path); code != cli.ExitOK {
		t.Errorf("after repair: exit %d\n%s\n%s", code, out, errb)
	}
	// A registry that cannot be read: exit 2.
	if code, _, _ := run(t, "drift", "--registry", "127.0.0.1:1", path); code != cli.ExitUsage {
		t.Errorf("unreachable registry: exit %d, want 2", code)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestDriftMetricsAndProgress: drift pushes its metrics to a real
// Pushgateway and writes the textfile; progress goes to standard error
// only, so the JSON on standard output stays whole.
func TestDriftMetricsAndProgress(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	gw := testenv.StartPushgateway(t)
	a := imageDigest(t, 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "promoter-manifest.yaml")
	yaml := fmt.Sprintf("registries:\n- name: %s\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n", staging, prod, a)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.PushImage(t, prod+"/app:1.0", 1)
	testenv.PushImage(t, prod+"/app:extra", 2)
	textfile := filepath.Join(dir, "drift.prom")
	code, out, errb := run(t, "drift", "-o", "json", "--progress", "always", "--metrics-push", gw, "--metrics-job", "drift-prod", "--metrics-textfile", textfile, path)
	if code != cli.ExitProblems {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("standard output is not one JSON document: %v\n%q", err, out)
	}
	if !strings.Contains(errb, "\r\x1b[Kdrift: 1/1 registry prefixes (100%)") {
		t.Errorf("no progress on standard error:\n%q", errb)
	}
	resp, err := http.Get(gw + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`promoter_drift_findings{command="drift",instance="",job="drift-prod",kind="unexpected-tag"} 1`,
		`promoter_run_success{command="drift",instance="",job="drift-prod"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("pushgateway lacks %s", want)
		}
	}
	tf, err := os.ReadFile(textfile)
	if err != nil || !strings.Contains(string(tf), `promoter_drift_findings{command="drift",kind="unexpected-tag"} 1`) {
		t.Errorf("textfile: %v\n%s", err, tf)
	}
	// --quiet: nothing but the result.
	_, _, errb = run(t, "drift", "--quiet", path)
	if errb != "" {
		t.Errorf("--quiet printed %q", errb)
	}
}
