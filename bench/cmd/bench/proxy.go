package main

import (
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgpromoter/promoter/internal/regtest"
)

// Counts is what a counting proxy saw over some period. Every field is a
// plain sum, so a period's counts are the difference of two snapshots.
type Counts struct {
	// Requests counts every request the proxy received.
	Requests int64 `json:"requests"`
	// ByRoute counts requests by "METHOD class", e.g. "HEAD blob".
	ByRoute map[string]int64 `json:"byRoute"`
	// ByStatus counts responses by status code class: "2xx", "3xx", "4xx",
	// "5xx", and "err" when the upstream could not be reached.
	ByStatus map[string]int64 `json:"byStatus"`
	// BlobGETBytes is the number of response body bytes sent for GET blob
	// requests: the blob content read from this registry.
	BlobGETBytes int64 `json:"blobGetBytes"`
	// BlobUploads counts completed blob uploads: a PUT to an upload
	// session, or a monolithic POST with digest=, answered 201.
	BlobUploads int64 `json:"blobUploads"`
	// UploadBytes is the number of request body bytes sent in upload
	// requests (POST, PATCH and PUT to .../blobs/uploads/).
	UploadBytes int64 `json:"uploadBytes"`
	// Mounts counts cross-repository mounts: POST with mount= answered 201.
	Mounts int64 `json:"mounts"`
	// MountAttempts counts POST with mount=, whatever the answer (202 means
	// the registry did not mount and opened an upload session instead).
	MountAttempts int64 `json:"mountAttempts"`
	// ManifestPuts counts manifests written (PUT manifest answered 201).
	ManifestPuts int64 `json:"manifestPuts"`
}

// newCounts returns zero counts with their maps made.
func newCounts() Counts {
	return Counts{ByRoute: map[string]int64{}, ByStatus: map[string]int64{}}
}

// clone returns a deep copy of c.
func (c Counts) clone() Counts {
	c.ByRoute = maps.Clone(c.ByRoute)
	c.ByStatus = maps.Clone(c.ByStatus)
	return c
}

// sub returns c minus before, dropping zero map entries.
func (c Counts) sub(before Counts) Counts {
	out := Counts{
		Requests:      c.Requests - before.Requests,
		ByRoute:       subMap(c.ByRoute, before.ByRoute),
		ByStatus:      subMap(c.ByStatus, before.ByStatus),
		BlobGETBytes:  c.BlobGETBytes - before.BlobGETBytes,
		BlobUploads:   c.BlobUploads - before.BlobUploads,
		UploadBytes:   c.UploadBytes - before.UploadBytes,
		Mounts:        c.Mounts - before.Mounts,
		MountAttempts: c.MountAttempts - before.MountAttempts,
		ManifestPuts:  c.ManifestPuts - before.ManifestPuts,
	}
	return out
}

