package change

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/names"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// State is one state of the manifests: as read, and as validated.
type State struct {
	Set    *manifest.Set
	Result *validate.Result
}

// Read validates a manifest set into a State.
func Read(set *manifest.Set) State {
	return State{Set: set, Result: validate.Validate(set)}
}

// Kind classifies a finding. Kinds are part of the JSON form: never rename one.
type Kind string

// Finding kinds.
const (
	// DigestRemoved: a destination repository no longer receives a digest
	// (its tags go with it).
	DigestRemoved Kind = "digest-removed"
	// TagRemoved: a destination tag is no longer asked for, while its digest
	// still is.
	TagRemoved Kind = "tag-removed"
	// TagMoved: a destination tag is now asked for with another digest.
	TagMoved Kind = "tag-moved"
	// DestinationRemoved: a destination registry no longer receives images
	// from a source (removed from its manifest, or the manifest removed).
	DestinationRemoved Kind = "destination-removed"
	// SourceChanged: destination registries now take their images from
	// another source registry.
	SourceChanged Kind = "source-changed"
)

// Finding is one thing the change removes or moves. Findings are per entry,
// not per destination: a digest removed from a manifest with twenty mirrors is
// one finding listing the twenty destination repositories.
type Finding struct {
	Kind Kind `json:"kind"`
	// Key names the entry; an override (--allow-removal KEY) matches it
	// exactly. Forms: SOURCE-REPOSITORY@DIGEST (digest-removed),
	// SOURCE-REPOSITORY:TAG (tag-removed, tag-moved), the destination
	// registry (destination-removed), OLD-SOURCE->NEW-SOURCE
	// (source-changed). Source repositories are as they were in the base.
	Key string `json:"key"`
	// Position is where the entry was in the base for removals (AtBase set),
	// and where it is now for moves and source changes.
	Position diag.Position `json:"position"`
	AtBase   bool          `json:"atBase"`
	// Related is the other place: for a moved tag or a changed source, where
	// it was in the base.
	Related *diag.Position `json:"related,omitempty"`
	// Source is the source repository (digest and tag findings) or source
	// registries (registry findings) in the base.
	Source string `json:"source"`
	// NewSource is the source registries now (source-changed).
	NewSource string `json:"newSource,omitempty"`
	// Digest is the removed digest, or the digest a moved or removed tag
	// pointed at.
	Digest string `json:"digest,omitempty"`
	// NewDigest is the digest a moved tag points at now.
	NewDigest string `json:"newDigest,omitempty"`
	Tag       string `json:"tag,omitempty"`
	// Tags are the tags a removed digest had.
	Tags []string `json:"tags,omitempty"`
	// Registries are the destination registries concerned (registry findings).
	Registries []string `json:"registries,omitempty"`
	// Destinations are the destination repositories concerned.
	Destinations []string `json:"destinations"`
	// Allowed is set when an override names the key.
	Allowed bool   `json:"allowed"`
	Message string `json:"message"`
}

// Report is the verdict of Check.
type Report struct {
	SchemaVersion int `json:"schemaVersion"`
	// Base and BaseCommit name the base revision; the caller fills them.
	Base       string `json:"base"`
	BaseCommit string `json:"baseCommit"`
	// Accepted: no finding without an override, no unused override, no
	// error in the head state and every input readable.
	Accepted bool `json:"accepted"`
	// AddedEdges is the number of edges the change adds.
	AddedEdges int       `json:"addedEdges"`
	Findings   []Finding `json:"findings"`
	// UnusedOverrides are overrides that match no finding: an error, so that
	// overrides are never left lying around.
	UnusedOverrides []string `json:"unusedOverrides"`
	// Problems and Stats are the validation of the head state.
	Problems   []diag.Problem `json:"problems"`
	Stats      validate.Stats `json:"stats"`
	Unreadable bool           `json:"unreadable"`
	// BaseErrors counts validation errors in the base: entries invalid there
	// promoted nothing, so they are not compared.
	BaseErrors int `json:"baseErrors"`
}

// Refused counts the findings without an override.
func (r *Report) Refused() int {
	n := 0
	for _, f := range r.Findings {
		if !f.Allowed {
			n++
		}
	}
	return n
}

