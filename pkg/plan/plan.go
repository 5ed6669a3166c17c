// Package plan decides, for every edge the manifests ask for, what a
// promotion would do: nothing (already promoted), copy, add a tag, or refuse
// (a tag that would move, an image missing from staging). It reads registry
// state over the plain OCI distribution API only, so it works on any registry.
package plan

import (
	"cmp"
	"context"
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
)

// Classes lists every class in report order.
var Classes = []Class{Copy, TagOnly, Promoted, Conflict, MissingSource, Error}

// Refused reports whether edges of the class fail the run.
func (c Class) Refused() bool { return c == Conflict || c == MissingSource || c == Error }

// Action is the decision for one edge.
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
	SchemaVersion int                  `json:"schemaVersion"`
	Stats         validate.Stats       `json:"stats"`
	Counts        Counts               `json:"counts"`
	Destinations  []DestinationSummary `json:"destinations"`
	// Actions lists every edge that is not already promoted, sorted by
	// destination, image, tag, digest.
	Actions []Action `json:"actions"`
	// Problems are the validation problems; the entries they name are
	// excluded from the plan.
	Problems []diag.Problem `json:"problems"`
	// Images summarises the actions per image for reviewers (filled by
	// Describe; absent otherwise).
	Images []ImageSummary `json:"images,omitempty"`
	// Work is what executing the plan has to do, one item per (source
	// digest, destination repository); not part of the JSON form.
	Work []Item `json:"-"`
}

// Failed reports whether the plan refuses any edge or has validation errors,
// which makes commands exit 1.
func (p *Plan) Failed() bool {
	for c, n := range p.Counts {
		if c.Refused() && n > 0 {
			return true
		}
	}
	return diag.Errors(p.Problems) > 0
}

// Item is one (source digest, destination repository) with what to do there.
type Item struct {
	Group *edge.Group
	Dest  name.Repository
	// Copy is true when the image must be copied before tagging.
	Copy bool
	// Tags are the tags to add once the image is complete.
	Tags []string
	// Existed says the destination repository had tags before the run.
	Existed bool
	// Manifest and MediaType are the source manifest, read while planning
	// a copy (nil otherwise).
	Manifest  []byte
	MediaType types.MediaType
}

