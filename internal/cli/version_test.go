package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/version"
)

func TestVersion(t *testing.T) {
	code, text, stderr := run(t, "version")
	if code != cli.ExitOK || stderr != "" {
		t.Fatalf("version: exit %d, stderr %q", code, stderr)
	}
	var want strings.Builder
	if err := version.Get().WriteText(&want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.String(), text); diff != "" {
		t.Errorf("version (-want +got):\n%s", diff)
	}
	for _, flag := range []string{"--version", "-v"} {
		if code, out, _ := run(t, flag); code != cli.ExitOK || out != text {
			t.Errorf("%s: exit %d, output\n%s\nwant what version prints", flag, code, out)
		}
	}

	code, out, _ := run(t, "version", "-o", "json")
	var got version.Info
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != cli.ExitOK {
		t.Fatalf("version -o json: exit %d, %v\n%s", code, err, out)
	}
	if diff := cmp.Diff(version.Get(), got); diff != "" {
		t.Errorf("version -o json (-want +got):\n%s", diff)
	}

	if code, _, stderr := run(t, "version", "-o", "markdown"); code != cli.ExitUsage || stderr != "error: --output: unknown output format \"markdown\" (want text, json)\n" {
		t.Errorf("version -o markdown: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := run(t, "version", "extra"); code != cli.ExitUsage {
		t.Errorf("version extra: exit %d, want %d", code, cli.ExitUsage)
	}
}
