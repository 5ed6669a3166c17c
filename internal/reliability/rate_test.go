package reliability

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 4: 429 answers. Retry-After is honoured (capped by
// --max-retry-wait), backoff is jittered, and the rate recovers after
// successes instead of staying halved for the rest of the run. The timing
// targets are measured by BenchmarkRateLimited (docs/reliability.md); the
// tests here check outcomes.

// rateWorld is a staging registry with n two-tag images and an empty
// destination registry.
type rateWorld struct {
	staging, dest string
	images        []image
}

func newRateWorld(tb testing.TB, n int) *rateWorld {
	w := &rateWorld{staging: testenv.InProcessRegistry(tb), dest: testenv.InProcessRegistry(tb)}
	for i := range n {
		d := testenv.PushImageWith(tb, w.staging+"/s/app", testenv.ImageSpec{Seed: int64(1000 + i), LayerSize: 2 << 10})
		w.images = append(w.images, image{name: "app", digest: d, tags: []string{fmt.Sprintf("v%d", i), fmt.Sprintf("v%d-stable", i)}})
	}
	return w
}

// TestRetryAfterIsCapped: a destination asking to wait 30 s is retried
// after --max-retry-wait (1 s), not sooner and not 30 s later.
func TestRetryAfterIsCapped(t *testing.T) {
	t.Parallel()
	w := newRateWorld(t, 1)
	dest := testenv.NewFaultProxy(t, w.dest, testenv.FaultRule{
		Method: http.MethodPut, Path: testenv.PathManifest, Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Second,
	})
	m := writeManifest(t, w.staging+"/s", []string{dest.Host() + "/p"}, w.images...)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer cancel()
	run(ctx, t, "--max-retry-wait", "1s", m).mustSucceed(t, 2)
	var limited, retried time.Time
	for _, r := range dest.Log() {
		if r.Method != http.MethodPut || r.Class != testenv.ClassManifest {
			continue
		}
		if r.Status == http.StatusTooManyRequests && limited.IsZero() {
			limited = r.End
		} else if !limited.IsZero() && retried.IsZero() {
			retried = r.Start
		}
	}
	if limited.IsZero() || retried.IsZero() {
		t.Fatalf("no 429 followed by a retry in the destination's log")
	}
	if gap := retried.Sub(limited); gap < 900*time.Millisecond {
		t.Errorf("retried %s after a 429 with Retry-After (capped at 1s): too soon", gap)
	}
}

// TestTenPercent429NoEdgeFails: one answer in ten from the destination
// is a 429 (without Retry-After): every edge still succeeds.
func TestTenPercent429NoEdgeFails(t *testing.T) {
	t.Parallel()
	w := newRateWorld(t, 12)
	dest := testenv.NewFaultProxy(t, w.dest, testenv.FaultRule{Last: math.MaxInt, Every: 10, Status: http.StatusTooManyRequests})
	m := writeManifest(t, w.staging+"/s", []string{dest.Host() + "/p"}, w.images...)
	run(t.Context(), t, m).mustSucceed(t, 24)
	got := testenv.Digests(t, w.dest+"/p/app")
	for _, im := range w.images {
		for _, tag := range im.tags {
			if got[tag] != im.digest {
				t.Errorf("app:%s = %s, want %s", tag, got[tag], im.digest)
			}
		}
	}
	if dest.Stats().Faults == 0 {
		t.Error("no 429 was answered")
	}
}

// BenchmarkRateLimited prints the run time of the same promotion (40
// images, 80 tags) clean, with one 429 (with and without Retry-After: 1),
// and with one answer in ten a 429, side by side with the ratios to the
// clean run and the edges that failed. Targets (issue 8): one 429 costs at
// most its Retry-After, or about a second without one, over a clean run;
// 10% 429 answers stay within 3x the clean time with no edge failed.
//
//	go test ./internal/reliability -run '^$' -bench RateLimited -benchtime 3x
func BenchmarkRateLimited(b *testing.B) {
	scenarios := []struct {
		name  string
		rules []testenv.FaultRule
	}{
		{"clean", nil},
		{"one429-RA1s", []testenv.FaultRule{{Path: testenv.PathManifest, Status: http.StatusTooManyRequests, RetryAfter: time.Second}}},
		{"one429-noRA", []testenv.FaultRule{{Path: testenv.PathManifest, Status: http.StatusTooManyRequests}}},
		{"pct10-429", []testenv.FaultRule{{Last: math.MaxInt, Every: 10, Status: http.StatusTooManyRequests}}},
	}
	secs := make([]time.Duration, len(scenarios))
	failed := make([]int, len(scenarios))
	for range b.N {
		for i, sc := range scenarios {
			b.StopTimer()
			w := newRateWorld(b, 40)
			dest := testenv.NewFaultProxy(b, w.dest, sc.rules...)
			m := writeManifest(b, w.staging+"/s", []string{dest.Host() + "/p"}, w.images...)
			b.StartTimer()
			start := time.Now()
			r := run(context.Background(), b, m)
			secs[i] += time.Since(start)
			failed[i] += r.report.Totals.Failed
			if r.report.Totals.Promoted+r.report.Totals.Failed != 80 {
				b.Fatalf("%s: totals %+v, want 80 edges", sc.name, r.report.Totals)
			}
		}
	}
	clean := secs[0].Seconds() / float64(b.N)
	for i, sc := range scenarios {
		s := secs[i].Seconds() / float64(b.N)
		b.ReportMetric(s, sc.name+"-s")
		if i > 0 {
			b.ReportMetric(s/clean, sc.name+"-x")
			b.ReportMetric(s-clean, sc.name+"-extra-s")
		}
		b.ReportMetric(float64(failed[i])/float64(b.N), sc.name+"-failed")
	}
}
