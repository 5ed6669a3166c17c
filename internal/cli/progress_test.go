package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/creack/pty"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/testenv"
)

// onTerminal runs the command line with standard error on a real
// pseudo-terminal and standard output on a buffer, and returns both.
func onTerminal(t *testing.T, args ...string) (code int, stdout, terminal string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	var term bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = io.Copy(&term, ptmx) }()
	var out bytes.Buffer
	code = cli.Execute(context.Background(), args, &out, tty)
	tty.Close()
	wg.Wait()
	return code, out.String(), term.String()
}

// TestProgressOnTerminal: with standard error on a terminal, progress is
// drawn there in place (--progress=auto), standard output carries the JSON
// alone, and --quiet draws nothing.
func TestProgressOnTerminal(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	a := imageDigest(t, 1)
	path := filepath.Join(t.TempDir(), "promoter-manifest.yaml")
	yaml := fmt.Sprintf("registries:\n- name: %s\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n", staging, prod, a)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.PushImage(t, prod+"/app:1.0", 1)

	code, out, term := onTerminal(t, "drift", "-o", "json", path)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, term)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Errorf("standard output is not one JSON document: %v\n%q", err, out)
	}
	if !strings.Contains(term, "\r\x1b[Kdrift: 1/1 registry prefixes (100%)") {
		t.Errorf("no progress drawn in place on the terminal:\n%q", term)
	}
	if strings.Contains(out, "\x1b") || strings.Contains(out, "registry prefixes") {
		t.Errorf("progress leaked into standard output: %q", out)
	}
	if _, _, term := onTerminal(t, "drift", "--quiet", path); strings.Contains(term, "\x1b[K") {
		t.Errorf("--quiet drew progress: %q", term)
	}
}