// Check compares base and head and returns every removal, tag move and
// source change, with the overrides in allow applied (each must name the key
// of at least one finding), and head's validation.
func Check(base, head State, allow []string) *Report {
	// Only base groups that head does not cover can lose anything; the
	// head side is indexed only where they go.
	covered := bySource(head.Result.Groups)
	var changed []*edge.Group
	for _, b := range base.Result.Groups {
		if !slices.ContainsFunc(covered[sourceKey(b)], func(h *edge.Group) bool { return covers(h, b) }) {
			changed = append(changed, b)
		}
	}
	bIdx := index(changed, nil)
	hIdx := index(head.Result.Groups, bIdx)
	// A tag head asks for with two digests is refused on both (a conflict
	// problem, which rejects the change by itself): what it takes away from
	// head is explained there, not reported again as a removal.
	conflicted := map[tagAt]bool{}
	for _, r := range head.Result.Refused {
		for _, d := range r.Dests {
			conflicted[tagAt{names.RepositoryKey(d), r.Tag}] = true
		}
	}
	bLinks, hLinks := links(base.Set), links(head.Set)
	var fs []*Finding

	// Registries first: a destination registry that no longer receives
	// anything is one finding, not one per digest promoted there.
	removed := map[string]bool{}
	moved := map[string]*Finding{}
	for _, rk := range sortedKeys(bLinks) {
		bl, hl := bLinks[rk], hLinks[rk]
		if hl == nil {
			removed[rk] = true
			f := &Finding{Kind: DestinationRemoved, Key: bl.name, Position: bl.pos, AtBase: true, Source: bl.sourceNames(), Registries: []string{bl.name}}
			images, digests := 0, 0
			for _, dk := range sortedKeys(bIdx) {
				if d := bIdx[dk]; d.registry == rk {
					f.Destinations = append(f.Destinations, d.name)
					images++
					digests += len(d.digests)
				}
			}
			f.Message = fmt.Sprintf("%s no longer receives images from %s (%s of %s were promoted there)", bl.name, f.Source, render.Plural(digests, "digest"), render.Plural(images, "image"))
			fs = append(fs, f)
			continue
		}
		if !slices.ContainsFunc(sortedKeys(bl.sources), func(s string) bool { _, ok := hl.sources[s]; return !ok }) {
			continue // no source lost (one may have been added: that only adds)
		}
		key := bl.sourceNames() + "->" + hl.sourceNames()
		f, ok := moved[key]
		if !ok {
			pos, rel := hl.newSourcePos(bl), bl.firstSourcePos()
			f = &Finding{Kind: SourceChanged, Key: key, Position: pos, Related: &rel, Source: bl.sourceNames(), NewSource: hl.sourceNames()}
			moved[key] = f
			fs = append(fs, f)
		}
		f.Registries = append(f.Registries, hl.name)
		for _, dk := range sortedKeys(bIdx) {
			if d := bIdx[dk]; d.registry == rk {
				f.Destinations = append(f.Destinations, d.name)
			}
		}
	}
	for _, f := range moved {
		verb := "take"
		if len(f.Registries) == 1 {
			verb = "takes"
		}
		f.Message = fmt.Sprintf("%s now %s images from %s instead of %s", list(f.Registries, "destination registry", "destination registries"), verb, f.NewSource, f.Source)
	}

	// Then digests and tags, per destination repository, merged into one
	// finding per entry across destinations.
	type aggKey struct {
		kind                   Kind
		key, digest, newDigest string
	}
	agg := map[aggKey]*Finding{}
	finding := func(k aggKey, init Finding) *Finding {
		f, ok := agg[k]
		if !ok {
			f = &init
			agg[k] = f
			fs = append(fs, f)
		}
		return f
	}
	for _, dk := range sortedKeys(bIdx) {
		bd := bIdx[dk]
		if removed[bd.registry] {
			continue
		}
		hd := hIdx[dk]
		gone := map[string]bool{}
		for _, dg := range sortedKeys(bd.digests) {
			c := bd.digests[dg]
			if hd != nil && hd.digests[dg] != nil || slices.ContainsFunc(c.tags, func(t string) bool { return conflicted[tagAt{dk, t}] }) {
				continue
			}
			gone[dg] = true
			f := finding(aggKey{DigestRemoved, c.source + "@" + dg, dg, ""}, Finding{Kind: DigestRemoved, Key: c.source + "@" + dg, Position: c.pos, AtBase: true, Source: c.source, Digest: dg})
			f.Destinations = append(f.Destinations, bd.name)
			f.Position = minPos(f.Position, c.pos)
			for _, t := range c.tags {
				if !slices.Contains(f.Tags, t) {
					f.Tags = append(f.Tags, t)
				}
			}
		}
		for _, t := range sortedKeys(bd.tags) {
			c := bd.tags[t]
			var now *claim
			if hd != nil {
				now = hd.tags[t]
			}
			switch {
			case now != nil && now.digest == c.digest, conflicted[tagAt{dk, t}]:
			case now != nil:
				was := c.pos
				f := finding(aggKey{TagMoved, c.source + ":" + t, c.digest, now.digest}, Finding{Kind: TagMoved, Key: c.source + ":" + t, Position: now.pos, Related: &was, Source: c.source, Digest: c.digest, NewDigest: now.digest, Tag: t})
				f.Destinations = append(f.Destinations, bd.name)
				f.Position = minPos(f.Position, now.pos)
				if was.Compare(*f.Related) < 0 {
					f.Related = &was
				}
			case gone[c.digest]:
				// Reported with its digest.
			default:
				f := finding(aggKey{TagRemoved, c.source + ":" + t, c.digest, ""}, Finding{Kind: TagRemoved, Key: c.source + ":" + t, Position: c.pos, AtBase: true, Source: c.source, Digest: c.digest, Tag: t})
				f.Destinations = append(f.Destinations, bd.name)
				f.Position = minPos(f.Position, c.pos)
			}
		}
	}
	for _, f := range agg {
		slices.Sort(f.Tags)
		switch f.Kind {
		case DigestRemoved:
			what := "digest only"
			if len(f.Tags) > 0 {
				what = "tags " + strings.Join(f.Tags, ", ")
			}
			f.Message = fmt.Sprintf("%s@%s (%s) is no longer promoted to %s", f.Source, f.Digest, what, list(f.Destinations, "destination", "destinations"))
		case TagRemoved:
			f.Message = fmt.Sprintf("tag %s of %s@%s is no longer promoted to %s (the digest still is)", f.Tag, f.Source, f.Digest, list(f.Destinations, "destination", "destinations"))
		case TagMoved:
			f.Message = fmt.Sprintf("tag %s of %s would move from %s to %s in %s", f.Tag, f.Source, f.Digest, f.NewDigest, list(f.Destinations, "destination", "destinations"))
		}
	}

	rep := &Report{
		SchemaVersion:   validate.SchemaVersion,
		AddedEdges:      Added(base.Result, head.Result).Stats.ValidEdges,
		Findings:        make([]Finding, 0, len(fs)),
		UnusedOverrides: []string{},
		Problems:        head.Result.Problems,
		Stats:           head.Result.Stats,
		Unreadable:      head.Result.Unreadable,
		BaseErrors:      base.Result.Stats.Errors,
	}
	if rep.Problems == nil {
		rep.Problems = []diag.Problem{}
	}
	used := map[string]bool{}
	allowed := map[string]bool{}
	for _, k := range allow {
		allowed[k] = true
	}
	for _, f := range fs {
		if f.Destinations == nil {
			f.Destinations = []string{}
		}
		if allowed[f.Key] {
			f.Allowed = true
			used[f.Key] = true
		}
		rep.Findings = append(rep.Findings, *f)
	}
	for _, k := range allow {
		if !used[k] && !slices.Contains(rep.UnusedOverrides, k) {
			rep.UnusedOverrides = append(rep.UnusedOverrides, k)
		}
	}
	slices.SortFunc(rep.Findings, func(a, b Finding) int {
		return cmp.Or(a.Position.Compare(b.Position), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Key, b.Key), cmp.Compare(a.NewDigest, b.NewDigest))
	})
	rep.Accepted = rep.Refused() == 0 && len(rep.UnusedOverrides) == 0 && rep.Stats.Errors == 0 && !rep.Unreadable
	return rep
}

