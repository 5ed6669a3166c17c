package cli

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/metrics"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/progress"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/shard"
)

// observeFlags are the metrics and progress flags of the batch commands.
type observeFlags struct {
	metricsPush     string
	metricsJob      string
	metricsTextfile string
	progress        string
	quiet           bool
}

func (f *observeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.metricsPush, "metrics-push", "", "push Prometheus metrics to this Pushgateway URL when done (grouped by job and shard)")
	fl.StringVar(&f.metricsJob, "metrics-job", "promoter", "with --metrics-push: the job name to group the metrics under")
	fl.StringVar(&f.metricsTextfile, "metrics-textfile", "", "write Prometheus metrics to this file when done (atomically, for node_exporter)")
	fl.StringVar(&f.progress, "progress", "auto", "progress on standard error: auto (in place on a terminal, a line every 30s otherwise), always, never")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress (--progress=never)")
}

// shardLabel is the Pushgateway grouping value of a shard: its index, or
// "" when not sharded.
func shardLabel(s shard.Spec) string {
	if !s.Sharded() {
		return ""
	}
	return strconv.Itoa(s.Index)
}

// observation is the metrics and progress of one command run.
type observation struct {
	f        *observeFlags
	shard    string
	metrics  *metrics.Run
	progress *progress.Reporter
	start    time.Time
	runStart time.Time
}

// observe checks the flags and starts the run's metrics and progress.
// shard names the shard for the Pushgateway grouping ("" when not sharded).
func (e *env) observe(f *observeFlags, command, shard, unit string) (*observation, error) {
	pm := f.progress
	if pm == "" { // a command without the flags (cip)
		pm = string(progress.Auto)
	}
	mode, err := progress.ParseMode(pm)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	if f.quiet {
		mode = progress.Never
	}
	if f.metricsPush != "" {
		u, err := url.Parse(f.metricsPush)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, usageErr("--metrics-push %q: want an http(s) URL of a Pushgateway", f.metricsPush)
		}
		if f.metricsJob == "" {
			return nil, usageErr("--metrics-job must not be empty")
		}
	}
	o := &observation{f: f, shard: shard, metrics: metrics.NewRun(command), start: time.Now(),
		progress: progress.New(e.stderr, mode, command, progress.WithUnit(unit))}
	return o, nil
}

// finish stops the progress and delivers the metrics. A metrics delivery
// that fails is logged: it does not change the command's outcome (the
// missing push shows as a stale last-success time).
func (o *observation) finish(ctx context.Context, e *env, ok bool) {
	o.progress.Stop()
	o.metrics.Finish(ok, time.Since(o.start))
	log := e.logger()
	if o.f.metricsTextfile != "" {
		if err := o.metrics.WriteTextfile(o.f.metricsTextfile); err != nil {
			log.Error("writing the metrics textfile failed", "path", o.f.metricsTextfile, "error", err)
		}
	}
	if o.f.metricsPush != "" {
		// The command's context may be cancelled (Ctrl-C): push anyway,
		// briefly, so an interrupted run is recorded.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := o.metrics.Push(pctx, o.f.metricsPush, o.f.metricsJob, o.shard); err != nil {
			log.Error("pushing metrics failed", "error", err)
		}
	}
}

// recordPlan counts a plan's edges by class and destination registry.
func (o *observation) recordPlan(p *plan.Plan) {
	for _, d := range p.Destinations() {
		for c, n := range d.Counts {
			o.metrics.Edges(string(c), d.Registry, n)
		}
	}
}

// startRun starts the progress of a run; the bytes shown are those
// uploaded to every registry so far.
func (o *observation) startRun(c *access.Counter) {
	o.progress.SetBytesSource(func() int64 {
		var n int64
		for _, h := range c.Snapshot() {
			n += h.BytesUploaded
		}
		return n
	})
	o.runStart = time.Now()
	o.progress.Start()
}

// accessOptions adds the metrics' observer of every registry request to a
// client's options.
func (o *observation) accessOptions(opts ...access.Option) []access.Option {
	return append(opts, access.WithObserver(o.metrics))
}

// runProgress is the promote.Progress of a run: the counts, and a line
// per image copied (on a terminal, per image that failed).
func (o *observation) runProgress(done, total int, r *plan.Record, err error) {
	o.progress.SetTotal(total)
	o.progress.EdgeDone(err != nil)
	status := "ok"
	if err != nil {
		status = "FAILED: " + err.Error()
	}
	o.progress.Item(fmt.Sprintf("[%d/%d %s] %s -> %s %s", done, total, time.Since(o.runStart).Round(time.Second), r.Group.Source, r.Dest, status), err != nil)
}

// recordRun counts a run's edges by status and destination registry, and
// the bytes read from and uploaded to each registry.
func (o *observation) recordRun(r *promote.Report) {
	for _, res := range r.Results {
		host, _, _ := strings.Cut(res.Destination, "/")
		o.metrics.Edges(string(res.Status), host, 1)
	}
	for _, h := range r.Hosts {
		o.metrics.Bytes("read", h.Host, h.BytesRead)
		o.metrics.Bytes("write", h.Host, h.BytesUploaded)
	}
}
