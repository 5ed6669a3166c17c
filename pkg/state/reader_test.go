package state_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/state"
)

// world is an in-process registry holding staging/app and prod/app with
// two promoted images, and the groups asking for them.
type world struct {
	host   string
	groups []*edge.Group
	digest map[string]v1.Hash // by tag
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{host: testenv.InProcessRegistry(t), digest: map[string]v1.Hash{}}
	src, err := name.NewRepository(w.host+"/staging/app", name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := name.NewRepository(w.host+"/prod/app", name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	for i, tag := range []string{"v1", "v2", "v3"} {
		d := testenv.PushImage(t, src.Tag(tag).String(), int64(i+1))
		w.digest[tag] = d
		g := &edge.Group{Image: "app", Source: src.Digest(d.String()), Digest: d, Dests: []name.Repository{dst}, Tags: []edge.Tag{{Name: tag}}}
		w.groups = append(w.groups, g)
		if tag != "v3" { // v3 is not promoted yet
			testenv.PushImage(t, dst.Tag(tag).String(), int64(i+1))
		}
	}
	return w
}

// planWith plans the world through a state reader and returns the plan,
// the reader and the requests the client sent.
func (w *world) planWith(t *testing.T, st *state.Store, maxAge time.Duration, now time.Time) (*plan.Plan, *state.Reader, int64) {
	t.Helper()
	client, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	r := state.NewReader(client, st, maxAge, func() time.Time { return now })
	p, err := plan.Make(context.Background(), r, w.groups, plan.WithJobs(4))
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	for _, h := range client.Counter().Snapshot() {
		sent += h.Requests
	}
	return p, r, sent
}

func classes(p *plan.Plan) map[string]plan.Class {
	out := map[string]plan.Class{}
	for _, rec := range p.Records {
		for _, d := range rec.Edges {
			out[d.Tag] = d.Class
		}
	}
	return out
}

func TestReaderWarmNoop(t *testing.T) {
	w := newWorld(t)
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	const maxAge = 24 * time.Hour

	// Cold: every listed wanted tag is resolved, and recorded.
	st := state.New()
	p, r, _ := w.planWith(t, st, maxAge, now)
	want := map[string]plan.Class{"v3": plan.Copy}
	if diff := cmp.Diff(want, classes(p)); diff != "" {
		t.Fatalf("cold plan (-want +got):\n%s", diff)
	}
	if got := p.Counts()[plan.Promoted]; got != 2 {
		t.Errorf("cold plan: %d promoted, want 2", got)
	}
	if r.Trusted() != 0 || r.Verified() < 2 {
		t.Errorf("cold plan: %d trusted, %d verified", r.Trusted(), r.Verified())
	}
	path := filepath.Join(t.TempDir(), "state")
	if err := st.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	loaded, err := state.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	// Warm, an hour later: v1 and v2 are trusted (one tag list, no
	// resolve for them); v3, never verified, is still looked up.
	p, r, sent := w.planWith(t, loaded, maxAge, now.Add(time.Hour))
	if diff := cmp.Diff(want, classes(p)); diff != "" {
		t.Errorf("warm plan (-want +got):\n%s", diff)
	}
	if r.Trusted() != 2 {
		t.Errorf("warm plan: %d trusted, want 2", r.Trusted())
	}
	// /v2/ ping, the tag list, v3's digest (absent), and the source
	// manifest of the copy: nothing for v1 and v2.
	if sent != 4 {
		t.Errorf("warm plan sent %d requests, want 4 (ping, tag list, v3 digest, source manifest)", sent)
	}

	// Stale: past the max age everything is verified again.
	_, r, _ = w.planWith(t, loaded, maxAge, now.Add(maxAge+time.Hour))
	if r.Trusted() != 0 {
		t.Errorf("stale plan: %d trusted, want 0", r.Trusted())
	}
}

// TestReaderPartialDigests checks the planner with a tag list that gives
// the digest of some tags only (the state knows v1, not v2): v2 must still
// be resolved, not taken as pointing at no digest.
func TestReaderPartialDigests(t *testing.T) {
	w := newWorld(t)
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	st := state.New()
	st.Observe(w.host+"/prod/app", "v1", w.digest["v1"], now)
	p, r, _ := w.planWith(t, st, time.Hour, now)
	if diff := cmp.Diff(map[string]plan.Class{"v3": plan.Copy}, classes(p)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if r.Trusted() != 1 {
		t.Errorf("%d trusted, want 1", r.Trusted())
	}
}

// TestReaderTradeOff shows what the state cannot see: a tag moved by
// someone else while it stays listed. A plan trusting the state calls it
// promoted; one without the state (max age 0) sees the conflict.
func TestReaderTradeOff(t *testing.T) {
	w := newWorld(t)
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	st := state.New()
	w.planWith(t, st, 24*time.Hour, now)
	// Someone moves prod/app:v2 to another image, outside the promoter.
	testenv.PushImage(t, w.host+"/prod/app:v2", 99)

	p, _, _ := w.planWith(t, st, 24*time.Hour, now.Add(time.Minute))
	if got := classes(p)["v2"]; got != "" {
		t.Errorf("trusting the state: v2 is %s, want promoted (the trade-off: a moved tag is not seen)", got)
	}
	p, _, _ = w.planWith(t, st, 0, now.Add(time.Minute))
	if got := classes(p)["v2"]; got != plan.Conflict {
		t.Errorf("without trust: v2 is %q, want %s", got, plan.Conflict)
	}
	// And the registry's answer replaced the stale record.
	if d, _, _ := st.Tag(w.host+"/prod/app", "v2"); d == w.digest["v2"] {
		t.Error("the moved tag's record still names the old digest")
	}
}

// TestReaderUnlistedTag checks that a record of a tag no longer listed is
// not trusted.
func TestReaderUnlistedTag(t *testing.T) {
	w := newWorld(t)
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	st := state.New()
	// A record claims v3 was verified, but v3 is not in the registry.
	st.Observe(w.host+"/prod/app", "v3", w.digest["v3"], now)
	p, _, _ := w.planWith(t, st, 24*time.Hour, now)
	if got := classes(p)["v3"]; got != plan.Copy {
		t.Errorf("v3 is %q, want %s: a record of a tag that is not listed must not be trusted", got, plan.Copy)
	}
}
