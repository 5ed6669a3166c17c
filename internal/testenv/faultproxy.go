package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/regtest"
)

// Path patterns for FaultRule.Path, matching the distribution API routes.
const (
	// PathManifest matches manifest requests, by tag or digest.
	PathManifest = regtest.PathManifest
	// PathBlob matches blob requests by digest (not uploads).
	PathBlob = regtest.PathBlob
	// PathUpload matches blob upload requests: start, chunk and commit.
	PathUpload = regtest.PathUpload
	// PathTags matches tag listing requests.
	PathTags = regtest.PathTags
)

// Path classes counted in ProxyStats.ByClass.
const (
	// ClassBase is the API version check, /v2/.
	ClassBase = regtest.ClassBase
	// ClassCatalog is the repository listing, /v2/_catalog.
	ClassCatalog = regtest.ClassCatalog
	// ClassManifest is a manifest request, see PathManifest.
	ClassManifest = regtest.ClassManifest
	// ClassBlob is a blob request by digest, see PathBlob.
	ClassBlob = regtest.ClassBlob
	// ClassUpload is a blob upload request, see PathUpload.
	ClassUpload = regtest.ClassUpload
	// ClassTags is a tag listing, see PathTags.
	ClassTags = regtest.ClassTags
	// ClassReferrers is a referrers listing, /v2/<name>/referrers/<digest>.
	ClassReferrers = regtest.ClassReferrers
	// ClassOther is any other path.
	ClassOther = regtest.ClassOther
)

// FaultKind says how a FaultRule breaks a request.
type FaultKind int

const (
	// FaultStatus answers with FaultRule.Status and a registry-style JSON
	// error body, without contacting the upstream.
	FaultStatus FaultKind = iota
	// FaultDrop closes the connection without answering, as a crashed or
	// unreachable registry would.
	FaultDrop
	// FaultTruncate forwards the request but cuts the connection after
	// FaultRule.TruncateAfter bytes of the response body, as a registry
	// failing mid-transfer would. A body no longer than that passes whole.
	FaultTruncate
)

// FaultRule scripts a failure for some of the requests matching Method and
// Path. Each rule counts its matching requests from 1 and fires for the
// First through Last of them; a request that several rules fire for gets
// the first rule's fault.
type FaultRule struct {
	// Method matches the HTTP method; "" matches any.
	Method string
	// Path is a regular expression matched against the URL path, such as
	// PathBlob; "" matches any.
	Path string
	// First is the number of the first matching request to fail; 0 means 1.
	First int
	// Last is the number of the last matching request to fail; 0 means
	// First, math.MaxInt means every request from First on.
	Last int
	// Kind is the fault to inject.
	Kind FaultKind
	// Status is the status code FaultStatus answers with, e.g. 500 or 429.
	Status int
	// RetryAfter, when positive, sets a Retry-After header (whole seconds,
	// rounded up) on FaultStatus answers.
	RetryAfter time.Duration
	// TruncateAfter is how many body bytes FaultTruncate lets through.
	TruncateAfter int64
}

// ProxyStats is a snapshot of the requests a FaultProxy has received.
type ProxyStats struct {
	// Requests counts every request, faulted or forwarded.
	Requests int
	// ByMethod counts requests by HTTP method.
	ByMethod map[string]int
	// ByClass counts requests by "METHOD class", e.g. "GET blob" or
	// "PUT manifest", with classes as in the Class constants.
	ByClass map[string]int
	// BlobGETs counts GET requests for blobs.
	BlobGETs int
	// BlobGETsByDigest counts GET requests per blob digest.
	BlobGETsByDigest map[v1.Hash]int
	// Faults counts requests a rule fired for.
	Faults int
}

// FaultProxy is a reverse proxy in front of a registry that counts requests
// and injects scripted faults. It is safe for concurrent use.
type FaultProxy struct {
	host     string
	upstream *url.URL
	proxy    *httputil.ReverseProxy

	mu    sync.Mutex
	rules []*activeRule
	stats ProxyStats
}

// activeRule is a validated FaultRule with its match counter.
type activeRule struct {
	FaultRule
	path    *regexp.Regexp
	matched int
}

// errTruncated aborts a FaultTruncate response.
var errTruncated = errors.New("testenv: response truncated by fault rule")

