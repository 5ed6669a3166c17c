package transfer_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/transfer"
)

// pattern is 1 MiB of deterministic bytes, repeated to make large blobs
// without holding them.
var pattern = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

type patternReader struct{ off, size int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	n := copy(b, pattern[p.off%int64(len(pattern)):])
	n = int(min(int64(n), p.size-p.off))
	p.off += int64(n)
	return n, nil
}

func digestOf(r io.Reader) v1.Hash {
	h := sha256.New()
	_, _ = io.Copy(h, r)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// sourceServer serves one image whose single layer is size bytes of the
// pattern, generated on the fly.
func sourceServer(tb testing.TB, size int64) (host string, img v1.Hash) {
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd := digestOf(strings.NewReader(string(config)))
	ld := digestOf(&patternReader{size: size})
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(config)), Digest: cd},
		Layers: []v1.Descriptor{{MediaType: types.OCILayer, Size: size, Digest: ld}}}
	raw, _ := json.Marshal(m)
	md := digestOf(strings.NewReader(string(raw)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case strings.HasSuffix(r.URL.Path, "/manifests/"+md.String()):
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			w.Header().Set("Docker-Content-Digest", md.String())
			_, _ = w.Write(raw)
		case strings.HasSuffix(r.URL.Path, "/blobs/"+cd.String()):
			_, _ = w.Write(config)
		case strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()):
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			_, _ = io.Copy(w, &patternReader{size: size})
		default:
			http.NotFound(w, r)
		}
	}))
	tb.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), md
}

// sinkServer accepts uploads and manifests, verifying and discarding blobs.
func sinkServer(tb testing.TB) (host string, received *atomic.Int64) {
	received = &atomic.Int64{}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			w.Header().Set("Location", fmt.Sprintf("/upload/%d", n.Add(1)))
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/upload/"):
			got := digestOf(r.Body)
			if got.String() != r.URL.Query().Get("digest") {
				http.Error(w, "digest mismatch", http.StatusBadRequest)
				return
			}
			received.Add(r.ContentLength)
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodHead:
			http.NotFound(w, r)
		case r.Method == http.MethodPut:
			w.WriteHeader(http.StatusCreated)
		default:
			http.NotFound(w, r)
		}
	}))
	tb.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), received
}

// peak samples the Go heap while f runs and returns the highest value.
func peak(f func()) uint64 {
	done := make(chan struct{})
	var max uint64
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse+ms.StackInuse > max {
				max = ms.HeapInuse + ms.StackInuse
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(done)
	return max
}

// vmHWM is the process's peak resident set size in bytes (Linux), or 0.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// BenchmarkLargeBlob promotes one image with a large layer (default 2 GiB,
// PROMOTER_BENCH_BLOB_MIB to change) to one and to two destinations, and
// reports the peak heap: the blob is streamed, never held in memory (with
// two destinations a copy is spilled to a temporary file).
func BenchmarkLargeBlob(b *testing.B) {
	mib := int64(2048)
	if v := os.Getenv("PROMOTER_BENCH_BLOB_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		mib = n
	}
	size := mib << 20
	src, img := sourceServer(b, size)
	for _, ndest := range []int{1, 2} {
		b.Run(fmt.Sprintf("dests=%d", ndest), func(b *testing.B) {
			var heap uint64
			for b.Loop() {
				var jobs []transfer.Job
				var sinks []*atomic.Int64
				for range ndest {
					host, got := sinkServer(b)
					sinks = append(sinks, got)
					source, _ := name.NewDigest(src + "/s/big@" + img.String())
					dest, _ := name.NewRepository(host + "/p/big")
					jobs = append(jobs, transfer.Job{Source: source.Context(), Digest: img, Dest: dest, Copy: true, Tags: []string{"v1"}})
				}
				client, err := access.New()
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				heap = max(heap, peak(func() {
					res, _, err := transfer.Run(context.Background(), client, jobs, transfer.WithTempDir(b.TempDir()))
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range res {
						if r.Image != nil {
							b.Fatal(r.Image)
						}
					}
				}))
				for _, s := range sinks {
					if s.Load() < size {
						b.Fatalf("a destination received %d bytes, want at least %d", s.Load(), size)
					}
				}
			}
			b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MiB")
			if hwm := vmHWM(); hwm > 0 {
				// The whole test process: engine, source and sinks.
				b.ReportMetric(float64(hwm)/(1<<20), "process-peak-RSS-MiB")
			}
			b.ReportMetric(float64(mib), "blob-MiB")
		})
	}
}
