package validate

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/manifest"
)

// corpusDir is the Kubernetes project's manifest tree as merged on 2024-06-06
// (see testdata/corpus/README.md).
var corpusDir = filepath.Join("..", "..", "testdata", "corpus", "k8s.io-2024-06", "registry.k8s.io")

func loadCorpus() *Result {
	return Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{corpusDir}}))
}

// TestCorpus validates the real Kubernetes manifests: everything is read,
// the counts match those taken independently, exactly the three real
// mistakes are reported where they are, and everything else is promoted.
func TestCorpus(t *testing.T) {
	res := loadCorpus()

	const edges = 720_478
	// The bad digest has one tag and its manifest 22 destinations; the two
	// empty dmaps have no edges.
	const badDigestEdges = 1 * 22
	want := Stats{
		Manifests:  75,
		Images:     822,
		Digests:    20_019,
		Tags:       20_086,
		Edges:      edges,
		ValidEdges: edges - badDigestEdges,
		Errors:     3,
		Warnings:   4,
	}
	if d := cmp.Diff(want, res.Stats); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	if res.Unreadable {
		t.Error("Unreadable = true")
	}

	wantProbs := []prob{
		{Pos: "images/k8s-staging-ingress-nginx/images.yaml:152:5", Code: diag.CodeDigest, Entry: "image e2e-test-httpbin",
			Msg: `invalid digest "sha256:23eb4b1775fbaa2adca55c73cf0341e1224d6308689b6f4b3aa1523312eb81c" (63 hex digits, want 64)`},
		{Pos: "images/k8s-staging-sig-storage/images.yaml:258:3", Code: diag.CodeEmptyDmap, Entry: "image objectstorage-controller", Msg: "dmap is empty"},
		{Pos: "images/k8s-staging-sig-storage/images.yaml:260:3", Code: diag.CodeEmptyDmap, Entry: "image objectstorage-sidecar", Msg: "dmap is empty"},
		{Pos: "manifests/k8s-staging-jobset/promoter-manifest.yaml:49:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated, Msg: "imagesPath is deprecated"},
		{Pos: "manifests/k8s-staging-kueue/promoter-manifest.yaml:49:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated, Msg: "imagesPath is deprecated"},
		{Pos: "manifests/k8s-staging-lws/promoter-manifest.yaml:49:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated, Msg: "imagesPath is deprecated"},
		{Pos: "manifests/k8s-staging-scheduler-plugins/promoter-manifest.yaml:49:1", Severity: diag.SeverityWarning, Code: diag.CodeDeprecated, Msg: "imagesPath is deprecated"},
	}
	if d := diffProbs(corpusDir, res.Problems, wantProbs); d != "" {
		t.Error(d)
	}

	// The groups hold exactly the valid edges, each source digest once per
	// destination set, and the bad entries are in none of them.
	edgesInGroups := 0
	type key struct{ source, dests string }
	seen := map[key]bool{}
	for _, g := range res.Groups {
		edgesInGroups += g.EdgeCount()
		k := key{g.Source.String(), ""}
		for _, d := range g.Dests {
			k.dests += d.Name() + " "
		}
		if seen[k] {
			t.Errorf("group %s to %s appears twice", k.source, k.dests)
		}
		seen[k] = true
		if g.Image == "e2e-test-httpbin" && g.Digest.Hex == "23eb4b1775fbaa2adca55c73cf0341e1224d6308689b6f4b3aa1523312eb81c" {
			t.Errorf("the invalid digest is in a group: %v", g.Source)
		}
		if g.Image == "objectstorage-controller" || g.Image == "objectstorage-sidecar" {
			t.Errorf("an image with an empty dmap is in a group: %v", g.Source)
		}
	}
	if edgesInGroups != want.ValidEdges {
		t.Errorf("groups hold %d edges, want %d", edgesInGroups, want.ValidEdges)
	}
}

// TestCorpusDeterministic checks that two runs give identical results.
func TestCorpusDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the corpus twice")
	}
	a, b := loadCorpus(), loadCorpus()
	if d := cmp.Diff(a.Problems, b.Problems); d != "" {
		t.Errorf("problems differ between runs:\n%s", d)
	}
	if len(a.Groups) != len(b.Groups) {
		t.Fatalf("%d groups, then %d", len(a.Groups), len(b.Groups))
	}
	for i := range a.Groups {
		if d := cmp.Diff(toGroups("", a.Groups[i:i+1]), toGroups("", b.Groups[i:i+1])); d != "" {
			t.Fatalf("group %d differs between runs:\n%s", i, d)
		}
	}
}

// BenchmarkCorpusValidate measures reading and validating the whole corpus.
func BenchmarkCorpusValidate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		res := loadCorpus()
		if res.Stats.Edges == 0 {
			b.Fatal("nothing read")
		}
	}
}
