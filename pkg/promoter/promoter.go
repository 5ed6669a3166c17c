// Package promoter is the promoter as a library: what the plan and run
// commands do, for a Go program. Plan reads the manifests and the
// registries and says what a promotion would do; Run does it and returns
// the finished report, traffic counts included. Pull-request mode (only the
// edges a change adds since a git revision) is an option of both.
//
//	res, err := promoter.Run(ctx, promoter.Inputs{ThinDirs: []string{"manifests"}},
//		promoter.WithSince("origin/main"), promoter.WithJobs(8))
//	if err != nil { ... }         // cancellation, or an option or revision that cannot work
//	if res.Failed() { ... }       // an edge refused or failed, or an input unreadable
//	report.Run(os.Stdout, report.Text, res.Report)
//
// The command line (internal/cli) turns its flags into these options and
// renders the results; it holds no promotion logic.
package promoter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/change"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/gitrev"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/state"
	"github.com/imgpromoter/promoter/pkg/supplychain"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// Inputs names the manifests: plain manifest files and thin manifest
// directories.
type Inputs = manifest.Inputs

// Result is what Plan or Run found and did.
type Result struct {
	// Plan is the decision for every valid edge (in pull-request mode, for
	// every edge the change adds).
	Plan *plan.Plan
	// Report is what the run did (Run only), traffic counts included.
	Report *promote.Report
	// Since describes the comparison in pull-request mode (nil otherwise).
	Since *Since
	// Unreadable says some input could not be read; the readable rest was
	// still planned (and promoted): one bad file never blocks the others.
	Unreadable bool
	// Trusted is the number of edges the plan took from the state
	// (WithState) without a request; Verified the manifests it resolved.
	Trusted, Verified int64

	carrier *supplychain.Carrier
}

// Failed reports whether the command would exit 1: an edge refused or
// failed, an entry invalid, or an input unreadable.
func (r *Result) Failed() bool {
	if r.Unreadable {
		return true
	}
	if r.Report != nil {
		return r.Report.Failed()
	}
	return r.Plan.Failed()
}

// Since describes a pull-request mode comparison.
type Since struct {
	// Rev is the revision compared with.
	Rev gitrev.Revision
	// Absent lists the inputs that did not exist at Rev: all their edges
	// are new.
	Absent []string
	// Added is the number of valid edges the change adds (those planned);
	// Valid the number of valid edges in the manifests now.
	Added, Valid int
}

// RevisionError says the manifests could not be read at the revision given
// with WithSince (a revision missing from the clone, a path outside the
// repository): the job needs fixing, not the change.
type RevisionError struct {
	Rev string
	Err error
}

func (e *RevisionError) Error() string { return e.Err.Error() }
func (e *RevisionError) Unwrap() error { return e.Err }

// Option configures Plan and Run.
type Option func(*options)

type options struct {
	since      string
	client     *access.Client
	clientOpts []access.Option
	jobs       int
	logger     *slog.Logger
	progress   promote.Progress
	describe   int
	planned    func(*Result)
	sel        func([]*edge.Group) []*edge.Group
	// state, when set, is read and written through (WithState).
	state       *state.Store
	stateMaxAge time.Duration
	now         func() time.Time
	beforeTags  promote.BeforeTags
	policy      string
	noSupply    bool
}

func defaults() options {
	return options{jobs: 8, logger: slog.New(slog.DiscardHandler), now: time.Now}
}

// WithPolicy verifies every image against the promotion policy file at
// path before promoting it (default: promotion-policy.yaml at the root of
// the manifest directory, when present; without a policy nothing is
// verified). Key and trust root files the policy names must lie beside or
// below it.
func WithPolicy(path string) Option { return func(o *options) { o.policy = path } }

// WithoutSupplyChain neither carries signatures, attestations and SBOMs
// nor verifies (the default carries them all).
func WithoutSupplyChain() Option { return func(o *options) { o.noSupply = true } }

// WithSince is pull-request mode: only the edges the change since git
// revision rev adds are planned (the manifests must be in a git work tree).
func WithSince(rev string) Option { return func(o *options) { o.since = rev } }

