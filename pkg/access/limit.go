package access

import (
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// HostLimits bounds what one registry host is asked at once and per second.
type HostLimits struct {
	// Concurrency is the number of requests in flight to one host.
	Concurrency int
	// Rate is requests per second to one host; 0 means unlimited.
	Rate float64
}

// limiter enforces HostLimits per host. It sits below the retry layer, so
// every attempt waits its turn; a 429 answer halves that host's rate (only
// that host's) for a while, then the rate recovers.
type limiter struct {
	next   http.RoundTripper
	limits HostLimits
	mu     sync.Mutex
	hosts  map[string]*hostLimit
}

type hostLimit struct {
	sem     chan struct{}
	rate    *rate.Limiter
	base    rate.Limit
	slowed  time.Time // last 429
	restore *time.Timer
}

func newLimiter(next http.RoundTripper, l HostLimits) *limiter {
	if l.Concurrency < 1 {
		l.Concurrency = 1
	}
	return &limiter{next: next, limits: l, hosts: map[string]*hostLimit{}}
}

func (l *limiter) host(h string) *hostLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	hl, ok := l.hosts[h]
	if !ok {
		base := rate.Inf
		burst := 0
		if l.limits.Rate > 0 {
			base = rate.Limit(l.limits.Rate)
			burst = max(1, int(l.limits.Rate))
		}
		hl = &hostLimit{sem: make(chan struct{}, l.limits.Concurrency), rate: rate.NewLimiter(base, burst), base: base}
		l.hosts[h] = hl
	}
	return hl
}

func (l *limiter) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	hl := l.host(req.URL.Host)
	if err := hl.rate.Wait(ctx); err != nil {
		return nil, err
	}
	select {
	case hl.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-hl.sem }()
	resp, err := l.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		l.slowDown(hl)
	}
	return resp, err
}

// slowDown halves the host's rate (from unlimited: to its concurrency per
// second) and restores the configured rate after a quiet minute.
func (l *limiter) slowDown(hl *hostLimit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := hl.rate.Limit()
	next := cur / 2
	if cur == rate.Inf {
		next = rate.Limit(l.limits.Concurrency)
	}
	next = max(next, 0.5)
	hl.rate.SetLimit(next)
	hl.rate.SetBurst(max(1, int(next)))
	hl.slowed = time.Now()
	if hl.restore != nil {
		hl.restore.Stop()
	}
	hl.restore = time.AfterFunc(time.Minute, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if time.Since(hl.slowed) >= time.Minute {
			hl.rate.SetLimit(hl.base)
			if hl.base != rate.Inf {
				hl.rate.SetBurst(max(1, int(hl.base)))
			}
		}
	})
}
