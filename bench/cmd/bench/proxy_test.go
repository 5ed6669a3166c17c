package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestProxyCountsPushAndPull pushes and pulls a real image through the
// proxy in front of an in-process registry and checks the counters
// against the image's blobs.
func TestProxyCountsPushAndPull(t *testing.T) {
	upstream := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer upstream.Close()
	p, err := StartCountingProxy(strings.TrimPrefix(upstream.URL, "http://"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(p.Host()+"/bench/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithJobs(1)); err != nil {
		t.Fatalf("push through the proxy: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var blobBytes int64
	for _, l := range m.Layers {
		blobBytes += l.Size
	}
	blobBytes += m.Config.Size

	pushed := p.Snapshot()
	if pushed.BlobUploads != 4 || pushed.ManifestPuts != 1 || pushed.Mounts != 0 {
		t.Errorf("after push: uploads %d, manifest puts %d, mounts %d; want 4, 1, 0", pushed.BlobUploads, pushed.ManifestPuts, pushed.Mounts)
	}
	if pushed.UploadBytes != blobBytes {
		t.Errorf("after push: upload bytes %d, want %d", pushed.UploadBytes, blobBytes)
	}

	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	if _, err := got.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	pulled := p.Snapshot().sub(pushed)
	if pulled.BlobGETBytes != blobBytes {
		t.Errorf("after pull: blob GET bytes %d, want %d", pulled.BlobGETBytes, blobBytes)
	}
	if pulled.ByRoute["GET blob"] != 4 {
		t.Errorf("after pull: GET blob %d, want 4 (routes %v)", pulled.ByRoute["GET blob"], pulled.ByRoute)
	}
}

// TestProxyMountsAndLocation scripts an upstream that answers a mount with
// 201, an ordinary upload start with an absolute Location naming itself,
// and the upload's PUT with 201.
func TestProxyMountsAndLocation(t *testing.T) {
	var upstreamHost string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "http://"+upstreamHost+"/v2/prod/app/blobs/uploads/u1?_state=x")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPut:
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer upstream.Close()
	upstreamHost = strings.TrimPrefix(upstream.URL, "http://")
	p, err := StartCountingProxy(upstreamHost, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	digest := "sha256:" + strings.Repeat("d", 64)
	resp, err := http.Post("http://"+p.Host()+"/v2/prod/app/blobs/uploads/?mount="+digest+"&from=prod/other", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Post("http://"+p.Host()+"/v2/prod/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if want := "http://" + p.Host() + "/v2/prod/app/blobs/uploads/u1?_state=x"; loc != want {
		t.Fatalf("Location = %q, want %q", loc, want)
	}
	req, err := http.NewRequest(http.MethodPut, loc+"&digest="+digest, strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	got := p.Snapshot()
	want := Counts{
		Requests:      3,
		ByRoute:       map[string]int64{"POST upload": 2, "PUT upload": 1},
		ByStatus:      map[string]int64{"2xx": 3},
		BlobUploads:   1,
		UploadBytes:   5,
		Mounts:        1,
		MountAttempts: 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

// TestProxyNetProfile checks that the profile costs what it says: a round
// trip per request, and a capped link shared by concurrent transfers in the
// capped direction only. Only lower bounds are asserted: a loaded machine
// can only make things slower.
func TestProxyNetProfile(t *testing.T) {
	const size = 256 << 10
	payload := strings.Repeat("x", size)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, payload)
		}
	}))
	defer upstream.Close()
	host := strings.TrimPrefix(upstream.URL, "http://")
	egress, err := StartCountingProxy(host, true)
	if err != nil {
		t.Fatal(err)
	}
	defer egress.Close()
	ingress, err := StartCountingProxy(host, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ingress.Close()
	rate := float64(1 << 20) // 1 MiB/s: 256 KiB take 250 ms
	for _, p := range []*CountingProxy{egress, ingress} {
		p.SetProfile(NetProfile{RTT: 100 * time.Millisecond, BytesPerSec: rate})
	}
	transfer := func(p *CountingProxy, method string, n int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				var body io.Reader
				if method == http.MethodPut {
					body = strings.NewReader(payload)
				}
				req, err := http.NewRequest(method, "http://"+p.Host()+"/v2/x/blobs/uploads/1", body)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	// Two downloads from the source share its egress: 512 KiB at 1 MiB/s
	// plus a round trip.
	if got, want := transfer(egress, http.MethodGet, 2), 600*time.Millisecond; got < want {
		t.Errorf("2 x 256 KiB from the source took %v, want at least %v", got, want)
	}
	// Uploads to a destination share its ingress.
	if got, want := transfer(ingress, http.MethodPut, 2), 600*time.Millisecond; got < want {
		t.Errorf("2 x 256 KiB to a destination took %v, want at least %v", got, want)
	}
	// Upload to the source and download from a destination: uncapped
	// directions, one round trip each.
	if got, want := transfer(ingress, http.MethodGet, 1), 100*time.Millisecond; got < want {
		t.Errorf("a request took %v, want at least the round trip %v", got, want)
	}
	// Off again: the set-up runs go at loopback speed.
	egress.SetProfile(NetProfile{})
	if got := transfer(egress, http.MethodGet, 1); got >= 250*time.Millisecond {
		t.Logf("without a profile a download took %v (a loaded machine?)", got)
	}
}
