package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// shardCount is how many processes the sharded tests run.
const shardCount = 4

// shardSet is a promotion of several image names (the units shards take),
// one of them an index and one digest-only, so that every one of four
// shards has work.
func shardSet(t *testing.T, src string) []promo {
	t.Helper()
	return []promo{
		pushImage(t, src, "app", 1, "1.0", "latest"),
		pushImage(t, src, "app", 2, "1.1"),
		pushIndex(t, src, "multi", 100, "v2.0"),
		pushImage(t, src, "digestonly", 3),
		pushImage(t, src, "tools/cli", 4, "0.1"),
		pushImage(t, src, "tools/cli", 5, "0.2", "stable"),
		pushImage(t, src, "base", 6, "3.18"),
		pushImage(t, src, "web", 7, "1"),
		pushImage(t, src, "web", 8, "2"),
		pushImage(t, src, "db", 9, "14"),
	}
}

// shardRun is one shard process started in the background.
type shardRun struct {
	index  int
	cmd    *cmdRun
	report string
}

// cmdRun is a started binary.
type cmdRun struct {
	stdout, stderr bytes.Buffer
	done           chan struct{}
	code           int
	kill           func()
}

// startShard starts `promoter run --confirm` for shard index of count as a
// Kubernetes Indexed Job pod would: the index in JOB_COMPLETION_INDEX, the
// count in PROMOTER_SHARD_COUNT, the JSON report written to --report-file.
func startShard(t *testing.T, dir, reports string, index int, extra ...string) *shardRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	report := filepath.Join(reports, fmt.Sprintf("shard-%d.json", index))
	args := append([]string{"run", "--confirm", "-o", "json", "--report-file", report}, extra...)
	cmd := promoterCmd(ctx, t, append(args, dir)...)
	cmd.Env = append(cmd.Env, fmt.Sprintf("JOB_COMPLETION_INDEX=%d", index), fmt.Sprintf("PROMOTER_SHARD_COUNT=%d", shardCount))
	r := &cmdRun{done: make(chan struct{}), code: -1}
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	r.kill = func() { _ = cmd.Process.Kill() }
	go func() {
		defer cancel()
		defer close(r.done)
		_ = cmd.Wait()
		if cmd.ProcessState != nil {
			r.code = cmd.ProcessState.ExitCode()
		}
	}()
	return &shardRun{index: index, cmd: r, report: report}
}

// wait waits for the shard and fails the test unless it exited with code.
func (s *shardRun) wait(t *testing.T, code int) {
	t.Helper()
	<-s.cmd.done
	if s.cmd.code != code {
		t.Fatalf("shard %d: exit status %d, want %d\n--- stdout ---\n%s--- stderr ---\n%s", s.index, s.cmd.code, code, s.cmd.stdout.String(), s.cmd.stderr.String())
	}
}

// runShards runs every shard at once and waits for all of them.
func runShards(t *testing.T, dir, reports string, extra ...string) []string {
	t.Helper()
	var shards []*shardRun
	for i := range shardCount {
		shards = append(shards, startShard(t, dir, reports, i, extra...))
	}
	var files []string
	for _, s := range shards {
		s.wait(t, 0)
		files = append(files, s.report)
	}
	return files
}

type shardInfoJSON struct {
	PlanID     string   `json:"planId"`
	Index      int      `json:"index"`
	Count      int      `json:"count"`
	Units      []string `json:"units"`
	Edges      int      `json:"edges"`
	TotalUnits int      `json:"totalUnits"`
	TotalEdges int      `json:"totalEdges"`
	Merged     bool     `json:"merged"`
}

type shardReportJSON struct {
	reportJSON
	Shard *shardInfoJSON `json:"shard"`
}

