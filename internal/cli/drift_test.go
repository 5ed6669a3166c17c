package cli_test

import (
	"encoding/json"
	"fmt"
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
