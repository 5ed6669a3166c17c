package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// Sample is one measured tool run.
type Sample struct {
	Workload string `json:"workload"`
	Scenario string `json:"scenario"`
	Tool     string `json:"tool"`
	Rep      int    `json:"rep"`
	// Dests is the number of destination registries of the job.
	Dests   int     `json:"dests"`
	Seconds float64 `json:"seconds"`
	// Staging is the traffic to the staging registry.
	Staging Counts `json:"staging"`
	// Prod is the traffic to prod1, prod2, ..., in that order.
	Prod []Counts `json:"prod"`
	// Error is why the run or its destination check failed; "" if it did not.
	Error string `json:"error,omitempty"`
}

// Row is the table line of one workload, scenario and tool: medians over
// the successful samples.
type Row struct {
	Workload   string    `json:"workload"`
	Scenario   string    `json:"scenario"`
	Tool       string    `json:"tool"`
	N          int       `json:"n"`
	Failed     int       `json:"failed"`
	Seconds    float64   `json:"seconds"`
	ReqStaging float64   `json:"requestsStaging"`
	ReqProd    float64   `json:"requestsProd"`
	StagingMiB float64   `json:"stagingMiB"`
	Uploads    []float64 `json:"uploads"`
	Mounts     float64   `json:"mounts"`
	// TimeRatio and ReqRatio are ours divided by the best peer (0 when not
	// applicable); requests are staging plus production.
	TimeRatio float64 `json:"timeRatio,omitempty"`
	ReqRatio  float64 `json:"requestsRatio,omitempty"`
	// FloorRatio is this row's time divided by the ideal client's (0 when
	// there is no floor row for the scenario).
	FloorRatio float64 `json:"floorRatio,omitempty"`
	// Routes is the request breakdown of the median-time sample, per
	// registry ("staging", "prod1", "prod2"), by "METHOD class".
	Routes map[string]map[string]int64 `json:"routes"`
}

// Results is everything one bench run produced.
type Results struct {
	Date      string         `json:"date"`
	Duration  string         `json:"duration"`
	Env       []string       `json:"environment"`
	Workloads []workloadInfo `json:"workloads"`
	Jobs      int            `json:"jobs"`
	Reps      int            `json:"reps"`
	// Network is the network profile of the run.
	Network string `json:"network"`
	// FloorFlight is the ideal client's requests in flight per registry.
	FloorFlight int      `json:"floorInflight"`
	Rows        []Row    `json:"rows"`
	Samples     []Sample `json:"samples"`
}

// aggregate turns samples into table rows, ordered by workload (as run),
// scenario and tool (as given).
func aggregate(samples []Sample, tools []string) []Row {
	type key struct{ w, s, t string }
	groups := map[key][]Sample{}
	var workloads []string
	for _, s := range samples {
		k := key{s.Workload, s.Scenario, s.Tool}
		groups[k] = append(groups[k], s)
		if !slices.Contains(workloads, s.Workload) {
			workloads = append(workloads, s.Workload)
		}
	}
	var rows []Row
	for _, w := range workloads {
		for _, sc := range allScenarios {
			start := len(rows)
			for _, t := range tools {
				g, ok := groups[key{w, sc, t}]
				if !ok {
					continue
				}
				rows = append(rows, makeRow(w, sc, t, g))
			}
			addRatios(rows[start:])
		}
	}
	return rows
}