// tagAt is a tag in a destination repository (as compared).
type tagAt struct {
	dest, tag string
}

// claim is what a state asks for in one destination repository: a digest
// (with its tags there) or a tag (with its digest).
type claim struct {
	source string // source repository
	digest string
	pos    diag.Position
	tags   []string
}

// destState is what one destination repository receives in one state.
type destState struct {
	name     string // the repository, for display
	registry string // its destination registry, as compared
	digests  map[string]*claim
	tags     map[string]*claim
}

// index lists, per destination repository, the digests and tags the groups
// put there; with only set, just the repositories only has. Claims of the
// same digest from several groups keep the first (groups are sorted, so the
// choice is stable) and the earliest position.
func index(groups []*edge.Group, only map[string]*destState) map[string]*destState {
	out := map[string]*destState{}
	for _, g := range groups {
		src := g.Source.Context().Name()
		dg := g.Digest.String()
		for _, d := range g.Dests {
			dk := names.RepositoryKey(d)
			if only != nil && only[dk] == nil {
				continue
			}
			st := out[dk]
			if st == nil {
				st = &destState{name: d.Name(), registry: strings.TrimSuffix(dk, "/"+g.Image), digests: map[string]*claim{}, tags: map[string]*claim{}}
				out[dk] = st
			}
			c := st.digests[dg]
			if c == nil {
				c = &claim{source: src, digest: dg, pos: g.Pos}
				st.digests[dg] = c
			}
			c.pos = minPos(c.pos, g.Pos)
			for _, t := range g.Tags {
				if !slices.Contains(c.tags, t.Name) {
					c.tags = append(c.tags, t.Name)
				}
				tc := st.tags[t.Name]
				if tc == nil {
					st.tags[t.Name] = &claim{source: src, digest: dg, pos: t.Pos}
				} else if tc.digest == dg {
					tc.pos = minPos(tc.pos, t.Pos)
				}
			}
		}
	}
	return out
}

