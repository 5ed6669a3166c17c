package plan_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// corpusDir is the Kubernetes project's manifest tree as merged on 2024-06-06
// (see testdata/corpus/README.md).
var corpusDir = filepath.Join("..", "..", "testdata", "corpus", "k8s.io-2024-06", "registry.k8s.io")

// corpusSubset is planned when the whole corpus would take too long:
// projects without validation errors that between them have digests with
// several tags, manifests with 22 and 44 destinations, and repositories with
// one tag to several hundred. (The corpus promotes nothing by digest only.)
var corpusSubset = []string{"k8s-staging-etcd", "k8s-staging-kueue", "k8s-staging-kops", "k8s-staging-e2e-test-images", "k8s-staging-infra-tools"}

// planJobs is the planner's request concurrency in these tests.
const planJobs = 16

// corpusMode is how the test registry lists tags.
type corpusMode struct {
	name string
	opts []testenv.CorpusOption
	// headPerTag: the tag list says nothing about digests, so seeing where
	// each wanted tag points takes a HEAD per (destination, tag).
	headPerTag bool
}

var corpusModes = []corpusMode{
	{name: "oci", headPerTag: true},
	{name: "tag-digests", opts: []testenv.CorpusOption{testenv.CorpusTagDigests()}},
}

// corpusWorld is the corpus, rehosted onto a CorpusRegistry that already
// holds everything it names.
type corpusWorld struct {
	res  *validate.Result
	reg  *testenv.CorpusRegistry
	host string
	// worldHeap is the heap the server's world takes.
	worldHeap uint64
	// The no-op request target: one request per repository plus one
	// per (image digest, destination repository).
	destRepos, sourceRepos, digestDests int
}

// startCorpusWorld rehosts the corpus (only projects, if any), validates it
// and serves its fully-promoted world.
func startCorpusWorld(tb testing.TB, mode corpusMode, projects ...string) *corpusWorld {
	tb.Helper()
	w := &corpusWorld{}
	var before uint64
	w.reg, w.host = testenv.StartCorpusRegistry(tb, func(host string) []*edge.Group {
		dir := testenv.RehostThinDir(tb, corpusDir, host, projects...)
		w.res = validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
		runtime.GC()
		before = readMemory().heap
		return w.res.Groups
	}, mode.opts...)
	runtime.GC()
	w.worldHeap = readMemory().heap - min(before, readMemory().heap)
	st := w.res.Stats
	if w.res.Unreadable || st.ValidEdges == 0 {
		tb.Fatalf("corpus not read: %+v", st)
	}
	// Rehosting must change no verdict: the whole corpus has exactly its
	// three known errors (22 edges), a subset none.
	wantInvalid, wantErrors := 0, 0
	if len(projects) == 0 {
		wantInvalid, wantErrors = 22, 3
	}
	if st.Edges-st.ValidEdges != wantInvalid || st.Errors != wantErrors {
		tb.Fatalf("rehosted corpus: %d invalid edges and %d errors, want %d and %d: %v", st.Edges-st.ValidEdges, st.Errors, wantInvalid, wantErrors, w.res.Problems)
	}
	dests, sources, pairs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, g := range w.res.Groups {
		if h := g.Source.Context().RegistryStr(); h != w.host {
			tb.Fatalf("source %s is not on the test server %s", g.Source, w.host)
		}
		sources[g.Source.Context().Name()] = true
		for _, d := range g.Dests {
			if d.RegistryStr() != w.host {
				tb.Fatalf("destination %s is not on the test server %s", d, w.host)
			}
			dests[d.Name()] = true
			pairs[d.Name()+"@"+g.Digest.String()] = true
		}
	}
	w.destRepos, w.sourceRepos, w.digestDests = len(dests), len(sources), len(pairs)
	return w
}

// requestBound is the most requests a no-op plan may make, per the issue:
// one per repository plus one per (image digest, destination repository).
// Only destination repositories count: a no-op has nothing to read in
// staging.
func (w *corpusWorld) requestBound() int { return w.destRepos + w.digestDests }

// planRun is one plan of a corpus world and what it cost.
type planRun struct {
	plan     *plan.Plan
	served   testenv.CorpusStats // as the server saw them
	sent     int64               // as the client counted them (also failed connection attempts)
	elapsed  time.Duration
	baseHeap uint64 // heap objects before planning, after a GC: the corpus, its groups and the world
	peakHeap uint64 // the most heap objects (live or garbage not yet swept) seen while planning
	peakLive uint64 // the largest live heap a GC found while planning
}

// runPlan plans the world with a fresh client, as a promoter run would.
func runPlan(tb testing.TB, w *corpusWorld) planRun {
	tb.Helper()
	client, err := access.New()
	if err != nil {
		tb.Fatal(err)
	}
	w.reg.ResetStats()
	runtime.GC()
	var run planRun
	run.baseHeap = readMemory().heap
	stop := sampleMemory()
	start := time.Now()
	run.plan, err = plan.Make(context.Background(), client, w.res.Groups, plan.WithJobs(planJobs))
	run.elapsed = time.Since(start)
	peak := stop()
	run.peakHeap, run.peakLive = peak.heap, peak.live
	if err != nil {
		tb.Fatal(err)
	}
	run.served = w.reg.Stats()
	for _, h := range client.Counter().Snapshot() {
		run.sent += h.Requests
	}
	return run
}

