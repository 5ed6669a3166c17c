package access

import (
	"context"
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

// Rate adaptation after a 429 answer (see limiter).
const (
	// recoverFactor multiplies a slowed host's rate after each success.
	recoverFactor = 1.25
	// unlimitedAbove is the rate above which a host without a configured
	// rate is unlimited again.
	unlimitedAbove = 1000
	// minRate is the lowest rate a 429 can bring a host down to.
	minRate = 0.5
)

// limiter enforces HostLimits per host. It sits below the retry layer, so
// every attempt waits its turn. A 429 answer slows that host down (only
// that host): when the answer carries Retry-After, no new request starts
// before that time (capped by the client's longest retry wait); without
// one, the host's rate is halved (from unlimited: half the rate of its
// latest requests), and every success then raises it by a quarter until it is back
// to the configured one. A single 429 costs its Retry-After or a fraction
// of a second, not the rest of the run.
type limiter struct {
	next    http.RoundTripper
	limits  HostLimits
	maxWait time.Duration
	mu      sync.Mutex
	hosts   map[string]*hostLimit
}

type hostLimit struct {
	sem  chan struct{}
	rate *rate.Limiter
	base rate.Limit

	mu          sync.Mutex
	slowed      bool      // rate below base after a 429
	pausedUntil time.Time // Retry-After of the last 429
	starts      [observedRequests]time.Time
	next        int // in starts: where the next start is written
	started     int // requests started, up to observedRequests
}

// observedRequests is how many of a host's latest requests measure the
// rate it was being asked at when it answered 429.
const observedRequests = 64

// observe records a request start.
func (hl *hostLimit) observe(t time.Time) {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	hl.starts[hl.next] = t
	hl.next = (hl.next + 1) % observedRequests
	hl.started = min(hl.started+1, observedRequests)
}

// observedRate is the rate of the latest requests, per second (hl.mu
// held); 0 when there were too few to say.
func (hl *hostLimit) observedRate(now time.Time) rate.Limit {
	if hl.started < 2 {
		return 0
	}
	oldest := hl.starts[(hl.next-hl.started+observedRequests)%observedRequests]
	span := now.Sub(oldest).Seconds()
	if span <= 0 {
		return 0
	}
	return rate.Limit(float64(hl.started) / span)
}

func newLimiter(next http.RoundTripper, l HostLimits, maxWait time.Duration) *limiter {
	if l.Concurrency < 1 {
		l.Concurrency = 1
	}
	return &limiter{next: next, limits: l, maxWait: maxWait, hosts: map[string]*hostLimit{}}
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

// reservation is a concurrency slot and rate tokens taken ahead for the
// requests made with a context (see Client.Reserve).
type reservation struct {
	host string
}

type reservationKey struct{}

// wait blocks until a request may start on the host: after any Retry-After
// pause, and with a rate token for each of n requests.
func (hl *hostLimit) wait(ctx context.Context, n int) error {
	for {
		hl.mu.Lock()
		until := hl.pausedUntil
		hl.mu.Unlock()
		d := time.Until(until)
		if d <= 0 {
			break
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
	for range n {
		if err := hl.rate.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (hl *hostLimit) acquire(ctx context.Context) error {
	select {
	case hl.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (hl *hostLimit) release() { <-hl.sem }

// reserve takes a concurrency slot and n rate tokens on host for the
// requests made with the returned context, which then wait for neither:
// they are sent back to back. done gives the slot back.
func (l *limiter) reserve(ctx context.Context, host string, n int) (context.Context, func(), error) {
	hl := l.host(host)
	if err := hl.acquire(ctx); err != nil {
		return ctx, func() {}, err
	}
	if err := hl.wait(ctx, n); err != nil {
		hl.release()
		return ctx, func() {}, err
	}
	var once sync.Once
	return context.WithValue(ctx, reservationKey{}, &reservation{host: host}), func() { once.Do(hl.release) }, nil
}

func (l *limiter) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	hl := l.host(req.URL.Host)
	if r, ok := ctx.Value(reservationKey{}).(*reservation); !ok || r.host != req.URL.Host {
		if err := hl.wait(ctx, 1); err != nil {
			return nil, err
		}
		if err := hl.acquire(ctx); err != nil {
			return nil, err
		}
		defer hl.release()
	}
	hl.observe(time.Now())
	resp, err := l.next.RoundTrip(req)
	if err == nil {
		if resp.StatusCode == http.StatusTooManyRequests {
			l.slowDown(hl, resp.Header.Get("Retry-After"))
		} else if resp.StatusCode < 500 {
			l.speedUp(hl)
		}
	}
	return resp, err
}

// slowDown pauses the host for a 429's Retry-After (capped), or, when the
// answer has none, halves its rate.
func (l *limiter) slowDown(hl *hostLimit, retryAfterHeader string) {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if ra, ok := retryAfter(retryAfterHeader, time.Now()); ok {
		// The registry said when to come back: the whole host waits
		// until then, and that is the slowdown.
		if until := time.Now().Add(min(ra, l.maxWait)); until.After(hl.pausedUntil) {
			hl.pausedUntil = until
		}
		return
	}
	cur := hl.rate.Limit()
	if cur == rate.Inf {
		// Unlimited: halve the rate the host was being asked at, or
		// start from its concurrency per second when that is unknown.
		cur = hl.observedRate(time.Now())
		if cur == 0 {
			cur = rate.Limit(2 * l.limits.Concurrency)
		}
	}
	next := cur / 2
	next = max(next, minRate)
	hl.rate.SetLimit(next)
	hl.rate.SetBurst(max(1, int(next)))
	hl.slowed = true
}

// speedUp raises a slowed host's rate after a success, back to the
// configured rate at most.
func (l *limiter) speedUp(hl *hostLimit) {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if !hl.slowed {
		return
	}
	next := hl.rate.Limit() * recoverFactor
	if next >= hl.base || (hl.base == rate.Inf && next > unlimitedAbove) {
		next = hl.base
		hl.slowed = false
	}
	hl.rate.SetLimit(next)
	if next == rate.Inf {
		hl.rate.SetBurst(0)
	} else {
		hl.rate.SetBurst(max(1, int(next)))
	}
}

// currentRate is the host's rate now (for tests).
func (l *limiter) currentRate(host string) rate.Limit {
	return l.host(host).rate.Limit()
}