// WithClient sets the registry client (default: one built from the
// options below). Its request counts become the report's traffic counts.
func WithClient(c *access.Client) Option { return func(o *options) { o.client = c } }

// WithInsecureRegistries names hosts that may be reached over plain HTTP
// (loopback hosts always may); for the default client only.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *options) { o.clientOpts = append(o.clientOpts, access.WithInsecureRegistries(hosts...)) }
}

// WithHostLimits bounds the requests to each registry host (default: 16 at
// once, no rate limit); for the default client only.
func WithHostLimits(l access.HostLimits) Option {
	return func(o *options) { o.clientOpts = append(o.clientOpts, access.WithHostLimits(l)) }
}

// WithMaxRetryWait caps how long a registry's Retry-After answer can make
// a retry wait (default 1 minute); for the default client only.
func WithMaxRetryWait(d time.Duration) Option {
	return func(o *options) { o.clientOpts = append(o.clientOpts, access.WithMaxRetryWait(d)) }
}

// WithJobs bounds the images (and registry requests) handled at once
// (default 8).
func WithJobs(n int) Option { return func(o *options) { o.jobs = n } }

// WithLogger sets the logger (default: none).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithProgress is told of each (image, destination) as its promotion
// finishes (Run only).
func WithProgress(p promote.Progress) Option { return func(o *options) { o.progress = p } }

// WithDescribe reads the size and platforms of at most limit images from
// the source, for reviewers (Plan only; default 0: none).
func WithDescribe(limit int) Option { return func(o *options) { o.describe = limit } }

// WithSelect plans only the edge groups f keeps of the valid groups (in
// pull-request mode, of the groups the change adds): for example one
// shard's share of the work.
func WithSelect(f func(groups []*edge.Group) []*edge.Group) Option {
	return func(o *options) { o.sel = f }
}

// WithState plans through a record of verified edges (see package state):
// an edge verified within maxAge whose tag is still listed is trusted
// without a request; what the plan verifies, and what Run promotes, is
// recorded in s. Saving s is the caller's job. The trade-off: a tag moved
// by someone else while it stays listed is not seen (drift, or a plan
// without WithState, sees it).
func WithState(s *state.Store, maxAge time.Duration) Option {
	return func(o *options) { o.state, o.stateMaxAge = s, maxAge }
}

// WithBeforeTags runs hook once every image's content is written and
// before any tag is (signing): see promote.WithBeforeTags.
func WithBeforeTags(hook promote.BeforeTags) Option { return func(o *options) { o.beforeTags = hook } }

// WithPlanned calls f with the plan before Run executes it (the command
// line prints it).
func WithPlanned(f func(*Result)) Option { return func(o *options) { o.planned = f } }

func build(opts []Option) (options, error) {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	if o.jobs < 1 {
		return o, fmt.Errorf("jobs must be at least 1, got %d", o.jobs)
	}
	if o.client != nil && len(o.clientOpts) > 0 {
		return o, errors.New("registry client options cannot be combined with WithClient: configure that client instead")
	}
	if o.client == nil {
		c, err := access.New(append([]access.Option{access.WithLogger(o.logger)}, o.clientOpts...)...)
		if err != nil {
			return o, err
		}
		o.client = c
	}
	return o, nil
}

