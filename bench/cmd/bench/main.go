// Command bench compares the promoter with peer tools (crane, regsync) on
// the same promotion jobs against real CNCF Distribution registries on
// 127.0.0.1, each behind a counting reverse proxy, and prints one Markdown
// table of wall time, requests, bytes read from staging, blob uploads and
// mounts. bench/run.sh installs the pinned tools and runs it; see
// docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Scenario names, in the order they run within a repetition.
const (
	scenCold1 = "cold-1"
	scenCold2 = "cold-2"
	scenCold4 = "cold-4"
	scenNoop  = "no-op"
	scenIncr  = "incremental"
)

// allScenarios lists the scenarios in table order.
var allScenarios = []string{scenCold1, scenCold2, scenCold4, scenNoop, scenIncr}

// coldDests is the number of destination registries of each cold scenario.
var coldDests = map[string]int{scenCold1: 1, scenCold2: 2, scenCold4: 4}

// allTools lists the tools the harness knows.
var allTools = []string{"floor", "ours", "ours-default", "ours-state", "crane", "regsync"}

// options are the command-line settings.
type options struct {
	binDir       string
	promoterBin  string
	promoterDesc string
	workloads    []string
	scenarios    []string
	w3Scenarios  []string
	tools        []string
	reps         int
	jobs         int
	w3Images     int
	outMD        string
	outJSON      string
	keep         bool
	toolTimeout  time.Duration
	net          NetProfile
	netName      string
	floorFlight  int
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line; errors are printed on stderr.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var workloads, scenarios, w3Scenarios, tools string
	quick := fs.Bool("quick", false, "fast sanity run: W1 only, 1 repetition (explicit flags still win)")
	fs.StringVar(&o.binDir, "bin", "bench/.bin", "directory holding the registry, crane, regsync and promoter binaries")
	fs.StringVar(&o.promoterBin, "promoter", "", "promoter binary (default BIN/promoter)")
	fs.StringVar(&o.promoterDesc, "promoter-desc", "", "what the promoter binary was built from, for the environment section")
	fs.StringVar(&workloads, "workloads", "W1,W2,W3", "workloads to run (W1, W2, W3)")
	fs.StringVar(&scenarios, "scenarios", "cold-1,cold-2,no-op,incremental", "scenarios for W1 and W2")
	fs.StringVar(&w3Scenarios, "w3-scenarios", "cold-2,no-op,incremental", "scenarios for W3 (its cold-2 runs once, as set-up for the others)")
	fs.StringVar(&tools, "tools", "floor,ours,crane,regsync", "tools to run, in order (floor: the ideal client, the reference row)")
	fs.IntVar(&o.reps, "reps", 3, "repetitions of each scenario (the table shows medians)")
	fs.IntVar(&o.jobs, "jobs", 4, "parallelism given to every tool (promoter -j, crane processes at once, regsync parallel)")
	fs.IntVar(&o.w3Images, "w3-images", 1000, "number of images in W3")
	fs.StringVar(&o.outMD, "out", "bench/results/latest.md", "Markdown results file ('' for none)")
	fs.StringVar(&o.outJSON, "json", "bench/results/latest.json", "JSON file with every sample ('' for none)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (registry storage, tool inputs and logs)")
	fs.DurationVar(&o.toolTimeout, "tool-timeout", 10*time.Minute, "limit for one tool run")
	fs.StringVar(&o.netName, "net", "loopback", "network profile: loopback (nothing added) or wan (-latency and -bandwidth in the counting proxies)")
	latency := fs.Duration("latency", 20*time.Millisecond, "with -net wan: round-trip time added to every request")
	bandwidth := fs.Float64("bandwidth", 40, "with -net wan: MiB/s per registry link (staging egress, each destination's ingress; 0: no cap)")
	fs.IntVar(&o.floorFlight, "floor-inflight", 16, "requests in flight per registry for the ideal client (floor)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["workloads"] {
			workloads = "W1"
		}
		if !set["reps"] {
			o.reps = 1
		}
	}
	switch o.netName {
	case "loopback":
	case "wan":
		o.net = NetProfile{RTT: *latency, BytesPerSec: *bandwidth * mib}
	default:
		fmt.Fprintf(stderr, "bench: unknown -net %q (want loopback or wan)\n", o.netName)
		return o, fmt.Errorf("unknown -net %q", o.netName)
	}
	if o.netName == "wan" {
		if !set["out"] {
			o.outMD = "bench/results/latest-wan.md"
		}
		if !set["json"] {
			o.outJSON = "bench/results/latest-wan.json"
		}
	}
	o.workloads = splitList(strings.ToUpper(workloads))
	o.scenarios = splitList(scenarios)
	o.w3Scenarios = splitList(w3Scenarios)
	o.tools = splitList(tools)
	bad := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		fmt.Fprintln(stderr, "bench:", err)
		return err
	}
	for _, w := range o.workloads {
		if !slices.Contains([]string{"W1", "W2", "W3"}, w) {
			return o, bad("unknown workload %q", w)
		}
	}
	for _, s := range append(slices.Clone(o.scenarios), o.w3Scenarios...) {
		if !slices.Contains(allScenarios, s) {
			return o, bad("unknown scenario %q (want %s)", s, strings.Join(allScenarios, ", "))
		}
	}
	for _, t := range o.tools {
		if !slices.Contains(allTools, t) {
			return o, bad("unknown tool %q", t)
		}
	}
	if o.reps < 1 || o.jobs < 1 || o.w3Images < 5 || o.floorFlight < 1 {
		return o, bad("-reps, -jobs and -floor-inflight must be at least 1, -w3-images at least 5")
	}
	if fs.NArg() > 0 {
		return o, bad("unexpected arguments %q", fs.Args())
	}
	if o.promoterBin == "" {
		o.promoterBin = filepath.Join(o.binDir, "promoter")
	}
	return o, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// bench is one run of the harness: registries, tools and samples.
