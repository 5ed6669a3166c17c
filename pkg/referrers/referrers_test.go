package referrers_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/internal/plainreg"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/referrers"
)

func repoOf(t *testing.T, host, path string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(host+"/"+path, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// artifact builds an OCI artifact manifest (artifactType, one layer)
// referring to subject.
func artifact(t *testing.T, artifactType, content string, subject v1.Descriptor, annotations map[string]string) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/vnd.oci.empty.v1+json")
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte(content), types.MediaType(artifactType))})
	if err != nil {
		t.Fatal(err)
	}
	if annotations != nil {
		img = mutate.Annotations(img, annotations).(v1.Image)
	}
	withType := &typedImage{Image: mutate.Subject(img, subject).(v1.Image), artifactType: artifactType}
	return withType
}

// typedImage adds artifactType to an image manifest.
type typedImage struct {
	v1.Image
	artifactType string
}

func (i *typedImage) RawManifest() ([]byte, error) {
	raw, err := i.Image.RawManifest()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	m["artifactType"] = i.artifactType
	return json.Marshal(m)
}

func (i *typedImage) Digest() (v1.Hash, error) {
	raw, err := i.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(strings.NewReader(string(raw)))
	return h, err
}

func (i *typedImage) Size() (int64, error) {
	raw, err := i.RawManifest()
	return int64(len(raw)), err
}

func push(t *testing.T, ref name.Reference, img v1.Image) v1.Descriptor {
	t.Helper()
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	return v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}
}

// signedRepo seeds repo with an image that has: an SBOM referrer, a
// signature referrer of that SBOM (a referrer of a referrer), and a cosign
// .sig tag. It returns the image's descriptor.
func signedRepo(t *testing.T, repo name.Repository, seed int64) (subject v1.Descriptor, want []v1.Hash) {
	t.Helper()
	img := testenv.BuildImage(t, testenv.ImageSpec{Seed: seed})
	subject = push(t, repo.Tag("v1"), img)
	sbom := artifact(t, "application/spdx+json", "sbom", subject, map[string]string{"org.example/kind": "sbom"})
	sbomDesc := push(t, repo.Digest(digest(t, sbom).String()), sbom)
	sbomSig := artifact(t, "application/vnd.dev.sigstore.bundle.v0.3+json", "sig of sbom", sbomDesc, nil)
	push(t, repo.Digest(digest(t, sbomSig).String()), sbomSig)
	sig := testenv.BuildImage(t, testenv.ImageSpec{Seed: seed + 1000})
	push(t, repo.Tag(referrers.CosignTag(subject.Digest, ".sig")), sig)
	return subject, []v1.Hash{digest(t, sbom), digest(t, sig), digest(t, sbomSig)}
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func digestsOf(arts []referrers.Artifact) []v1.Hash {
	var out []v1.Hash
	for _, a := range arts {
		out = append(out, a.Descriptor.Digest)
	}
	return out
}

func TestFindRecursiveAcrossDiscoveryMethods(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers-api", false: "fallback-tag"}[api], func(t *testing.T) {
			repo := repoOf(t, testenv.InProcessReferrersRegistry(t, api), "team/app")
			subject, want := signedRepo(t, repo, 1)
			reg := &plainreg.Client{}
			arts, err := referrers.NewFinder(reg, nil).Find(t.Context(), repo, subject.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, digestsOf(arts)); diff != "" {
				t.Fatalf("found (-want +got):\n%s", diff)
			}
			if arts[0].Descriptor.ArtifactType != "application/spdx+json" || arts[0].Descriptor.Annotations["org.example/kind"] != "sbom" {
				t.Errorf("sbom descriptor not read from its manifest: %+v", arts[0].Descriptor)
			}
			if arts[1].Via != referrers.ViaCosign || arts[1].Tag != referrers.CosignTag(subject.Digest, ".sig") {
				t.Errorf("cosign artifact: %+v", arts[1])
			}
			if arts[2].Subject != want[0] {
				t.Errorf("referrer of referrer has subject %s, want %s", arts[2].Subject, want[0])
			}
		})
	}
}

