// Package change compares two states of the manifests, a base (the revision
// a pull request starts from, or the previous commit) and a head (the change
// applied), by what they promote rather than by their text. Quoting,
// reordering, reformatting, comments, line endings, and moving an entry to
// another file or project change nothing; what counts is the edges.
//
// Added gives the edges the change adds, for planning and promoting only
// those (pull-request mode). Check finds what the change removes or moves
// (a digest, a tag, a destination registry) or where it changes the source of
// images: the presubmit guard.
package change

import (
	"cmp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/names"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// edgeID is an edge's identity within the groups of one source digest: the
// destination repository and the tag ("" for a digest-only edge).
type edgeID struct {
	dest string
	tag  string
}

// sourceKey is a group's source image by digest, as compared for identity.
func sourceKey(g *edge.Group) string {
	return names.RepositoryKey(g.Source.Context()) + "@" + g.Digest.String()
}

// bySource indexes groups by source digest: an edge's identity starts with
// it, so only groups of the same source digest need comparing.
func bySource(gs []*edge.Group) map[string][]*edge.Group {
	out := make(map[string][]*edge.Group, len(gs))
	for _, g := range gs {
		k := sourceKey(g)
		out[k] = append(out[k], g)
	}
	return out
}

// covers reports whether group a has every edge of group b: the same
// destinations, and all of b's tags (for a digest-only b, any tags: the
// digest is in the destinations either way). It is the fast path that keeps
// an unchanged tree from being compared edge by edge.
func covers(a, b *edge.Group) bool {
	if len(a.Dests) != len(b.Dests) {
		return false
	}
	for i := range a.Dests {
		if names.RepositoryKey(a.Dests[i]) != names.RepositoryKey(b.Dests[i]) {
			return false
		}
	}
	for _, t := range b.Tags {
		if !slices.ContainsFunc(a.Tags, func(u edge.Tag) bool { return u.Name == t.Name }) {
			return false
		}
	}
	return true
}

// Added returns head restricted to the edges that base does not have, an
// edge being (source repository@digest, destination repository, tag). The
// groups are cut down to the added tags and destinations (a group whose
// digest-only edge was there and that gains a tag keeps only the tag edge),
// the problems are head's, and the stats describe the added edges.
//
// A digest-only edge is not added when base already promotes that source
// digest to that destination under some tag: the digest is there either way.
func Added(base, head *validate.Result) *validate.Result {
	had := bySource(base.Groups)
	out := &validate.Result{
		SchemaVersion: head.SchemaVersion,
		Problems:      head.Problems,
		Unreadable:    head.Unreadable,
	}
	for _, g := range head.Groups {
		old := had[sourceKey(g)]
		switch {
		case len(old) == 0:
			cp := *g
			out.Groups = append(out.Groups, &cp)
		case slices.ContainsFunc(old, func(b *edge.Group) bool { return covers(b, g) }):
		default:
			out.Groups = append(out.Groups, addedPart(g, old)...)
		}
	}
	edge.Sort(out.Groups)
	out.Stats = addedStats(out.Groups, head.Stats)
	return out
}

// addedPart cuts a group down to the edges that the base groups of its
// source digest do not have. The edges left need not form one cross product
// of tags and destinations, so destinations with the same added tags are
// grouped together.
func addedPart(g *edge.Group, old []*edge.Group) []*edge.Group {
	had := map[edgeID]bool{}
	for _, b := range old {
		for _, d := range b.Dests {
			dk := names.RepositoryKey(d)
			had[edgeID{dk, ""}] = true // any edge puts the digest there
			for _, t := range b.Tags {
				had[edgeID{dk, t.Name}] = true
			}
		}
	}
	type part struct {
		tags  []edge.Tag
		dests []name.Repository
	}
	var parts []*part
	byTags := map[string]*part{}
	for _, d := range g.Dests {
		dk := names.RepositoryKey(d)
		var tags []edge.Tag
		key := "\x00" // digest only
		if len(g.Tags) == 0 {
			if had[edgeID{dk, ""}] {
				continue
			}
		} else {
			var names []string
			for _, t := range g.Tags {
				if !had[edgeID{dk, t.Name}] {
					tags = append(tags, t)
					names = append(names, t.Name)
				}
			}
			if len(tags) == 0 {
				continue
			}
			key = strings.Join(names, "\x00")
		}
		p, ok := byTags[key]
		if !ok {
			p = &part{tags: tags}
			byTags[key] = p
			parts = append(parts, p)
		}
		p.dests = append(p.dests, d)
	}
	out := make([]*edge.Group, 0, len(parts))
	for _, p := range parts {
		out = append(out, &edge.Group{Image: g.Image, Source: g.Source, Digest: g.Digest, Tags: p.tags, Dests: p.dests, Pos: g.Pos})
	}
	return out
}

// addedStats counts the added edges: the files they are asked for in (one
// per manifest: the images file of a thin manifest, the plain manifest), the
// source images, digests and tags they involve. Problems are head's.
func addedStats(gs []*edge.Group, head validate.Stats) validate.Stats {
	files := map[string]bool{}
	images := map[string]bool{}
	digests := map[string]bool{}
	tags := map[string]bool{}
	n := 0
	for _, g := range gs {
		n += g.EdgeCount()
		images[names.RepositoryKey(g.Source.Context())] = true
		digests[sourceKey(g)] = true
		if len(g.Tags) == 0 {
			files[g.Pos.File] = true
		}
		for _, t := range g.Tags {
			files[t.Pos.File] = true
			tags[sourceKey(g)+"\x00"+t.Name] = true
		}
	}
	return validate.Stats{
		Manifests:  len(files),
		Images:     len(images),
		Digests:    len(digests),
		Tags:       len(tags),
		Edges:      n,
		ValidEdges: n,
		Errors:     head.Errors,
		Warnings:   head.Warnings,
	}
}

// sortedKeys returns a set's members in order.
func sortedKeys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, cmp.Compare[string])
	return out
}
