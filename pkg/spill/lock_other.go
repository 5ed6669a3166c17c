//go:build !unix

package spill

import "os"

// syscallNoFollow: not available; lock files are only read on unix.
const syscallNoFollow = 0

// lock does nothing where there is no flock.
func lock(*os.File) error { return nil }

// tryLock never reports a directory as dead where there is no flock: a
// live run's files must never be removed.
func tryLock(*os.File) bool { return false }
