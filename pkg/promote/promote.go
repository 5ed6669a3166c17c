// Package promote executes a plan: it copies each image by digest (with every
// child manifest and blob beneath it) into each destination, then adds the
// tags. It never deletes and never moves a tag.
package promote

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/supplychain"
	"github.com/imgpromoter/promoter/pkg/transfer"
)

// Registry is the registry access the executor needs.
type Registry = transfer.Registry

// Status is the outcome of one edge in a run.
type Status string

// Statuses. Part of the JSON schema.
const (
	StatusPromoted Status = "promoted" // done by this run
	StatusPresent  Status = "present"  // already there before the run
	StatusRefused  Status = "refused"  // refused by the plan (conflict, missing source)
	StatusFailed   Status = "failed"   // tried and failed, or could not be read
)

// Result is the outcome of one edge.
type Result struct {
	plan.Action
	Status Status `json:"status"`
	Error  string `json:"error,omitempty"`
	// Err is the typed error behind Error (for errors.Is/As); not in JSON.
	Err error `json:"-"`
}

// Totals counts edges by status.
type Totals struct {
	Promoted int `json:"promoted"`
	Present  int `json:"present"`
	Refused  int `json:"refused"`
	Failed   int `json:"failed"`
}

// Report is what a promotion run did.
type Report struct {
	SchemaVersion int                `json:"schemaVersion"`
	Totals        Totals             `json:"totals"`
	Images        int                `json:"imagesCopied"` // (digest, destination) copies done
	BytesUploaded int64              `json:"bytesUploaded"`
	BlobUploads   int64              `json:"blobUploads"`
	BlobMounts    int64              `json:"blobMounts"`
	Duration      time.Duration      `json:"durationNanos"`
	Engine        transfer.Stats     `json:"engine"`
	Hosts         []access.HostStats `json:"hosts"`
	// Results lists every edge that was not already present, sorted.
	Results []Result `json:"results"`
	// SupplyChain is what was done with each image's signatures,
	// attestations and SBOMs, and the policy's decisions (nil when not
	// carried).
	SupplyChain *supplychain.Plan `json:"supplyChain,omitempty"`
	// Problems are the plan's validation problems: the entries they name
	// were excluded from the run.
	Problems []diag.Problem `json:"problems"`
}

// Failed reports whether any edge was refused or failed, or any entry was
// excluded as invalid.
func (r *Report) Failed() bool {
	return r.Totals.Refused > 0 || r.Totals.Failed > 0 || diag.Errors(r.Problems) > 0 || r.SupplyChain.Failed()
}

// Progress is told of each (image, destination) record as its promotion
// finishes, with the error that failed it (nil: done).
type Progress func(done, total int, r *plan.Record, err error)

// Option configures Execute.
type Option func(*config)

type config struct {
	jobs       int
	logger     *slog.Logger
	progress   Progress
	beforeTags BeforeTags
	recordHook func(r *plan.Record) func(context.Context) error
}

