package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// largeImages is a realistic images.yaml of about size bytes: images of ten
// digests with two tags each, as kpromo's largest projects write them.
func largeImages(size int) string {
	var b strings.Builder
	b.Grow(size + 4096)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "- name: image-%d\n  dmap:\n", i)
		for j := range 10 {
			fmt.Fprintf(&b, "    \"sha256:%064x\": [\"v1.%d.%d\", \"v1.%d\"]\n", i*10+j, i, j, i)
		}
	}
	return b.String()
}

// aliasImages is an images.yaml of about size bytes whose last entries alias
// one large tag list again and again: an honest-looking file whose expansion
// is far larger than its text.
func aliasImages(size int) string {
	var b strings.Builder
	b.WriteString("- name: a\n  dmap:\n    \"sha256:" + strings.Repeat("a", 64) + "\": &t [")
	for j := range 5000 {
		if j > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "t%d", j)
	}
	b.WriteString("]\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "- name: b%d\n  dmap: {\"sha256:%064x\": *t}\n", i, i)
	}
	return b.String()
}

// heapPeak samples the Go heap in use while f runs and returns the highest
// value seen, in bytes.
func heapPeak(f func()) uint64 {
	runtime.GC()
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		var top uint64
		for {
			runtime.ReadMemStats(&ms)
			top = max(top, ms.HeapInuse)
			select {
			case <-done:
				result <- top
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(done)
	return <-result
}

// BenchmarkLargeImagesFile reads a thin directory whose images.yaml is large
// (honest text, and text whose aliases expand) and reports the peak heap:
// peak-heap-MiB beside file-MiB, so the ratio reads directly.
//
//	go test ./pkg/manifest -run '^$' -bench LargeImagesFile -benchtime 1x
func BenchmarkLargeImagesFile(b *testing.B) {
	cases := []struct {
		name string
		text func() string
	}{
		{"honest-4MiB", func() string { return largeImages(4 << 20) }},
		{"honest-15MiB", func() string { return largeImages(15 << 20) }},
		{"honest-50MB", func() string { return largeImages(50_000_000) }},
		{"aliases-8MiB", func() string { return aliasImages(8 << 20) }},
		{"aliases-30MB", func() string { return aliasImages(30_000_000) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			text := c.text()
			for rel, body := range map[string]string{
				"manifests/p/promoter-manifest.yaml": "registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\n",
				"images/p/images.yaml":               text,
			} {
				path := filepath.Join(dir, filepath.FromSlash(rel))
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			size := len(text)
			text = ""
			var top uint64
			var problems int
			b.ResetTimer()
			for range b.N {
				top = max(top, heapPeak(func() {
					_, probs := LoadThinDir(dir)
					problems = len(probs)
				}))
			}
			b.ReportMetric(float64(size)/(1<<20), "file-MiB")
			b.ReportMetric(float64(top)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(problems), "problems")
		})
	}
}
