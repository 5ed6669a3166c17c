package supplychain

import (
	"slices"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgpromoter/promoter/pkg/manifest"
)

// Filters maps destination repositories to what is carried there, from the
// manifests' optional referrers settings.
type Filters map[string]Filter

// For returns the filter of a destination repository (the zero Filter,
// carry everything, when the manifests say nothing).
func (fs Filters) For(dst name.Repository) Filter { return fs[dst.Name()] }

// FiltersFrom reads the referrers settings of every manifest: a
// destination registry entry's and an image entry's both apply to that
// image in that registry (an artifact is carried only when both allow
// it), and so do those of several manifests naming the same repository.
func FiltersFrom(set *manifest.Set) Filters {
	out := Filters{}
	for _, m := range set.Manifests {
		for _, r := range m.Destinations() {
			for _, img := range m.Images {
				if r.Referrers == nil && img.Referrers == nil {
					continue
				}
				repo, err := name.NewRepository(r.Name + "/" + img.Name)
				if err != nil {
					continue // invalid names are reported by validation
				}
				f, seen := out[repo.Name()]
				for _, s := range []*manifest.Referrers{r.Referrers, img.Referrers} {
					if s == nil {
						continue
					}
					f = f.and(Filter{Off: !s.Carry, ArtifactTypes: s.ArtifactTypes}, seen)
					seen = true
				}
				out[repo.Name()] = f
			}
		}
	}
	return out
}

// and combines two filters: off if either is; only the artifact types both
// allow. restricted says f already came from a setting.
func (f Filter) and(g Filter, restricted bool) Filter {
	if !restricted {
		return g
	}
	out := Filter{Off: f.Off || g.Off}
	switch {
	case len(f.ArtifactTypes) == 0:
		out.ArtifactTypes = g.ArtifactTypes
	case len(g.ArtifactTypes) == 0:
		out.ArtifactTypes = f.ArtifactTypes
	default:
		for _, t := range f.ArtifactTypes {
			if slices.Contains(g.ArtifactTypes, t) {
				out.ArtifactTypes = append(out.ArtifactTypes, t)
			}
		}
		if len(out.ArtifactTypes) == 0 {
			out.Off = true // nothing both allow
		}
	}
	return out
}
