// Package access is how the promoter talks to registries: authentication,
// plain-HTTP hosts, retries (the one layer that retries), shared token and
// connection reuse, and per-host request counting for the run report.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// UserAgent is sent with every request.
const UserAgent = "imgpromoter"

// options holds every setting of a Client; defaults live in defaults().
type options struct {
	keychain authn.Keychain
	insecure []string
	backoff  remote.Backoff
	maxWait  time.Duration
	limits   HostLimits
	logger   *slog.Logger
	observer Observer
}

func defaults() options {
	return options{
		keychain: authn.DefaultKeychain,
		// Retries are done here and nowhere else (see retryTransport and
		// retryUpload), with jittered exponential backoff.
		backoff:  remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2.5, Jitter: 0.3, Steps: 5},
		maxWait:  60 * time.Second,
		limits:   HostLimits{Concurrency: 16},
		logger:   slog.New(slog.DiscardHandler),
		observer: nopObserver{},
	}
}

// Option configures a Client.
type Option func(*options)

// WithKeychain sets where credentials come from (default: the docker config
// and credential helpers, authn.DefaultKeychain). A keychain resolves
// credentials per registry, so they are only sent to the registry they belong
// to.
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithInsecureRegistries names hosts (host or host:port) that may be spoken
// to over plain HTTP. Loopback hosts (localhost, 127.0.0.0/8, ::1, with or
// without a port) always may.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *options) { o.insecure = append(o.insecure, hosts...) }
}

// WithRetryBackoff sets the retry schedule. Steps is the number of attempts.
func WithRetryBackoff(b remote.Backoff) Option { return func(o *options) { o.backoff = b } }

// WithMaxRetryWait caps how long a Retry-After answer can make a retry wait
// (default 60s).
func WithMaxRetryWait(d time.Duration) Option { return func(o *options) { o.maxWait = d } }

// WithHostLimits bounds the requests in flight to, and the request rate of,
// each registry host (default: 16 at once, no rate limit). A 429 answer
// slows that host down on its own.
func WithHostLimits(l HostLimits) Option { return func(o *options) { o.limits = l } }

// WithLogger sets the logger for retries and warnings.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Client reads and writes registries. It is safe for concurrent use and
// reuses credentials and connections across calls.
type Client struct {
	o       options
	counter *Counter
	lim     *limiter
	chain   http.RoundTripper // retry -> limiter -> counter -> transport
	regs    sync.Map          // registry host -> *regState
	auths   sync.Map          // registry|scopes -> authenticating RoundTripper
}

// New builds a client.
func New(opts ...Option) (*Client, error) {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	for _, h := range o.insecure {
		if _, err := name.NewRegistry(h, name.StrictValidation); err != nil {
			return nil, fmt.Errorf("insecure registry %q: %w", h, err)
		}
	}
	for i, h := range o.insecure {
		o.insecure[i] = strings.ToLower(h)
	}
	if o.backoff.Steps < 1 {
		o.backoff.Steps = 1
	}
	if o.limits.Concurrency < 1 {
		return nil, fmt.Errorf("per-host concurrency must be at least 1, got %d", o.limits.Concurrency)
	}
	if o.limits.Rate < 0 {
		return nil, fmt.Errorf("per-host rate must not be negative, got %g", o.limits.Rate)
	}
	c := &Client{o: o, counter: newCounter(remote.DefaultTransport, o.logger)}
	c.lim = newLimiter(c.counter, o.limits, o.maxWait)
	c.counter.obs = o.observer
	c.chain = &retryTransport{next: c.lim, backoff: o.backoff, maxRetryWait: o.maxWait, log: o.logger, obs: o.observer}
	return c, nil
}

// Counter returns the per-host request counts of everything this client did.
func (c *Client) Counter() *Counter { return c.counter }

// Repo applies the client's plain-HTTP settings to a repository name.
func (c *Client) Repo(r name.Repository) name.Repository {
	host := strings.ToLower(r.RegistryStr())
	if !isLoopback(host) && !slices.Contains(c.o.insecure, host) {
		return r
	}
	ir, err := name.NewRepository(r.Name(), name.Insecure, name.StrictValidation)
	if err != nil {
		return r
	}
	return ir
}

func (c *Client) ref(r name.Reference) name.Reference {
	repo := c.Repo(r.Context())
	switch v := r.(type) {
	case name.Digest:
		return repo.Digest(v.DigestStr())
	case name.Tag:
		return repo.Tag(v.TagStr())
	}
	return r
}

// isLoopback reports whether a registry host (with or without port) is on
// this machine: localhost, *.localhost, 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Reserve takes, on the registry host of repo, a concurrency slot and the
// rate tokens of n requests, and returns a context whose requests to that
// host then wait for neither: a tag's re-check and its write are sent back
// to back, with nothing queued between them (the window in which another
// writer could set the tag is one round trip). done gives the slot back;
// call it once those requests are finished.
func (c *Client) Reserve(ctx context.Context, repo name.Repository, n int) (_ context.Context, done func(), _ error) {
	return c.lim.reserve(ctx, c.Repo(repo).RegistryStr(), n)
}

// plainHTTP reports whether host (host or host:port) is spoken to over
// plain HTTP only: a loopback host or one named with
// WithInsecureRegistries.
func (c *Client) plainHTTP(host string) bool {
	host = strings.ToLower(host)
	return isLoopback(host) || slices.Contains(c.o.insecure, host)
}

// errNoTLS refuses an HTTPS request to a plain-HTTP host.
var errNoTLS = errors.New("plain-HTTP registry: no HTTPS attempted")

// plainOnly refuses HTTPS requests to plain-HTTP hosts before any
// connection is made. go-containerregistry's authentication handshake
// tries HTTPS first and falls back to HTTP for insecure registries; with
// this in front of it, no TLS handshake ever reaches such a host.
type plainOnly struct {
	c    *Client
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (p plainOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" && p.c.plainHTTP(req.URL.Host) {
		return nil, errNoTLS
	}
	return p.next.RoundTrip(req)
}
