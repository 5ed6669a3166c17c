package reliability

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/testenv"
)

// manyTags serves a repository "p/app" with n tags ("t0000000", ...) in
// one tag list answer, ignoring the page size asked for (as a registry
// without pagination does), generated on the fly; every manifest HEAD
// answers 404.
func manyTags(tb testing.TB, n int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == "/v2/p/app/tags/list":
			w.Header().Set("Content-Type", "application/json")
			bw := bufio.NewWriterSize(w, 64<<10)
			bw.WriteString(`{"name":"p/app","tags":[`)
			for i := range n {
				if i > 0 {
					bw.WriteByte(',')
				}
				fmt.Fprintf(bw, `"t%07d"`, i)
			}
			bw.WriteString("]}")
			_ = bw.Flush()
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}`)
		}
	}))
	tb.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// peakHeap samples the heap in use every few milliseconds until stop is
// called, and returns the highest figure seen.
func peakHeap() (stop func() uint64) {
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// BenchmarkFiveMillionTags plans one edge into a repository holding five
// million tags, listed in one answer, and prints the peak heap of the
// process while planning (issue 8 point 10: 677 MB before tag lists were
// streamed).
//
//	go test ./internal/reliability -run '^$' -bench FiveMillionTags -benchtime 1x
func BenchmarkFiveMillionTags(b *testing.B) {
	const n = 5_000_000
	staging := testenv.InProcessRegistry(b)
	dig := testenv.PushImage(b, staging+"/s/app", 1)
	dest := manyTags(b, n)
	m := writeManifest(b, staging+"/s", []string{dest + "/p"}, image{name: "app", digest: dig, tags: []string{"t9999999"}})
	var peak uint64
	for range b.N {
		runtime.GC()
		debug.FreeOSMemory()
		stop := peakHeap()
		var out, errb bytes.Buffer
		code := cli.Execute(context.Background(), []string{"plan", "-o", "json", m}, &out, &errb)
		peak = max(peak, stop())
		if code != 0 || !strings.Contains(out.String(), `"copy"`) {
			b.Fatalf("plan: exit %d\n%s\n%s", code, out.String(), errb.String())
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(n, "tags")
}

// TestFiveMillionTagsMemory is the bound BenchmarkFiveMillionTags
// measures, as a test: planning against a five-million-tag repository
// stays under 150 MiB of heap (the tag list alone is 55 MB of JSON).
func TestFiveMillionTagsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("five million tags: not in -short")
	}
	const n = 5_000_000
	staging := testenv.InProcessRegistry(t)
	dig := testenv.PushImage(t, staging+"/s/app", 1)
	dest := manyTags(t, n)
	m := writeManifest(t, staging+"/s", []string{dest + "/p"}, image{name: "app", digest: dig, tags: []string{"t9999999"}})
	runtime.GC()
	stop := peakHeap()
	var out, errb bytes.Buffer
	code := cli.Execute(t.Context(), []string{"plan", "-o", "json", m}, &out, &errb)
	peak := stop()
	if code != 0 || !strings.Contains(out.String(), `"copy"`) {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if peak > 150<<20 {
		t.Errorf("peak heap %d MiB while planning against %d tags, want under 150 MiB", peak>>20, n)
	}
}