func readShardReport(t *testing.T, path string) shardReportJSON {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r shardReportJSON
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// withoutHosts keys a snapshot by repository path without the registry
// host, so that two sets of registries can be compared.
func withoutHosts(snap map[string]map[string]v1.Hash) map[string]map[string]v1.Hash {
	out := map[string]map[string]v1.Hash{}
	for repo, tags := range snap {
		_, path, _ := strings.Cut(repo, "/")
		out[path] = tags
	}
	return out
}

// TestShardsMatchUnsharded runs four shards at once, as the pods of an
// Indexed Job (JOB_COMPLETION_INDEX=0..3, PROMOTER_SHARD_COUNT=4), against
// real registries: together they promote exactly what one unsharded run
// promotes into other, empty registries; their reports are disjoint
// shards of one plan, which report merge combines; and report merge
// rejects a set with a shard missing, duplicated or from another plan.
func TestShardsMatchUnsharded(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := shardSet(t, regs.src())
	dir, _ := thinDir(t, "sample", regs.spec(), entries(ps...))
	reports := t.TempDir()

	files := runShards(t, dir, reports)
	wantPromoted(t, regs.src(), regs.dests(), ps...)
	sharded := withoutHosts(snapshot(t, regs.prodA.Host, regs.prodB.Host))

	// The same manifests promoted by one process into empty registries.
	prodA, prodB := testenv.StartDistribution(t, "unsharded-a"), testenv.StartDistribution(t, "unsharded-b")
	plainSpec := registrySpec{src: regs.src(), dests: []string{prodA.Host + "/" + prodAPrefix, prodB.Host + "/" + prodBPrefix}}
	plainDir, _ := thinDir(t, "sample", plainSpec, entries(ps...))
	r := promoter(t, "run", "--confirm", "-o", "json", plainDir)
	wantExit(t, r, 0)
	var whole reportJSON
	decodeJSON(t, r, &whole)
	unsharded := withoutHosts(snapshot(t, prodA.Host, prodB.Host))
	if diff := cmp.Diff(unsharded, sharded); diff != "" {
		t.Errorf("destinations after the sharded run differ from the unsharded run's (-unsharded +sharded):\n%s", diff)
	}
	wantPromoted(t, regs.src(), plainSpec.dests, ps...)

	// Each shard did its own units only, and they add up to the whole.
	planID, promoted, units := "", 0, map[string]int{}
	for i, f := range files {
		rep := readShardReport(t, f)
		if rep.Shard == nil {
			t.Fatalf("%s: no shard section", f)
		}
		s := rep.Shard
		if s.Index != i || s.Count != shardCount || (planID != "" && s.PlanID != planID) {
			t.Errorf("%s: shard %+v", f, s)
		}
		planID = s.PlanID
		if len(s.Units) == 0 {
			t.Errorf("%s: shard %d has no units: the set is too small to show sharding", f, i)
		}
		for _, u := range s.Units {
			units[u]++
		}
		promoted += rep.Totals.Promoted
		if rep.Totals.Failed+rep.Totals.Refused != 0 {
			t.Errorf("%s: %+v", f, rep.Totals)
		}
	}
	if promoted != whole.Totals.Promoted {
		t.Errorf("shards promoted %d edges, the unsharded run %d", promoted, whole.Totals.Promoted)
	}
	if len(units) != 7 {
		t.Errorf("units %v: want the 7 image names", units)
	}
	for u, n := range units {
		if n != 1 {
			t.Errorf("unit %s in %d shards", u, n)
		}
	}

	// report merge accepts exactly the four reports, in any order.
	m := promoter(t, "report", "merge", "-o", "json", reports)
	wantExit(t, m, 0)
	var merged shardReportJSON
	decodeJSON(t, m, &merged)
	if merged.Totals != whole.Totals || merged.Shard == nil || !merged.Shard.Merged || len(merged.Shard.Units) != 7 {
		t.Errorf("merged report: totals %+v (unsharded %+v), shard %+v", merged.Totals, whole.Totals, merged.Shard)
	}
	if len(merged.Results) != len(whole.Results) {
		t.Errorf("merged report has %d results, the unsharded run %d", len(merged.Results), len(whole.Results))
	}
	text := promoter(t, append([]string{"report", "merge"}, files...)...)
	wantExit(t, text, 0)
	wantContains(t, "merged text", text.stdout, text, "Merged 4 shards of plan "+planID, fmt.Sprintf("Run: %d edges promoted", whole.Totals.Promoted))

	// A foreign report: a shard of another plan (one more tag).
	other := append([]promo{}, ps...)
	other[0].tags = append([]string{"extra"}, other[0].tags...)
	otherDir, _ := thinDir(t, "other", regs.spec(), entries(other...))
	foreign := filepath.Join(t.TempDir(), "foreign.json")
	f := promoter(t, "plan", "-o", "json", "--shard-index", "2", "--shard-count", "4", "--report-file", foreign, otherDir)
	wantExit(t, f, 0)
	for name, set := range map[string][]string{
		"missing":    {files[0], files[1], files[3]},
		"duplicated": {files[0], files[1], files[1], files[2], files[3]},
		"foreign":    {files[0], files[1], foreign, files[3]},
	} {
		r := promoter(t, append([]string{"report", "merge"}, set...)...)
		wantExit(t, r, 2)
		wantContains(t, name, r.stderr, r, "not one whole promotion")
	}
}

// TestShardKilledAndRerun kills one of four shards while it copies; the
// other three finish, report merge refuses the incomplete set, and running
// only the killed shard's index again completes the promotion.
func TestShardKilledAndRerun(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	// Staging behind a gate that slows every request, so the shard is
	// killed mid-way.
	g := newGate(t, regs.staging.Host)
	ps := shardSet(t, regs.src())
	src := g.host + "/" + stagingPrefix
	dir, _ := thinDir(t, "sample", registrySpec{src: src, dests: regs.dests()}, entries(ps...))
	reports := t.TempDir()

	// Which shard has the index image (the most work)?
	victim := -1
	for i := range shardCount {
		r := promoter(t, "plan", "-o", "json", "--shard-index", fmt.Sprint(i), "--shard-count", fmt.Sprint(shardCount), dir)
		wantExit(t, r, 0)
		var p struct {
			Shard shardInfoJSON `json:"shard"`
		}
		decodeJSON(t, r, &p)
		for _, u := range p.Shard.Units {
			if strings.HasSuffix(u, "/multi") {
				victim = i
			}
		}
	}
	if victim < 0 {
		t.Fatal("no shard has the multi image")
	}

	g.setDelay(300 * time.Millisecond)
	var shards []*shardRun
	for i := range shardCount {
		shards = append(shards, startShard(t, dir, reports, i))
	}
	// Kill the victim once it has started copying (a destination repository
	// of its exists) or after a few seconds.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if len(catalog(t, regs.prodA.Host)) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	shards[victim].cmd.kill()
	<-shards[victim].cmd.done
	var wg sync.WaitGroup
	for i, s := range shards {
		if i != victim {
			wg.Go(func() { s.wait(t, 0) })
		}
	}
	wg.Wait()
	if _, err := os.Stat(shards[victim].report); err == nil {
		t.Fatalf("the killed shard wrote its report")
	}
	var have []string
	for i, s := range shards {
		if i != victim {
			have = append(have, s.report)
		}
	}
	r := promoter(t, append([]string{"report", "merge"}, have...)...)
	wantExit(t, r, 2)
	wantContains(t, "merge without the killed shard", r.stderr, r, fmt.Sprintf("shard index %d of %d is missing", victim, shardCount))

	// Run only the killed index again.
	g.setDelay(0)
	again := startShard(t, dir, reports, victim)
	again.wait(t, 0)
	wantPromoted(t, src, regs.dests(), ps...)
	r = promoter(t, "report", "merge", "-o", "json", shards[0].report, shards[1].report, shards[2].report, shards[3].report)
	wantExit(t, r, 0)
	var merged shardReportJSON
	decodeJSON(t, r, &merged)
	if merged.Totals.Failed+merged.Totals.Refused != 0 {
		t.Errorf("merged after the rerun: %+v", merged.Totals)
	}
}

// TestShardUsage checks that a count without an index, and an index
// without a count, are usage errors before anything is read.
func TestShardUsage(t *testing.T) {
	e2e(t)
	down := freeHost(t)
	rs := registrySpec{src: down + "/" + stagingPrefix, dests: []string{down + "/" + prodAPrefix}}
	dir, _ := thinDir(t, "x", rs, entries(promo{image: "app", digest: imageDigest(t, 1), tags: []string{"1"}}))
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"plan", "--shard-count", "4", dir}, nil, "no shard index"},
		{[]string{"run", "--confirm", dir}, []string{"PROMOTER_SHARD_COUNT=4"}, "no shard index"},
		{[]string{"plan", dir}, []string{"JOB_COMPLETION_INDEX=1"}, "no shard count"},
		{[]string{"plan", "--shard-index", "4", "--shard-count", "4", dir}, nil, "out of range"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
		cmd := promoterCmd(ctx, t, tc.args...)
		cmd.Env = append(cmd.Env, tc.env...)
		out, _ := cmd.CombinedOutput()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v %v: exit %d, output %s; want 2 and %q", tc.env, tc.args, code, out, tc.want)
		}
	}
}