type bench struct {
	opts    options
	log     io.Writer
	workDir string
	env     []string
	staging *Registry
	prods   []*Registry
	tools   []Tool
	samples []Sample
	nextJob int
}

// run sets everything up, runs every workload and writes the results.
func run(ctx context.Context, opts options, stdout, stderr io.Writer) error {
	bins := map[string]string{
		"registry": filepath.Join(opts.binDir, "registry"),
		"crane":    filepath.Join(opts.binDir, "crane"),
		"regsync":  filepath.Join(opts.binDir, "regsync"),
		"promoter": opts.promoterBin,
	}
	for name, path := range bins {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s binary: %w (bench/run.sh installs it)", name, err)
		}
	}
	workDir, err := os.MkdirTemp("", "promoter-bench-")
	if err != nil {
		return err
	}
	if opts.keep {
		fmt.Fprintln(stderr, "work directory (kept):", workDir)
	} else {
		defer os.RemoveAll(workDir)
	}
	b := &bench{opts: opts, log: stderr, workDir: workDir}
	b.env, err = toolEnv(workDir)
	if err != nil {
		return err
	}
	for _, t := range opts.tools {
		switch t {
		case "ours":
			b.tools = append(b.tools, promoterTool{bin: bins["promoter"]})
		case "ours-default":
			b.tools = append(b.tools, promoterTool{bin: bins["promoter"], defaults: true})
		case "ours-state":
			// One state file for all of the tool's runs, as a daily job
			// keeps it.
			b.tools = append(b.tools, promoterTool{bin: bins["promoter"], state: filepath.Join(workDir, "ours.state")})
		case "crane":
			b.tools = append(b.tools, craneTool{bin: bins["crane"]})
		case "regsync":
			b.tools = append(b.tools, regsyncTool{bin: bins["regsync"]})
		case "floor":
			b.tools = append(b.tools, floorTool{inflight: opts.floorFlight})
		}
	}
	envInfo := describeEnv(ctx, opts, bins)

	regDir := filepath.Join(workDir, "registries")
	names := []string{"staging"}
	for i := 1; i <= maxDests(opts); i++ {
		names = append(names, fmt.Sprintf("prod%d", i))
	}
	for _, n := range names {
		r, err := StartRegistry(ctx, bins["registry"], regDir, n)
		if err != nil {
			return err
		}
		defer r.Close()
		if n == "staging" {
			b.staging = r
		} else {
			b.prods = append(b.prods, r)
		}
	}
	for _, r := range append([]*Registry{b.staging}, b.prods...) {
		fmt.Fprintf(stderr, "registry %s: %s (proxy %s)\n", r.Name, r.DirectHost(), r.Host())
	}
	b.setProfile(opts.net)
	fmt.Fprintln(stderr, "network:", opts.net)

	start := time.Now()
	var workloads []workloadInfo
	for _, wn := range opts.workloads {
		wi, err := b.runWorkload(ctx, wn)
		if err != nil {
			return err
		}
		workloads = append(workloads, wi)
	}
	res := Results{
		Date:        start.UTC().Format(time.RFC3339),
		Duration:    time.Since(start).Round(time.Second).String(),
		Env:         envInfo,
		Workloads:   workloads,
		Jobs:        opts.jobs,
		Reps:        opts.reps,
		Network:     opts.net.String(),
		FloorFlight: opts.floorFlight,
		Samples:     b.samples,
	}
	res.Rows = aggregate(b.samples, opts.tools)
	md := renderMarkdown(res, false)
	fmt.Fprint(stdout, md)
	if opts.outMD != "" {
		if err := writeAtomic(opts.outMD, []byte(renderMarkdown(res, true))); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "wrote", opts.outMD)
	}
	if opts.outJSON != "" {
		if err := writeJSON(opts.outJSON, res); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "wrote", opts.outJSON)
	}
	var failed []string
	for _, s := range b.samples {
		if s.Error != "" {
			failed = append(failed, fmt.Sprintf("%s %s %s rep %d", s.Workload, s.Scenario, s.Tool, s.Rep+1))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d runs failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// toolEnv is the environment of the tool processes: this one's, with a
// private empty HOME and docker config so that no credentials or user
// settings are read, and no proxy variables, since every address is
// loopback.
func toolEnv(workDir string) ([]string, error) {
	home := filepath.Join(workDir, "home")
	docker := filepath.Join(home, ".docker")
	if err := os.MkdirAll(docker, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(docker, "config.json"), []byte("{}\n"), 0o644); err != nil {
		return nil, err
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HOME", "DOCKER_CONFIG", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "XDG_CONFIG_HOME", "XDG_CACHE_HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "DOCKER_CONFIG="+docker), nil
}

// workloadInfo describes a workload in the results.
type workloadInfo struct {
	Name      string `json:"name"`
	Desc      string `json:"desc"`
	Images    int    `json:"images"`
	Indexes   int    `json:"indexes"`
	Blobs     int    `json:"blobs"`
	BlobBytes int64  `json:"blobBytes"`
	Increment int    `json:"increment"`
	Scenarios string `json:"scenarios"`
}

// buildWorkload makes the named workload.
func (b *bench) buildWorkload(wn string) (*Workload, error) {
	switch wn {
	case "W1":
		return layeredWorkload("W1", 20, 5, 0, mib)
	case "W2":
		return layeredWorkload("W2", 20, 5, 5, mib)
	default:
		return smallWorkload("W3", b.opts.w3Images, 10, 512, b.opts.reps)
	}
}

// runWorkload seeds a fresh staging registry with workload wn and runs
// every tool's repetitions on it.
func (b *bench) runWorkload(ctx context.Context, wn string) (workloadInfo, error) {
	t0 := time.Now()
	w, err := b.buildWorkload(wn)
	if err != nil {
		return workloadInfo{}, fmt.Errorf("building %s: %w", wn, err)
	}
	if err := b.staging.Wipe(ctx); err != nil {
		return workloadInfo{}, err
	}
	if err := seed(ctx, b.staging.DirectHost(), w, 8); err != nil {
		return workloadInfo{}, err
	}
	if err := verify(ctx, []string{b.staging.DirectHost()}, stagingPrefix, w.All()); err != nil {
		return workloadInfo{}, err
	}
	images, indexes, blobs, bytes := w.Stats()
	scen := b.opts.scenarios
	if wn == "W3" {
		scen = b.opts.w3Scenarios
	}
	info := workloadInfo{
		Name: wn, Desc: w.Desc, Images: images, Indexes: indexes, Blobs: blobs, BlobBytes: bytes,
		Increment: len(w.Extra[0]), Scenarios: strings.Join(scen, ", "),
	}
	fmt.Fprintf(b.log, "== %s: %s; %d images (%d indexes), %d blobs, %.1f MiB; seeded in %s\n",
		wn, w.Desc, images, indexes, blobs, float64(bytes)/mib, time.Since(t0).Round(time.Millisecond))
	has := func(s string) bool { return slices.Contains(scen, s) }
	for _, tool := range b.tools {
		for rep := 0; rep < b.opts.reps; rep++ {
			if err := ctx.Err(); err != nil {
				return info, err
			}
			ok, err := b.runRep(ctx, w, tool, rep, has)
			if err != nil {
				return info, err
			}
			if !ok && !w.Fresh {
				break // the later repetitions build on this one's state
			}
		}
	}
	return info, nil
}

// runRep runs one repetition of the selected scenarios for tool and
// reports whether every tool run succeeded; the error is for the harness
// itself failing, e.g. a registry that does not restart.
func (b *bench) runRep(ctx context.Context, w *Workload, tool Tool, rep int, has func(string) bool) (bool, error) {
	ok := true
	if w.Fresh || rep == 0 {
		for _, sc := range []string{scenCold1, scenCold4} {
			if !has(sc) {
				continue
			}
			n := coldDests[sc]
			if err := b.wipeProds(ctx, n); err != nil {
				return false, err
			}
			ok = b.measure(ctx, w, tool, sc, rep, b.prods[:n], w.Base, nil, true) && ok
		}
		// cold-2 last: no-op and incremental start from what it leaves.
		if has(scenCold2) || has(scenNoop) || has(scenIncr) {
			if err := b.wipeProds(ctx, 2); err != nil {
				return false, err
			}
			if !b.measure(ctx, w, tool, scenCold2, rep, b.prods[:2], w.Base, nil, has(scenCold2)) {
				return false, nil // no-op and incremental need the cold state
			}
		}
	}
	// Increments promoted by the repetitions before this one (on a
	// workload whose destinations are not wiped between repetitions), and
	// the increment this repetition adds.
	prior, add := 0, 0
	if !w.Fresh && has(scenIncr) {
		prior, add = rep, rep
	}
	if has(scenNoop) && tool.Name() != "floor" {
		// The ideal client has nothing to do in a no-op: no row.
		ok = b.measure(ctx, w, tool, scenNoop, rep, b.prods[:2], w.Listed(prior, -1), []*Image{}, true) && ok
	}
	if has(scenIncr) {
		ok = b.measure(ctx, w, tool, scenIncr, rep, b.prods[:2], w.Listed(prior, add), w.Extra[add], true) && ok
	}
	return ok, nil
}

// wipeProds empties the first n production registries.
func (b *bench) wipeProds(ctx context.Context, n int) error {
	for _, p := range b.prods[:n] {
		if err := p.Wipe(ctx); err != nil {
			return err
		}
	}
	return nil
}

// setProfile sets the network profile of every registry link.
func (b *bench) setProfile(np NetProfile) {
	b.staging.Proxy.SetProfile(np)
	for _, p := range b.prods {
		p.Proxy.SetProfile(np)
	}
}

// measure runs tool on one job, counts its traffic and, for every scenario
// that writes, verifies the destinations. newImgs are the images the
// destinations lack (nil: all), told to the ideal client only. With record
// false the run is set-up only: it runs without the network profile, its
// errors are still reported, its numbers are not kept. It returns whether
// the run succeeded.
func (b *bench) measure(ctx context.Context, w *Workload, tool Tool, scen string, rep int, dests []*Registry, images, newImgs []*Image, record bool) bool {
	b.nextJob++
	dir := filepath.Join(b.workDir, "jobs", fmt.Sprintf("%04d-%s-%s-%s-%d", b.nextJob, w.Name, tool.Name(), scen, rep+1))
	s := Sample{Workload: w.Name, Scenario: scen, Tool: tool.Name(), Rep: rep, Dests: len(dests)}
	fail := func(err error) bool {
		s.Error = err.Error()
		fmt.Fprintf(b.log, "FAIL %s %s %s rep %d: %v\n", w.Name, scen, tool.Name(), rep+1, err)
		b.samples = append(b.samples, s)
		return false
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	job := Job{Dir: dir, Staging: b.staging.Host(), Images: images, New: newImgs, Jobs: b.opts.jobs, Env: b.env}
	var hosts []string
	for _, d := range dests {
		job.Dests = append(job.Dests, d.Host())
		hosts = append(hosts, d.DirectHost())
	}
	if !record {
		b.setProfile(NetProfile{})
		defer b.setProfile(b.opts.net)
	}
	before := b.snapshot()
	runCtx, cancel := context.WithTimeout(ctx, b.opts.toolTimeout)
	elapsed, err := timed(func() error { return tool.Run(runCtx, job) })
	cancel()
	after := b.snapshot()
	s.Seconds = elapsed.Seconds()
	s.Staging = after[0].sub(before[0])
	for i := 1; i < len(after); i++ {
		s.Prod = append(s.Prod, after[i].sub(before[i]))
	}
	if err != nil {
		return fail(err)
	}
	if scen != scenNoop {
		if err := verify(ctx, hosts, prodPrefix, images); err != nil {
			return fail(err)
		}
	}
	var prodReq, mounts int64
	var uploads []string
	for i, p := range s.Prod {
		prodReq += p.Requests
		mounts += p.Mounts
		if i < len(dests) {
			uploads = append(uploads, fmt.Sprint(p.BlobUploads))
		}
	}
	line := fmt.Sprintf("%s %-11s %-7s rep %d: %6.2fs  staging %5d req %7.1f MiB  prod %5d req, uploads %s, mounts %d",
		w.Name, scen, tool.Name(), rep+1, s.Seconds, s.Staging.Requests, float64(s.Staging.BlobGETBytes)/mib,
		prodReq, strings.Join(uploads, "/"), mounts)
	if !record {
		line += "  (set-up, not recorded)"
	} else {
		b.samples = append(b.samples, s)
	}
	fmt.Fprintln(b.log, line)
	return true
}

// maxDests is the number of production registries the scenarios need.
func maxDests(o options) int {
	n := 2
	for _, sc := range append(slices.Clone(o.scenarios), o.w3Scenarios...) {
		n = max(n, coldDests[sc])
	}
	return n
}

// snapshot returns the counters of staging and every production registry.
func (b *bench) snapshot() []Counts {
	out := []Counts{b.staging.Proxy.Snapshot()}
	for _, p := range b.prods {
		out = append(out, p.Proxy.Snapshot())
	}
	return out
}
