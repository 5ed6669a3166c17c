package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
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
	// FaultCorrupt forwards the request but flips the response body's
	// byte at FaultRule.Offset, as a broken disk or a hostile registry
	// would: the answer looks whole, with the wrong content.
	FaultCorrupt
	// FaultRedirect answers with a redirect (FaultRule.Status, 307 by
	// default) to the same path and query on FaultRule.RedirectTo, as
	// registries keeping blobs in object storage do.
	FaultRedirect
	// FaultLinkLoop forwards the request and adds a Link header naming
	// the page just read as the next one: a pagination loop.
	FaultLinkLoop
	// FaultLinkEndless forwards the request and adds a Link header to a
	// next page whose URL is new each time (a counter in the query): a
	// pagination that never ends and never repeats a URL.
	FaultLinkEndless
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
	// Every makes the rule fire only for every Every-th request from First
	// to Last (First, First+Every, ...): 10 fails one answer in ten. 0 and
	// 1 fire for each.
	Every int
	// Offset is the body byte FaultCorrupt flips.
	Offset int64
	// RedirectTo is the "host:port" FaultRedirect sends clients to, e.g.
	// a BlobHost's.
	RedirectTo string
}

// ProxyConfig configures NewFaultProxyWith.
type ProxyConfig struct {
	// Rules are the scripted faults, applied in order.
	Rules []FaultRule
	// BasicAuth makes the proxy demand TestUsername and TestPassword on
	// every request (401 with a Basic challenge otherwise), so that an
	// unauthenticated upstream behaves like a registry with credentials.
	BasicAuth bool
}

// RequestRecord is one request a FaultProxy received, with when it came
// and when its answer was complete.
type RequestRecord struct {
	// Method and Path are the request's.
	Method, Path string
	// Class is the route class, as in the Class constants.
	Class string
	// Start is when the request arrived, End when the proxy was done
	// answering it.
	Start, End time.Time
	// Status is the answer's status code (0 when the connection was
	// dropped before one).
	Status int
	// Faulted is true when a rule fired for the request.
	Faulted bool
	// Range is the request's Range header, if any.
	Range string
	// Authorized is true when the request carried an Authorization
	// header.
	Authorized bool
}

// UploadRecord is one blob upload request (PATCH or PUT in a session) as
// the proxy received it.
type UploadRecord struct {
	// Method is PATCH or PUT.
	Method string
	// Session is the upload session's URL path: the requests of one
	// upload share it.
	Session string
	// Digest is the digest query parameter (on the final PUT), as sent.
	Digest string
	// Body holds the bytes received.
	Body []byte
	// Complete is true when the whole body arrived: read to its end, as
	// long as its Content-Length said. An upload the client aborted is
	// not complete.
	Complete bool
	// Status is the upstream's answer (0 when there was none).
	Status int
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
	// TLSAttempts counts connections that opened with a TLS handshake on
	// this plain-HTTP port: a client trying HTTPS first.
	TLSAttempts int
	// AuthChallenges counts requests answered 401 because they carried
	// no valid credentials (ProxyConfig.BasicAuth).
	AuthChallenges int
}

// FaultProxy is a reverse proxy in front of a registry that counts requests
// and injects scripted faults. It is safe for concurrent use.
type FaultProxy struct {
	host      string
	upstream  *url.URL
	proxy     *httputil.ReverseProxy
	basicAuth bool

	mu      sync.Mutex
	rules   []*activeRule
	stats   ProxyStats
	log     []RequestRecord
	uploads []UploadRecord
	pages   int // FaultLinkEndless's counter
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
	return NewFaultProxyWith(t, upstreamHost, ProxyConfig{Rules: rules})
}

// NewFaultProxyWith is NewFaultProxy with the options of cfg.
func NewFaultProxyWith(t testing.TB, upstreamHost string, cfg ProxyConfig) *FaultProxy {
	t.Helper()
	rules := cfg.Rules
	upstream, err := url.Parse("http://" + upstreamHost)
	if err != nil || upstream.Host != upstreamHost {
		t.Fatalf("testenv: fault proxy: bad upstream host %q", upstreamHost)
	}
	p := &FaultProxy{
		upstream:  upstream,
		basicAuth: cfg.BasicAuth,
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
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			// The upstream needs no credentials: the proxy checked them.
			pr.Out.Header.Del("Authorization")
		},
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
	srv.Listener = &tlsSpottingListener{Listener: srv.Listener, spotted: func() {
		p.mu.Lock()
		p.stats.TLSAttempts++
		p.mu.Unlock()
	}}
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
	if ar.Every < 0 {
		return nil, fmt.Errorf("negative Every %d", ar.Every)
	}
	switch ar.Kind {
	case FaultStatus:
		if ar.Status < 100 || ar.Status > 999 {
			return nil, fmt.Errorf("FaultStatus needs a Status, got %d", ar.Status)
		}
	case FaultRedirect:
		if ar.Status == 0 {
			ar.Status = http.StatusTemporaryRedirect
		}
		if ar.Status < 300 || ar.Status > 399 || ar.RedirectTo == "" {
			return nil, fmt.Errorf("FaultRedirect needs a 3xx Status and RedirectTo, got %d and %q", ar.Status, ar.RedirectTo)
		}
	case FaultDrop, FaultTruncate, FaultCorrupt, FaultLinkLoop, FaultLinkEndless:
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

// Log returns every request received so far, in order of arrival.
func (p *FaultProxy) Log() []RequestRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]RequestRecord(nil), p.log...)
}

