package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// TestStateWarmNoop promotes with --state, then runs the same promotion
// again: the second run trusts every edge the first verified or promoted
// and sends each destination registry one /v2/ ping and one tag list per
// repository, nothing per edge. A third run, with the tags listed but one
// moved by someone else, shows the trade-off, and a run without --state
// catches the move.
func TestStateWarmNoop(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := standardSet(t, regs.src())
	dir, _ := thinDir(t, "sample", regs.spec(), entries(ps...))
	st := filepath.Join(t.TempDir(), "promoter.state")

	r := promoter(t, "run", "--confirm", "--state", st, dir)
	wantExit(t, r, 0)
	wantPromoted(t, regs.src(), regs.dests(), ps...)
	if fi, err := os.Stat(st); err != nil || fi.Size() == 0 {
		t.Fatalf("no state file after the run: %v", err)
	}

	r = promoter(t, "run", "--confirm", "--state", st, "-o", "json", "--log-level", "info", dir)
	wantExit(t, r, 0)
	var rep reportJSON
	decodeJSON(t, r, &rep)
	if rep.Totals.Promoted != 0 || rep.Totals.Present != 2*edgeCount(ps) {
		t.Errorf("warm run: %+v, want everything present", rep.Totals)
	}
	repos := map[string]bool{}
	for _, p := range ps {
		repos[p.image] = true
	}
	for _, h := range []string{regs.prodA.Host, regs.prodB.Host} {
		if got, want := rep.host(h).Requests, int64(1+len(repos)); got != want {
			t.Errorf("warm run sent %d requests to %s, want %d (1 ping + %d tag lists)", got, h, want, len(repos))
		}
	}
	if got := rep.host(regs.staging.Host).Requests; got != 0 {
		t.Errorf("warm run sent %d requests to staging, want 0", got)
	}
	wantContains(t, "warm run log", r.stderr, r, "edges trusted")

	// Someone moves a tag outside the promoter: trusting the state, the
	// run does not see it (the documented trade-off) ...
	testenv.PushImageWith(t, regs.destA()+"/app:1.0", testenv.ImageSpec{Seed: 77, Layers: 1, LayerSize: 512})
	r = promoter(t, "run", "--confirm", "--state", st, dir)
	wantExit(t, r, 0)
	// ... and a run without it does: the tag is refused as a conflict.
	r = promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 1)
	wantContains(t, "run without --state", r.output(), r, "already points at")
	if !strings.Contains(r.output(), "app") {
		t.Errorf("conflict not reported for app\n%s", r)
	}
}

// TestStateShards runs four shards with one --state path: each writes its
// own file next to it, and a second sharded run trusts every edge, sending
// only pings and tag lists.
func TestStateShards(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := shardSet(t, regs.src())
	dir, _ := thinDir(t, "sample", regs.spec(), entries(ps...))
	st := filepath.Join(t.TempDir(), "promoter.state")

	runShards(t, dir, t.TempDir(), "--state", st)
	wantPromoted(t, regs.src(), regs.dests(), ps...)
	files, _ := filepath.Glob(st + ".shard-*")
	if len(files) != shardCount {
		t.Fatalf("state files %v, want one per shard", files)
	}

	reports := t.TempDir()
	files = runShards(t, dir, reports, "--state", st)
	var requests int64
	for _, f := range files {
		rep := readShardReport(t, f)
		if rep.Totals.Promoted != 0 {
			t.Errorf("%s: %+v, want nothing promoted", f, rep.Totals)
		}
		for _, h := range []string{regs.prodA.Host, regs.prodB.Host, regs.staging.Host} {
			requests += rep.host(h).Requests
		}
	}
	// Per shard with units, one ping per destination registry; one tag
	// list per destination repository (7 image names, 2 registries).
	if max := int64(shardCount*2 + 7*2); requests > max {
		t.Errorf("warm sharded run sent %d requests, want at most %d (pings and tag lists only)", requests, max)
	}
}
