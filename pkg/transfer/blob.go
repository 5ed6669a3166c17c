package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/access"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// local is a re-readable copy of a blob: in memory or spilled to a file.
type local struct {
	data []byte
	file string
}

func (l *local) open() (io.ReadCloser, error) {
	if l.file != "" {
		return os.Open(l.file)
	}
	return io.NopCloser(bytes.NewReader(l.data)), nil
}

func (l *local) close() {
	if l != nil && l.file != "" {
		os.Remove(l.file)
	}
}

// runTask brings one blob into every repository that needs it: one source
// read, one upload per destination registry, mounts for the rest.
func (e *engine) runTask(ctx context.Context, t *task) {
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

// mount asks the registry to link the blob from another repository; if it
// will not, the blob is uploaded from the local copy (or read again).
func (e *engine) mount(ctx context.Context, t *task, repo, from name.Repository, copyOf **local) error {
	d := t.desc.Digest
	mounted, loc, err := e.reg.StartUpload(ctx, repo, d, &from)
	if err != nil {
		return &Error{Side: SideDestination, Ref: repo.Digest(d.String()).String(), Err: err}
	}
	if mounted {
		atomic.AddInt64(&e.stats.Mounts, 1)
		return nil
	}
	// Refused: upload into the session the registry opened instead.
	open, err := e.opener(ctx, t, copyOf)
	if err != nil {
		return err
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := e.reg.FinishUpload(ctx, repo, loc, d, rc, t.desc.Size); err != nil {
		return e.upload(ctx, repo, t, open, err)
	}
	atomic.AddInt64(&e.stats.Uploads, 1)
	return nil
}

// opener returns a way to read the blob again: from the local copy, or, when
// there is none, by reading the source again (kept locally from then on).
func (e *engine) opener(ctx context.Context, t *task, copyOf **local) (func() (io.ReadCloser, error), error) {
	if *copyOf == nil {
		l, err := e.fetchLocal(ctx, t)
		if err != nil {
			return nil, err
		}
		*copyOf = l
	}
	return (*copyOf).open, nil
}

// sendToAll reads the blob from the source once and sends it to each
// repository in uploads (one per registry). It returns a local copy when it
// made one, and an error per upload.
func (e *engine) sendToAll(ctx context.Context, t *task, uploads []name.Repository) (*local, []error) {
	errs := make([]error, len(uploads))
	var l *local
	var srcErr error
	if t.desc.Size <= e.cfg.memLimit {
		l, srcErr = e.fetchLocal(ctx, t)
		if srcErr == nil {
			var wg sync.WaitGroup
			for i, repo := range uploads {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = e.upload(ctx, repo, t, l.open, nil)
				}()
			}
			wg.Wait()
			return l, errs
		}
	} else {
		l, errs, srcErr = e.stream(ctx, t, uploads)
		// Destinations that failed mid-stream try again on their own, from
		// the spilled copy (or a new read when there is none).
		for i, repo := range uploads {
			if errs[i] == nil || srcErr != nil || !access.RetryUpload(errs[i]) {
				continue
			}
			open, err := e.opener(ctx, t, &l)
			if err != nil {
				errs[i] = err
				continue
			}
			errs[i] = e.upload(ctx, repo, t, open, errs[i])
		}
	}
	if srcErr != nil {
		for i := range errs {
			errs[i] = srcErr
		}
	}
	return l, errs
}

// upload sends the blob to repo in a new upload session, starting again
// after transient failures (the transport does not replay upload sessions).
// prev is the error of an earlier attempt, if any.
func (e *engine) upload(ctx context.Context, repo name.Repository, t *task, open func() (io.ReadCloser, error), prev error) error {
	b := e.reg.Backoff()
	steps := max(1, min(b.Steps, 3))
	delay := b.Duration
	d := t.desc.Digest
	for attempt := 1; attempt <= steps; attempt++ {
		if prev != nil {
			if !access.RetryUpload(prev) {
				return prev
			}
			atomic.AddInt64(&e.stats.UploadRetries, 1)
			e.cfg.logger.Warn("uploading again", "blob", d.String(), "repository", repo.String(), "error", prev)
			if err := sleep(ctx, delay); err != nil {
				return err
			}
			delay = time.Duration(float64(delay) * b.Factor)
		}
		prev = e.uploadOnce(ctx, repo, t, open)
		if prev == nil {
			return nil
		}
	}
	return prev
}

func (e *engine) uploadOnce(ctx context.Context, repo name.Repository, t *task, open func() (io.ReadCloser, error)) error {
	d := t.desc.Digest
	ref := repo.Digest(d.String()).String()
	mounted, loc, err := e.reg.StartUpload(ctx, repo, d, nil)
	if err != nil {
		return &Error{Side: SideDestination, Ref: ref, Err: err}
	}
	if mounted {
		atomic.AddInt64(&e.stats.Mounts, 1)
		return nil
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := e.reg.FinishUpload(ctx, repo, loc, d, rc, t.desc.Size); err != nil {
		var se *sourceError
		if errors.As(err, &se) {
			return se.err
		}
		return &Error{Side: SideDestination, Ref: ref, Err: err}
	}
	atomic.AddInt64(&e.stats.Uploads, 1)
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// fetchLocal reads the whole blob from the source, verified, into memory or
// (when large) a temporary file, retrying transient failures.
func (e *engine) fetchLocal(ctx context.Context, t *task) (*local, error) {
	b := e.reg.Backoff()
	delay := b.Duration
	var err error
	for attempt := 1; attempt <= max(1, min(b.Steps, 3)); attempt++ {
		if attempt > 1 {
			if serr := sleep(ctx, delay); serr != nil {
				return nil, serr
			}
			delay = time.Duration(float64(delay) * b.Factor)
		}
		var l *local
		l, err = e.fetchOnce(ctx, t)
		if err == nil {
			return l, nil
		}
		if !access.RetryUpload(errors.Unwrap(err)) {
			return nil, err
		}
	}
	return nil, err
}

func (e *engine) fetchOnce(ctx context.Context, t *task) (*local, error) {
	d := t.desc.Digest
	ctx, release, err := e.reg.Acquire(ctx, t.source.RegistryStr())
	if err != nil {
		return nil, err
	}
	defer release()
	rc, err := e.reg.GetBlob(ctx, t.source, d)
	if err != nil {
		return nil, &Error{Side: SideSource, Ref: t.source.Digest(d.String()).String(), Err: err}
	}
	defer rc.Close()
	atomic.AddInt64(&e.stats.SourceBlobReads, 1)
	h := sha256.New()
	l := &local{}
	var w io.Writer
	var f *os.File
	var buf bytes.Buffer
	if t.desc.Size > e.cfg.memLimit {
		if f, err = tempFile(e.cfg.tempDir); err != nil {
			return nil, err
		}
		defer f.Close()
		l.file = f.Name()
		w = io.MultiWriter(h, f)
	} else {
		buf.Grow(int(t.desc.Size))
		w = io.MultiWriter(h, &buf)
	}
	n, err := io.Copy(w, io.LimitReader(rc, t.desc.Size+1))
	atomic.AddInt64(&e.stats.SourceBytes, n)
	if err == nil {
		err = verify(d, t.desc.Size, n, h.Sum(nil))
	}
	if err != nil {
		l.close()
		return nil, &Error{Side: SideSource, Ref: t.source.Digest(d.String()).String(), Err: err}
	}
	l.data = buf.Bytes()
	return l, nil
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

// sourceError marks a failure to read the source while streaming into an
// upload, so that the upload's error is attributed to the source.
type sourceError struct{ err error }

func (s *sourceError) Error() string { return s.err.Error() }
func (s *sourceError) Unwrap() error { return s.err }

// stream reads a large blob once and writes it to every upload at the same
// time (bounded memory: one buffer), spilling a copy to a temporary file
// when there is more than one destination, so that a destination that fails
// can be retried without reading the source again.
func (e *engine) stream(ctx context.Context, t *task, uploads []name.Repository) (*local, []error, error) {
	d := t.desc.Digest
	errs := make([]error, len(uploads))
	hosts := []string{t.source.RegistryStr()}
	for _, u := range uploads {
		hosts = append(hosts, u.RegistryStr())
	}
	ctx, release, err := e.reg.Acquire(ctx, hosts...)
	if err != nil {
		return nil, errs, err
	}
	defer release()
	srcRef := t.source.Digest(d.String()).String()
	rc, err := e.reg.GetBlob(ctx, t.source, d)
	if err != nil {
		return nil, errs, &Error{Side: SideSource, Ref: srcRef, Err: err}
	}
	defer rc.Close()
	atomic.AddInt64(&e.stats.SourceBlobReads, 1)

	var l *local
	var f *os.File
	if len(uploads) > 1 {
		if f, err = tempFile(e.cfg.tempDir); err == nil {
			defer f.Close()
			l = &local{file: f.Name()}
		} else {
			e.cfg.logger.Warn("cannot spill blob to a temporary file; a failed destination will read the source again", "error", err)
		}
	}
	pws := make([]*io.PipeWriter, len(uploads))
	var wg sync.WaitGroup
	for i, repo := range uploads {
		pr, pw := io.Pipe()
		pws[i] = pw
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.uploadOnce(ctx, repo, t, func() (io.ReadCloser, error) { return pr, nil })
			if errs[i] != nil {
				pr.CloseWithError(errs[i]) // unblocks the writer
			} else {
				pr.Close()
			}
		}()
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var total int64
	dead := make([]bool, len(uploads))
	var srcErr error
	for {
		n, rerr := rc.Read(buf)
		if int64(n) > t.desc.Size-total {
			srcErr = fmt.Errorf("blob is larger than its descriptor says (%d bytes)", t.desc.Size)
			break
		}
		if n > 0 {
			total += int64(n)
			chunk := buf[:n]
			h.Write(chunk)
			if f != nil {
				if _, werr := f.Write(chunk); werr != nil {
					e.cfg.logger.Warn("spill file write failed", "error", werr)
					f.Close()
					os.Remove(l.file)
					f, l = nil, nil
				}
			}
			for i, pw := range pws {
				if !dead[i] {
					if _, werr := pw.Write(chunk); werr != nil {
						dead[i] = true
					}
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			srcErr = rerr
			break
		}
	}
	atomic.AddInt64(&e.stats.SourceBytes, total)
	if srcErr == nil {
		srcErr = verify(d, t.desc.Size, total, h.Sum(nil))
	}
	for _, pw := range pws {
		if srcErr != nil {
			pw.CloseWithError(&sourceError{srcErr})
		} else {
			pw.Close()
		}
	}
	wg.Wait()
	if srcErr != nil {
		l.close()
		return nil, errs, &Error{Side: SideSource, Ref: srcRef, Err: srcErr}
	}
	return l, errs, nil
}
