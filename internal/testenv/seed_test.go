package testenv

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range ls {
		out = append(out, digestOf(t, l))
	}
	return out
}

// TestBuildImageGolden pins digests so that a change to the generator, which
// would silently invalidate digests recorded in other tests' golden files,
// fails here first.
func TestBuildImageGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec ImageSpec
		want string
	}{
		{"default", ImageSpec{Seed: 1}, "sha256:ea53302c1aa4513537dd2de2aa1fd6aec7040559eec195251b3c92f83e124d8c"},
		{"three layers arm64", ImageSpec{Seed: 7, Layers: 3, LayerSize: 4096, Platform: "linux/arm64/v8"}, "sha256:2a1bea2427574ed542ed9853d095754485dba68e42e4e020b60e06ba978986de"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := digestOf(t, BuildImage(t, tc.spec)).String(); got != tc.want {
				t.Errorf("BuildImage(%+v) digest = %s, want %s", tc.spec, got, tc.want)
			}
		})
	}
	if got := digestOf(t, BuildIndex(t, 1)).String(); got != "sha256:33ba26e3900e9ac940a07528093223ac2cd86d0f63826ee551908eaf08023cfa" {
		t.Errorf("BuildIndex(1) digest = %s, want the pinned one", got)
	}
}

func TestBuildImageContent(t *testing.T) {
	t.Parallel()
	a := BuildImage(t, ImageSpec{Seed: 1, Layers: 2})
	if got, want := digestOf(t, a), digestOf(t, BuildImage(t, ImageSpec{Seed: 1, Layers: 2})); got != want {
		t.Errorf("same spec built twice: %s != %s", got, want)
	}
	if digestOf(t, a) == digestOf(t, BuildImage(t, ImageSpec{Seed: 2, Layers: 2})) {
		t.Error("different seeds gave the same image")
	}
	if n := len(layerDigests(t, a)); n != 2 {
		t.Errorf("got %d layers, want 2", n)
	}

	b1 := layerDigests(t, BuildImage(t, ImageSpec{Seed: 1, Layers: 2, SharedBase: true}))
	b2 := layerDigests(t, BuildImage(t, ImageSpec{Seed: 2, Layers: 2, SharedBase: true, Platform: "linux/arm64"}))
	if b1[0] != b2[0] {
		t.Errorf("SharedBase first layers differ: %s vs %s", b1[0], b2[0])
	}
	if b1[1] == b2[1] {
		t.Error("SharedBase images share their second layer")
	}

	cf, err := BuildImage(t, ImageSpec{Seed: 3, Platform: "linux/arm/v7"}).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	gotPlat := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if diff := cmp.Diff(v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, gotPlat); diff != "" {
		t.Errorf("config platform (-want +got):\n%s", diff)
	}
	if cf.Config.Labels[SeedLabel] != "3" {
		t.Errorf("seed label = %q, want 3", cf.Config.Labels[SeedLabel])
	}
}

func TestBuildIndexChildren(t *testing.T) {
	t.Parallel()
	im, err := BuildIndex(t, 5, "linux/amd64", "linux/arm64", "linux/s390x").IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, d := range im.Manifests {
		got = append(got, d.Platform.String()+" "+d.Digest.String())
	}
	for _, p := range []string{"linux/amd64", "linux/arm64", "linux/s390x"} {
		want = append(want, p+" "+digestOf(t, BuildImage(t, ImageSpec{Seed: 5, Platform: p})).String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("index children (-want +got):\n%s", diff)
	}
}
