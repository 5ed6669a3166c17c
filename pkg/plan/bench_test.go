package plan_test

import (
	"testing"

	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// BenchmarkCorpusEdges measures expanding every valid group of the corpus
// into its edges; reading and validating it is
// pkg/validate.BenchmarkCorpusValidate.
func BenchmarkCorpusEdges(b *testing.B) {
	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{corpusDir}}))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n = 0
		for _, g := range res.Groups {
			n += len(g.Edges())
		}
	}
	if n != res.Stats.ValidEdges {
		b.Fatalf("%d edges, want %d", n, res.Stats.ValidEdges)
	}
	b.ReportMetric(float64(n), "edges")
}

// BenchmarkCorpusPlanNoop plans the whole corpus against a registry that
// already holds all of it, with a fresh client each time as a run would:
// time and allocations of the plan, requests per edge, and peak memory, for
// each way the registry can list tags (see corpusModes). Rehosting, reading
// and validating the corpus happen once, before timing; the test server runs
// in the process, so its work is in the time and allocations too.
//
// peak-heap-MiB is the most heap (live or not yet swept) seen while
// planning, peak-live-MiB the largest live heap a GC found then, and
// base-heap-MiB what was there before (the corpus, its groups and the
// server's world, world-heap-MiB of it); peak-rss-MiB is the process's high-water mark since it
// started, test server, validation and earlier benchmarks included.
func BenchmarkCorpusPlanNoop(b *testing.B) {
	for _, mode := range corpusModes {
		b.Run(mode.name, func(b *testing.B) {
			w := startCorpusWorld(b, mode)
			edges := w.res.Stats.ValidEdges
			b.ReportAllocs()
			var requests, sent, runs int64
			var base, peak, live uint64
			for b.Loop() {
				run := runPlan(b, w)
				if probs := noopProblems(w, run.plan); len(probs) > 0 {
					b.Fatalf("not a no-op: %v", probs)
				}
				runs++
				requests += run.served.Requests
				sent += run.sent
				base, peak, live = max(base, run.baseHeap), max(peak, run.peakHeap), max(live, run.peakLive)
			}
			b.ReportMetric(float64(edges), "edges")
			b.ReportMetric(float64(requests)/float64(runs), "requests/op")
			b.ReportMetric(float64(requests)/float64(runs)/float64(edges), "requests/edge")
			b.ReportMetric(float64(sent)/float64(runs), "sent/op")
			b.ReportMetric(float64(w.requestBound()), "target-requests")
			b.ReportMetric(float64(requests)/float64(runs)/float64(w.requestBound()), "requests/target")
			b.ReportMetric(mib(base), "base-heap-MiB")
			b.ReportMetric(mib(w.worldHeap), "world-heap-MiB")
			b.ReportMetric(mib(peak), "peak-heap-MiB")
			b.ReportMetric(mib(live), "peak-live-MiB")
			if rss := peakRSS(); rss > 0 {
				b.ReportMetric(mib(rss), "peak-rss-MiB")
			}
		})
	}
}
