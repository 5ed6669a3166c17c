// Package spill keeps the temporary copies of large blobs that a run makes
// (so that a destination that fails can retry without reading the source
// again) in a directory of the run's own, locked for as long as the run
// lives, and reclaims at start the directories of runs that were killed.
//
// A run's directory is promoter-spill-* in the temporary directory, holding
// a file named "lock" on which the run holds an exclusive flock. The kernel
// drops the lock when the process ends, however it ends, so a directory
// whose lock can be taken belongs to a dead run and is removed. A directory
// without a lock file (a run killed between creating the directory and the
// file) is removed once it is older than a minute. On systems without
// flock nothing is ever reclaimed.
package spill

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const (
	// Prefix starts the name of every run's spill directory.
	Prefix = "promoter-spill-"
	// lockName is the lock file in a spill directory.
	lockName = "lock"
	// unlockedGrace is how old a spill directory without a lock file must
	// be before it is taken for a dead run's.
	unlockedGrace = time.Minute
)

// Dir is a run's spill directory. It is safe for concurrent use.
type Dir struct {
	path string
	lock *os.File

	mu     sync.Mutex
	closed bool
}

// Open reclaims the spill directories of dead runs in parent ("" means
// os.TempDir()) and creates this run's, locked until Close. Reclaimed
// directories are logged.
func Open(parent string, log *slog.Logger) (*Dir, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	Reclaim(parent, log)
	path, err := os.MkdirTemp(parent, Prefix+"*")
	if err != nil {
		return nil, fmt.Errorf("creating the spill directory: %w", err)
	}
	// The lock file gets its name only once locked, so that no other run
	// ever finds it unlocked.
	f, err := os.CreateTemp(path, ".lock-*")
	if err == nil {
		err = lock(f)
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(path, lockName))
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(path)
		return nil, fmt.Errorf("locking the spill directory: %w", err)
	}
	return &Dir{path: path, lock: f}, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// CreateTemp creates a new spill file in the directory. The caller removes
// it when done; Close removes whatever is left.
func (d *Dir) CreateTemp() (*os.File, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("spill directory closed")
	}
	return os.CreateTemp(d.path, "blob-*")
}

// Close removes the directory with everything in it and releases the lock.
// It is safe to call more than once.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := os.RemoveAll(d.path)
	d.lock.Close() // releases the flock
	return err
}

// Reclaim removes the spill directories in parent whose run is dead: their
// lock can be taken, or they have no lock file and are older than a minute.
// Directories of live runs are left alone. Failures are logged, never
// returned: reclaiming is housekeeping.
func Reclaim(parent string, log *slog.Logger) {
	matches, err := filepath.Glob(filepath.Join(parent, Prefix+"*"))
	if err != nil {
		return
	}
	for _, dir := range matches {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			continue // never follow a symlink or touch a file of that name
		}
		if !dead(dir, fi) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("cannot remove the spill directory of a dead run", "path", dir, "error", err)
			continue
		}
		log.Info("removed the spill directory of a run that ended without cleaning up", "path", dir)
	}
}

// dead reports whether the run that made dir has ended.
func dead(dir string, fi fs.FileInfo) bool {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|syscallNoFollow, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Since(fi.ModTime()) > unlockedGrace
	}
	if err != nil {
		return false
	}
	defer f.Close() // also releases the lock taken to test it
	return tryLock(f)
}
