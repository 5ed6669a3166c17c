package plan_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/state"
)

// stateRun is a no-op plan of a corpus world through a state reader.
type stateRun struct {
	plan     *plan.Plan
	requests int64 // served by the test registry
	trusted  int64
	verified int64
	elapsed  time.Duration
}

func planWithState(tb testing.TB, w *corpusWorld, st *state.Store, now time.Time) stateRun {
	tb.Helper()
	client, err := access.New()
	if err != nil {
		tb.Fatal(err)
	}
	w.reg.ResetStats()
	r := state.NewReader(client, st, 7*24*time.Hour, func() time.Time { return now })
	start := time.Now()
	p, err := plan.Make(context.Background(), r, w.res.Groups, plan.WithJobs(planJobs))
	if err != nil {
		tb.Fatal(err)
	}
	return stateRun{plan: p, requests: w.reg.Stats().Requests, trusted: r.Trusted(), verified: r.Verified(), elapsed: time.Since(start)}
}

// warmState plans the world once to fill a state, saves and reloads it,
// as a later run would, and plans again an hour later.
func warmState(tb testing.TB, w *corpusWorld) (cold, warm stateRun) {
	tb.Helper()
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	st := state.New()
	cold = planWithState(tb, w, st, now)
	path := filepath.Join(tb.TempDir(), "state")
	if err := st.Save(path, nil); err != nil {
		tb.Fatal(err)
	}
	loaded, err := state.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	warm = planWithState(tb, w, loaded, now.Add(time.Hour))
	for _, run := range []stateRun{cold, warm} {
		if probs := noopProblems(w, run.plan); len(probs) > 0 {
			tb.Fatalf("not a no-op: %v", probs)
		}
	}
	return cold, warm
}

// TestCorpusPlanNoopState plans a subset of the corpus with plain OCI tag
// lists twice through --state's reader: the warm plan must cost one /v2/
// ping and one tag list per destination repository, nothing per edge.
func TestCorpusPlanNoopState(t *testing.T) {
	w := startCorpusWorld(t, corpusModes[0], corpusSubset...)
	cold, warm := warmState(t, w)
	edges := w.res.Stats.ValidEdges
	t.Logf("%d edges, %d destination repositories: cold %d requests (%d resolved), warm %d requests (%d trusted, %d resolved)",
		edges, w.destRepos, cold.requests, cold.verified, warm.requests, warm.trusted, warm.verified)
	if want := int64(1 + w.destRepos); warm.requests != want || warm.verified != 0 {
		t.Errorf("warm plan: %d requests and %d resolved, want %d (1 ping + %d tag lists) and 0", warm.requests, warm.verified, want, w.destRepos)
	}
	if warm.trusted != int64(edges) {
		t.Errorf("warm plan trusted %d edges, want all %d", warm.trusted, edges)
	}
}

// BenchmarkCorpusPlanNoopState is the warm no-op of the whole corpus with
// plain OCI tag lists and a state file: the state is filled by one cold
// plan before timing, then each iteration plans with the saved state.
func BenchmarkCorpusPlanNoopState(b *testing.B) {
	w := startCorpusWorld(b, corpusModes[0])
	edges := w.res.Stats.ValidEdges
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	st := state.New()
	cold := planWithState(b, w, st, now)
	path := filepath.Join(b.TempDir(), "state")
	if err := st.Save(path, nil); err != nil {
		b.Fatal(err)
	}
	loaded, err := state.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	var warm stateRun
	for b.Loop() {
		warm = planWithState(b, w, loaded, now.Add(time.Hour))
		if probs := noopProblems(w, warm.plan); len(probs) > 0 {
			b.Fatalf("not a no-op: %v", probs)
		}
	}
	b.ReportMetric(float64(edges), "edges")
	b.ReportMetric(float64(cold.requests), "cold-requests")
	b.ReportMetric(float64(warm.requests), "requests/op")
	b.ReportMetric(float64(warm.requests)/float64(edges), "requests/edge")
	b.ReportMetric(float64(warm.trusted), "trusted-edges")
	b.Logf("whole corpus, plain OCI tag lists: %d edges, %d destination repositories; cold plan %d requests in %v, warm plan %d requests in %v (%d edges trusted)",
		edges, w.destRepos, cold.requests, cold.elapsed.Round(time.Millisecond), warm.requests, warm.elapsed.Round(time.Millisecond), warm.trusted)
}