// TestShardedDrift checks production in four drift shards
// (JOB_COMPLETION_INDEX=0..3) and shows that their merged report has
// exactly the findings of one unsharded drift: a moved tag, an unexpected
// tag, an unexpected repository and a missing tag, each in another unit.
func TestShardedDrift(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := shardSet(t, regs.src())
	dir, _ := thinDir(t, "sample", regs.spec(), entries(ps...))
	r := promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 0)

	// Drift, in several units and outside any unit.
	testenv.PushImageWith(t, regs.destA()+"/web:2", testenv.ImageSpec{Seed: 901, Layers: 1, LayerSize: 512})   // moved
	testenv.PushImageWith(t, regs.destA()+"/db:15", testenv.ImageSpec{Seed: 902, Layers: 1, LayerSize: 512})   // unexpected tag
	testenv.PushImageWith(t, regs.destB()+"/rogue:1", testenv.ImageSpec{Seed: 903, Layers: 1, LayerSize: 512}) // unexpected repository
	// A tag the manifests now list that was never promoted: missing.
	more := append([]promo{}, ps...)
	more[4].tags = append([]string{"0.1.1"}, more[4].tags...)
	dir, _ = thinDir(t, "sample", regs.spec(), entries(more...))

	whole := promoter(t, "drift", "-o", "json", dir)
	wantExit(t, whole, 1)
	var want struct {
		Findings []map[string]string `json:"findings"`
	}
	decodeJSON(t, whole, &want)
	if len(want.Findings) < 4 {
		t.Fatalf("unsharded drift found %d findings, want at least the 4 made\n%s", len(want.Findings), whole)
	}

	reports := t.TempDir()
	var wg sync.WaitGroup
	codes := make([]int, shardCount)
	outs := make([]string, shardCount)
	for i := range shardCount {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
			defer cancel()
			cmd := promoterCmd(ctx, t, "drift", "-o", "json", "--report-file", filepath.Join(reports, fmt.Sprintf("drift-%d.json", i)), dir)
			cmd.Env = append(cmd.Env, fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i), fmt.Sprintf("PROMOTER_SHARD_COUNT=%d", shardCount))
			out, _ := cmd.CombinedOutput()
			codes[i], outs[i] = cmd.ProcessState.ExitCode(), string(out)
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 && c != 1 {
			t.Fatalf("drift shard %d: exit %d\n%s", i, c, outs[i])
		}
	}
	m := promoter(t, "report", "merge", "-o", "json", reports)
	wantExit(t, m, 1)
	var got struct {
		Findings []map[string]string `json:"findings"`
		Shard    *shardInfoJSON      `json:"shard"`
	}
	decodeJSON(t, m, &got)
	if diff := cmp.Diff(want.Findings, got.Findings); diff != "" {
		t.Errorf("merged sharded drift differs from the unsharded drift (-unsharded +sharded):\n%s", diff)
	}
	if got.Shard == nil || !got.Shard.Merged || got.Shard.Count != shardCount {
		t.Errorf("merged shard section %+v", got.Shard)
	}
}
