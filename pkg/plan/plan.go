// Package plan decides, for every edge the manifests ask for, what a
// promotion would do: nothing (already promoted), copy, add a tag, or refuse
// (a tag that would move, an image missing from staging). It reads registry
// state over the plain OCI distribution API only, so it works on any registry.
package plan

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/regerr"
	"github.com/imgpromoter/promoter/pkg/supplychain"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// SchemaVersion is the version of the JSON form of Plan and of the run
// report. It changes only when a field is removed or changes meaning.
const SchemaVersion = validate.SchemaVersion

// Class is what happens to one edge.
type Class string

// Edge classes. They are part of the JSON schema.
const (
	Promoted      Class = "promoted"       // destination already has it: nothing to do
	Copy          Class = "copy"           // image absent in the destination: copy it (and tag)
	TagOnly       Class = "tag"            // image present, tag missing: add the tag
	Conflict      Class = "conflict"       // destination tag points at another digest: refused
	MissingSource Class = "missing-source" // the digest is not in the source registry: refused
	Error         Class = "error"          // the registry state could not be read
	Policy        Class = "policy"         // the promotion policy refuses the image there: refused
)

// ReportOrder lists every class in the order reports show them.
func ReportOrder() []Class {
	return []Class{Copy, TagOnly, Promoted, Conflict, MissingSource, Policy, Error}
}

// Refused reports whether edges of the class fail the run.
func (c Class) Refused() bool {
	return c == Conflict || c == MissingSource || c == Policy || c == Error
}

// Decision is what happens to one edge of a record: one tag (or the digest
// alone) of the record's image in the record's destination repository.
type Decision struct {
	// Tag is empty for a digest-only edge.
	Tag   string
	Class Class
	// Existing is, for a conflict, the digest the tag points at now.
	Existing v1.Hash
	// Reason says why the edge is refused or failed.
	Reason string
	// Position is where the manifests ask for the edge.
	Position diag.Position
}

// Record is the work for one image (a source digest) in one destination
// repository, with the decision for each of its edges. It is the one form
// of a decision: counts, summaries and report rows are derived from it, and
// the executor's results are matched to it by identity.
type Record struct {
	// Group is the source image (project, image name, source reference,
	// digest) and everything the manifests ask for it.
	Group *edge.Group
	// Dest is the destination repository.
	Dest name.Repository
	// Registry is the manifest's name of the destination registry (Dest
	// without the image name), for per-destination summaries.
	Registry string
	// Existed says the destination repository had tags before the run.
	Existed bool
	// Edges are the decisions, digest-only edge or tags in tag order.
	Edges []Decision
	// Manifest and MediaType are the source manifest, read while planning
	// a copy (nil otherwise).
	Manifest  []byte
	MediaType types.MediaType
}

// Copy reports whether the image must be copied into Dest.
func (r *Record) Copy() bool {
	for _, d := range r.Edges {
		if d.Class == Copy {
			return true
		}
	}
	return false
}

// Tags are the tags to add once the image is complete in Dest.
func (r *Record) Tags() []string {
	var tags []string
	for _, d := range r.Edges {
		if (d.Class == Copy || d.Class == TagOnly) && d.Tag != "" {
			tags = append(tags, d.Tag)
		}
	}
	return tags
}

// HasWork reports whether executing the plan has anything to do for the
// record (a copy or a tag).
func (r *Record) HasWork() bool {
	for _, d := range r.Edges {
		if d.Class == Copy || d.Class == TagOnly {
			return true
		}
	}
	return false
}

// Action is the decision for one edge as reports show it (the JSON
// schema's "actions"): derived from a Record and a Decision by ActionOf.
type Action struct {
	Class       Class         `json:"class"`
	Project     string        `json:"project,omitempty"`
	Image       string        `json:"image"`
	Source      string        `json:"source"`      // staging repository
	Destination string        `json:"destination"` // destination repository
	Digest      string        `json:"digest"`
	Tag         string        `json:"tag,omitempty"`      // empty: digest only
	Existing    string        `json:"existing,omitempty"` // conflict: the digest the tag points at now
	Reason      string        `json:"reason,omitempty"`   // why it is refused or failed
	Position    diag.Position `json:"position"`
}

