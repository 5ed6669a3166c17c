package referrers

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FallbackEntry is the descriptor a referrer gets in a fallback index: its
// digest, size and media type, its artifactType (else its config media
// type) and its annotations.
func FallbackEntry(d v1.Descriptor) v1.Descriptor {
	e := v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest, ArtifactType: d.ArtifactType}
	if len(d.Annotations) > 0 {
		e.Annotations = maps.Clone(d.Annotations)
	}
	return e
}

// MergeFallback merges entries into an existing fallback index (nil: there
// is none) and returns the index to write and whether anything was added.
// Every existing entry is kept as it is; an entry is added when no existing
// one has its digest. Entries are ordered by digest, so every destination
// given the same entries ends with the same bytes. An existing manifest that
// is not an OCI image index is refused: it is not a fallback index and
// overwriting it would destroy it.
func MergeFallback(existing []byte, entries []v1.Descriptor) (merged []byte, changed bool, err error) {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	if existing != nil {
		var probe struct {
			SchemaVersion int              `json:"schemaVersion"`
			MediaType     types.MediaType  `json:"mediaType"`
			Manifests     *json.RawMessage `json:"manifests"`
		}
		if err := json.Unmarshal(existing, &probe); err != nil {
			return nil, false, fmt.Errorf("%w: not JSON: %v", errNotIndex, err)
		}
		if probe.MediaType != types.OCIImageIndex || probe.SchemaVersion != 2 || probe.Manifests == nil {
			return nil, false, fmt.Errorf("%w: media type %q, schema version %d", errNotIndex, probe.MediaType, probe.SchemaVersion)
		}
		if err := json.Unmarshal(existing, &idx); err != nil {
			return nil, false, fmt.Errorf("%w: %v", errNotIndex, err)
		}
	}
	have := map[v1.Hash]bool{}
	for _, m := range idx.Manifests {
		have[m.Digest] = true
	}
	for _, e := range entries {
		if have[e.Digest] {
			continue
		}
		have[e.Digest] = true
		idx.Manifests = append(idx.Manifests, FallbackEntry(e))
		changed = true
	}
	if !changed && existing != nil {
		return existing, false, nil
	}
	slices.SortStableFunc(idx.Manifests, func(a, b v1.Descriptor) int {
		return cmp.Compare(a.Digest.String(), b.Digest.String())
	})
	out, err := json.Marshal(idx)
	if err != nil {
		return nil, false, err
	}
	return out, changed, nil
}

// listed reports which of want are entries of a fallback index.
func listed(raw []byte, want []v1.Descriptor) (missing []v1.Hash) {
	var idx v1.IndexManifest
	_ = json.Unmarshal(raw, &idx)
	have := map[v1.Hash]bool{}
	for _, m := range idx.Manifests {
		have[m.Digest] = true
	}
	for _, w := range want {
		if !have[w.Digest] {
			missing = append(missing, w.Digest)
		}
	}
	return missing
}