// regLink is a destination registry as the manifests of one state name it,
// with the source registries feeding it.
type regLink struct {
	name    string
	pos     diag.Position
	sources map[string]registryRef
}

type registryRef struct {
	name string
	pos  diag.Position
}

func (l *regLink) sourceNames() string {
	var ns []string
	for _, k := range sortedKeys(l.sources) {
		ns = append(ns, l.sources[k].name)
	}
	return strings.Join(ns, ",")
}

func (l *regLink) firstSourcePos() diag.Position {
	var p diag.Position
	for _, s := range l.sources {
		if p.File == "" || s.pos.Compare(p) < 0 {
			p = s.pos
		}
	}
	return p
}

// newSourcePos is where a source of l that base did not have is named, or
// where l itself is when it only lost a source.
func (l *regLink) newSourcePos(base *regLink) diag.Position {
	var p diag.Position
	for k, s := range l.sources {
		if _, old := base.sources[k]; !old && (p.File == "" || s.pos.Compare(p) < 0) {
			p = s.pos
		}
	}
	if p.File == "" {
		return l.pos
	}
	return p
}

// links lists the destination registries of every manifest with a usable
// source, whatever file or project names them, so that moving a manifest
// changes nothing.
func links(set *manifest.Set) map[string]*regLink {
	out := map[string]*regLink{}
	for _, m := range set.Manifests {
		srcs := m.Source()
		if m.Broken || len(srcs) != 1 || srcs[0].Name == "" {
			continue
		}
		src := srcs[0]
		sk := names.RegistryKey(src.Name)
		for _, r := range m.Destinations() {
			if r.Name == "" {
				continue
			}
			rk := names.RegistryKey(r.Name)
			if rk == sk {
				continue
			}
			l := out[rk]
			if l == nil {
				l = &regLink{name: r.Name, pos: r.Pos, sources: map[string]registryRef{}}
				out[rk] = l
			} else if r.Pos.Compare(l.pos) < 0 {
				l.name, l.pos = r.Name, r.Pos
			}
			if s, ok := l.sources[sk]; !ok || src.Pos.Compare(s.pos) < 0 {
				l.sources[sk] = registryRef{name: src.Name, pos: src.Pos}
			}
		}
	}
	return out
}

func minPos(a, b diag.Position) diag.Position {
	if a.File == "" || (b.File != "" && b.Compare(a) < 0) {
		return b
	}
	return a
}

// list names up to three items, then counts the rest.
func list(items []string, one, many string) string {
	switch {
	case len(items) == 1:
		return one + " " + items[0]
	case len(items) <= 3:
		return many + " " + strings.Join(items, ", ")
	default:
		return fmt.Sprintf("%d %s (%s, and %d more)", len(items), many, strings.Join(items[:3], ", "), len(items)-3)
	}
}