// makeRow summarises one group of samples.
func makeRow(w, sc, t string, g []Sample) Row {
	r := Row{Workload: w, Scenario: sc, Tool: t}
	var ok []Sample
	for _, s := range g {
		if s.Error != "" {
			r.Failed++
		} else {
			ok = append(ok, s)
		}
	}
	r.N = len(ok)
	if len(ok) == 0 {
		return r
	}
	med := func(f func(Sample) float64) float64 {
		v := make([]float64, len(ok))
		for i, s := range ok {
			v[i] = f(s)
		}
		return median(v)
	}
	r.Seconds = med(func(s Sample) float64 { return s.Seconds })
	r.ReqStaging = med(func(s Sample) float64 { return float64(s.Staging.Requests) })
	r.ReqProd = med(func(s Sample) float64 { return float64(sumProd(s, func(c Counts) int64 { return c.Requests })) })
	r.StagingMiB = med(func(s Sample) float64 { return float64(s.Staging.BlobGETBytes) / mib })
	r.Mounts = med(func(s Sample) float64 { return float64(sumProd(s, func(c Counts) int64 { return c.Mounts })) })
	for i := range min(len(ok[0].Prod), max(1, ok[0].Dests)) {
		r.Uploads = append(r.Uploads, med(func(s Sample) float64 { return float64(s.Prod[i].BlobUploads) }))
	}
	// The breakdown comes from the sample closest to the median time.
	best := ok[0]
	for _, s := range ok {
		if math.Abs(s.Seconds-r.Seconds) < math.Abs(best.Seconds-r.Seconds) {
			best = s
		}
	}
	r.Routes = map[string]map[string]int64{"staging": best.Staging.ByRoute}
	for i, p := range best.Prod {
		r.Routes[fmt.Sprintf("prod%d", i+1)] = p.ByRoute
	}
	return r
}

// addRatios sets ours' ratios to the best peer, and every row's ratio to
// the floor, within one scenario's rows.
func addRatios(rows []Row) {
	bestTime, bestReq := math.Inf(1), math.Inf(1)
	floor := 0.0
	for _, r := range rows {
		if r.Tool == "floor" && r.N > 0 && r.Failed == 0 {
			floor = r.Seconds
		}
	}
	var oursRows []*Row
	for i := range rows {
		r := &rows[i]
		if r.N == 0 || r.Failed > 0 {
			continue
		}
		if floor > 0 && r.Tool != "floor" {
			r.FloorRatio = r.Seconds / floor
		}
		switch r.Tool {
		case "floor":
			continue
		case "ours", "ours-default", "ours-state":
			oursRows = append(oursRows, r)
			continue
		}
		bestTime = min(bestTime, r.Seconds)
		bestReq = min(bestReq, r.ReqStaging+r.ReqProd)
	}
	if math.IsInf(bestTime, 1) {
		return
	}
	for _, ours := range oursRows {
		if bestTime > 0 {
			ours.TimeRatio = ours.Seconds / bestTime
		}
		if bestReq > 0 {
			ours.ReqRatio = (ours.ReqStaging + ours.ReqProd) / bestReq
		}
	}
}

// sumProd adds f over the production registries of s.
func sumProd(s Sample, f func(Counts) int64) int64 {
	var n int64
	for _, c := range s.Prod {
		n += f(c)
	}
	return n
}

