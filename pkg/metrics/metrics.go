// Package metrics holds the Prometheus metrics of a batch command (plan,
// run, drift ...) and delivers them when the command ends: pushed to a
// Pushgateway, grouped by job and shard so that parallel jobs never
// overwrite each other, and/or written atomically to a node_exporter
// textfile. No label carries an image, tag or repository name: only
// registry hosts, methods, codes and results, so cardinality stays fixed.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/prometheus/common/expfmt"
)

// Run is the metrics of one command run. Its methods are safe for
// concurrent use.
type Run struct {
	reg      *prometheus.Registry
	edges    *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	limited  *prometheus.CounterVec
	runTime  prometheus.Gauge
	success  prometheus.Gauge
	ok       prometheus.Gauge
	findings *prometheus.GaugeVec
}

// NewRun returns the metrics of a run of command (a constant label of every
// series, e.g. "run" or "drift").
func NewRun(command string) *Run {
	c := prometheus.Labels{"command": command}
	r := &Run{
		reg: prometheus.NewRegistry(),
		edges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_edges_total", ConstLabels: c,
			Help: "Edges (image digest and tag to a destination) by result and destination registry."}, []string{"result", "destination"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_bytes_total", ConstLabels: c,
			Help: "Blob bytes read from (direction=read) or uploaded to (direction=write) each registry."}, []string{"direction", "registry"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_registry_requests_total", ConstLabels: c,
			Help: "HTTP requests to registries, every attempt counted, by registry, method and status code (0: no answer)."}, []string{"registry", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "promoter_registry_request_duration_seconds", ConstLabels: c,
			Help: "Time to a registry's answer headers, by registry and method.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"registry", "method"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_registry_retries_total", ConstLabels: c,
			Help: "Requests retried after a transient failure, by registry."}, []string{"registry"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_registry_rate_limited_total", ConstLabels: c,
			Help: "429 Too Many Requests answers, by registry."}, []string{"registry"}),
		runTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promoter_run_duration_seconds", ConstLabels: c,
			Help: "How long the run took."}),
		success: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promoter_last_success_timestamp_seconds", ConstLabels: c,
			Help: "When the run ended, if it succeeded (absent for a failed run: alert on its age)."}),
		ok: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promoter_run_success", ConstLabels: c,
			Help: "1 when the run succeeded, 0 when it did not."}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promoter_drift_findings", ConstLabels: c,
			Help: "Drift findings of the run, by kind."}, []string{"kind"}),
	}
	r.reg.MustRegister(r.edges, r.bytes, r.requests, r.duration, r.retries, r.limited, r.runTime, r.ok)
	return r
}

// Registry is where the run's metrics live (for tests and /metrics).
func (r *Run) Registry() *prometheus.Registry { return r.reg }

// Edges counts n edges of a result (a plan class such as "copy" or
// "conflict", or a run status such as "promoted" or "failed") for a
// destination registry host.
func (r *Run) Edges(result, destination string, n int) {
	r.edges.WithLabelValues(result, destination).Add(float64(n))
}

// Bytes counts blob bytes read from or written to a registry host.
func (r *Run) Bytes(direction, registry string, n int64) {
	r.bytes.WithLabelValues(direction, registry).Add(float64(n))
}

// Request records one HTTP attempt to a registry host: its status code (0
// when there was no answer) and the time to its answer headers.
func (r *Run) Request(registry, method string, code int, d time.Duration) {
	r.requests.WithLabelValues(registry, method, strconv.Itoa(code)).Inc()
	r.duration.WithLabelValues(registry, method).Observe(d.Seconds())
	if code == http.StatusTooManyRequests {
		r.limited.WithLabelValues(registry).Inc()
	}
}

// Findings sets the number of drift findings of a kind (registered on first
// use: only drift reports findings).
func (r *Run) Findings(kind string, n int) {
	_ = r.reg.Register(r.findings) // AlreadyRegistered after the first kind
	r.findings.WithLabelValues(kind).Set(float64(n))
}

// Retry counts one retry of a request to a registry host.
func (r *Run) Retry(registry string) { r.retries.WithLabelValues(registry).Inc() }

// Finish records the run's duration and outcome; a successful run also
// sets the last-success timestamp.
func (r *Run) Finish(ok bool, d time.Duration) {
	r.runTime.Set(d.Seconds())
	if ok {
		r.ok.Set(1)
		if r.reg.Register(r.success) == nil {
			r.success.SetToCurrentTime()
		}
		return
	}
	r.ok.Set(0)
}

// Push sends the metrics to a Pushgateway in the group (job, shard): runs of
// other shards keep theirs. It replaces the metrics of the same names in the
// group (POST, not PUT), so a failed run, which has no last-success
// timestamp, leaves the last successful run's in place. An empty shard
// groups by job only.
func (r *Run) Push(ctx context.Context, gateway, job, shard string) error {
	if job == "" {
		return errors.New("metrics push: the job name is required")
	}
	p := push.New(gateway, job).Gatherer(r.reg).Client(&http.Client{Timeout: 30 * time.Second})
	if shard != "" {
		p = p.Grouping("shard", shard)
	}
	if err := p.AddContext(ctx); err != nil {
		return fmt.Errorf("pushing metrics to %s: %w", gateway, err)
	}
	return nil
}

// WriteTextfile writes the metrics in the text exposition format to path,
// atomically (a temporary file in the same directory, synced, then
// renamed), so node_exporter never reads half a file.
func (r *Run) WriteTextfile(path string) error {
	mfs, err := r.reg.Gather()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("metrics textfile: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	enc := expfmt.NewEncoder(tmp, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			tmp.Close()
			return fmt.Errorf("metrics textfile: %w", err)
		}
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("metrics textfile: %w", err)
	}
	return nil
}
