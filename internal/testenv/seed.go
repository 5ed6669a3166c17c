package testenv

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imgpromoter/promoter/internal/regtest"
)

const (
	// DefaultPlatform is the platform of images built without one.
	DefaultPlatform = "linux/amd64"
	// SeedLabel is the image config label recording an image's seed.
	SeedLabel = "org.imgpromoter.testenv.seed"

	defaultLayerSize = 1024
	// sharedBaseKey keys the content of shared base layers; any fixed
	// value works, it only has to differ from the per-image keys.
	sharedBaseKey = "testenv/shared-base"
)

// ImageSpec describes a deterministic single-platform test image: the same
// spec always yields the same digest, on any machine and in any run.
type ImageSpec struct {
	// Seed selects the content; different seeds give different images.
	Seed int64
	// Layers is the number of layers; 0 means 1.
	Layers int
	// LayerSize is the payload size of each layer in bytes; 0 means 1024.
	LayerSize int
	// SharedBase makes the first layer independent of Seed and Platform, so
	// that images with SharedBase and the same LayerSize share that blob
	// (for testing blob mounts and copy-once behaviour).
	SharedBase bool
	// Platform is "os/arch[/variant]"; "" means DefaultPlatform.
	Platform string
}

// BuildImage builds the image spec describes without pushing it, e.g. to
// learn its digest before pushing by digest.
func BuildImage(t testing.TB, spec ImageSpec) v1.Image {
	t.Helper()
	img, err := buildImage(spec)
	if err != nil {
		t.Fatalf("testenv: building image %+v: %v", spec, err)
	}
	return img
}

// BuildIndex builds the OCI image index PushIndex pushes, without pushing
// it. Platforms default to linux/amd64 and linux/arm64.
func BuildIndex(t testing.TB, seed int64, platforms ...string) v1.ImageIndex {
	t.Helper()
	idx, err := buildIndex(seed, platforms)
	if err != nil {
		t.Fatalf("testenv: building index (seed %d, platforms %v): %v", seed, platforms, err)
	}
	return idx
}

// PushImage pushes the one-layer linux/amd64 image for seed to ref and
// returns its digest. See PushImageWith for how ref is interpreted.
func PushImage(t testing.TB, ref string, seed int64) v1.Hash {
	t.Helper()
	return PushImageWith(t, ref, ImageSpec{Seed: seed})
}

// PushImageWith pushes the image spec describes and returns its digest.
// A tagged ref ("host/repo:tag") pushes by tag. A digest ref
// ("host/repo@sha256:...") pushes by digest and fails the test unless the
// digest is the image's. A bare repository ("host/repo") pushes by the
// image's own digest, leaving the manifest untagged.
func PushImageWith(t testing.TB, ref string, spec ImageSpec) v1.Hash {
	t.Helper()
	img := BuildImage(t, spec)
	dig, err := img.Digest()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	target := pushTarget(t, ref, dig)
	if err := remote.Write(target, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("testenv: pushing image to %s: %v", target, err)
	}
	return dig
}

// PushIndex pushes a multi-platform OCI index for seed to ref and returns
// the index digest and its children's digests in platform order. Platforms
// default to linux/amd64 and linux/arm64; the child for a platform equals
// BuildImage(ImageSpec{Seed: seed, Platform: platform}). ref is interpreted
// as by PushImageWith.
func PushIndex(t testing.TB, ref string, seed int64, platforms ...string) (v1.Hash, []v1.Hash) {
	t.Helper()
	idx := BuildIndex(t, seed, platforms...)
	dig, err := idx.Digest()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	children := make([]v1.Hash, len(im.Manifests))
	for i, d := range im.Manifests {
		children[i] = d.Digest
	}
	target := pushTarget(t, ref, dig)
	if err := remote.WriteIndex(target, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("testenv: pushing index to %s: %v", target, err)
	}
	return dig, children
}

// Digests returns the digest each tag of repo ("host/repo") points at. A
// repository the registry does not know yields an empty map.
func Digests(t testing.TB, repo string) map[string]v1.Hash {
	t.Helper()
	r, err := name.NewRepository(repo, name.StrictValidation)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx := t.Context()
	tags, err := remote.List(r, remote.WithContext(ctx))
	if isNotFound(err) {
		return map[string]v1.Hash{}
	}
	if err != nil {
		t.Fatalf("testenv: listing tags of %s: %v", r, err)
	}
	out := make(map[string]v1.Hash, len(tags))
	for _, tag := range tags {
		desc, err := remote.Head(r.Tag(tag), remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("testenv: resolving %s:%s: %v", r, tag, err)
		}
		out[tag] = desc.Digest
	}
	return out
}

