package manifest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Why a manifest file is refused before it is read. Match them with
// errors.Is on the error of ReadFile.
var (
	// ErrSymlink: the file is a symbolic link. Links are never followed, so
	// that a manifest tree can only ever name files inside itself.
	ErrSymlink = errors.New("is a symbolic link (not followed: manifests are read only from regular files inside their tree)")
	// ErrNotRegular: the file is a directory, a named pipe, a device or a
	// socket; reading one could block forever or never end.
	ErrNotRegular = errors.New("is not a regular file")
	// ErrTooLarge: the file is larger than MaxFileSize.
	ErrTooLarge = fmt.Errorf("is larger than %d MiB, the limit for one manifest file", MaxFileSize>>20)
	// ErrOutside: the path resolves outside the manifest root.
	ErrOutside = errors.New("is outside the manifest directory")
)

// ReadFile reads a manifest file the way the loader does: only a regular
// file (not a symbolic link, a pipe or a device), only inside its folder,
// and only up to MaxFileSize bytes. Commands that edit manifests read them
// with it too, so that they never touch what the loader would refuse.
func ReadFile(path string) ([]byte, error) {
	return readIn(filepath.Dir(path), path)
}

// ReadFileIn is ReadFile for a path that must also lie inside root (a thin
// manifest directory): no component of it may lead out of root.
func ReadFileIn(root, path string) ([]byte, error) {
	return readIn(root, path)
}

// readIn reads path, which must lie inside root, with the checks of
// ReadFile. The file is opened through an os.Root: no path component can
// lead outside root, even if the tree changes while it is read. The open
// does not block (a named pipe put in place after the check cannot hold
// the reader), and the opened file is checked again.
func readIn(root, path string) ([]byte, error) {
	op := "open"
	fail := func(err error) ([]byte, error) { return nil, &fs.PathError{Op: op, Path: path, Err: err} }
	r, rel, err := openRoot(root, path)
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	st, err := r.Lstat(rel)
	if err != nil {
		return fail(unwrapPathError(err))
	}
	if err := checkMode(st); err != nil {
		return fail(err)
	}
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fail(unwrapPathError(err))
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return fail(unwrapPathError(err))
	}
	if err := checkMode(st); err != nil {
		return fail(err)
	}
	if st.Size() > MaxFileSize {
		return fail(ErrTooLarge)
	}
	op = "read"
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail(unwrapPathError(err))
	}
	if len(data) > MaxFileSize { // grew while read
		return fail(ErrTooLarge)
	}
	return data, nil
}

// openRoot opens root for reaching path, which must lie inside it, and
// returns path relative to root.
func openRoot(root, path string) (*os.Root, string, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || !filepath.IsLocal(rel) {
		return nil, "", ErrOutside
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, "", unwrapPathError(err)
	}
	return r, rel, nil
}

// checkMode refuses everything but a regular file.
func checkMode(st fs.FileInfo) error {
	switch m := st.Mode(); {
	case m&fs.ModeSymlink != 0:
		return ErrSymlink
	case !m.IsRegular():
		return fmt.Errorf("%w (%s)", ErrNotRegular, modeName(m))
	}
	return nil
}

func modeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.Type().String()
	}
}

// WriteFile replaces path, which must lie inside root, with data,
// atomically (a temporary file renamed over it), keeping its permissions.
// Like ReadFile it never goes through a symbolic link out of root, and it
// refuses to replace a link or anything but a regular file: editing a
// manifest can never write outside the manifest tree.
func WriteFile(root, path string, data []byte) error {
	fail := func(err error) error { return &fs.PathError{Op: "write", Path: path, Err: err} }
	r, rel, err := openRoot(root, path)
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	mode := fs.FileMode(0o644)
	switch st, err := r.Lstat(rel); {
	case err == nil:
		if err := checkMode(st); err != nil {
			return fail(err)
		}
		mode = st.Mode().Perm()
	case !errors.Is(err, fs.ErrNotExist):
		return fail(unwrapPathError(err))
	}
	if err := r.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return fail(unwrapPathError(err))
	}
	var f *os.File
	var tmp string
	for i := 0; ; i++ {
		tmp = filepath.Join(filepath.Dir(rel), fmt.Sprintf(".%s.%d-%d", filepath.Base(rel), os.Getpid(), i))
		f, err = r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err == nil || !errors.Is(err, fs.ErrExist) || i >= 100 {
			break
		}
	}
	if err != nil {
		return fail(unwrapPathError(err))
	}
	defer r.Remove(tmp) // after a successful rename there is nothing left to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, rel)
	}
	if err != nil {
		return fail(unwrapPathError(err))
	}
	return nil
}
