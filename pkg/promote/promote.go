// Package promote executes a plan: it copies each image by digest (with every
// child manifest and blob beneath it) into each destination, then adds the
// tags. It never deletes and never moves a tag.
package promote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/plan"
)

// Side says which registry an error came from.
type Side string

// Sides of a copy.
const (
	SideSource      Side = "source"
	SideDestination Side = "destination"
)

// CopyError is a failed promotion of one image to one destination.
type CopyError struct {
	Side Side
	Ref  string // the reference being read or written
	Err  error
}

func (e *CopyError) Error() string { return fmt.Sprintf("%s %s: %v", e.Side, e.Ref, e.Err) }
func (e *CopyError) Unwrap() error { return e.Err }

// ErrTagMoved is returned when a tag appeared, pointing at another digest,
// between planning and writing: it is left alone.
var ErrTagMoved = errors.New("tag points at another digest in the destination; a published tag never moves")

// Registry is the registry access the executor needs.
type Registry interface {
	Get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error)
	Head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error)
	Push(ctx context.Context, ref name.Reference, t remote.Taggable) error
	Put(ctx context.Context, ref name.Reference, t remote.Taggable) error
}

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
	Hosts         []access.HostStats `json:"hosts"`
	// Results lists every edge that was not already present, sorted.
	Results []Result `json:"results"`
	// Problems are the plan's validation problems: the entries they name
	// were excluded from the run.
	Problems []diag.Problem `json:"problems"`
}

// Failed reports whether any edge was refused or failed, or any entry was
// excluded as invalid.
func (r *Report) Failed() bool {
	return r.Totals.Refused > 0 || r.Totals.Failed > 0 || diag.Errors(r.Problems) > 0
}

// Progress receives a line per finished item; it may be nil.
type Progress func(done, total int, item plan.Item, err error)

// Option configures Execute.
type Option func(*config)

type config struct {
	jobs     int
	logger   *slog.Logger
	progress Progress
}

// WithJobs bounds the number of images promoted at once (default 8).
func WithJobs(n int) Option { return func(c *config) { c.jobs = max(1, n) } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithProgress sets a progress callback.
func WithProgress(p Progress) Option { return func(c *config) { c.progress = p } }

// Execute carries out the plan's work. Each item (digest, destination) is
// independent: a failure fails that item's edges only. The returned error is
// only the context's; everything else is in the report.
func Execute(ctx context.Context, reg Registry, p *plan.Plan, opts ...Option) (*Report, error) {
	cfg := config{jobs: 8, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	start := time.Now()
	failures := make([]itemOutcome, len(p.Work))
	var done atomic.Int64
	var copies atomic.Int64
	var mu sync.Mutex
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(cfg.jobs)
	// Large fan-outs first would need sizes; until then keep plan order
	// (deterministic), which groups one image's destinations together.
	for i, it := range p.Work {
		eg.Go(func() error {
			if gctx.Err() != nil {
				failures[i] = itemOutcome{image: gctx.Err()}
				return nil
			}
			out := promoteItem(gctx, reg, it)
			if out.copied {
				copies.Add(1)
			}
			failures[i] = out
			err := out.err()
			n := int(done.Add(1))
			if cfg.progress != nil {
				mu.Lock()
				cfg.progress(n, len(p.Work), it, err)
				mu.Unlock()
			}
			if err != nil {
				cfg.logger.Warn("promotion failed", "image", it.Group.Source.String(), "destination", it.Dest.String(), "error", err)
			}
			return nil
		})
	}
	_ = eg.Wait()

	// Map item failures back onto the edges.
	type itemKey struct{ dest, digest string }
	outcomes := map[itemKey]itemOutcome{}
	for i, it := range p.Work {
		outcomes[itemKey{it.Dest.Name(), it.Group.Digest.String()}] = failures[i]
	}
	rep := &Report{SchemaVersion: plan.SchemaVersion, Images: int(copies.Load()), Results: []Result{}, Problems: p.Problems}
	if rep.Problems == nil {
		rep.Problems = []diag.Problem{}
	}
	for c, n := range p.Counts {
		if c == plan.Promoted {
			rep.Totals.Present += n
		}
	}
	for _, a := range p.Actions {
		r := Result{Action: a}
		switch a.Class {
		case plan.Copy, plan.TagOnly:
			if err := outcomes[itemKey{a.Destination, a.Digest}].edgeErr(a.Tag); err != nil {
				r.Status, r.Error, r.Err = StatusFailed, err.Error(), err
				rep.Totals.Failed++
			} else {
				r.Status = StatusPromoted
				rep.Totals.Promoted++
			}
		case plan.Error:
			r.Status, r.Error = StatusFailed, a.Reason
			rep.Totals.Failed++
		default:
			r.Status, r.Error = StatusRefused, a.Reason
			rep.Totals.Refused++
		}
		rep.Results = append(rep.Results, r)
	}
	slices.SortFunc(rep.Results, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.Tag, b.Tag), cmp.Compare(a.Digest, b.Digest))
	})
	rep.Duration = time.Since(start)
	return rep, ctx.Err()
}

