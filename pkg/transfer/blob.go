package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// local is a re-readable copy of a blob: in memory or spilled to a file.
type local struct {
	data []byte
	file string
}

// open returns the copy's content; it can seek, so that the registry
// access layer can send it again after a transient failure.
func (l *local) open() (io.ReadCloser, error) {
	if l.file != "" {
		return os.Open(l.file)
	}
	return nopSeekCloser{bytes.NewReader(l.data)}, nil
}

func (l *local) close() {
	if l != nil && l.file != "" {
		os.Remove(l.file)
	}
}

type nopSeekCloser struct{ *bytes.Reader }

func (nopSeekCloser) Close() error { return nil }

// runTask brings one blob into every repository that needs it: one source
// read, one upload per destination registry, mounts for the rest. Whatever
// happens (a failure, a panic of the registry access), every repository of
// the task is settled when it returns, so no job waits for it forever.
func (e *engine) runTask(ctx context.Context, t *task) {
	defer e.settleAll(t)
	d := t.desc.Digest
	if _, ok := t.targets[t.source.RegistryStr()]; ok {
		// Promoting within one registry: the source repository holds it.
		e.mu.Lock()
		e.addHolder(t.source, d)
		e.mu.Unlock()
	}
	// Per registry: the repository that receives the upload (none when the
	// registry already holds the blob somewhere: then everything is mounted).
	var uploads []name.Repository
	for host, repos := range t.targets {
		if _, ok := e.holderOf(host, d); !ok {
			uploads = append(uploads, repos[0])
		}
	}
	sortRepos(uploads)
	var copyOf *local
	defer func() { copyOf.close() }()
	if len(uploads) > 0 {
		var errs []error
		copyOf, errs = e.sendToAll(ctx, t, uploads)
		for i, repo := range uploads {
			e.setBlob(repo, d, errs[i])
		}
	}
	// Mounts: every other repository, from a repository of its registry
	// that holds the blob.
	for host, repos := range t.targets {
		from, ok := e.holderOf(host, d)
		for _, repo := range repos {
			if repo == from || e.isPresent(repo, d) {
				continue
			}
			if !ok {
				e.setBlob(repo, d, e.uploadErr(host, d))
				continue
			}
			e.setBlob(repo, d, e.mount(ctx, t, repo, from, &copyOf))
		}
	}
}

// settleAll settles every repository of the task that the task left
// unsettled: as present when it is (written meanwhile under the same
// digest), with an error otherwise; a panic of the task becomes that error.
func (e *engine) settleAll(t *task) {
	err := errors.New("blob transfer ended without a result")
	if r := recover(); r != nil {
		err = panicError(r)
		e.cfg.logger.Error("blob transfer panicked", "blob", t.desc.Digest.String(), "panic", r)
	}
	for _, repos := range t.targets {
		for _, repo := range repos {
			k := repoBlob{repo.Name(), t.desc.Digest}
			e.mu.Lock()
			_, waiting := e.dependents[k]
			present := e.present[k]
			e.mu.Unlock()
			switch {
			case waiting && present:
				e.setBlob(repo, t.desc.Digest, nil)
			case waiting:
				e.setBlob(repo, t.desc.Digest, &Error{Side: SideDestination, Ref: repo.Digest(t.desc.Digest.String()).String(), Err: err})
			}
		}
	}
}

func panicError(r any) error { return fmt.Errorf("blob transfer failed: %v", r) }

// recoverInto turns a panic of a goroutine sending a blob into its error.
func recoverInto(err *error) {
	if r := recover(); r != nil {
		*err = panicError(r)
	}
}

func (e *engine) isPresent(repo name.Repository, d v1.Hash) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.present[repoBlob{repo.Name(), d}]
}

// uploadErr is the error of the failed upload to a registry, for the
// repositories that were to mount from it.
func (e *engine) uploadErr(host string, d v1.Hash) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, err := range e.blobErr {
		if k.digest == d && hostOf(k.repo) == host {
			return err
		}
	}
	return fmt.Errorf("blob %s could not be uploaded to %s", d, host)
}

func hostOf(repo string) string {
	for i := range len(repo) {
		if repo[i] == '/' {
			return repo[:i]
		}
	}
	return repo
}

