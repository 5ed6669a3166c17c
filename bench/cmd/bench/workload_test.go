package main

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layerDigests returns the layer digests of a single-platform image.
func layerDigests(t *testing.T, img *Image) []string {
	t.Helper()
	m, err := img.artifact.(v1.Image).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

func TestLayeredWorkloadSharing(t *testing.T) {
	w, err := layeredWorkload("T", 2, 4, 2, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Base) != 8 || len(w.Extra) != 1 || len(w.Extra[0]) != 2 {
		t.Fatalf("got %d base images and increments %d, want 8 and one of 2", len(w.Base), len(w.Extra))
	}
	// Versions 1 and 3 of each repository are indexes (every 2nd).
	for i, img := range w.Base {
		if want := i%2 == 1; img.Index != want || (want && len(img.Children) != 2) {
			t.Errorf("%s:%s: index %v with %d children, want index %v", img.Repo, img.Tag, img.Index, len(img.Children), want)
		}
	}
	v0, v2 := layerDigests(t, w.Base[0]), layerDigests(t, w.Base[2])
	other := layerDigests(t, w.Base[4]) // app-01 v1.0.0
	if v0[0] != other[0] {
		t.Errorf("base layer differs between repositories: %s, %s", v0[0], other[0])
	}
	if v0[1] == other[1] {
		t.Errorf("chain layers shared between repositories")
	}
	// v1.0.2 shares its middle layer with the top layer of v1.0.1, an
	// index whose linux/amd64 child has the same layer scheme.
	idx := w.Base[1].artifact.(v1.ImageIndex)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	child, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := child.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Layers[2].Digest.String(); got != v2[1] {
		t.Errorf("v1.0.2 layer 1 is %s, want v1.0.1's top layer %s", v2[1], got)
	}
}

// TestWorkloadDeterministic pins one digest: the same workload must give
// the same images on every machine and with every Go version.
func TestWorkloadDeterministic(t *testing.T) {
	a, err := smallWorkload("W3", 20, 10, 512, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := smallWorkload("W3", 20, 10, 512, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.All() {
		if a.All()[i].Digest != b.All()[i].Digest {
			t.Fatalf("image %d: digests differ between builds", i)
		}
	}
	const want = "sha256:1f3addc7881c7f7114605cd3f1ebed87ae745a413bc49a9932664e3dbbf57e8f"
	if got := a.Base[0].Digest; got != want {
		t.Errorf("W3 image 0 digest = %s, want %s", got, want)
	}
}
