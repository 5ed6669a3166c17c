package imagegraph_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/imagegraph"
)

const (
	dC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	dL = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	dF = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
)

var (
	image = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":10,"digest":"` + dC + `"},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":100,"digest":"` + dL + `"},` +
		`{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":1000,"digest":"` + dF + `"}]}`
	index = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":5,"digest":"` + dC + `"},` +
		`{"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws","size":5,"digest":"` + dF + `"},` +
		`{"size":5,"digest":"` + dL + `"},` +
		`{"mediaType":"application/vnd.example.sbom","size":7,"digest":"` + dL + `"}]}`
	schema1 = `{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}`
)

func h(s string) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: s[7:]} }

// TestParse is the one set of rules every reader of manifests follows.
func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		mt       types.MediaType
		kind     imagegraph.Kind
		mediaT   types.MediaType
		children []v1.Hash
		blobs    []v1.Hash
		schema1  bool
	}{
		{"image: config and distributable layers", image, types.OCIManifestSchema1, imagegraph.Image, types.OCIManifestSchema1, nil, []v1.Hash{h(dC), h(dL)}, false},
		{"image served as generic JSON", image, "application/json", imagegraph.Image, types.OCIManifestSchema1, nil, []v1.Hash{h(dC), h(dL)}, false},
		{"index: manifests (schema 1 and untyped too) are children, the rest blobs", index, types.OCIImageIndex, imagegraph.Index, types.OCIImageIndex, []v1.Hash{h(dC), h(dF), h(dL)}, []v1.Hash{h(dL)}, false},
		{"index served without a type", index, "", imagegraph.Index, types.OCIImageIndex, []v1.Hash{h(dC), h(dF), h(dL)}, []v1.Hash{h(dL)}, false},
		{"schema 1 by its type", schema1, types.DockerManifestSchema1Signed, imagegraph.Schema1, types.DockerManifestSchema1Signed, nil, nil, true},
		{"schema 1 by its shape", schema1, "text/plain", imagegraph.Schema1, types.DockerManifestSchema1, nil, nil, true},
	}
	digests := func(ds []v1.Descriptor) []v1.Hash {
		var out []v1.Hash
		for _, d := range ds {
			out = append(out, d.Digest)
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := imagegraph.Parse([]byte(tt.raw), tt.mt)
			if errors.Is(err, imagegraph.ErrSchema1) != tt.schema1 || (err != nil && !tt.schema1) {
				t.Fatalf("err = %v, want schema 1: %v", err, tt.schema1)
			}
			if m.Kind != tt.kind || m.MediaType != tt.mediaT {
				t.Errorf("kind %v, media type %q; want %v, %q", m.Kind, m.MediaType, tt.kind, tt.mediaT)
			}
			if diff := cmp.Diff(tt.children, digests(m.Children)); diff != "" {
				t.Errorf("children (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.blobs, digests(m.Blobs)); diff != "" {
				t.Errorf("blobs (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := imagegraph.Parse([]byte("not json"), ""); err == nil {
		t.Error("a body that is not JSON parsed")
	}
}

// TestWalk walks an index in a registry: every child before the index,
// each once, with the sizes of the images.
func TestWalk(t *testing.T) {
	host := testenv.InProcessRegistry(t)
	idx, children := testenv.PushIndex(t, host+"/app", 3)
	repo, err := name.NewRepository(host + "/app")
	if err != nil {
		t.Fatal(err)
	}
	get := func(ctx context.Context, d v1.Hash) ([]byte, types.MediaType, error) {
		desc, err := remote.Get(repo.Digest(d.String()), remote.WithContext(ctx))
		if err != nil {
			return nil, "", err
		}
		return desc.Manifest, desc.MediaType, nil
	}
	raw, mt, err := get(t.Context(), idx)
	if err != nil {
		t.Fatal(err)
	}
	var order []v1.Hash
	var size int64
	err = imagegraph.Walk(t.Context(), idx, raw, mt, func(ctx context.Context, d v1.Descriptor) ([]byte, types.MediaType, error) {
		return get(ctx, d.Digest)
	}, func(n *imagegraph.Node) error {
		order = append(order, n.Descriptor.Digest)
		size += n.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(append(children, idx), order); diff != "" {
		t.Errorf("visit order (-want +got):\n%s", diff)
	}
	if size <= 0 {
		t.Errorf("size %d", size)
	}
	fail := errors.New("unreachable")
	err = imagegraph.Walk(t.Context(), idx, raw, mt, func(context.Context, v1.Descriptor) ([]byte, types.MediaType, error) {
		return nil, "", fail
	}, func(*imagegraph.Node) error { return nil })
	if !errors.Is(err, fail) {
		t.Errorf("err = %v, want the fetch error", err)
	}
}