// A fallback tag that resolves to the subject itself, or holds an image,
// is not a referrers list.
func TestFindIgnoresFallbackTagThatIsNotAnIndex(t *testing.T) {
	repo := repoOf(t, testenv.InProcessReferrersRegistry(t, false), "team/app")
	img := testenv.BuildImage(t, testenv.ImageSpec{Seed: 7})
	subject := push(t, repo.Tag("v1"), img)
	push(t, repo.Tag(referrers.FallbackTag(subject.Digest)), img)
	arts, err := referrers.NewFinder(&plainreg.Client{}, nil).Find(t.Context(), repo, subject.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 0 {
		t.Fatalf("found %v, want nothing", digestsOf(arts))
	}
}

// copyAll copies subject and its artifacts from src to dst the way the
// transfer engine does: blobs, the image, then the Writer.
func copyAll(t *testing.T, src, dst name.Repository, subject v1.Hash, arts []referrers.Artifact, w *referrers.Writer) []referrers.Outcome {
	t.Helper()
	img, err := remote.Image(src.Digest(subject.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst.Digest(subject.String()), img); err != nil {
		t.Fatal(err)
	}
	for _, a := range arts {
		for _, b := range a.Blobs() {
			l, err := remote.Layer(src.Digest(b.Digest.String()))
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.WriteLayer(dst, l); err != nil {
				t.Fatal(err)
			}
		}
	}
	present, err := w.PresentIn(t.Context(), dst, arts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.Write(t.Context(), dst, subject, arts, present)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func statuses(out []referrers.Outcome) []referrers.Status {
	var s []referrers.Status
	for _, o := range out {
		s = append(s, o.Status)
	}
	return s
}

func TestWriteThenFindAtDestination(t *testing.T) {
	srcRepo := repoOf(t, testenv.InProcessReferrersRegistry(t, true), "staging/app")
	subject, want := signedRepo(t, srcRepo, 3)
	arts, err := referrers.NewFinder(&plainreg.Client{}, nil).Find(t.Context(), srcRepo, subject.Digest)
	if err != nil {
		t.Fatal(err)
	}
	dests := map[string]string{
		"referrers-api": testenv.InProcessReferrersRegistry(t, true),
		"distribution":  testenv.StartDistribution(t, "dst").Host,
	}
	for label, host := range dests {
		t.Run(label, func(t *testing.T) {
			dst := repoOf(t, host, "prod/app")
			reg := &plainreg.Client{}
			w := referrers.NewWriter(reg, nil)
			out := copyAll(t, srcRepo, dst, subject.Digest, arts, w)
			if diff := cmp.Diff([]referrers.Status{referrers.Copied, referrers.Copied, referrers.Copied}, statuses(out)); diff != "" {
				t.Fatalf("first run (-want +got):\n%s", diff)
			}
			// What a reader of the destination finds.
			got, err := referrers.NewFinder(&plainreg.Client{}, nil).Find(t.Context(), dst, subject.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, digestsOf(got)); diff != "" {
				t.Fatalf("destination holds (-want +got):\n%s", diff)
			}
			for i := range got {
				if diff := cmp.Diff(arts[i].Descriptor, got[i].Descriptor); diff != "" {
					t.Errorf("descriptor %d differs (-src +dst):\n%s", i, diff)
				}
			}
			// A second run writes nothing.
			reg.Writes.Store(0)
			w2 := referrers.NewWriter(reg, nil)
			present, err := w2.PresentIn(t.Context(), dst, arts)
			if err != nil {
				t.Fatal(err)
			}
			out, err = w2.Write(t.Context(), dst, subject.Digest, arts, present)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]referrers.Status{referrers.Present, referrers.Present, referrers.Present}, statuses(out)); diff != "" {
				t.Errorf("second run (-want +got):\n%s", diff)
			}
			if n := reg.Writes.Load(); n != 0 {
				t.Errorf("second run sent %d writes", n)
			}
		})
	}
}

func TestFallbackKeepsForeignEntriesAndRefusesNonIndex(t *testing.T) {
	srcRepo := repoOf(t, testenv.InProcessReferrersRegistry(t, true), "staging/app")
	subject, _ := signedRepo(t, srcRepo, 5)
	arts, err := referrers.NewFinder(&plainreg.Client{}, nil).Find(t.Context(), srcRepo, subject.Digest)
	if err != nil {
		t.Fatal(err)
	}
	host := testenv.StartDistribution(t, "dst").Host

	t.Run("foreign entry kept", func(t *testing.T) {
		dst := repoOf(t, host, "prod/foreign")
		img, _ := remote.Image(srcRepo.Digest(subject.Digest.String()))
		if err := remote.Write(dst.Digest(subject.Digest.String()), img); err != nil {
			t.Fatal(err)
		}
		// Someone else's referrer, pushed with go-containerregistry, which
		// writes the fallback index itself.
		foreign := artifact(t, "application/vnd.example.foreign", "foreign", subject, nil)
		push(t, dst.Digest(digest(t, foreign).String()), foreign)
		copyAll(t, srcRepo, dst, subject.Digest, arts, referrers.NewWriter(&plainreg.Client{}, nil))
		got, err := referrers.NewFinder(&plainreg.Client{}, nil).Find(t.Context(), dst, subject.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(digestsOf(got), digest(t, foreign)) || len(got) != 4 {
			t.Fatalf("destination referrers %v: want ours and the foreign %s", digestsOf(got), digest(t, foreign))
		}
	})

	t.Run("non-index refused, not overwritten", func(t *testing.T) {
		dst := repoOf(t, host, "prod/corrupt")
		junk := testenv.BuildImage(t, testenv.ImageSpec{Seed: 99})
		junkDesc := push(t, dst.Tag(referrers.FallbackTag(subject.Digest)), junk)
		out := copyAll(t, srcRepo, dst, subject.Digest, arts, referrers.NewWriter(&plainreg.Client{}, nil))
		var conflict *referrers.FallbackConflictError
		for i, o := range out {
			wantRefused := arts[i].Via != referrers.ViaCosign && arts[i].Subject == subject.Digest
			if wantRefused != (o.Status == referrers.Refused) {
				t.Errorf("artifact %d (%s): status %s", i, arts[i].Via, o.Status)
			}
			if wantRefused && !asConflict(o.Err, &conflict) {
				t.Errorf("artifact %d: error %v, want a FallbackConflictError", i, o.Err)
			}
		}
		_, desc, err := (&plainreg.Client{}).FetchManifest(t.Context(), dst.Tag(referrers.FallbackTag(subject.Digest)))
		if d := desc.Digest; err != nil || d != junkDesc.Digest {
			t.Fatalf("fallback tag now holds %s (%v), want it untouched at %s", d, err, junkDesc.Digest)
		}
	})
}

func asConflict(err error, target **referrers.FallbackConflictError) bool {
	return errors.As(err, target)
}

func TestMergeFallback(t *testing.T) {
	d := func(c byte) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(c), 64)} }
	entry := func(c byte, at string) v1.Descriptor {
		return v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 10, Digest: d(c), ArtifactType: at}
	}
	index := func(es ...v1.Descriptor) []byte {
		raw, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: es})
		return raw
	}
	foreign := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 3, Digest: d('b'), ArtifactType: "x/foreign", Annotations: map[string]string{"k": "v"}}
	for _, tc := range []struct {
		name     string
		existing []byte
		add      []v1.Descriptor
		want     []v1.Descriptor
		changed  bool
		refused  bool
	}{
		{"absent", nil, []v1.Descriptor{entry('c', "t"), entry('a', "t")}, []v1.Descriptor{entry('a', "t"), entry('c', "t")}, true, false},
		{"foreign kept", index(foreign), []v1.Descriptor{entry('c', "t"), entry('a', "t")}, []v1.Descriptor{entry('a', "t"), foreign, entry('c', "t")}, true, false},
		{"nothing new", index(entry('a', "t"), foreign), []v1.Descriptor{entry('a', "other")}, nil, false, false},
		{"image refused", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}`), []v1.Descriptor{entry('a', "t")}, nil, false, true},
		{"docker list refused", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`), []v1.Descriptor{entry('a', "t")}, nil, false, true},
		{"garbage refused", []byte(`not json`), []v1.Descriptor{entry('a', "t")}, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			merged, changed, err := referrers.MergeFallback(tc.existing, tc.add)
			if tc.refused != (err != nil) {
				t.Fatalf("error %v, refused %v", err, tc.refused)
			}
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			if err != nil || !changed {
				if !tc.refused && string(merged) != string(tc.existing) {
					t.Errorf("unchanged index rewritten: %s", merged)
				}
				return
			}
			var got v1.IndexManifest
			if err := json.Unmarshal(merged, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.Manifests); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			// The same entries in another order give the same bytes.
			again, _, _ := referrers.MergeFallback(tc.existing, []v1.Descriptor{tc.add[1], tc.add[0]})
			if string(again) != string(merged) {
				t.Errorf("order-dependent result:\n%s\n%s", merged, again)
			}
		})
	}
}