// Plan reads the manifests and the registries and decides every valid edge:
// already promoted, copy, tag, or refused. Invalid entries are excluded (and
// listed in the plan's problems). The error is for cancellation and for
// options or a revision that cannot work; everything else is in the result.
func Plan(ctx context.Context, in Inputs, opts ...Option) (*Result, error) {
	o, err := build(opts)
	if err != nil {
		return nil, err
	}
	res, err := makePlan(ctx, in, o)
	if err != nil {
		return nil, err
	}
	if o.describe > 0 {
		// The source manifests read while planning are reused.
		if err := plan.Describe(ctx, o.client, res.Plan, o.describe); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// Run plans like Plan, then promotes: each image is copied by digest (with
// every child manifest and blob), tags are added only once the image is
// complete, nothing is deleted and no tag moves. The report carries the
// request counts of the run's registry client. A cancelled run returns the
// report of what was done with the context's error.
func Run(ctx context.Context, in Inputs, opts ...Option) (*Result, error) {
	o, err := build(opts)
	if err != nil {
		return nil, err
	}
	res, err := makePlan(ctx, in, o)
	if err != nil {
		return nil, err
	}
	if o.planned != nil {
		o.planned(res)
	}
	popts := []promote.Option{promote.WithJobs(o.jobs), promote.WithLogger(o.logger), promote.WithProgress(o.progress)}
	if o.beforeTags != nil {
		popts = append(popts, promote.WithBeforeTags(o.beforeTags))
	}
	sc, carrier := res.Plan.SupplyChain, res.carrier
	if sc != nil {
		// Signatures and attestations go in after the image and before its
		// tags, so that a reader who sees a tag can already verify it.
		popts = append(popts, promote.WithRecordHook(func(r *plan.Record) func(context.Context) error {
			if dp := sc.For(r.Group.Digest, r.Dest); dp == nil || !dp.Pending() {
				return nil
			}
			return func(ctx context.Context) error {
				return sc.Write(ctx, carrier, r.Group.Source.Context(), r.Group.Digest, r.Dest)
			}
		}))
	}
	rep, err := promote.Execute(ctx, o.client, res.Plan, popts...)
	if sc != nil && rep != nil && err == nil {
		// Images already promoted (no record with work) whose artifacts are
		// missing: the image is there, no tag is written, so any order is
		// right.
		writeRemaining(ctx, sc, carrier, res.Plan, o)
		rep.SupplyChain = sc
	}
	if rep != nil {
		rep.AddTraffic(o.client.Counter().Snapshot())
		res.Report = rep
		if o.state != nil {
			recordPromoted(o.state, rep, o.now())
		}
	}
	return res, err
}

// makePlan loads, validates, keeps the edges added since the revision (in
// pull-request mode) and plans.
func makePlan(ctx context.Context, in Inputs, o options) (*Result, error) {
	set := manifest.Load(in)
	v := validate.Validate(set)
	res := &Result{Unreadable: v.Unreadable}
	if o.since != "" {
		snap, err := gitrev.Load(ctx, o.since, in)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &RevisionError{Rev: o.since, Err: err}
		}
		added := change.Added(validate.Validate(snap.Set), v)
		res.Since = &Since{Rev: snap.Rev, Absent: snap.Absent, Added: added.Stats.ValidEdges, Valid: v.Stats.ValidEdges}
		v = added
	}
	if o.sel != nil {
		v.Groups = o.sel(v.Groups)
	}
	o.logger.Debug("planning", "groups", len(v.Groups), "edges", v.Stats.ValidEdges)
	var reader plan.Reader = o.client
	var sr *state.Reader
	if o.state != nil {
		sr = state.NewReader(o.client, o.state, o.stateMaxAge, o.now)
		reader = sr
	}
	p, err := plan.Make(ctx, reader, v.Groups, plan.WithJobs(o.jobs), plan.WithLogger(o.logger))
	if err != nil {
		return nil, err
	}
	if sr != nil {
		res.Trusted, res.Verified = sr.Trusted(), sr.Verified()
		o.logger.Info("state", "edges trusted", sr.Trusted(), "manifests resolved", sr.Verified())
	}
	p.Stats, p.Problems = v.Stats, v.Problems
	res.Plan = p
	if !o.noSupply {
		if err := planSupplyChain(ctx, in, set, v.Groups, res, o); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// recordPromoted adds the edges the run promoted to the state: they were
// just written, so they are verified now.
func recordPromoted(s *state.Store, rep *promote.Report, now time.Time) {
	for _, r := range rep.Results {
		if r.Status != promote.StatusPromoted {
			continue
		}
		d, err := v1.NewHash(r.Digest)
		if err != nil {
			continue
		}
		s.Observe(r.Destination, r.Tag, d, now)
	}
}