// mount links the blob into repo from another repository of its registry;
// when the registry will not (or cannot mount at all), the blob is uploaded
// from the local copy (read from the source when there is none yet).
func (e *engine) mount(ctx context.Context, t *task, repo, from name.Repository, copyOf **local) error {
	content := func() (io.ReadCloser, error) {
		if *copyOf == nil {
			l, err := e.fetchLocal(ctx, t)
			if err != nil {
				return nil, err
			}
			*copyOf = l
		}
		return e.resendCounted((*copyOf).open())
	}
	m, ok := e.reg.(Mounter)
	if !ok {
		rc, err := content()
		if err != nil {
			return err
		}
		defer rc.Close()
		return e.push(ctx, repo, t, rc)
	}
	mounted, err := m.MountBlob(ctx, repo, t.desc, from, content)
	if err != nil {
		var te *Error
		if errors.As(err, &te) {
			return err // the local copy could not be made: a source error
		}
		return &Error{Side: SideDestination, Ref: repo.Digest(t.desc.Digest.String()).String(), Err: err}
	}
	if mounted {
		atomic.AddInt64(&e.stats.Mounts, 1)
	} else {
		atomic.AddInt64(&e.stats.Uploads, 1)
	}
	return nil
}

// push uploads the blob into repo from content.
func (e *engine) push(ctx context.Context, repo name.Repository, t *task, content io.Reader) error {
	if err := e.reg.PushBlob(ctx, repo, t.desc, content); err != nil {
		return &Error{Side: SideDestination, Ref: repo.Digest(t.desc.Digest.String()).String(), Err: err}
	}
	atomic.AddInt64(&e.stats.Uploads, 1)
	return nil
}

// resent counts, in Stats.UploadRetries, each time the registry access
// layer starts sending a blob's content again (it seeks back to the start
// to retry an upload in a new session).
type resent struct {
	io.ReadSeeker
	io.Closer
	read    bool
	retries *int64
}

func (r *resent) Read(p []byte) (int, error) {
	r.read = true
	return r.ReadSeeker.Read(p)
}

func (r *resent) Seek(offset int64, whence int) (int64, error) {
	if r.read {
		r.read = false
		atomic.AddInt64(r.retries, 1)
	}
	return r.ReadSeeker.Seek(offset, whence)
}

func (e *engine) resendCounted(rc io.ReadCloser, err error) (io.ReadCloser, error) {
	if err != nil {
		return nil, err
	}
	rs, ok := rc.(io.ReadSeeker)
	if !ok {
		return rc, nil
	}
	return &resent{ReadSeeker: rs, Closer: rc, retries: &e.stats.UploadRetries}, nil
}

// sendToAll reads the blob from the source once and sends it to each
// repository in uploads (one per registry). It returns a local copy when it
// made one, and an error per upload.
func (e *engine) sendToAll(ctx context.Context, t *task, uploads []name.Repository) (*local, []error) {
	if t.desc.Size > e.cfg.memLimit {
		return e.stream(ctx, t, uploads)
	}
	errs := make([]error, len(uploads))
	l, err := e.fetchLocal(ctx, t)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return nil, errs
	}
	var wg sync.WaitGroup
	for i, repo := range uploads {
		wg.Go(func() {
			defer recoverInto(&errs[i])
			rc, err := e.resendCounted(l.open())
			if err != nil {
				errs[i] = err
				return
			}
			defer rc.Close()
			errs[i] = e.push(ctx, repo, t, rc)
		})
	}
	wg.Wait()
	return l, errs
}