// median returns the median of v (the mean of the middle two for an even
// count); v is reordered.
func median(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// renderMarkdown renders the results; details adds the request breakdown
// per route, which the file gets and the terminal does not.
func renderMarkdown(res Results, details bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Benchmark results\n\n")
	fmt.Fprintf(&b, "Run %s, took %s; %d repetition(s) (table values are medians), parallelism %d for every tool; the ideal client (floor) keeps %d requests in flight per registry.\n\n", res.Date, res.Duration, res.Reps, res.Jobs, res.FloorFlight)
	fmt.Fprintf(&b, "Network: %s.\n\n", res.Network)
	b.WriteString("Environment:\n\n")
	for _, e := range res.Env {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	b.WriteString("\nWorkloads:\n\n")
	for _, w := range res.Workloads {
		fmt.Fprintf(&b, "- **%s**: %s: %d images (%d indexes), %d distinct blobs, %.1f MiB; increment +%d images; scenarios: %s\n",
			w.Name, w.Desc, w.Images, w.Indexes, w.Blobs, float64(w.BlobBytes)/mib, w.Increment, w.Scenarios)
	}
	b.WriteString("\n| workload | scenario | tool | n | time (s) | time / floor | requests staging | requests prod | MiB read from staging | blob uploads per destination | mounts | ours/best peer: time | ours/best peer: requests |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range res.Rows {
		if r.N == 0 {
			fmt.Fprintf(&b, "| %s | %s | %s | 0 | FAILED (%d runs) | | | | | | | | |\n", r.Workload, r.Scenario, r.Tool, r.Failed)
			continue
		}
		uploads := make([]string, len(r.Uploads))
		for i, u := range r.Uploads {
			uploads[i] = num(u)
		}
		tool := r.Tool
		switch tool {
		case "ours", "ours-default", "ours-state":
			tool = "**" + tool + "**"
		case "floor":
			tool = "_floor_"
		}
		n := fmt.Sprint(r.N)
		if r.Failed > 0 {
			n += fmt.Sprintf(" (+%d FAILED)", r.Failed)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f | %s | %s | %s | %.1f | %s | %s | %s | %s |\n",
			r.Workload, r.Scenario, tool, n, r.Seconds, ratio(r.FloorRatio), num(r.ReqStaging), num(r.ReqProd), r.StagingMiB,
			strings.Join(uploads, "/"), num(r.Mounts), ratio(r.TimeRatio), ratio(r.ReqRatio))
	}
	b.WriteString("\nRequests, bytes, uploads and mounts are counted by the proxies in front of the registries. ")
	b.WriteString("Ratios are ours divided by the best peer (lower is better; requests = staging + production); time / floor is each tool's time divided by the ideal client's (floor).\n")
	if !details {
		return b.String()
	}
	b.WriteString("\n### Requests by route\n\nFrom the run closest to the median time; `METHOD class=count`.\n\n")
	b.WriteString("| workload | scenario | tool | registry | requests |\n|---|---|---|---|---|\n")
	for _, r := range res.Rows {
		regs := make([]string, 0, len(r.Routes))
		for reg := range r.Routes {
			regs = append(regs, reg)
		}
		sort.Strings(regs)
		for _, reg := range regs {
			routes := r.Routes[reg]
			if len(routes) == 0 {
				continue
			}
			keys := make([]string, 0, len(routes))
			for k := range routes {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			parts := make([]string, len(keys))
			for i, k := range keys {
				parts[i] = fmt.Sprintf("%s=%d", k, routes[k])
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Workload, r.Scenario, r.Tool, reg, strings.Join(parts, ", "))
		}
	}
	var failures []Sample
	for _, s := range res.Samples {
		if s.Error != "" {
			failures = append(failures, s)
		}
	}
	if len(failures) > 0 {
		b.WriteString("\n### Failed runs\n\n")
		for _, s := range failures {
			fmt.Fprintf(&b, "- %s %s %s rep %d:\n\n```\n%s\n```\n", s.Workload, s.Scenario, s.Tool, s.Rep+1, s.Error)
		}
	}
	return b.String()
}

// num renders a median count: whole numbers without decimals.
func num(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// ratio renders a ratio to the best peer, or a dash when there is none.
func ratio(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", v)
}

// describeEnv lists the machine and the tool versions for the results.
func describeEnv(ctx context.Context, opts options, bins map[string]string) []string {
	env := []string{
		fmt.Sprintf("machine: %s/%s, %d CPUs (%s), %s memory", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), memTotal()),
		"go: " + runtime.Version(),
	}
	promoter := opts.promoterDesc
	if promoter == "" {
		promoter = gitDescribe(ctx)
	}
	env = append(env,
		"promoter (ours): "+promoter,
		"crane: "+moduleVersion(bins["crane"]),
		"regsync: "+moduleVersion(bins["regsync"]),
		"registry: "+moduleVersion(bins["registry"]),
	)
	return env
}

// cpuModel returns the first "model name" of /proc/cpuinfo, if any.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown model"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}

// memTotal returns MemTotal of /proc/meminfo in GiB, if known.
func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

// gitDescribe names the working tree the promoter was built from: the
// commit, and whether the tree had uncommitted changes.
func gitDescribe(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rev, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "working tree (not a git checkout)"
	}
	desc := "working tree at " + strings.TrimSpace(string(rev))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--", "cmd", "pkg", "internal", "go.mod", "go.sum").Output(); err == nil && len(st) > 0 {
		desc += fmt.Sprintf(" + uncommitted changes (%d files)", strings.Count(string(st), "\n"))
	}
	return desc
}

// writeAtomic writes data to path through a temporary file in the same
// directory, so that an interrupted run never leaves half a file.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeJSON writes res as indented JSON.
func writeJSON(path string, res Results) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(data, '\n'))
}
