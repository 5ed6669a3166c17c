package spill

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func mkdirs(t *testing.T, parent string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.Mkdir(filepath.Join(parent, n), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(parent, n, "blob-1"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestOpenReclaimsDeadRunsOnly(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock: nothing is reclaimed on Windows")
	}
	parent := t.TempDir()
	live, err := Open(parent, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	liveFile, err := live.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	liveFile.Close()

	mkdirs(t, parent, Prefix+"dead", Prefix+"young-unlocked", Prefix+"old-unlocked", "unrelated")
	if err := os.WriteFile(filepath.Join(parent, Prefix+"dead", lockName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * unlockedGrace)
	if err := os.Chtimes(filepath.Join(parent, Prefix+"old-unlocked"), old, old); err != nil {
		t.Fatal(err)
	}
	// A symlink with the prefix, pointing at a directory to keep.
	keep := t.TempDir()
	mkdirs(t, keep, "target")
	if err := os.Symlink(filepath.Join(keep, "target"), filepath.Join(parent, Prefix+"link")); err != nil {
		t.Fatal(err)
	}

	next, err := Open(parent, nil)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		filepath.Join(parent, Prefix+"dead"):           false,
		filepath.Join(parent, Prefix+"old-unlocked"):   false,
		filepath.Join(parent, Prefix+"young-unlocked"): true,
		filepath.Join(parent, "unrelated"):             true,
		liveFile.Name():                                true,
		filepath.Join(keep, "target", "blob-1"):        true,
		next.Path():                                    true,
	} {
		if got := exists(path); got != want {
			t.Errorf("%s exists: %v, want %v", path, got, want)
		}
	}
	if err := next.Close(); err != nil {
		t.Fatal(err)
	}
	if exists(next.Path()) {
		t.Error("Close left the directory")
	}
	if _, err := next.CreateTemp(); err == nil {
		t.Error("CreateTemp after Close succeeded")
	}
	// Once the live run closes, a new run finds nothing of it.
	live.Close()
	third, err := Open(parent, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if exists(live.Path()) {
		t.Error("a closed run's directory is still there")
	}
}