// A referrer the caller made itself (what signing at promotion time
// writes) goes through NewArtifact and Write, and a reader finds it.
func TestWriteOwnReferrer(t *testing.T) {
	dst := repoOf(t, testenv.StartDistribution(t, "dst").Host, "prod/app")
	subject := push(t, dst.Tag("v1"), testenv.BuildImage(t, testenv.ImageSpec{Seed: 11}))
	sig := artifact(t, "application/vnd.dev.sigstore.bundle.v0.3+json", "bundle", subject, nil)
	for _, l := range mustLayers(t, sig) {
		if err := remote.WriteLayer(dst, l); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := sig.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(dst, static.NewLayer(cfg, "application/vnd.oci.empty.v1+json")); err != nil {
		t.Fatal(err)
	}
	raw, err := sig.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	a, err := referrers.NewArtifact(raw)
	if err != nil {
		t.Fatal(err)
	}
	if a.Subject != subject.Digest || a.Descriptor.ArtifactType != "application/vnd.dev.sigstore.bundle.v0.3+json" {
		t.Fatalf("artifact %+v", a)
	}
	c := &plainreg.Client{}
	out, err := referrers.NewWriter(c, nil).Write(t.Context(), dst, subject.Digest, []referrers.Artifact{a}, nil)
	if err != nil || out[0].Status != referrers.Copied {
		t.Fatalf("write: %+v %v", out, err)
	}
	got, err := referrers.NewFinder(c, nil).Find(t.Context(), dst, subject.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]v1.Hash{a.Descriptor.Digest}, digestsOf(got)); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}
	if _, err := referrers.NewArtifact([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)); err == nil {
		t.Error("a manifest without subject accepted as a referrer")
	}
}

func mustLayers(t *testing.T, img v1.Image) []v1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}
