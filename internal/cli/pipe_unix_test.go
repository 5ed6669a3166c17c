//go:build unix

package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/cli"
)

// TestValidatePipeDoesNotBlock checks that validate refuses a named pipe
// where images.yaml belongs, at once (exit 2: unreadable input).
func TestValidatePipeDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	writeThin(t, dir, "p", "registries:\n- name: gcr.io/s\n  src: true\n- name: r.io/p\n", "")
	fifo := filepath.Join(dir, "images", "p", "images.yaml")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() {
		code, out, _ := run(t, "validate", dir)
		done <- result{code, out}
	}()
	select {
	case r := <-done:
		if r.code != cli.ExitUsage || !strings.Contains(r.out, fifo+": cannot open: is not a regular file (a named pipe)") {
			t.Errorf("exit %d, want %d\n%s", r.code, cli.ExitUsage, r.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("validate blocked on a named pipe")
	}
}