// noopProblems lists how the plan differs from "everything is already
// promoted".
func noopProblems(w *corpusWorld, p *plan.Plan) []string {
	var out []string
	valid := w.res.Stats.ValidEdges
	counts := p.Counts()
	if got := counts[plan.Promoted]; got != valid || counts.Total() != valid {
		out = append(out, fmt.Sprintf("%d of %d valid edges promoted (%d classified)", got, valid, counts.Total()))
	}
	for _, c := range plan.ReportOrder() {
		if n := counts[c]; c != plan.Promoted && n > 0 {
			out = append(out, fmt.Sprintf("%d edges %s", n, c))
		}
	}
	for i, a := range p.Actions() {
		if i == 5 {
			out = append(out, "...")
			break
		}
		out = append(out, fmt.Sprintf("%s %s:%s@%s %s", a.Class, a.Destination, a.Tag, a.Digest, a.Reason))
	}
	if n := workItems(p); n > 0 {
		out = append(out, fmt.Sprintf("%d work items", n))
	}
	return out
}

// TestCorpusPlanNoop plans the real corpus against a registry that already
// holds all of it: every valid edge must be promoted, nothing copied, tagged
// or refused, within the request target. With plain OCI tag lists
// the whole corpus is 730,000 requests (a minute or more on 2 cores), so that
// mode plans a subset (BenchmarkCorpusPlanNoop plans all of it); so does
// every mode with -short.
func TestCorpusPlanNoop(t *testing.T) {
	for _, mode := range corpusModes {
		t.Run(mode.name, func(t *testing.T) {
			var projects []string
			if mode.headPerTag || testing.Short() {
				projects = corpusSubset
			}
			w := startCorpusWorld(t, mode, projects...)
			run := runPlan(t, w)
			for _, p := range noopProblems(w, run.plan) {
				t.Error(p)
			}
			edges := w.res.Stats.ValidEdges
			s := run.served
			t.Logf("%d valid edges, %d groups, %d destination repositories, %d source repositories, %d (digest, destination) pairs",
				edges, len(w.res.Groups), w.destRepos, w.sourceRepos, w.digestDests)
			t.Logf("planned in %v: %d requests served (%.4f per edge): %d /v2/, %d tag lists, %d manifest HEADs found, %d not found, %d other; %d sent by the client",
				run.elapsed.Round(time.Millisecond), s.Requests, float64(s.Requests)/float64(edges), s.Base, s.TagLists, s.ManifestHits, s.ManifestMisses, s.Other, run.sent)
			t.Logf("heap: %.1f MiB before planning (%.1f MiB of it the server's world); while planning %.1f MiB peak, %.1f MiB largest live",
				mib(run.baseHeap), mib(w.worldHeap), mib(run.peakHeap), mib(run.peakLive))

			bound := w.requestBound()
			if !mode.headPerTag {
				if s.Requests > int64(bound) {
					t.Fatalf("%d requests, want at most %d (%d destination repositories + %d (digest, destination) pairs)", s.Requests, bound, w.destRepos, w.digestDests)
				}
				return
			}
			// Plain OCI tag lists cannot meet that target: a digest with k
			// tags needs k HEADs per destination to see where each tag
			// points. What they can do is one request per repository, one
			// per edge (a (destination, tag) or digest-only pair) and one
			// /v2/ per registry host; more than that is a regression. How
			// far the figure is from the target is a measurement, reported
			// by BenchmarkCorpusPlanNoop/oci (requests/op, target-requests,
			// requests/target), not a test outcome.
			if ceiling := int64(1 + w.destRepos + edges); s.Requests > ceiling {
				t.Fatalf("%d requests, more than the %d a plain OCI registry needs (1 host + %d repositories + %d edges)", s.Requests, ceiling, w.destRepos, edges)
			}
			t.Logf("%d requests for a target of %d that plain OCI tag lists cannot meet (a HEAD per tag; see the tag-digests mode)", s.Requests, bound)
		})
	}
}

// memory is a reading of the Go heap.
type memory struct {
	// heap is the bytes of heap objects, live or garbage not yet swept
	// (runtime.MemStats.HeapAlloc).
	heap uint64
	// live is the live heap the last GC found.
	live uint64
}

// readMemory reads runtime/metrics, which does not stop the world as
// runtime.ReadMemStats does.
func readMemory() memory {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return memory{heap: s[0].Value.Uint64(), live: s[1].Value.Uint64()}
}

// sampleMemory watches the heap every millisecond until the returned
// function is called, which returns the highest values seen.
func sampleMemory() (stop func() memory) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var peak memory
	see := func() {
		m := readMemory()
		peak.heap, peak.live = max(peak.heap, m.heap), max(peak.live, m.live)
	}
	see()
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			see()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() memory {
		close(done)
		wg.Wait()
		see()
		return peak
	}
}

// peakRSS is the process's resident set high-water mark (VmHWM), or 0 where
// /proc does not say.
func peakRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// workItems counts the records with a copy or a tag to do.
func workItems(p *plan.Plan) int {
	n := 0
	for _, r := range p.Records {
		if r.HasWork() {
			n++
		}
	}
	return n
}
