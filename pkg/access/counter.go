package access

import (
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HostStats counts what was sent to one registry host, at the HTTP level (so
// retries and token requests to the host count too).
type HostStats struct {
	Host          string `json:"host"`
	Requests      int64  `json:"requests"`
	BlobReads     int64  `json:"blobReads"`     // GET of a blob
	BytesRead     int64  `json:"bytesRead"`     // response bytes of blob GETs
	BlobUploads   int64  `json:"blobUploads"`   // uploads completed (PUT 201)
	BlobMounts    int64  `json:"blobMounts"`    // cross-repository mounts accepted
	BytesUploaded int64  `json:"bytesUploaded"` // request bytes of blob uploads
	ManifestPuts  int64  `json:"manifestPuts"`  // manifests written (201)
}

type hostCounters struct {
	requests, blobReads, bytesRead, blobUploads, blobMounts, bytesUploaded, manifestPuts atomic.Int64
}

// Counter is an http.RoundTripper that counts requests per host. It sits
// below the retry layer, so it sees (and logs) every attempt.
type Counter struct {
	next  http.RoundTripper
	log   *slog.Logger
	obs   Observer
	mu    sync.Mutex
	hosts map[string]*hostCounters
}

func newCounter(next http.RoundTripper, log *slog.Logger) *Counter {
	return &Counter{next: next, log: log, obs: nopObserver{}, hosts: map[string]*hostCounters{}}
}

func (c *Counter) host(h string) *hostCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	hc, ok := c.hosts[h]
	if !ok {
		hc = &hostCounters{}
		c.hosts[h] = hc
	}
	return hc
}

// RoundTrip counts and forwards the request.
func (c *Counter) RoundTrip(req *http.Request) (*http.Response, error) {
	hc := c.host(req.URL.Host)
	hc.requests.Add(1)
	path := req.URL.Path
	isUpload := strings.Contains(path, "/blobs/uploads/")
	if isUpload && req.Body != nil && (req.Method == http.MethodPut || req.Method == http.MethodPatch || req.Method == http.MethodPost) {
		req.Body = &countingBody{ReadCloser: req.Body, n: &hc.bytesUploaded}
	}
	start := time.Now()
	resp, err := c.next.RoundTrip(req)
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	c.obs.Request(req.URL.Host, req.Method, code, time.Since(start))
	if err != nil {
		// Not a warning: go-containerregistry probes HTTPS before plain
		// HTTP on loopback hosts, and that probe fails on every run.
		c.log.Debug("registry request failed", "method", req.Method, "host", req.URL.Host, "path", req.URL.Path, "error", err)
		return resp, err
	}
	switch {
	case isUpload && req.Method == http.MethodPut && resp.StatusCode == http.StatusCreated:
		hc.blobUploads.Add(1)
	case isUpload && req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated && req.URL.Query().Has("mount"):
		hc.blobMounts.Add(1)
	case req.Method == http.MethodPut && strings.Contains(path, "/manifests/") && resp.StatusCode == http.StatusCreated:
		hc.manifestPuts.Add(1)
	case req.Method == http.MethodGet && strings.Contains(path, "/blobs/sha256:") && resp.StatusCode == http.StatusOK:
		hc.blobReads.Add(1)
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &hc.bytesRead}
	}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// Snapshot returns the counts per host, sorted by host.
func (c *Counter) Snapshot() []HostStats {
	c.mu.Lock()
	hosts := slices.Sorted(maps.Keys(c.hosts))
	c.mu.Unlock()
	out := make([]HostStats, 0, len(hosts))
	for _, h := range hosts {
		hc := c.host(h)
		out = append(out, HostStats{Host: h, Requests: hc.requests.Load(), BlobReads: hc.blobReads.Load(), BytesRead: hc.bytesRead.Load(),
			BlobUploads: hc.blobUploads.Load(), BlobMounts: hc.blobMounts.Load(), BytesUploaded: hc.bytesUploaded.Load(), ManifestPuts: hc.manifestPuts.Load()})
	}
	return out
}