// ActionOf is the report row of decision d of record r.
func ActionOf(r *Record, d *Decision) Action {
	a := Action{Class: d.Class, Project: r.Group.Project, Image: r.Group.Image, Source: r.Group.Source.Context().Name(),
		Destination: r.Dest.Name(), Digest: r.Group.Digest.String(), Tag: d.Tag, Reason: d.Reason, Position: d.Position}
	if d.Existing != (v1.Hash{}) {
		a.Existing = d.Existing.String()
	}
	return a
}

// Counts is a number of edges per class.
type Counts map[Class]int

// Total is the number of edges counted.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// DestinationSummary counts the edges going to one destination registry.
type DestinationSummary struct {
	Registry string `json:"registry"`
	Counts   Counts `json:"counts"`
}

// Plan is the full decision for a set of manifests.
type Plan struct {
	// Stats and Problems are the validation's: the entries the problems
	// name are excluded from the plan.
	Stats    validate.Stats
	Problems []diag.Problem
	// Records are every (source digest, destination repository) with an
	// edge that is not already promoted, sorted by source repository,
	// digest and destination.
	Records []*Record
	// Images summarises the actions per image for reviewers (filled by
	// Describe; nil otherwise).
	Images []ImageSummary
	// SupplyChain is the plan for each image's signatures, attestations and
	// SBOMs, with the evidence and the policy's decisions (nil when not
	// carried).
	SupplyChain *supplychain.Plan
	// promoted counts, per destination registry, the edges of the
	// (digest, destination) pairs with nothing else to do: their records
	// are not kept (a no-op plan of a large corpus holds no record).
	promoted map[string]int
}

// Counts derives the number of edges per class.
func (p *Plan) Counts() Counts {
	c := Counts{}
	for _, n := range p.promoted {
		c[Promoted] += n
	}
	for _, r := range p.Records {
		for _, d := range r.Edges {
			c[d.Class]++
		}
	}
	return c
}

// Destinations derives the edge counts per destination registry, sorted.
func (p *Plan) Destinations() []DestinationSummary {
	byReg := map[string]Counts{}
	at := func(reg string) Counts {
		c := byReg[reg]
		if c == nil {
			c = Counts{}
			byReg[reg] = c
		}
		return c
	}
	for reg, n := range p.promoted {
		at(reg)[Promoted] += n
	}
	for _, r := range p.Records {
		c := at(r.Registry)
		for _, d := range r.Edges {
			c[d.Class]++
		}
	}
	out := make([]DestinationSummary, 0, len(byReg))
	for _, reg := range slices.Sorted(maps.Keys(byReg)) {
		out = append(out, DestinationSummary{Registry: reg, Counts: byReg[reg]})
	}
	return out
}

// Actions derives a row per edge that is not already promoted, sorted by
// destination, tag, digest and class.
func (p *Plan) Actions() []Action {
	out := []Action{}
	for _, r := range p.Records {
		for i := range r.Edges {
			if r.Edges[i].Class != Promoted {
				out = append(out, ActionOf(r, &r.Edges[i]))
			}
		}
	}
	SortActions(out)
	return out
}

// Failed reports whether the plan refuses any edge or has validation errors,
// which makes commands exit 1.
func (p *Plan) Failed() bool {
	for _, r := range p.Records {
		for _, d := range r.Edges {
			if d.Class.Refused() {
				return true
			}
		}
	}
	return diag.Errors(p.Problems) > 0
}

// Document is the JSON form of a plan (docs/json-schema.md), derived from it
// for rendering; report renderers and report merging work on it.
type Document struct {
	SchemaVersion int                  `json:"schemaVersion"`
	Stats         validate.Stats       `json:"stats"`
	Counts        Counts               `json:"counts"`
	Destinations  []DestinationSummary `json:"destinations"`
	// Actions lists every edge that is not already promoted, sorted by
	// destination, tag, digest.
	Actions []Action `json:"actions"`
	// Problems are the validation problems; the entries they name are
	// excluded from the plan.
	Problems []diag.Problem `json:"problems"`
	// Images summarises the actions per image for reviewers (absent unless
	// described).
	Images []ImageSummary `json:"images,omitempty"`
	// SupplyChain: see Plan.SupplyChain.
	SupplyChain *supplychain.Plan `json:"supplyChain,omitempty"`
}