// WithJobs bounds the number of images promoted at once (default 8).
func WithJobs(n int) Option { return func(c *config) { c.jobs = max(1, n) } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRecordHook sets, per record, work to do once the image is in the
// destination by digest and before its tags (see transfer.Job.BeforeTags;
// nil: none). The supply chain writes signatures and attestations there.
func WithRecordHook(f func(r *plan.Record) func(context.Context) error) Option {
	return func(c *config) { c.recordHook = f }
}

// WithProgress sets a progress callback.
func WithProgress(p Progress) Option { return func(c *config) { c.progress = p } }

// Execute carries out the plan's work as one transfer (see package
// transfer). Each record (digest, destination) is independent: a failure
// fails that record's edges only. The returned error is only the context's;
// everything else is in the report.
func Execute(ctx context.Context, reg Registry, p *plan.Plan, opts ...Option) (*Report, error) {
	cfg := config{jobs: 8, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	start := time.Now()
	// The records with work, and one transfer job for each: job i is
	// work[i], so results come back to their record by position.
	var work []*plan.Record
	for _, r := range p.Records {
		if r.HasWork() {
			work = append(work, r)
		}
	}
	jobs := make([]transfer.Job, len(work))
	for i, r := range work {
		jobs[i] = transfer.Job{Source: r.Group.Source.Context(), Digest: r.Group.Digest, Dest: r.Dest, Copy: r.Copy(), Tags: r.Tags(),
			DestExisted: r.Existed, Manifest: r.Manifest, MediaType: r.MediaType}
		if cfg.recordHook != nil {
			jobs[i].BeforeTags = cfg.recordHook(r)
		}
	}
	var done atomic.Int64
	var mu sync.Mutex
	progress := func(i int, res transfer.Result) {
		n := int(done.Add(1))
		err := res.Image
		if err == nil {
			for _, t := range slices.Sorted(maps.Keys(res.Tags)) {
				err = errors.Join(err, res.Tags[t])
			}
		}
		if err != nil {
			cfg.logger.Warn("promotion failed", "image", work[i].Group.Source.String(), "destination", work[i].Dest.String(), "error", err)
		}
		if cfg.progress != nil {
			mu.Lock()
			defer mu.Unlock()
			cfg.progress(n, len(jobs), work[i], err)
		}
	}
	topts := []transfer.Option{transfer.WithJobs(cfg.jobs), transfer.WithLogger(cfg.logger), transfer.WithProgress(progress)}
	var results []transfer.Result
	var stats transfer.Stats
	var err error
	if cfg.beforeTags != nil {
		results, stats, err = runTwoPass(ctx, reg, jobs, cfg.beforeTags, topts...)
	} else {
		results, stats, err = transfer.Run(ctx, reg, jobs, topts...)
	}
	outcome := make(map[*plan.Record]*transfer.Result, len(work))
	copies := 0
	for i := range results {
		res := &results[i]
		if ctxErr := ctx.Err(); ctxErr != nil && res.Image == nil && !res.Copied && jobs[i].Copy {
			res.Image = ctxErr // never started
		}
		if res.Copied {
			copies++
		}
		outcome[work[i]] = res
	}

	rep := &Report{SchemaVersion: plan.SchemaVersion, Images: copies, Engine: stats, Results: []Result{}, Problems: p.Problems}
	if rep.Problems == nil {
		rep.Problems = []diag.Problem{}
	}
	rep.Totals.Present = p.Counts()[plan.Promoted]
	for _, r := range p.Records {
		o := outcome[r]
		for i := range r.Edges {
			d := &r.Edges[i]
			if d.Class == plan.Promoted {
				continue
			}
			row := Result{Action: plan.ActionOf(r, d)}
			switch d.Class {
			case plan.Copy, plan.TagOnly:
				// Every record with a copy or a tag had a job, so o is set.
				edgeErr := o.Image
				if edgeErr == nil && d.Tag != "" {
					edgeErr = o.Tags[d.Tag]
				}
				if edgeErr == nil && ctx.Err() != nil && !o.Copied && d.Class == plan.TagOnly {
					edgeErr = ctx.Err()
				}
				if edgeErr != nil {
					row.Status, row.Error, row.Err = StatusFailed, edgeErr.Error(), edgeErr
					rep.Totals.Failed++
				} else {
					row.Status = StatusPromoted
					rep.Totals.Promoted++
				}
			case plan.Error:
				row.Status, row.Error = StatusFailed, d.Reason
				rep.Totals.Failed++
			default:
				row.Status, row.Error = StatusRefused, d.Reason
				rep.Totals.Refused++
			}
			rep.Results = append(rep.Results, row)
		}
	}
	slices.SortFunc(rep.Results, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.Tag, b.Tag), cmp.Compare(a.Digest, b.Digest))
	})
	rep.Duration = time.Since(start)
	return rep, err
}

// AddTraffic records the per-host request counts in the report and sums the
// upload figures.
func (r *Report) AddTraffic(hosts []access.HostStats) {
	r.Hosts = hosts
	r.BytesUploaded, r.BlobUploads, r.BlobMounts = 0, 0, 0
	for _, h := range hosts {
		r.BytesUploaded += h.BytesUploaded
		r.BlobUploads += h.BlobUploads
		r.BlobMounts += h.BlobMounts
	}
}