// Reader is the registry access the planner needs.
type Reader interface {
	// ListTags lists a repository's tags and, when the registry says so in
	// the same answer (Google's registries do), each tag's digest.
	ListTags(ctx context.Context, repo name.Repository) ([]string, map[string]v1.Hash, error)
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

// Make reads the registries and classifies every edge of the valid groups.
// Registry errors never stop planning: they classify the edges they touch as
// Error. Only context cancellation returns an error.
//
// Destination repositories are planned one at a time (several in parallel):
// one tag listing, then a HEAD per wanted tag that exists and per digest
// whose tag does not; only what a repository needs is held in memory while
// it is planned, and only edges with something to do are kept afterwards.
func Make(ctx context.Context, r Reader, v *validate.Result, opts ...Option) (*Plan, error) {
	cfg := config{jobs: 8, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	p := &planner{r: r, cfg: cfg, heads: semaphore.NewWeighted(int64(cfg.jobs)), counts: Counts{}, byReg: map[string]Counts{}}
	dests := destinations(v.Groups)
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
	out := &Plan{SchemaVersion: SchemaVersion, Stats: v.Stats, Counts: p.counts, Problems: v.Problems, Actions: p.actions, Work: p.work, Destinations: []DestinationSummary{}}
	if out.Problems == nil {
		out.Problems = []diag.Problem{}
	}
	if out.Actions == nil {
		out.Actions = []Action{}
	}
	for reg, c := range p.byReg {
		out.Destinations = append(out.Destinations, DestinationSummary{Registry: reg, Counts: c})
	}
	slices.SortFunc(out.Destinations, func(a, b DestinationSummary) int { return cmp.Compare(a.Registry, b.Registry) })
	SortActions(out.Actions)
	slices.SortFunc(out.Work, func(a, b Item) int {
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

// pendingCopy is a copy whose source has yet to be checked.
type pendingCopy struct {
	item    int   // index in planner.work
	actions []int // indexes in planner.actions
	reg     string
}

type srcKey struct{ repo, digest string }

type planner struct {
	r     Reader
	cfg   config
	heads *semaphore.Weighted // bounds HEADs across all repositories

	mu      sync.Mutex
	counts  Counts
	byReg   map[string]Counts
	actions []Action
	work    []Item
	pending map[srcKey][]pendingCopy
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
	tags, digests, listErr := p.r.ListTags(ctx, d.repo)
	if ctx.Err() != nil {
		return
	}
	listed := make(map[string]bool, len(tags))
	for _, t := range tags {
		listed[t] = true
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
				case digests != nil:
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
		p.classify(g, d.repo, len(tags) > 0, listErr, known)
	}
}

// classify decides every edge of group g into repository d and records the
// actions, the counts and the work item.
func (p *planner) classify(g *edge.Group, d name.Repository, existed bool, listErr error, known map[string]state) {
	base := Action{Project: g.Project, Image: g.Image, Source: g.Source.Context().Name(), Destination: d.Name(), Digest: g.Digest.String()}
	img := known["digest:"+g.Digest.String()]
	var actions []Action
	add := func(tag string, pos diag.Position) {
		a := base
		a.Tag, a.Position = tag, pos
		tagState, tagAsked := known["tag:"+tag]
		switch {
		case listErr != nil:
			a.Class, a.Reason = Error, "listing destination tags: "+listErr.Error()
		case tag != "" && tagAsked && tagState.err != nil:
			a.Class, a.Reason = Error, "reading destination tag: "+tagState.err.Error()
		case tag != "" && tagAsked && tagState.present && tagState.digest == g.Digest:
			a.Class = Promoted
		case tag != "" && tagAsked && tagState.present:
			a.Class, a.Existing = Conflict, tagState.digest.String()
			a.Reason = fmt.Sprintf("tag %s already points at %s; a published tag never moves", tag, tagState.digest)
		case img.err != nil:
			a.Class, a.Reason = Error, "reading destination: "+img.err.Error()
		case img.present && tag == "":
			a.Class = Promoted
		case img.present:
			a.Class = TagOnly
		default:
			a.Class = Copy // the source is checked afterwards
		}
		actions = append(actions, a)
	}
	if len(g.Tags) == 0 {
		add("", g.Pos)
	}
	for _, t := range g.Tags {
		add(t.Name, t.Pos)
	}

	item := Item{Group: g, Dest: d, Existed: existed}
	for _, a := range actions {
		switch a.Class {
		case Copy:
			item.Copy = true
			if a.Tag != "" {
				item.Tags = append(item.Tags, a.Tag)
			}
		case TagOnly:
			item.Tags = append(item.Tags, a.Tag)
		}
	}
	reg := registryOf(d, g.Image)

	p.mu.Lock()
	defer p.mu.Unlock()
	rc := p.byReg[reg]
	if rc == nil {
		rc = Counts{}
		p.byReg[reg] = rc
	}
	var idx []int
	for _, a := range actions {
		p.counts[a.Class]++
		rc[a.Class]++
		if a.Class != Promoted {
			if a.Class == Copy {
				idx = append(idx, len(p.actions))
			}
			p.actions = append(p.actions, a)
		}
	}
	if !item.Copy && len(item.Tags) == 0 {
		return
	}
	p.work = append(p.work, item)
	if item.Copy {
		k := srcKey{g.Source.Context().Name(), g.Digest.String()}
		if p.pending == nil {
			p.pending = map[srcKey][]pendingCopy{}
			p.sources = map[srcKey]name.Digest{}
		}
		p.pending[k] = append(p.pending[k], pendingCopy{item: len(p.work) - 1, actions: idx, reg: reg})
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
	for _, k := range slices.SortedFunc(maps.Keys(p.sources), func(a, b srcKey) int { return cmp.Or(cmp.Compare(a.repo, b.repo), cmp.Compare(a.digest, b.digest)) }) {
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
	drop := map[int]bool{}
	for k, copies := range p.pending {
		st := found[k]
		if st.err == nil {
			for _, c := range copies {
				p.work[c.item].Manifest, p.work[c.item].MediaType = st.raw, st.mt
			}
			continue
		}
		class, reason := MissingSource, fmt.Sprintf("%s is not in the source registry", p.sources[k])
		if !errors.Is(st.err, regerr.ErrNotFound) {
			class, reason = Error, "reading the source: "+st.err.Error()
		}
		for _, c := range copies {
			drop[c.item] = true
			for _, i := range c.actions {
				p.actions[i].Class, p.actions[i].Reason = class, reason
				p.counts[Copy]--
				p.counts[class]++
				p.byReg[c.reg][Copy]--
				p.byReg[c.reg][class]++
			}
		}
	}
	if len(drop) > 0 {
		work := p.work[:0]
		for i, it := range p.work {
			if !drop[i] {
				work = append(work, it)
			}
		}
		p.work = work
	}
	for c, n := range p.counts {
		if n == 0 {
			delete(p.counts, c)
		}
	}
	for _, rc := range p.byReg {
		for c, n := range rc {
			if n == 0 {
				delete(rc, c)
			}
		}
	}
	return nil
}
