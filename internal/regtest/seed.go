package regtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// EpochUnix (2024-01-01T00:00:00Z) is the creation time of every image and
// layer file built here, fixed so that digests never depend on when they
// were built.
const EpochUnix = 1704067200

// Epoch returns EpochUnix as a UTC time.
func Epoch() time.Time { return time.Unix(EpochUnix, 0).UTC() }

// NewLayer returns a gzipped tar layer holding one regular file, fileName,
// whose content is the first size bytes of payload. Every byte of the blob
// follows from the arguments: the file is dated Epoch, and gzip runs at
// NoCompression, which keeps the digest independent of the Go version's
// deflate and costs nothing on the incompressible payloads seeding uses.
// The layer's digests are computed before it is returned, so that it is
// safe to share between concurrent pushes.
func NewLayer(fileName string, payload io.Reader, size int64) (v1.Layer, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     fileName,
		Mode:     0o644,
		Size:     size,
		ModTime:  Epoch(),
		Format:   tar.FormatUSTAR,
	}); err != nil {
		return nil, err
	}
	if _, err := io.CopyN(tw, payload, size); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	blob := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	if _, err := l.DiffID(); err != nil {
		return nil, err
	}
	return l, nil
}

// ImageLayer is a layer of NewImage with the history entry describing it.
type ImageLayer struct {
	// Layer is the layer blob.
	Layer v1.Layer
	// CreatedBy is the layer's history "created_by" text.
	CreatedBy string
}

// NewImage assembles an OCI image for platform (OS, architecture and
// variant go into the config), with labels in its config and layers in
// order, everything dated Epoch. Its digest is computed before it is
// returned, for the same reason as NewLayer's.
func NewImage(platform *v1.Platform, labels map[string]string, layers []ImageLayer) (v1.Image, error) {
	created := v1.Time{Time: Epoch()}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		Variant:      platform.Variant,
		Created:      created,
		Config:       v1.Config{Labels: labels},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l.Layer, History: v1.History{Created: created, CreatedBy: l.CreatedBy}}
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if _, err := img.Digest(); err != nil {
		return nil, err
	}
	return img, nil
}

// IndexChild is an image of NewIndex with the platform the index lists it
// under.
type IndexChild struct {
	// Image is the child image.
	Image v1.Image
	// Platform is the descriptor's platform.
	Platform *v1.Platform
}

// NewIndex assembles an in-memory OCI image index of children, in order.
// The manifest is marshalled here rather than by mutate.AppendManifests,
// which would mark every child with an artifactType as if it were an
// artifact; image indexes pushed by docker buildx and friends carry none.
func NewIndex(children []IndexChild) (v1.ImageIndex, error) {
	idx := &index{
		manifest: v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex},
		images:   map[v1.Hash]v1.Image{},
	}
	for _, c := range children {
		desc, err := partial.Descriptor(c.Image)
		if err != nil {
			return nil, err
		}
		idx.manifest.Manifests = append(idx.manifest.Manifests, v1.Descriptor{
			MediaType: desc.MediaType,
			Size:      desc.Size,
			Digest:    desc.Digest,
			Platform:  c.Platform,
		})
		idx.images[desc.Digest] = c.Image
	}
	raw, err := json.Marshal(idx.manifest)
	if err != nil {
		return nil, err
	}
	idx.raw = raw
	return idx, nil
}

// index is an in-memory OCI image index over built images.
type index struct {
	manifest v1.IndexManifest
	raw      []byte
	images   map[v1.Hash]v1.Image
}

// MediaType implements v1.ImageIndex.
func (i *index) MediaType() (types.MediaType, error) { return i.manifest.MediaType, nil }

// Digest implements v1.ImageIndex.
func (i *index) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(i.raw))
	return h, err
}

// Size implements v1.ImageIndex.
func (i *index) Size() (int64, error) { return int64(len(i.raw)), nil }

// IndexManifest implements v1.ImageIndex.
func (i *index) IndexManifest() (*v1.IndexManifest, error) { return i.manifest.DeepCopy(), nil }

// RawManifest implements v1.ImageIndex.
func (i *index) RawManifest() ([]byte, error) { return bytes.Clone(i.raw), nil }

// Image implements v1.ImageIndex.
func (i *index) Image(h v1.Hash) (v1.Image, error) {
	img, ok := i.images[h]
	if !ok {
		return nil, fmt.Errorf("index has no image %s", h)
	}
	return img, nil
}

// ImageIndex implements v1.ImageIndex; these indexes do not nest.
func (i *index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("index has no child index %s", h)
}