// Document derives the plan's JSON form.
func (p *Plan) Document() *Document {
	d := &Document{SchemaVersion: SchemaVersion, Stats: p.Stats, Counts: p.Counts(), Destinations: p.Destinations(),
		Actions: p.Actions(), Problems: p.Problems, Images: p.Images, SupplyChain: p.SupplyChain}
	if d.Problems == nil {
		d.Problems = []diag.Problem{}
	}
	return d
}

// MarshalJSON writes the plan's JSON form (see Document).
func (p *Plan) MarshalJSON() ([]byte, error) { return json.Marshal(p.Document()) }

// Failed reports whether the plan refuses any edge or has validation
// errors.
func (d *Document) Failed() bool {
	for c, n := range d.Counts {
		if c.Refused() && n > 0 {
			return true
		}
	}
	return diag.Errors(d.Problems) > 0
}

// Reader is the registry access the planner needs.
type Reader interface {
	// WalkTags reads a repository's tag list as a stream, calling fn for
	// each tag listed (zero digest) and, when the registry says so in the
	// same answer (Google's registries do), for each tag with its digest.
	// A repository that does not exist has no tags.
	WalkTags(ctx context.Context, repo name.Repository, fn func(tag string, digest v1.Hash) error) error
	// Resolve describes the manifest at ref; one that does not exist is an
	// error matching regerr.ErrNotFound.
	Resolve(ctx context.Context, ref name.Reference) (v1.Descriptor, error)
	// FetchManifest reads a manifest (used for the source of each copy:
	// the bytes are kept for the transfer, so the check costs no extra
	// request).
	FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error)
}

// Option configures Make.
type Option func(*config)

type config struct {
	jobs   int
	logger *slog.Logger
}