// fetchLocal reads the whole blob from the source, verified, into memory or
// (when large) a temporary file.
func (e *engine) fetchLocal(ctx context.Context, t *task) (*local, error) {
	d := t.desc.Digest
	src := t.source.Digest(d.String()).String()
	rc, err := e.reg.FetchBlob(ctx, t.source, t.desc)
	if err != nil {
		return nil, &Error{Side: SideSource, Ref: src, Err: err}
	}
	defer rc.Close()
	atomic.AddInt64(&e.stats.SourceBlobReads, 1)
	l := &local{}
	var w io.Writer
	var buf bytes.Buffer
	if t.desc.Size > e.cfg.memLimit {
		f, err := e.tempFile()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		l.file = f.Name()
		w = f
	} else {
		buf.Grow(int(t.desc.Size))
		w = &buf
	}
	vr := newVerifier(rc, t.desc)
	n, err := io.Copy(w, vr)
	atomic.AddInt64(&e.stats.SourceBytes, n)
	if err != nil {
		l.close()
		return nil, &Error{Side: SideSource, Ref: src, Err: err}
	}
	l.data = buf.Bytes()
	return l, nil
}

// verifier reads a blob and checks its size and digest against the
// descriptor. It holds the blob's last byte back until it has read the
// blob to its end and the check has passed: whatever reads through it (an
// upload, the spill file uploads read from) never gets a whole blob of
// wrong content, so a destination never sees a complete upload of it,
// whether or not it checks digests itself. A mismatch is returned instead
// of the last byte.
type verifier struct {
	r    io.Reader
	desc v1.Descriptor
	h    hash.Hash
	n    int64
	done bool
	err  error // the failure that ended the blob early, if any
}

func newVerifier(r io.Reader, desc v1.Descriptor) *verifier {
	return &verifier{r: io.LimitReader(r, desc.Size+1), desc: desc, h: sha256.New()}
}

func (v *verifier) Read(p []byte) (int, error) {
	switch {
	case v.err != nil:
		return 0, v.err
	case v.done:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	}
	size := v.desc.Size
	if v.n+1 < size {
		// Before the last byte: pass the bytes on as they come.
		n, err := v.r.Read(p[:min(int64(len(p)), size-1-v.n)])
		v.n += int64(n)
		v.h.Write(p[:n])
		if err == io.EOF {
			err = fmt.Errorf("blob is %d bytes, its descriptor says %d", v.n, size)
		}
		if err != nil {
			v.err = err
		}
		return n, err
	}
	// The last byte: read on to the end of the blob, check it, and only
	// then hand the byte over.
	rest, err := io.ReadAll(v.r)
	if err == nil {
		v.h.Write(rest)
		if total := v.n + int64(len(rest)); total > size {
			err = fmt.Errorf("blob is larger than its descriptor says (%d bytes)", size)
		} else {
			err = verify(v.desc.Digest, size, total, v.h.Sum(nil))
		}
	}
	if err != nil {
		v.err = err
		return 0, err
	}
	v.n += int64(len(rest))
	v.done = true
	return copy(p, rest), nil
}

func verify(d v1.Hash, size, n int64, sum []byte) error {
	if n != size {
		return fmt.Errorf("blob is %d bytes, its descriptor says %d", n, size)
	}
	if got := hex.EncodeToString(sum); got != d.Hex {
		return fmt.Errorf("blob content has digest sha256:%s", got)
	}
	return nil
}

// stream reads a large blob once and sends it to every upload at the same
// time, with bounded memory: the blob is written to a temporary file as it
// arrives and each destination reads that file as it grows, at its own pace
// (a slow or failing destination never holds up the others, and one that
// fails is sent the blob again from the file). Without a temporary file,
// the destinations are sent the blob one after the other, each from a read
// of the source.
func (e *engine) stream(ctx context.Context, t *task, uploads []name.Repository) (*local, []error) {
	d := t.desc.Digest
	srcRef := t.source.Digest(d.String()).String()
	errs := make([]error, len(uploads))
	fail := func(err error) (*local, []error) {
		for i := range errs {
			errs[i] = &Error{Side: SideSource, Ref: srcRef, Err: err}
		}
		return nil, errs
	}
	sp, err := e.newSpill()
	if err != nil {
		e.cfg.logger.Warn("cannot spill blob to a temporary file; each destination reads the source", "error", err)
		for i, repo := range uploads {
			errs[i] = e.streamOnce(ctx, t, repo)
		}
		return nil, errs
	}
	rc, err := e.reg.FetchBlob(ctx, t.source, t.desc)
	if err != nil {
		sp.discard()
		return fail(err)
	}
	defer rc.Close()
	atomic.AddInt64(&e.stats.SourceBlobReads, 1)
	var wg sync.WaitGroup
	for i, repo := range uploads {
		r, err := sp.reader()
		if err != nil {
			errs[i] = err
			continue
		}
		wg.Go(func() {
			defer recoverInto(&errs[i])
			defer r.Close()
			errs[i] = e.push(ctx, repo, t, &resent{ReadSeeker: r, Closer: r, retries: &e.stats.UploadRetries})
		})
	}
	n, srcErr := io.Copy(sp, newVerifier(rc, t.desc))
	atomic.AddInt64(&e.stats.SourceBytes, n)
	sp.finish(srcErr)
	wg.Wait()
	if srcErr != nil {
		sp.discard()
		return fail(srcErr)
	}
	return &local{file: sp.name}, errs
}

