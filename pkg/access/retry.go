package access

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// retryTransport is the request half of the one layer that retries registry
// requests: transient status codes (regerr.TemporaryStatus) and transient
// network errors, with jittered exponential backoff, honouring Retry-After,
// and waiting in a way that context cancellation interrupts at once.
//
// Requests inside a blob upload session (PATCH, and PUT to the session) are
// not retried here: replaying them against a session that already received
// part of the blob is rejected by registries. The other half of the layer,
// Client.retryUpload, starts the whole upload again instead (a new session,
// the content sent again from its beginning), on the same schedule. Errors
// already retried here are marked (exhaustedError) so that it never retries
// them again.
type retryTransport struct {
	next         http.RoundTripper
	backoff      remote.Backoff
	maxRetryWait time.Duration
	log          *slog.Logger
	obs          Observer
}

// exhaustedError marks an error this layer has already retried.
type exhaustedError struct{ err error }

func (e *exhaustedError) Error() string { return e.err.Error() }
func (e *exhaustedError) Unwrap() error { return e.err }

// isTransient reports whether a network-level error is worth retrying.
func isTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// temporary marks a transient network error as regerr.ErrTemporary.
func temporary(err error) error {
	if isTransient(err) {
		return regerr.Temporary(err)
	}
	return err
}

// restartable reports whether a failed blob upload is worth starting again
// in a new session: a transient failure inside an upload session, which
// retryTransport does not replay. Errors it already retried are not.
func restartable(err error) bool {
	var ex *exhaustedError
	if errors.As(err, &ex) {
		return false
	}
	if s := regerr.Status(err); s != 0 {
		return regerr.TemporaryStatus(s)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return regerr.TemporaryStatus(te.StatusCode)
	}
	return isTransient(err)
}

// contentReader remembers whether reading the content of an upload failed:
// such a failure is the content's, not the registry's, and is not retried.
type contentReader struct {
	r   io.Reader
	err error
}

func (c *contentReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// retryUpload runs upload (one whole upload: a session and its PUT) with
// body reading content, and runs it again from the start of content after
// a transient failure, on the client's retry schedule, when content can
// seek. Content that cannot seek is sent once.
func (c *Client) retryUpload(ctx context.Context, repo name.Repository, d v1.Hash, content io.Reader, upload func(body io.Reader) error) error {
	seeker, canSeek := content.(io.Seeker)
	b := c.o.backoff
	for attempt := 1; ; attempt++ {
		body := &contentReader{r: content}
		err := upload(body)
		if err == nil || body.err != nil || !canSeek || attempt >= b.Steps || !restartable(err) {
			return err
		}
		wait := retryWait(b, c.o.maxWait, attempt, regerr.Status(err), nil)
		c.o.observer.Retry(repo.RegistryStr())
		c.o.logger.Warn("uploading again", "blob", d.String(), "repository", repo.String(), "attempt", attempt, "error", err, "wait", wait.Round(time.Millisecond))
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		if _, err := seeker.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
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

// inUploadSession reports whether a request continues an upload session.
func inUploadSession(req *http.Request) bool {
	if req.Method != http.MethodPatch && req.Method != http.MethodPut {
		return false
	}
	_, rest, ok := strings.Cut(req.URL.Path, "/blobs/uploads/")
	return ok && rest != ""
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	replayable := (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil) && !inUploadSession(req)
	for attempt := 1; ; attempt++ {
		resp, err := t.next.RoundTrip(req)
		transient := isTransient(err) || (err == nil && regerr.TemporaryStatus(resp.StatusCode))
		if !transient || !replayable {
			return resp, err
		}
		if attempt >= t.backoff.Steps {
			if err != nil {
				return nil, &exhaustedError{fmt.Errorf("after %d attempts: %w", attempt, err)}
			}
			// The registry's typed error (code, status), marked as retried.
			terr := registryError(transport.CheckError(resp))
			resp.Body.Close()
			return nil, &exhaustedError{terr}
		}
		status, header := 0, http.Header(nil)
		if resp != nil {
			status, header = resp.StatusCode, resp.Header
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		wait := retryWait(t.backoff, t.maxRetryWait, attempt, status, header)
		if t.obs != nil {
			t.obs.Retry(req.URL.Host)
		}
		t.log.Warn("retrying registry request", "method", req.Method, "host", req.URL.Host, "path", req.URL.Path,
			"attempt", attempt, "status", status, "error", errString(err), "wait", wait.Round(time.Millisecond))
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, gerr
			}
			req = req.Clone(ctx)
			req.Body = body
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func jitter(d time.Duration, factor float64) time.Duration {
	if factor <= 0 {
		return d
	}
	return d + time.Duration(rand.Float64()*factor*float64(d))
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// rateLimitedWait is the first wait after a 429 without Retry-After. It is
// short because the host limiter slows the whole host down by itself (see
// limiter); a long per-request wait on top made one answer in ten being a
// 429 cost a run many times its time.
const rateLimitedWait = 100 * time.Millisecond

// retryWait is how long to wait after the attempt-th failure before the
// next attempt: jittered exponential backoff on the schedule b; after a
// 429, the answer's Retry-After when it has one (capped by maxWait: the
// registry said when to come back, and the host waits that long too), and
// otherwise a backoff that starts at rateLimitedWait. Any other answer's
// Retry-After lengthens the wait, capped by maxWait.
func retryWait(b remote.Backoff, maxWait time.Duration, attempt, status int, h http.Header) time.Duration {
	base := b.Duration
	if status == http.StatusTooManyRequests {
		base = min(base, rateLimitedWait)
	}
	wait := jitter(time.Duration(float64(base)*math.Pow(b.Factor, float64(attempt-1))), b.Jitter)
	if ra, ok := retryAfter(h.Get("Retry-After"), time.Now()); ok {
		ra = min(ra, maxWait)
		if status == http.StatusTooManyRequests {
			return ra
		}
		wait = max(wait, ra)
	}
	return wait
}
