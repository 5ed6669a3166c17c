//go:build unix

package spill

import (
	"os"
	"syscall"
)

// syscallNoFollow refuses to open a lock file that is a symbolic link.
const syscallNoFollow = syscall.O_NOFOLLOW

// lock takes an exclusive flock on f, failing at once if another process
// holds it.
func lock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// tryLock reports whether f's flock could be taken: nobody holds it.
func tryLock(f *os.File) bool {
	return lock(f) == nil
}
