// Package plan decides, for every edge the manifests ask for, what a
// promotion would do: nothing (already promoted), copy, add a tag, or refuse
// (a tag that would move, an image missing from staging). It reads registry
// state over the plain OCI distribution API only, so it works on any registry.
package plan

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/edge"
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
}

// Reader is the registry access the planner needs.
type Reader interface {
	List(ctx context.Context, repo name.Repository) ([]string, error)
	Head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error)
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

type headResult struct {
	desc *v1.Descriptor // nil: absent
	err  error
}

type refKey struct{ repo, ref string }

// Make reads the registries and classifies every edge of the valid groups.
// Registry errors never stop planning: they classify the edges they touch as
// Error. Only context cancellation returns an error.
func Make(ctx context.Context, r Reader, v *validate.Result, opts ...Option) (*Plan, error) {
	cfg := config{jobs: 8, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	p := &planner{r: r, cfg: cfg, tags: map[string]tagList{}, heads: map[refKey]headResult{}}
	log := cfg.logger
	if err := p.listDestinations(ctx, v.Groups); err != nil {
		return nil, err
	}
	log.Debug("listed destination repositories", "repositories", len(p.tags))
	if err := p.headDestinations(ctx, v.Groups); err != nil {
		return nil, err
	}
	log.Debug("read destination manifests", "requests", len(p.heads))
	if err := p.headSources(ctx, v.Groups); err != nil {
		return nil, err
	}
	log.Debug("checked source digests", "requests", len(p.heads))
	out := &Plan{SchemaVersion: SchemaVersion, Stats: v.Stats, Counts: Counts{}, Problems: v.Problems, Actions: []Action{}, Destinations: []DestinationSummary{}}
	if out.Problems == nil {
		out.Problems = []diag.Problem{}
	}
	byReg := map[string]Counts{}
	for _, g := range v.Groups {
		for _, d := range g.Dests {
			item, actions := p.classify(g, d)
			if item.Copy || len(item.Tags) > 0 {
				out.Work = append(out.Work, item)
			}
			reg := registryOf(d, g.Image)
			if byReg[reg] == nil {
				byReg[reg] = Counts{}
			}
			for _, a := range actions {
				out.Counts[a.Class]++
				byReg[reg][a.Class]++
				if a.Class != Promoted {
					out.Actions = append(out.Actions, a)
				}
			}
		}
	}
	for reg, c := range byReg {
		out.Destinations = append(out.Destinations, DestinationSummary{Registry: reg, Counts: c})
	}
	slices.SortFunc(out.Destinations, func(a, b DestinationSummary) int { return cmp.Compare(a.Registry, b.Registry) })
	SortActions(out.Actions)
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

type tagList struct {
	tags map[string]bool
	err  error
}

type planner struct {
	r     Reader
	cfg   config
	mu    sync.Mutex
	tags  map[string]tagList
	heads map[refKey]headResult
}

// listDestinations reads the tag list of every destination repository once.
func (p *planner) listDestinations(ctx context.Context, groups []*edge.Group) error {
	repos := map[string]name.Repository{}
	for _, g := range groups {
		for _, d := range g.Dests {
			repos[d.Name()] = d
		}
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(p.cfg.jobs)
	for _, key := range sortedKeys(repos) {
		repo := repos[key]
		eg.Go(func() error {
			tags, err := p.r.List(ctx, repo)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			tl := tagList{tags: make(map[string]bool, len(tags)), err: err}
			for _, t := range tags {
				tl.tags[t] = true
			}
			p.mu.Lock()
			p.tags[key] = tl
			p.mu.Unlock()
			return nil
		})
	}
	return eg.Wait()
}

// headDestinations resolves what the edges need: the digest of each wanted
// tag that exists, and the presence of each digest whose tag does not exist
// (or that is promoted by digest only).
func (p *planner) headDestinations(ctx context.Context, groups []*edge.Group) error {
	want := map[refKey]name.Reference{}
	for _, g := range groups {
		for _, d := range g.Dests {
			tl := p.tags[d.Name()]
			if tl.err != nil {
				continue
			}
			needDigest := len(g.Tags) == 0
			for _, t := range g.Tags {
				if tl.tags[t.Name] {
					want[refKey{d.Name(), t.Name}] = d.Tag(t.Name)
				} else {
					needDigest = true
				}
			}
			if needDigest {
				want[refKey{d.Name(), g.Digest.String()}] = d.Digest(g.Digest.String())
			}
		}
	}
	if err := p.headAll(ctx, want); err != nil {
		return err
	}
	// A tag listed but gone by the time of its HEAD (deleted in between)
	// counts as missing: then the digest's presence decides copy or tag.
	again := map[refKey]name.Reference{}
	for _, g := range groups {
		for _, d := range g.Dests {
			dk := refKey{d.Name(), g.Digest.String()}
			if _, known := p.heads[dk]; known {
				continue
			}
			for _, t := range g.Tags {
				if h, ok := p.heads[refKey{d.Name(), t.Name}]; ok && h.err == nil && h.desc == nil {
					again[dk] = d.Digest(g.Digest.String())
				}
			}
		}
	}
	return p.headAll(ctx, again)
}

// headSources checks that every digest to be copied is in the source.
func (p *planner) headSources(ctx context.Context, groups []*edge.Group) error {
	want := map[refKey]name.Reference{}
	for _, g := range groups {
		for _, d := range g.Dests {
			if p.needsCopy(g, d) {
				want[refKey{g.Source.Context().Name(), g.Digest.String()}] = g.Source
				break
			}
		}
	}
	return p.headAll(ctx, want)
}

func (p *planner) headAll(ctx context.Context, want map[refKey]name.Reference) error {
	keys := make([]refKey, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b refKey) int { return cmp.Or(cmp.Compare(a.repo, b.repo), cmp.Compare(a.ref, b.ref)) })
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(p.cfg.jobs)
	for _, k := range keys {
		ref := want[k]
		eg.Go(func() error {
			desc, err := p.r.Head(ctx, ref)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.mu.Lock()
			p.heads[k] = headResult{desc: desc, err: err}
			p.mu.Unlock()
			return nil
		})
	}
	return eg.Wait()
}

// needsCopy reports whether the digest is absent from the destination while
// some edge wants it there (and nothing failed reading the destination).
func (p *planner) needsCopy(g *edge.Group, d name.Repository) bool {
	tl := p.tags[d.Name()]
	if tl.err != nil {
		return false
	}
	h, ok := p.heads[refKey{d.Name(), g.Digest.String()}]
	return ok && h.err == nil && h.desc == nil
}

func (p *planner) classify(g *edge.Group, d name.Repository) (Item, []Action) {
	item := Item{Group: g, Dest: d}
	base := Action{Image: g.Image, Source: g.Source.Context().Name(), Destination: d.Name(), Digest: g.Digest.String()}
	tl := p.tags[d.Name()]
	digestState := p.heads[refKey{d.Name(), g.Digest.String()}]
	src, srcChecked := p.heads[refKey{g.Source.Context().Name(), g.Digest.String()}]

	// What happens to the image itself in this destination.
	imageClass, imageReason := Promoted, ""
	if p.needsCopy(g, d) {
		imageClass = Copy
		switch {
		case !srcChecked:
		case src.err != nil:
			imageClass, imageReason = Error, "reading the source: "+src.err.Error()
		case src.desc == nil:
			imageClass, imageReason = MissingSource, fmt.Sprintf("%s is not in the source registry", g.Source)
		}
	}

	var actions []Action
	edgeAction := func(tag string, pos diag.Position) Action {
		a := base
		a.Tag, a.Position = tag, pos
		switch {
		case tl.err != nil:
			a.Class, a.Reason = Error, "listing destination tags: "+tl.err.Error()
		case tag != "" && tl.tags[tag]:
			h := p.heads[refKey{d.Name(), tag}]
			switch {
			case h.err != nil:
				a.Class, a.Reason = Error, "reading destination tag: "+h.err.Error()
			case h.desc == nil:
				// Listed but gone (deleted in between): treat as missing.
				a.Class, a.Reason = p.missingTagClass(d, g, imageClass, imageReason)
			case h.desc.Digest == g.Digest:
				a.Class = Promoted
			default:
				a.Class, a.Existing = Conflict, h.desc.Digest.String()
				a.Reason = fmt.Sprintf("tag %s already points at %s; a published tag never moves", tag, h.desc.Digest)
			}
		case tag == "":
			a.Class, a.Reason = imageClass, imageReason
			if digestState.err != nil {
				a.Class, a.Reason = Error, "reading destination: "+digestState.err.Error()
			}
		default:
			a.Class, a.Reason = p.missingTagClass(d, g, imageClass, imageReason)
		}
		return a
	}
	if len(g.Tags) == 0 {
		actions = append(actions, edgeAction("", g.Pos))
	}
	for _, t := range g.Tags {
		actions = append(actions, edgeAction(t.Name, t.Pos))
	}
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
	return item, actions
}

// missingTagClass classifies an edge whose tag is absent in the destination.
func (p *planner) missingTagClass(d name.Repository, g *edge.Group, imageClass Class, imageReason string) (Class, string) {
	h := p.heads[refKey{d.Name(), g.Digest.String()}]
	switch {
	case h.err != nil:
		return Error, "reading destination: " + h.err.Error()
	case h.desc != nil:
		return TagOnly, ""
	default:
		// The digest is absent (headDestinations resolved it for every
		// edge whose tag is missing), so imageClass is Copy or a refusal.
		return imageClass, imageReason
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
