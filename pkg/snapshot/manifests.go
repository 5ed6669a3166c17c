package snapshot

import (
	"slices"

	"github.com/imgpromoter/promoter/pkg/edge"
)

// FromGroups is the snapshot of what the manifests say the prefix should
// hold once every valid edge is promoted: each destination repository under
// the prefix, named relative to it, with the digests promoted there and
// their tags. It reads no registry. Sources are not counted (a manifest
// promotes from them, it does not say what they hold), and invalid entries,
// excluded by validation, are not either. WithMinimal does not apply: which
// digests are children of an index is only known to the registry.
//
// Like kpromo's --manifest-based-snapshot-of, with two differences: thin
// manifest directories count as much as plain manifests (kpromo reads only
// plain ones there), and a prefix matches whole path components.
func FromGroups(groups []*edge.Group, p Prefix, opts ...Option) (*Snapshot, error) {
	c, err := makeConfig(opts)
	if err != nil {
		return nil, err
	}
	b := builder{}
	for _, g := range groups {
		for _, d := range g.Dests {
			rel, ok := p.RelRepo(d)
			if !ok || rel == "" {
				// rel is empty only when a destination registry name
				// plus image name equals the prefix: not an image under it.
				continue
			}
			if len(c.repos) > 0 {
				if _, found := slices.BinarySearch(c.repos, rel); !found {
					continue
				}
			}
			if len(g.Tags) == 0 {
				b.add(rel, g.Digest, "")
				continue
			}
			for _, t := range g.Tags {
				b.add(rel, g.Digest, t.Name)
			}
		}
	}
	return b.snapshot(c), nil
}