// HasManifest reports whether the registry serves a manifest for ref
// ("host/repo:tag" or "host/repo@sha256:..."). Errors other than "not
// found" fail the test.
func HasManifest(t testing.TB, ref string) bool {
	t.Helper()
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	_, err = remote.Head(r, remote.WithContext(t.Context()))
	if isNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatalf("testenv: HEAD %s: %v", r, err)
	}
	return true
}

// isNotFound reports whether err is a registry 404.
func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// pushTarget resolves ref into the reference to push content with digest
// dig to, as documented on PushImageWith.
func pushTarget(t testing.TB, ref string, dig v1.Hash) name.Reference {
	t.Helper()
	if d, err := name.NewDigest(ref, name.StrictValidation); err == nil {
		if d.DigestStr() != dig.String() {
			t.Fatalf("testenv: %s: content has digest %s", ref, dig)
		}
		return d
	}
	if tag, err := name.NewTag(ref, name.StrictValidation); err == nil {
		return tag
	}
	repo, err := name.NewRepository(ref, name.StrictValidation)
	if err != nil {
		t.Fatalf("testenv: %q is neither a tag, a digest nor a repository reference", ref)
	}
	return repo.Digest(dig.String())
}

// buildIndex assembles the index documented on PushIndex.
func buildIndex(seed int64, platforms []string) (v1.ImageIndex, error) {
	if len(platforms) == 0 {
		platforms = []string{"linux/amd64", "linux/arm64"}
	}
	children := make([]regtest.IndexChild, len(platforms))
	for i, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, err
		}
		img, err := buildImage(ImageSpec{Seed: seed, Platform: p})
		if err != nil {
			return nil, err
		}
		children[i] = regtest.IndexChild{Image: img, Platform: plat}
	}
	return regtest.NewIndex(children)
}

// buildImage assembles an OCI image whose every byte is a function of spec.
func buildImage(spec ImageSpec) (v1.Image, error) {
	if spec.Layers <= 0 {
		spec.Layers = 1
	}
	if spec.LayerSize <= 0 {
		spec.LayerSize = defaultLayerSize
	}
	if spec.Platform == "" {
		spec.Platform = DefaultPlatform
	}
	plat, err := v1.ParsePlatform(spec.Platform)
	if err != nil {
		return nil, err
	}
	layers := make([]regtest.ImageLayer, spec.Layers)
	for i := range layers {
		key := fmt.Sprintf("testenv/%d/%s/%d", spec.Seed, plat, i)
		if i == 0 && spec.SharedBase {
			key = sharedBaseKey
		}
		// Pseudo-random payload from a stream fixed forever for key.
		layer, err := regtest.NewLayer(fmt.Sprintf("testenv/layer-%d.bin", i), newHashStream(key), int64(spec.LayerSize))
		if err != nil {
			return nil, err
		}
		layers[i] = regtest.ImageLayer{Layer: layer, CreatedBy: "testenv layer " + strconv.Itoa(i)}
	}
	return regtest.NewImage(plat, map[string]string{SeedLabel: strconv.FormatInt(spec.Seed, 10)}, layers)
}

// hashStream is an endless byte stream SHA-256(key || counter) for counter
// 0, 1, 2, ...: pseudo-random, and fixed forever for a given key, unlike
// math/rand generators whose streams are not guaranteed across releases.
type hashStream struct {
	key     []byte
	counter uint64
	block   []byte
}

// newHashStream starts the stream for key.
func newHashStream(key string) *hashStream {
	return &hashStream{key: []byte(key)}
}

// Read fills p with the next bytes of the stream; it never fails.
func (s *hashStream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(s.block) == 0 {
			h := sha256.New()
			h.Write(s.key)
			_ = binary.Write(h, binary.BigEndian, s.counter)
			s.counter++
			s.block = h.Sum(nil)
		}
		c := copy(p[n:], s.block)
		s.block = s.block[c:]
		n += c
	}
	return n, nil
}
