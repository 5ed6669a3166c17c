//go:build unix

package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// TestNamedPipeRefused checks that a named pipe where a manifest is
// expected is refused at once instead of blocking the reader on open (a
// FIFO images.yaml held validate for 11 minutes, deaf to SIGTERM).
func TestNamedPipeRefused(t *testing.T) {
	root := writeTree(t, map[string]string{"manifests/a/promoter-manifest.yaml": thinManifest})
	fifo := filepath.Join(root, "images", "a", "images.yaml")
	if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	var probs []diag.Problem
	within(t, 10*time.Second, func() { _, probs = LoadThinDir(root) })
	if d := diffProbs(root, probs, []prob{{Pos: "images/a/images.yaml", Code: diag.CodeUnreadable, Msg: "cannot open: is not a regular file (a named pipe)"}}); d != "" {
		t.Error(d)
	}
	var m *Manifest
	within(t, 10*time.Second, func() { m, probs = LoadFile(fifo) })
	if m != nil || len(probs) != 1 || !strings.Contains(probs[0].Message, "not a regular file") {
		t.Errorf("LoadFile of a pipe: %v, %v", m, probs)
	}
	if _, err := ReadFile(fifo); !errors.Is(err, ErrNotRegular) {
		t.Errorf("ReadFile = %v, want ErrNotRegular", err)
	}
}