// subMap returns a - b per key, without the keys whose difference is 0.
func subMap(a, b map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// add returns the sum of c and o.
func (c Counts) add(o Counts) Counts {
	out := c.clone()
	if out.ByRoute == nil {
		out = newCounts()
	}
	out.Requests += o.Requests
	for k, v := range o.ByRoute {
		out.ByRoute[k] += v
	}
	for k, v := range o.ByStatus {
		out.ByStatus[k] += v
	}
	out.BlobGETBytes += o.BlobGETBytes
	out.BlobUploads += o.BlobUploads
	out.UploadBytes += o.UploadBytes
	out.Mounts += o.Mounts
	out.MountAttempts += o.MountAttempts
	out.ManifestPuts += o.ManifestPuts
	return out
}

// CountingProxy is a reverse proxy on 127.0.0.1 in front of one plain-HTTP
// registry that counts what passes through it. The tools under test are
// given the proxy's address instead of the registry's, so everything they
// send is counted, whatever client library they use.
type CountingProxy struct {
	host      string // the proxy's "127.0.0.1:PORT"
	upstream  *url.URL
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	srv       *http.Server

	// shape is the network profile applied to every request.
	shape shaper

	mu     sync.Mutex
	counts Counts
}

// StartCountingProxy listens on a free loopback port and forwards to the
// registry at upstreamHost ("127.0.0.1:PORT"). egress says which direction
// of the link a bandwidth cap applies to: what the registry sends (a source
// registry) or what it receives (a destination).
func StartCountingProxy(upstreamHost string, egress bool) (*CountingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &CountingProxy{
		host:     l.Addr().String(),
		upstream: &url.URL{Scheme: "http", Host: upstreamHost},
		counts:   newCounts(),
		shape:    shaper{egress: egress},
		transport: &http.Transport{
			Proxy:       nil, // never an environment proxy: loopback only
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			// Pass bodies through byte for byte, so the byte counts are
			// what the registry sent.
			DisableCompression:  true,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.upstream)
		},
		Transport:      p.transport,
		ModifyResponse: p.rewriteLocation,
		FlushInterval:  -1,
		ErrorLog:       log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			w.Header().Set("X-Bench-Proxy-Error", "1")
			http.Error(w, "bench proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		// Clients that try TLS first (go-containerregistry pings https and
		// http at once for loopback hosts) produce handshake noise here.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// Host returns the proxy's address, to use in place of the registry's.
func (p *CountingProxy) Host() string { return p.host }

// SetProfile sets the network profile of the link to this registry.
func (p *CountingProxy) SetProfile(np NetProfile) { p.shape.set(np) }

// Profile returns the network profile in force.
func (p *CountingProxy) Profile() NetProfile { return p.shape.current() }

// Upstream returns the address of the registry behind the proxy.
func (p *CountingProxy) Upstream() string { return p.upstream.Host }

// Snapshot returns a copy of the counters.
func (p *CountingProxy) Snapshot() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts.clone()
}

// ResetConnections drops idle connections to the upstream, which must be
// done after the registry behind it was restarted.
func (p *CountingProxy) ResetConnections() {
	p.transport.CloseIdleConnections()
}

// Close stops the proxy.
func (p *CountingProxy) Close() error {
	p.transport.CloseIdleConnections()
	return p.srv.Close()
}

// ServeHTTP forwards the request and counts it with its outcome.
//
// Everything is counted before the client can see it: the request and its
// status when the answer's header is written, body bytes before they are
// passed on. Counting after the proxy returned raced with the client: a
// client that had read the whole answer could take a Snapshot before the
// last request was counted (the bytes of the last blob, or the manifest PUT,
// then went missing about one run in ten under load).
func (p *CountingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	class := regtest.Classify(r.URL.Path)
	var body *countingReader
	if class == regtest.ClassUpload && r.Body != nil && r.Body != http.NoBody {
		body = &countingReader{r: r.Body}
		r.Body = body
	}
	p.shape.delay(r.Context())
	p.shape.requestBody(r)
	cw := &countingWriter{ResponseWriter: p.shape.responseWriter(w, r), p: p, r: r, class: class, body: body}
	p.proxy.ServeHTTP(cw, r)
	// The proxy always answers; this only covers a handler that wrote
	// nothing at all.
	cw.record(http.StatusOK)
}

// count records one answered request: its route, its status class and what
// the status means for the counters. Called with p.mu held.
func (p *CountingProxy) count(r *http.Request, class string, status int, proxyErr bool, uploaded int64) {
	c := &p.counts
	c.Requests++
	c.ByRoute[r.Method+" "+class]++
	if proxyErr {
		c.ByStatus["err"]++
	} else {
		c.ByStatus[string('0'+byte(status/100))+"xx"]++
	}
	c.UploadBytes += uploaded
	q := r.URL.Query()
	switch {
	case class == regtest.ClassUpload && r.Method == http.MethodPost && q.Get("mount") != "":
		c.MountAttempts++
		if status == http.StatusCreated {
			c.Mounts++
		}
	case class == regtest.ClassUpload && r.Method == http.MethodPost && q.Get("digest") != "":
		if status == http.StatusCreated {
			c.BlobUploads++
		}
	case class == regtest.ClassUpload && r.Method == http.MethodPut:
		if status == http.StatusCreated {
			c.BlobUploads++
		}
	case class == regtest.ClassManifest && r.Method == http.MethodPut:
		if status == http.StatusCreated {
			c.ManifestPuts++
		}
	}
}

// rewriteLocation keeps clients on the proxy for the rest of an upload;
// see regtest.RewriteLocation.
func (p *CountingProxy) rewriteLocation(resp *http.Response) error {
	return regtest.RewriteLocation(resp, p.upstream.Host, p.host)
}

// countingReader counts the bytes read through it. The transport reads
// the body on its own goroutine, so the count is atomic.
type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

// Read implements io.Reader.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Close implements io.Closer.
func (c *countingReader) Close() error { return c.r.Close() }

// countingWriter counts the request when its final status is written and
// the body bytes of a blob GET as they are written, both before the client
// can see them.
type countingWriter struct {
	http.ResponseWriter
	p     *CountingProxy
	r     *http.Request
	class string
	body  *countingReader // nil unless an upload with a body

	recorded bool
}

// record counts the request once, with the given status.
func (w *countingWriter) record(status int) {
	if w.recorded {
		return
	}
	w.recorded = true
	var uploaded int64
	if w.body != nil {
		// The upstream answered, so it has read the body it wanted.
		uploaded = w.body.n.Load()
	}
	proxyErr := w.Header().Get("X-Bench-Proxy-Error") != ""
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	w.p.count(w.r, w.class, status, proxyErr, uploaded)
}

// WriteHeader implements http.ResponseWriter.
func (w *countingWriter) WriteHeader(code int) {
	// Informational answers (100 Continue, 103) come before the real one.
	if code >= 200 {
		w.record(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *countingWriter) Write(p []byte) (int, error) {
	w.record(http.StatusOK)
	blobGET := w.class == regtest.ClassBlob && w.r.Method == http.MethodGet
	if blobGET {
		w.p.addBlobGETBytes(int64(len(p)))
	}
	n, err := w.ResponseWriter.Write(p)
	if blobGET && n < len(p) {
		// Take back what was counted but not sent.
		w.p.addBlobGETBytes(int64(n - len(p)))
	}
	return n, err
}

// addBlobGETBytes adds n (which may be negative) to the blob GET bytes.
func (p *CountingProxy) addBlobGETBytes(n int64) {
	p.mu.Lock()
	p.counts.BlobGETBytes += n
	p.mu.Unlock()
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