// WithJobs bounds the number of registry requests in flight (default 8).
func WithJobs(n int) Option { return func(c *config) { c.jobs = max(1, n) } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Make reads the registries and decides every edge of the groups (the
// valid groups of a validation). Registry errors never stop planning: they
// classify the edges they touch as Error. Only context cancellation returns
// an error. The plan's Stats and Problems are left for the caller (they are
// the validation's).
//
// Destination repositories are planned one at a time (several in parallel):
// one tag listing, then a HEAD per wanted tag that exists and per digest
// whose tag does not; only what a repository needs is held in memory while
// it is planned, and only records with something to do or refuse are kept
// afterwards.
func Make(ctx context.Context, r Reader, groups []*edge.Group, opts ...Option) (*Plan, error) {
	cfg := config{jobs: 8, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	p := &planner{r: r, cfg: cfg, heads: semaphore.NewWeighted(int64(cfg.jobs)), promoted: map[string]int{}}
	dests := destinations(groups)
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(cfg.jobs)
	for _, d := range dests {
		eg.Go(func() error {
			p.planDest(gctx, d)
			return gctx.Err()
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	cfg.logger.Debug("planned destinations", "repositories", len(dests), "copies pending source check", len(p.pending))
	if err := p.checkSources(ctx); err != nil {
		return nil, err
	}
	agreeAcrossMirrors(p.records)
	out := &Plan{Records: p.records, promoted: p.promoted}
	slices.SortFunc(out.Records, func(a, b *Record) int {
		return cmp.Or(cmp.Compare(a.Group.Source.Context().Name(), b.Group.Source.Context().Name()), cmp.Compare(a.Group.Digest.String(), b.Group.Digest.String()), cmp.Compare(a.Dest.Name(), b.Dest.Name()))
	})
	return out, ctx.Err()
}

// SortActions orders actions deterministically.
func SortActions(as []Action) {
	slices.SortFunc(as, func(a, b Action) int {
		return cmp.Or(cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.Tag, b.Tag), cmp.Compare(a.Digest, b.Digest), cmp.Compare(a.Class, b.Class))
	})
}

// registryOf recovers the manifest's registry name from a destination
// repository by removing the image name it ends with.
func registryOf(d name.Repository, image string) string {
	n := d.Name()
	if len(n) > len(image)+1 && n[len(n)-len(image)-1] == '/' && n[len(n)-len(image):] == image {
		return n[:len(n)-len(image)-1]
	}
	return n
}

// dest is one destination repository and the groups that target it.
type dest struct {
	repo   name.Repository
	groups []*edge.Group
}

func destinations(groups []*edge.Group) []*dest {
	byName := map[string]*dest{}
	for _, g := range groups {
		for _, d := range g.Dests {
			n := d.Name()
			e := byName[n]
			if e == nil {
				e = &dest{repo: d}
				byName[n] = e
			}
			e.groups = append(e.groups, g)
		}
	}
	out := make([]*dest, 0, len(byName))
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[n])
	}
	return out
}

// state is what a HEAD found: absent, present at a digest, or an error.
type state struct {
	present bool
	digest  v1.Hash
	err     error
}

// srcKey is a source image: repository and digest.
type srcKey struct {
	repo   string
	digest v1.Hash
}

type planner struct {
	r     Reader
	cfg   config
	heads *semaphore.Weighted // bounds HEADs across all repositories

	mu       sync.Mutex
	records  []*Record
	promoted map[string]int
	// pending lists the records that copy each source image, and sources
	// its reference: the source is checked once for all of them.
	pending map[srcKey][]*Record
	sources map[srcKey]name.Digest
}

// head runs HEADs for the keys, at most jobs at once across the planner.
func (p *planner) headAll(ctx context.Context, refs map[string]name.Reference) map[string]state {
	out := make(map[string]state, len(refs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k, ref := range refs {
		if err := p.heads.Acquire(ctx, 1); err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.heads.Release(1)
			desc, err := p.r.Resolve(ctx, ref)
			st := state{err: err}
			switch {
			case errors.Is(err, regerr.ErrNotFound):
				st.err = nil
			case err == nil:
				st.present, st.digest = true, desc.Digest
			}
			mu.Lock()
			out[k] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// planDest plans every edge into one destination repository.
func (p *planner) planDest(ctx context.Context, d *dest) {
	// Only the tags the manifests ask about are kept from the list, which
	// may hold millions.
	wanted := map[string]bool{}
	for _, g := range d.groups {
		for _, t := range g.Tags {
			wanted[t.Name] = true
		}
	}
	listed := map[string]bool{}
	digests := map[string]v1.Hash{}
	existed := false
	listErr := p.r.WalkTags(ctx, d.repo, func(tag string, dg v1.Hash) error {
		if dg == (v1.Hash{}) {
			existed = true
		}
		switch {
		case !wanted[tag]:
		case dg == (v1.Hash{}):
			listed[tag] = true
		default:
			digests[tag] = dg
		}
		return nil
	})
	if ctx.Err() != nil {
		return
	}
	// What to ask: each wanted tag that exists (unless the listing gave its
	// digest), and each digest with a missing tag or no tag at all.
	known := map[string]state{}
	refs := map[string]name.Reference{}
	if listErr == nil {
		for _, g := range d.groups {
			needDigest := len(g.Tags) == 0
			for _, t := range g.Tags {
				switch {
				case !listed[t.Name]:
					needDigest = true
				case digests[t.Name] != (v1.Hash{}):
					// The listing said where the tag points (a registry that
					// lists digests, or a --state record still fresh).
					known["tag:"+t.Name] = state{present: true, digest: digests[t.Name]}
				default:
					refs["tag:"+t.Name] = d.repo.Tag(t.Name)
				}
			}
			if needDigest {
				refs["digest:"+g.Digest.String()] = d.repo.Digest(g.Digest.String())
			}
		}
	}
	maps.Copy(known, p.headAll(ctx, refs))
	// A tag listed but gone by the time of its HEAD (deleted in between)
	// counts as missing: then the digest's presence decides copy or tag.
	again := map[string]name.Reference{}
	for _, g := range d.groups {
		for _, t := range g.Tags {
			if st, ok := known["tag:"+t.Name]; ok && st.err == nil && !st.present {
				if _, ok := known["digest:"+g.Digest.String()]; !ok {
					again["digest:"+g.Digest.String()] = d.repo.Digest(g.Digest.String())
				}
			}
		}
	}
	maps.Copy(known, p.headAll(ctx, again))
	if ctx.Err() != nil {
		return
	}
	for _, g := range d.groups {
		p.classify(g, d.repo, existed, listErr, known)
	}
}

// classify decides every edge of group g into repository d and keeps the
// record when it has anything but promoted edges.
func (p *planner) classify(g *edge.Group, d name.Repository, existed bool, listErr error, known map[string]state) {
	img := known["digest:"+g.Digest.String()]
	rec := &Record{Group: g, Dest: d, Registry: registryOf(d, g.Image), Existed: existed}
	decide := func(tag string, pos diag.Position) {
		dc := Decision{Tag: tag, Position: pos}
		tagState, tagAsked := known["tag:"+tag]
		switch {
		case listErr != nil:
			dc.Class, dc.Reason = Error, "listing destination tags: "+listErr.Error()
		case tag != "" && tagAsked && tagState.err != nil:
			dc.Class, dc.Reason = Error, "reading destination tag: "+tagState.err.Error()
		case tag != "" && tagAsked && tagState.present && tagState.digest == g.Digest:
			dc.Class = Promoted
		case tag != "" && tagAsked && tagState.present:
			dc.Class, dc.Existing = Conflict, tagState.digest
			dc.Reason = fmt.Sprintf("tag %s already points at %s; a published tag never moves", tag, tagState.digest)
		case img.err != nil:
			dc.Class, dc.Reason = Error, "reading destination: "+img.err.Error()
		case img.present && tag == "":
			dc.Class = Promoted
		case img.present:
			dc.Class = TagOnly
		default:
			dc.Class = Copy // the source is checked afterwards
		}
		rec.Edges = append(rec.Edges, dc)
	}
	if len(g.Tags) == 0 {
		decide("", g.Pos)
	}
	for _, t := range g.Tags {
		decide(t.Name, t.Pos)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.ContainsFunc(rec.Edges, func(dc Decision) bool { return dc.Class != Promoted }) {
		p.promoted[rec.Registry] += len(rec.Edges)
		return
	}
	p.records = append(p.records, rec)
	if rec.Copy() {
		k := srcKey{g.Source.Context().Name(), g.Digest}
		if p.pending == nil {
			p.pending = map[srcKey][]*Record{}
			p.sources = map[srcKey]name.Digest{}
		}
		p.pending[k] = append(p.pending[k], rec)
		p.sources[k] = g.Source
	}
}

// checkSources verifies that every digest to be copied is in the source, and
// refuses the copies of those that are not (or cannot be read).
func (p *planner) checkSources(ctx context.Context) error {
	type got struct {
		raw []byte
		mt  types.MediaType
		err error
	}
	found := make(map[srcKey]got, len(p.sources))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, k := range slices.SortedFunc(maps.Keys(p.sources), func(a, b srcKey) int {
		return cmp.Or(cmp.Compare(a.repo, b.repo), cmp.Compare(a.digest.String(), b.digest.String()))
	}) {
		if err := p.heads.Acquire(ctx, 1); err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.heads.Release(1)
			raw, desc, err := p.r.FetchManifest(ctx, p.sources[k])
			mu.Lock()
			found[k] = got{raw, desc.MediaType, err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for k, recs := range p.pending {
		st := found[k]
		if st.err == nil {
			for _, r := range recs {
				r.Manifest, r.MediaType = st.raw, st.mt
			}
			continue
		}
		class, reason := MissingSource, fmt.Sprintf("%s is not in the source registry", p.sources[k])
		if !errors.Is(st.err, regerr.ErrNotFound) {
			class, reason = Error, "reading the source: "+st.err.Error()
		}
		for _, r := range recs {
			for i := range r.Edges {
				if r.Edges[i].Class == Copy {
					r.Edges[i].Class, r.Edges[i].Reason = class, reason
				}
			}
		}
	}
	return nil
}

// RefusePolicy refuses, in every record of the image digest in dst, the
// edges that had work to do (copy or tag): the promotion policy does not
// let the image in. Edges already promoted stay as they are.
func (p *Plan) RefusePolicy(digest v1.Hash, dst name.Repository, reason string) {
	for _, r := range p.Records {
		if r.Group.Digest != digest || r.Dest.Name() != dst.Name() {
			continue
		}
		for i := range r.Edges {
			if c := r.Edges[i].Class; c == Copy || c == TagOnly {
				r.Edges[i].Class, r.Edges[i].Reason = Policy, reason
			}
		}
	}
}