// Uploads returns every blob upload request (PATCH and PUT in a session)
// received so far, with the bytes each brought.
func (p *FaultProxy) Uploads() []UploadRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]UploadRecord(nil), p.uploads...)
}

// ServeHTTP counts the request, then injects a fault or forwards it.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := RequestRecord{Method: r.Method, Path: r.URL.Path, Class: regtest.Classify(r.URL.Path), Start: time.Now(),
		Range: r.Header.Get("Range"), Authorized: r.Header.Get("Authorization") != ""}
	sw := &statusWriter{ResponseWriter: w}
	var upload *recordingBody
	if rec.Class == ClassUpload && (r.Method == http.MethodPut || r.Method == http.MethodPatch) && r.Body != nil {
		upload = &recordingBody{ReadCloser: r.Body, want: r.ContentLength}
		r.Body = upload
	}
	defer func() {
		rec.End, rec.Status = time.Now(), sw.status
		p.mu.Lock()
		defer p.mu.Unlock()
		p.log = append(p.log, rec)
		if upload != nil {
			p.uploads = append(p.uploads, UploadRecord{
				Method: r.Method, Session: r.URL.Path, Digest: r.URL.Query().Get("digest"), Body: upload.buf.Bytes(),
				Complete: upload.complete(), Status: sw.status,
			})
		}
	}()
	if p.basicAuth && !checkBasicAuth(r) {
		p.mu.Lock()
		p.stats.Requests++
		p.stats.AuthChallenges++
		p.mu.Unlock()
		sw.Header().Set("WWW-Authenticate", `Basic realm="promoter-test"`)
		writeRegistryError(sw, r, rec.Class, http.StatusUnauthorized, 0)
		return
	}
	rule := p.record(r, rec.Class)
	rec.Faulted = rule != nil
	p.serve(sw, r, rec.Class, rule)
}

// serve answers r, applying rule when it is not nil.
func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request, class string, rule *activeRule) {
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
	case FaultCorrupt:
		p.proxy.ServeHTTP(&corruptingWriter{ResponseWriter: w, at: rule.Offset}, r)
	case FaultRedirect:
		w.Header().Set("Location", "http://"+rule.RedirectTo+r.URL.RequestURI())
		w.WriteHeader(rule.Status)
	case FaultLinkLoop:
		p.proxy.ServeHTTP(&linkWriter{ResponseWriter: w, next: r.URL.RequestURI()}, r)
	case FaultLinkEndless:
		p.mu.Lock()
		p.pages++
		next := r.URL.Path + "?n=1000&page=" + strconv.Itoa(p.pages)
		p.mu.Unlock()
		p.proxy.ServeHTTP(&linkWriter{ResponseWriter: w, next: next}, r)
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
		if firing == nil && rule.matched >= rule.First && rule.matched <= rule.Last &&
			(rule.Every <= 1 || (rule.matched-rule.First)%rule.Every == 0) {
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

// corruptingWriter passes the body on with the byte at offset at flipped.
type corruptingWriter struct {
	http.ResponseWriter
	at      int64
	written int64
}

// Write passes p on, flipping the chosen byte if it is in p.
func (w *corruptingWriter) Write(p []byte) (int, error) {
	if i := w.at - w.written; i >= 0 && i < int64(len(p)) {
		p = bytes.Clone(p)
		p[i] ^= 0xff
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *corruptingWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

// linkWriter adds a Link rel="next" header to the answer.
type linkWriter struct {
	http.ResponseWriter
	next string
}

// WriteHeader sets the Link header (after the proxy copied the upstream's
// headers) and the status.
func (w *linkWriter) WriteHeader(code int) {
	w.Header().Set("Link", "<"+w.next+`>; rel="next"`)
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *linkWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records code and writes it.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

// recordingBody keeps a copy of a request body and whether it was read to
// its end.
type recordingBody struct {
	io.ReadCloser
	want int64 // Content-Length, -1 when unknown
	buf  bytes.Buffer
	eof  bool
}

// Read reads from the body, keeping what it read.
func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.buf.Write(p[:n])
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// complete reports whether the whole body arrived.
func (b *recordingBody) complete() bool {
	if b.want == 0 {
		return true // nothing to read: the proxy does not even try
	}
	return b.eof && (b.want < 0 || int64(b.buf.Len()) == b.want)
}

// tlsSpottingListener counts connections that open with a TLS handshake
// record and closes them: the port speaks plain HTTP only.
type tlsSpottingListener struct {
	net.Listener
	spotted func()
}

// Accept wraps each connection so that its first bytes are checked.
func (l *tlsSpottingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsSpottingConn{Conn: c, spotted: l.spotted}, nil
}

// tlsSpottingConn checks the first byte read from the client.
type tlsSpottingConn struct {
	net.Conn
	spotted func()
	checked bool
}

// Read reads, and ends the connection when it opens with a TLS record
// (content type 22, handshake).
func (c *tlsSpottingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.checked && n > 0 {
		c.checked = true
		if p[0] == 0x16 {
			c.spotted()
			c.Conn.Close()
			return 0, io.EOF
		}
	}
	return n, err
}