// itemOutcome is what happened to one (digest, destination) item: an error
// for the image itself fails all its edges; a tag error fails that tag's.
type itemOutcome struct {
	copied bool
	image  error
	tags   map[string]error
}

func (o itemOutcome) err() error {
	errs := []error{o.image}
	for _, t := range slices.Sorted(maps.Keys(o.tags)) {
		errs = append(errs, o.tags[t])
	}
	return errors.Join(errs...)
}

func (o itemOutcome) edgeErr(tag string) error {
	if o.image != nil {
		return o.image
	}
	return o.tags[tag]
}

// promoteItem copies one digest into one destination repository (if needed)
// and then adds its tags.
func promoteItem(ctx context.Context, reg Registry, it plan.Item) itemOutcome {
	g := it.Group
	dst := it.Dest.Digest(g.Digest.String())
	var desc *remote.Descriptor
	var err error
	out := itemOutcome{tags: map[string]error{}}
	fail := func(side Side, ref string, err error) itemOutcome {
		out.image = &CopyError{Side: side, Ref: ref, Err: err}
		return out
	}
	if it.Copy {
		desc, err = reg.Get(ctx, g.Source)
		if err != nil {
			return fail(SideSource, g.Source.String(), err)
		}
		if desc.Digest != g.Digest {
			return fail(SideSource, g.Source.String(), fmt.Errorf("source served digest %s", desc.Digest))
		}
		var t remote.Taggable = desc
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				return fail(SideSource, g.Source.String(), err)
			}
			t = idx
		} else if desc.MediaType.IsImage() {
			img, err := desc.Image()
			if err != nil {
				return fail(SideSource, g.Source.String(), err)
			}
			t = img
		}
		// Writing by digest: the manifest goes last, after every child and
		// blob, so nothing in the destination points at a partial image.
		if err := reg.Push(ctx, dst, t); err != nil {
			out.image = sideOf(err, g.Source, dst)
			return out
		}
		out.copied = true
	}
	if len(it.Tags) == 0 {
		return out
	}
	if desc == nil {
		// Tag only: the image is complete in the destination already; tag
		// it from there (the source need not be read at all).
		desc, err = reg.Get(ctx, dst)
		if err != nil {
			return fail(SideDestination, dst.String(), err)
		}
	}
	for _, tag := range it.Tags {
		ref := it.Dest.Tag(tag)
		// Re-check right before writing: a tag set by someone else since
		// planning is never overwritten.
		cur, err := reg.Head(ctx, ref)
		if err != nil {
			out.tags[tag] = &CopyError{Side: SideDestination, Ref: ref.String(), Err: err}
			continue
		}
		if cur != nil {
			if cur.Digest != g.Digest {
				out.tags[tag] = &CopyError{Side: SideDestination, Ref: ref.String(), Err: fmt.Errorf("%w (it points at %s)", ErrTagMoved, cur.Digest)}
			}
			continue
		}
		if err := reg.Put(ctx, ref, desc); err != nil {
			out.tags[tag] = &CopyError{Side: SideDestination, Ref: ref.String(), Err: err}
		}
	}
	return out
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

// sideOf attributes a push error to the source or the destination by the
// host of the failing request.
func sideOf(err error, src name.Digest, dst name.Digest) error {
	if h := access.Host(err); h != "" && h == src.RegistryStr() && h != dst.RegistryStr() {
		return &CopyError{Side: SideSource, Ref: src.String(), Err: err}
	}
	return &CopyError{Side: SideDestination, Ref: dst.String(), Err: err}
}