// NewFaultProxy starts a proxy on 127.0.0.1 forwarding to the registry at
// upstreamHost ("host:port", plain HTTP) and applying rules in order. It is
// closed when the test ends.
func NewFaultProxy(t testing.TB, upstreamHost string, rules ...FaultRule) *FaultProxy {
	t.Helper()
	upstream, err := url.Parse("http://" + upstreamHost)
	if err != nil || upstream.Host != upstreamHost {
		t.Fatalf("testenv: fault proxy: bad upstream host %q", upstreamHost)
	}
	p := &FaultProxy{
		upstream: upstream,
		stats: ProxyStats{
			ByMethod:         map[string]int{},
			ByClass:          map[string]int{},
			BlobGETsByDigest: map[v1.Hash]int{},
		},
	}
	for i, r := range rules {
		ar, err := validateRule(r)
		if err != nil {
			t.Fatalf("testenv: fault proxy: rule %d: %v", i, err)
		}
		p.rules = append(p.rules, ar)
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(upstream) },
		ModifyResponse: p.rewriteLocation,
		// Flush every write so that truncated responses reach the client
		// exactly up to the cut.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "testenv fault proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	srv := httptest.NewUnstartedServer(p)
	// The host must be known before the first request so that Location
	// headers can be rewritten to it.
	p.host = srv.Listener.Addr().String()
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

// validateRule applies FaultRule's defaults and rejects impossible rules.
func validateRule(r FaultRule) (*activeRule, error) {
	ar := &activeRule{FaultRule: r}
	if r.Path != "" {
		re, err := regexp.Compile(r.Path)
		if err != nil {
			return nil, err
		}
		ar.path = re
	}
	if ar.First <= 0 {
		ar.First = 1
	}
	if ar.Last == 0 {
		ar.Last = ar.First
	}
	if ar.Last < ar.First {
		return nil, fmt.Errorf("Last %d before First %d", ar.Last, ar.First)
	}
	switch ar.Kind {
	case FaultStatus:
		if ar.Status < 100 || ar.Status > 999 {
			return nil, fmt.Errorf("FaultStatus needs a Status, got %d", ar.Status)
		}
	case FaultDrop, FaultTruncate:
	default:
		return nil, fmt.Errorf("unknown FaultKind %d", ar.Kind)
	}
	return ar, nil
}

// Host returns the proxy's address, "127.0.0.1:PORT", to use in place of
// the upstream's in references.
func (p *FaultProxy) Host() string {
	return p.host
}

// Stats returns a snapshot of the request counters.
func (p *FaultProxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.ByMethod = maps.Clone(s.ByMethod)
	s.ByClass = maps.Clone(s.ByClass)
	s.BlobGETsByDigest = maps.Clone(s.BlobGETsByDigest)
	return s
}

// ServeHTTP counts the request, then injects a fault or forwards it.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	class := regtest.Classify(r.URL.Path)
	rule := p.record(r, class)
	if rule == nil {
		p.proxy.ServeHTTP(w, r)
		return
	}
	switch rule.Kind {
	case FaultStatus:
		writeRegistryError(w, r, class, rule.Status, rule.RetryAfter)
	case FaultDrop:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			// Not hijackable (HTTP/2): aborting still resets the stream.
			panic(http.ErrAbortHandler)
		}
		conn.Close()
	case FaultTruncate:
		// ReverseProxy aborts the connection when a body write fails.
		p.proxy.ServeHTTP(&truncatingWriter{ResponseWriter: w, remaining: rule.TruncateAfter}, r)
	}
}

// record updates the counters and returns the rule firing for r, if any.
func (p *FaultProxy) record(r *http.Request, class string) *activeRule {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	p.stats.ByMethod[r.Method]++
	p.stats.ByClass[r.Method+" "+class]++
	if class == ClassBlob && r.Method == http.MethodGet {
		p.stats.BlobGETs++
		if d, ok := regtest.BlobDigest(r.URL.Path); ok {
			if h, err := v1.NewHash(d); err == nil {
				p.stats.BlobGETsByDigest[h]++
			}
		}
	}
	var firing *activeRule
	for _, rule := range p.rules {
		if rule.Method != "" && rule.Method != r.Method {
			continue
		}
		if rule.path != nil && !rule.path.MatchString(r.URL.Path) {
			continue
		}
		rule.matched++
		if firing == nil && rule.matched >= rule.First && rule.matched <= rule.Last {
			firing = rule
		}
	}
	if firing != nil {
		p.stats.Faults++
	}
	return firing
}

// rewriteLocation keeps clients on the proxy for the rest of an upload;
// see regtest.RewriteLocation.
func (p *FaultProxy) rewriteLocation(resp *http.Response) error {
	return regtest.RewriteLocation(resp, p.upstream.Host, p.host)
}

// writeRegistryError answers like a registry would, with an error code the
// client's error handling can key on.
func writeRegistryError(w http.ResponseWriter, r *http.Request, class string, status int, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	body := map[string]any{"errors": []map[string]string{{
		"code":    errorCode(status, class),
		"message": "fault injected by testenv",
	}}}
	_ = json.NewEncoder(w).Encode(body)
}

// errorCode maps a status to the distribution-spec error code a registry
// would most likely send with it.
func errorCode(status int, class string) string {
	switch status {
	case http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case http.StatusForbidden:
		return "DENIED"
	case http.StatusNotFound:
		switch class {
		case ClassManifest:
			return "MANIFEST_UNKNOWN"
		case ClassBlob:
			return "BLOB_UNKNOWN"
		case ClassUpload:
			return "BLOB_UPLOAD_UNKNOWN"
		}
		return "NAME_UNKNOWN"
	case http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return "UNKNOWN"
}

// truncatingWriter lets remaining body bytes through, flushes them to the
// client and then fails, which makes ReverseProxy abort the connection.
type truncatingWriter struct {
	http.ResponseWriter
	remaining int64
}

// Write passes p on up to the truncation point.
func (w *truncatingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= w.remaining {
		n, err := w.ResponseWriter.Write(p)
		w.remaining -= int64(n)
		return n, err
	}
	n, _ := w.ResponseWriter.Write(p[:w.remaining])
	w.remaining = 0
	_ = http.NewResponseController(w.ResponseWriter).Flush()
	return n, errTruncated
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *truncatingWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}
