package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// NetProfile is what the network between the tools and a registry costs:
// added round-trip latency per request and a bandwidth cap per registry
// link. The zero value is loopback: nothing added.
type NetProfile struct {
	// RTT is added once to every request, before it is forwarded: the
	// round trip of a request and its answer over a kept-alive connection.
	RTT time.Duration
	// BytesPerSec caps the body bytes of one registry's link in the
	// direction that matters (0: no cap): what staging sends (its egress)
	// and what a destination receives (its ingress), each registry
	// separately, shared by all the connections to it.
	BytesPerSec float64
}

// Active reports whether the profile adds anything.
func (p NetProfile) Active() bool { return p.RTT > 0 || p.BytesPerSec > 0 }

// String describes the profile for the results.
func (p NetProfile) String() string {
	if !p.Active() {
		return "loopback (no added latency, no bandwidth cap)"
	}
	bw := "no bandwidth cap"
	if p.BytesPerSec > 0 {
		bw = fmt.Sprintf("%.0f MiB/s per registry (staging egress, each destination's ingress)", p.BytesPerSec/mib)
	}
	return fmt.Sprintf("%v added per request, %s", p.RTT, bw)
}

// link is one registry's shared, capped link: a FIFO pipe whose virtual
// clock says when it is next free. Each chunk of bytes reserves its
// transmission time after the previous chunk's; the sender sleeps until its
// chunk has gone through.
type link struct {
	mu       sync.Mutex
	nextFree time.Time
}

// pass blocks until n bytes have gone through the link at rate bytes/s.
func (l *link) pass(ctx context.Context, n int, rate float64) error {
	if rate <= 0 || n <= 0 {
		return nil
	}
	d := time.Duration(float64(n) / rate * float64(time.Second))
	l.mu.Lock()
	now := time.Now()
	start := l.nextFree
	if start.Before(now) {
		start = now
	}
	l.nextFree = start.Add(d)
	until := l.nextFree
	l.mu.Unlock()
	wait := time.Until(until)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// chunk is the unit in which capped bodies are sent: small enough that
// concurrent transfers share the link fairly.
const chunk = 32 << 10

// shaper applies a NetProfile in a proxy. Its profile can be switched off
// for set-up runs that are not measured.
type shaper struct {
	profile atomic.Pointer[NetProfile]
	// egress says which direction is capped: response bodies (staging)
	// or request bodies (destinations).
	egress bool
	link   link
}

// current returns the profile in force.
func (s *shaper) current() NetProfile {
	if p := s.profile.Load(); p != nil {
		return *p
	}
	return NetProfile{}
}

// set changes the profile.
func (s *shaper) set(p NetProfile) { s.profile.Store(&p) }

// delay waits one round trip.
func (s *shaper) delay(ctx context.Context) {
	p := s.current()
	if p.RTT <= 0 {
		return
	}
	t := time.NewTimer(p.RTT)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// requestBody caps a request body (destination ingress).
func (s *shaper) requestBody(r *http.Request) {
	p := s.current()
	if s.egress || p.BytesPerSec <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	r.Body = &shapedReader{r: r.Body, ctx: r.Context(), link: &s.link, rate: p.BytesPerSec}
}

// responseWriter caps a response body (staging egress).
func (s *shaper) responseWriter(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	p := s.current()
	if !s.egress || p.BytesPerSec <= 0 {
		return w
	}
	return &shapedWriter{ResponseWriter: w, ctx: r.Context(), link: &s.link, rate: p.BytesPerSec}
}

// shapedReader passes what it reads through a link.
type shapedReader struct {
	r    io.ReadCloser
	ctx  context.Context
	link *link
	rate float64
}

// Read implements io.Reader.
func (s *shapedReader) Read(p []byte) (int, error) {
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := s.r.Read(p)
	if werr := s.link.pass(s.ctx, n, s.rate); werr != nil && err == nil {
		err = werr
	}
	return n, err
}

// Close implements io.Closer.
func (s *shapedReader) Close() error { return s.r.Close() }

// shapedWriter passes what it writes through a link.
type shapedWriter struct {
	http.ResponseWriter
	ctx  context.Context
	link *link
	rate float64
}

// Write implements io.Writer.
func (s *shapedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), chunk)
		if err := s.link.pass(s.ctx, n, s.rate); err != nil {
			return written, err
		}
		m, err := s.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (s *shapedWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush passes flushes on (the reverse proxy flushes as it copies).
func (s *shapedWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