// streamOnce reads the blob from the source and sends it straight to repo.
func (e *engine) streamOnce(ctx context.Context, t *task, repo name.Repository) error {
	d := t.desc.Digest
	rc, err := e.reg.FetchBlob(ctx, t.source, t.desc)
	if err != nil {
		return &Error{Side: SideSource, Ref: t.source.Digest(d.String()).String(), Err: err}
	}
	defer rc.Close()
	atomic.AddInt64(&e.stats.SourceBlobReads, 1)
	vr := newVerifier(rc, t.desc)
	err = e.push(ctx, repo, t, vr)
	atomic.AddInt64(&e.stats.SourceBytes, vr.n)
	if err != nil && vr.err != nil {
		return &Error{Side: SideSource, Ref: t.source.Digest(d.String()).String(), Err: vr.err}
	}
	return err
}

// spill is a temporary file written once, from the start, while readers
// read it as it grows.
type spill struct {
	f    *os.File
	name string

	mu      sync.Mutex
	grown   *sync.Cond
	written int64
	done    bool
	err     error
}

func (e *engine) newSpill() (*spill, error) {
	f, err := e.tempFile()
	if err != nil {
		return nil, err
	}
	s := &spill{f: f, name: f.Name()}
	s.grown = sync.NewCond(&s.mu)
	return s, nil
}

// Write appends to the file and wakes the readers.
func (s *spill) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.mu.Lock()
	s.written += int64(n)
	s.mu.Unlock()
	s.grown.Broadcast()
	return n, err
}

// finish says the file is complete (err nil) or will never be.
func (s *spill) finish(err error) {
	s.f.Close()
	s.mu.Lock()
	s.done, s.err = true, err
	s.mu.Unlock()
	s.grown.Broadcast()
}

func (s *spill) discard() {
	if s.f != nil {
		s.f.Close()
	}
	os.Remove(s.name)
}

func (s *spill) reader() (*spillReader, error) {
	f, err := os.Open(s.name)
	if err != nil {
		return nil, err
	}
	return &spillReader{s: s, f: f}, nil
}

// spillReader reads a spill file from the start, waiting for the writer
// when it is ahead.
type spillReader struct {
	s   *spill
	f   *os.File
	off int64
}

func (r *spillReader) Read(p []byte) (int, error) {
	s := r.s
	s.mu.Lock()
	for r.off >= s.written && !s.done {
		s.grown.Wait()
	}
	avail, done, err := s.written-r.off, s.done, s.err
	s.mu.Unlock()
	if avail <= 0 {
		if done && err != nil {
			return 0, &sourceError{err}
		}
		return 0, io.EOF
	}
	n, rerr := r.f.ReadAt(p[:min(int64(len(p)), avail)], r.off)
	r.off += int64(n)
	if rerr == io.EOF && n > 0 {
		rerr = nil
	}
	return n, rerr
}

// Seek supports going back to the start (a new upload attempt).
func (r *spillReader) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekStart {
		return r.off, errors.New("spill reader: only a seek to the start is supported")
	}
	r.off = 0
	return 0, nil
}

func (r *spillReader) Close() error { return r.f.Close() }

// sourceError marks a failure to read the source while streaming into an
// upload, so that the upload's error is attributed to the source.
type sourceError struct{ err error }

func (s *sourceError) Error() string { return s.err.Error() }
func (s *sourceError) Unwrap() error { return s.err }
