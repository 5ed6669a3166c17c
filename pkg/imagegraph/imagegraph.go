// Package imagegraph is the one reader of the image graph: what a manifest
// is (an image, an index, or Docker schema 1, which the promoter does not
// handle), which manifests an index lists, which blobs an image needs, and
// a walk of a whole tree, children first. The transfer engine, snapshots
// and the plan's image descriptions all read manifests through it, so they
// agree on every manifest. (Referrers will be added here as edges of the
// graph.)
package imagegraph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Kind is what a manifest (or what a descriptor points at) is.
type Kind int

// Kinds.
const (
	// Blob is not a manifest: a config, a layer, or an index entry that
	// is not a manifest.
	Blob Kind = iota
	// Image is an image manifest (OCI, or Docker schema 2).
	Image
	// Index is an image index (OCI, or a Docker manifest list).
	Index
	// Schema1 is a Docker schema 1 manifest: recognised, not handled.
	Schema1
)

// ErrSchema1 says a manifest is Docker schema 1, which the promoter
// neither copies nor describes.
var ErrSchema1 = errors.New("docker schema 1 manifests are not supported")

// KindOf classifies a media type, from a descriptor or a Content-Type.
// Anything but the manifest types is a Blob.
func KindOf(mt types.MediaType) Kind {
	switch mt {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		return Image
	case types.OCIImageIndex, types.DockerManifestList:
		return Index
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return Schema1
	}
	return Blob
}

// Manifest is one manifest, parsed.
type Manifest struct {
	Kind Kind
	// MediaType is the manifest's media type as decided by Parse.
	MediaType types.MediaType
	// Raw is the manifest's exact bytes.
	Raw []byte
	// Children are the manifests an index lists, in order (Index only);
	// an entry without a media type counts as one.
	Children []v1.Descriptor
	// Blobs are what must be in a repository for the manifest to be
	// complete there, besides its children: an image's config and its
	// distributable layers (foreign layers stay where they are, as
	// registries expect), or the entries of an index that are not
	// manifests.
	Blobs []v1.Descriptor
	// Image is the parsed image manifest (Image only).
	Image *v1.Manifest
	// Index is the parsed index (Index only).
	Index *v1.IndexManifest
}

// probe is the part of any manifest that tells what it is.
type probe struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType"`
	Manifests     json.RawMessage `json:"manifests"`
}

// Parse reads raw, served with the media type mt. A manifest type in mt
// decides; a registry that sends none (or a generic one) leaves it to the
// manifest's own mediaType, then to its shape (schemaVersion 1, or a
// "manifests" list for an index). A Docker schema 1 manifest is returned
// with Kind Schema1 and an error matching ErrSchema1.
func Parse(raw []byte, mt types.MediaType) (*Manifest, error) {
	kind := KindOf(mt)
	if kind == Blob {
		var p probe
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("not a JSON manifest: %w", err)
		}
		kind, mt = KindOf(p.MediaType), p.MediaType
		switch {
		case kind != Blob:
		case p.SchemaVersion == 1:
			kind, mt = Schema1, types.DockerManifestSchema1
		case len(p.Manifests) > 0:
			kind, mt = Index, types.OCIImageIndex
		default:
			kind, mt = Image, types.OCIManifestSchema1
		}
	}
	m := &Manifest{Kind: kind, MediaType: mt, Raw: raw}
	switch kind {
	case Schema1:
		return m, ErrSchema1
	case Index:
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("parsing index: %w", err)
		}
		m.Index = idx
		for _, d := range idx.Manifests {
			// An entry without a media type may be a manifest: it is read
			// as one (a blob would not be found among the manifests).
			if d.MediaType == "" || KindOf(d.MediaType) != Blob {
				m.Children = append(m.Children, d)
			} else {
				m.Blobs = append(m.Blobs, d) // an index may point at a plain blob
			}
		}
	default:
		im, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("parsing manifest: %w", err)
		}
		m.Image = im
		m.Blobs = append(m.Blobs, im.Config)
		for _, l := range im.Layers {
			if l.MediaType.IsDistributable() {
				m.Blobs = append(m.Blobs, l)
			}
		}
	}
	return m, nil
}

// Size is the sum of an image's config and layer sizes (0 for anything
// else).
func (m *Manifest) Size() int64 {
	if m.Image == nil {
		return 0
	}
	n := m.Image.Config.Size
	for _, l := range m.Image.Layers {
		n += l.Size
	}
	return n
}

// Fetch reads the manifest d names, returning its bytes and the media type
// it was served with.
type Fetch func(ctx context.Context, d v1.Descriptor) ([]byte, types.MediaType, error)

// Node is a manifest of a tree, with its descriptor (the root's media type
// is the one Parse decided).
type Node struct {
	Descriptor v1.Descriptor
	*Manifest
}

// Walk parses the tree under root (whose bytes are raw, served as mt),
// reading children with fetch, and calls visit for every manifest,
// children before their index. A manifest listed twice is visited once.
func Walk(ctx context.Context, root v1.Hash, raw []byte, mt types.MediaType, fetch Fetch, visit func(*Node) error) error {
	seen := map[v1.Hash]bool{}
	var walk func(d v1.Descriptor, raw []byte, mt types.MediaType) error
	walk = func(d v1.Descriptor, raw []byte, mt types.MediaType) error {
		if seen[d.Digest] {
			return nil
		}
		seen[d.Digest] = true
		m, err := Parse(raw, mt)
		if err != nil {
			return err
		}
		for _, c := range m.Children {
			if err := ctx.Err(); err != nil {
				return err
			}
			craw, cmt, err := fetch(ctx, c)
			if err != nil {
				return fmt.Errorf("reading %s: %w", c.Digest, err)
			}
			if err := walk(c, craw, cmt); err != nil {
				return err
			}
		}
		d.MediaType, d.Size = m.MediaType, int64(len(raw))
		return visit(&Node{Descriptor: d, Manifest: m})
	}
	return walk(v1.Descriptor{Digest: root}, raw, mt)
}
