package reliability

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 11: the spill files of a killed run (large blobs kept on
// disk for destinations to retry from) are reclaimed by the next run,
// while those of a run still going are left alone. A run keeps its spill
// files in a directory promoter-spill-* of the temporary directory, with
// a file "lock" it holds an flock on while it lives.
func TestStaleSpillFilesAreReclaimed(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	stale := filepath.Join(tmp, "promoter-spill-stale")
	live := filepath.Join(tmp, "promoter-spill-live")
	for _, d := range []string{stale, live} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"lock", "blob-1"} {
			if err := os.WriteFile(filepath.Join(d, f), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	lock, err := os.Open(filepath.Join(live, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}

	// A streamed blob to two registries: this run spills too.
	src := testenv.InProcessRegistry(t)
	dig := testenv.PushImageWith(t, src+"/s/app", testenv.ImageSpec{Seed: 8, LayerSize: 6 << 20})
	a, b := testenv.InProcessRegistry(t), testenv.InProcessRegistry(t)
	m := writeManifest(t, src+"/s", []string{a + "/p", b + "/p"}, image{name: "app", digest: dig, tags: []string{"1.0"}})
	run(t.Context(), t, m).mustSucceed(t, 2)

	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the spill directory of a dead run is still there (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(live, "blob-1")); err != nil {
		t.Errorf("the spill file of a live run was touched: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "promoter-*"))
	if len(left) != 1 || left[0] != live {
		t.Errorf("temporary directory holds %v, want only %s", left, live)
	}
}
