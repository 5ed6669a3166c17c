// Package edge is the typed form of what the manifests ask for: each valid
// (source image digest, tags, destinations) group, from which every edge
// (one image digest and tag to one destination) follows.
package edge

import (
	"cmp"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// Tag is a tag to set in every destination of a group, with where it was
// asked for.
type Tag struct {
	Name string
	Pos  diag.Position
}

// Group is one source image digest and everything the manifests want done
// with it: the tags (empty: digest only) in each destination repository.
// Repeated image entries and repeated manifests asking for the same digest are
// merged into one group per (source, destination set).
type Group struct {
	// Project is the thin-manifest project that asked first (empty for a
	// plain manifest).
	Project string
	// Image is the image name as written in the manifest (without registry).
	Image string
	// Source is the staging image by digest.
	Source name.Digest
	// Digest is Source's digest, typed.
	Digest v1.Hash
	// Tags are sorted by name, without duplicates.
	Tags []Tag
	// Dests are the destination repositories, sorted.
	Dests []name.Repository
	// Pos is where the digest was (first) asked for.
	Pos diag.Position
}

// EdgeCount is the number of edges of the group: one per tag (or one for a
// digest-only promotion) per destination.
func (g *Group) EdgeCount() int {
	return max(1, len(g.Tags)) * len(g.Dests)
}

// Edge is one image digest and tag to one destination repository.
type Edge struct {
	Group *Group
	Dest  name.Repository
	// Tag is empty for a digest-only edge.
	Tag string
	// Pos is where the tag (or digest) was asked for.
	Pos diag.Position
}

// Edges expands the group into its edges, ordered by destination then tag.
func (g *Group) Edges() []Edge {
	out := make([]Edge, 0, g.EdgeCount())
	for _, d := range g.Dests {
		if len(g.Tags) == 0 {
			out = append(out, Edge{Group: g, Dest: d, Pos: g.Pos})
			continue
		}
		for _, t := range g.Tags {
			out = append(out, Edge{Group: g, Dest: d, Tag: t.Name, Pos: t.Pos})
		}
	}
	return out
}

// Sort orders groups by source repository, digest, then first destination,
// so that everything built from them is deterministic.
func Sort(gs []*Group) {
	slices.SortFunc(gs, func(a, b *Group) int {
		return cmp.Or(
			cmp.Compare(a.Source.Context().Name(), b.Source.Context().Name()),
			cmp.Compare(a.Digest.String(), b.Digest.String()),
			cmp.Compare(destKey(a), destKey(b)),
		)
	})
}

func destKey(g *Group) string {
	if len(g.Dests) == 0 {
		return ""
	}
	return g.Dests[0].Name()
}
