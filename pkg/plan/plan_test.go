package plan_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// makePlan writes a plain manifest, validates it and plans it against the
// live registries.
func makePlan(t *testing.T, yaml string) *plan.Plan {
	t.Helper()
	return planFile(t, writeManifest(t, yaml))
}

func writeManifest(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func planFile(t *testing.T, path string) *plan.Plan {
	t.Helper()
	res := validate.Validate(manifest.Load(manifest.Inputs{Files: []string{path}}))
	client, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Make(context.Background(), client, res.Groups)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// classes maps "destination:tag" (or destination@digest-only) to its class,
// for every edge including already-promoted ones.
func classes(p *plan.Plan) map[string]plan.Class {
	out := map[string]plan.Class{}
	for _, a := range p.Actions() {
		k := a.Destination + ":" + a.Tag
		if a.Tag == "" {
			k = a.Destination + "@" + a.Digest[:15]
		}
		out[k] = a.Class
	}
	return out
}

func TestClassification(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	d1 := testenv.PushImage(t, staging+"/s/app", 1)
	d2 := testenv.PushImage(t, staging+"/s/app", 2)
	dIdx, _ := testenv.PushIndex(t, staging+"/s/multi", 3)
	dMS := testenv.PushImage(t, staging+"/s/x/metrics-server", 4)
	dMSA := testenv.PushImage(t, staging+"/s/x/metrics-server-amd64", 5)
	missing := testenv.BuildImage(t, testenv.ImageSpec{Seed: 99})
	dMissing, err := missing.Digest()
	if err != nil {
		t.Fatal(err)
	}

	// Production state before planning:
	// - app:1.0 already at d1 (promoted)
	// - app:2.0 at d1 although the manifest wants d2 (a tag move: conflict)
	// - app@d2 present without tag 2.1 (tag only)
	// - x/metrics-server has tag v1 at dMS; x/metrics-server-amd64 is empty:
	//   the prefix-sharing repository must not be taken for the other.
	testenv.PushImage(t, prod+"/p/app:1.0", 1)
	testenv.PushImage(t, prod+"/p/app:2.0", 1)
	testenv.PushImage(t, prod+"/p/app@"+d2.String(), 2)
	testenv.PushImage(t, prod+"/p/x/metrics-server:v1", 4)

	yaml := fmt.Sprintf(`registries:
- name: %[1]s/s
  src: true
- name: %[2]s/p
- name: %[2]s/mirror/deep/p
images:
- name: app
  dmap:
    "%[3]s": ["1.0"]
    "%[4]s": ["2.0", "2.1"]
- name: multi
  dmap:
    "%[5]s": []
- name: x/metrics-server
  dmap:
    "%[6]s": ["v1"]
- name: x/metrics-server-amd64
  dmap:
    "%[7]s": ["v1"]
- name: gone
  dmap:
    "%[8]s": ["v9"]
`, staging, prod, d1, d2, dIdx, dMS, dMSA, dMissing)
	p := makePlan(t, yaml)

	short := func(h v1.Hash) string { return h.String()[:15] }
	P, M := prod+"/p", prod+"/mirror/deep/p"
	want := map[string]plan.Class{
		// prod/p: app:1.0 promoted (not listed), app:2.0 conflict, app:2.1 tag only
		P + "/app:2.0": plan.Conflict,
		P + "/app:2.1": plan.TagOnly,
		// multi-arch, digest only: absent -> copy
		P + "/multi@" + short(dIdx): plan.Copy,
		// metrics-server:v1 promoted (not listed); -amd64 copy
		P + "/x/metrics-server-amd64:v1": plan.Copy,
		P + "/gone:v9":                   plan.MissingSource,
		// the mirror under a registry path prefix is empty: everything
		// copies, except app:2.0, which prod/p holds on another digest:
		// mirrors must agree, so it is refused there too
		M + "/app:1.0":                   plan.Copy,
		M + "/app:2.0":                   plan.Conflict,
		M + "/app:2.1":                   plan.Copy,
		M + "/multi@" + short(dIdx):      plan.Copy,
		M + "/x/metrics-server:v1":       plan.Copy,
		M + "/x/metrics-server-amd64:v1": plan.Copy,
		M + "/gone:v9":                   plan.MissingSource,
	}
	if diff := cmp.Diff(want, classes(p)); diff != "" {
		t.Errorf("classes (-want +got):\n%s", diff)
	}
	wantCounts := plan.Counts{plan.Promoted: 2, plan.Conflict: 2, plan.TagOnly: 1, plan.Copy: 7, plan.MissingSource: 2}
	if diff := cmp.Diff(wantCounts, p.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if !p.Failed() {
		t.Error("a plan with a conflict and a missing source must fail")
	}
	for _, a := range p.Actions() {
		if a.Class == plan.Conflict {
			if a.Existing != d1.String() || a.Digest != d2.String() {
				t.Errorf("conflict should name both digests: existing %s wanted %s", a.Existing, a.Digest)
			}
			if !strings.Contains(a.Reason, d1.String()) {
				t.Errorf("conflict reason %q does not name the digest the tag points at", a.Reason)
			}
		}
	}
	// Per-destination summary uses the manifest's registry names.
	var regs []string
	for _, d := range p.Destinations() {
		regs = append(regs, d.Registry)
	}
	if diff := cmp.Diff([]string{M, P}, regs); diff != "" {
		t.Errorf("destinations (-want +got):\n%s", diff)
	}
}

func TestPlanIsDeterministic(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	var dmap strings.Builder
	for i := range 12 {
		d := testenv.PushImage(t, fmt.Sprintf("%s/s/img%d", staging, i%3), int64(i+10))
		fmt.Fprintf(&dmap, "- name: img%d\n  dmap:\n    %q: [\"v%d\"]\n", i%3, d, i)
	}
	yaml := fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/a\n- name: %s/b\nimages:\n%s", staging, prod, prod, dmap.String())
	path := writeManifest(t, yaml)
	first := planFile(t, path)
	for range 3 {
		again := planFile(t, path)
		if diff := cmp.Diff(first.Actions(), again.Actions()); diff != "" {
			t.Fatalf("plans differ between runs (-first +again):\n%s", diff)
		}
	}
	if got := first.Counts()[plan.Copy]; got != 24 {
		t.Errorf("copy edges = %d, want 24", got)
	}
}

func TestUnreachableDestinationOnlyFailsItsEdges(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	d := testenv.PushImage(t, staging+"/s/app", 1)
	// 127.0.0.1:1 refuses connections: its edges are errors, prod's are not.
	yaml := fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\n- name: 127.0.0.1:1/p\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n", staging, prod, d)
	client, err := access.New(testenv.FastRetries())
	if err != nil {
		t.Fatal(err)
	}
	path := writeManifest(t, yaml)
	p, err := plan.Make(context.Background(), client, validate.Validate(manifest.Load(manifest.Inputs{Files: []string{path}})).Groups)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]plan.Class{prod + "/p/app:1.0": plan.Copy, "127.0.0.1:1/p/app:1.0": plan.Error}
	if diff := cmp.Diff(want, classes(p)); diff != "" {
		t.Errorf("classes (-want +got):\n%s", diff)
	}
}

func TestTagListedButGoneIsPlannedFromTheDigest(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	upstream := testenv.InProcessRegistry(t)
	d := testenv.PushImage(t, staging+"/s/app", 1)
	other := testenv.PushImage(t, staging+"/s/other", 2)
	// The tag list names "1.0", but the tag is deleted before its HEAD
	// (simulated: every HEAD of it answers 404).
	testenv.PushImage(t, upstream+"/p/app:1.0", 1)
	testenv.PushImage(t, upstream+"/p/other:2.0", 3)
	prod := testenv.NewFaultProxy(t, upstream,
		testenv.FaultRule{Method: http.MethodHead, Path: `/manifests/(1\.0|2\.0)$`, First: 1, Last: math.MaxInt, Kind: testenv.FaultStatus, Status: http.StatusNotFound})
	p := makePlan(t, fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n- name: other\n  dmap:\n    %q: [\"2.0\"]\n", staging, prod.Host(), d, other))
	want := map[string]plan.Class{
		prod.Host() + "/p/app:1.0":   plan.TagOnly, // the digest is there: tag it
		prod.Host() + "/p/other:2.0": plan.Copy,    // the digest is not: copy it
	}
	if diff := cmp.Diff(want, classes(p)); diff != "" {
		t.Errorf("classes (-want +got):\n%s", diff)
	}
}

func TestDescribeReadsPlatformsAndSizes(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	single := testenv.PushImageWith(t, staging+"/s/app", testenv.ImageSpec{Seed: 1, Layers: 2, LayerSize: 4096, Platform: "linux/arm64/v8"})
	idx, _ := testenv.PushIndex(t, staging+"/s/multi", 2, "linux/amd64", "linux/s390x")
	p := makePlan(t, fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n- name: multi\n  dmap:\n    %q: [\"2.0\"]\n", staging, prod, single, idx))
	client, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Describe(context.Background(), client, p, 100); err != nil {
		t.Fatal(err)
	}
	size := func(ref string) int64 {
		t.Helper()
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Get(r)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		add := func(img v1.Image) {
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			total += m.Config.Size
			for _, l := range m.Layers {
				total += l.Size
			}
		}
		if d.MediaType.IsIndex() {
			ii, _ := d.ImageIndex()
			im, _ := ii.IndexManifest()
			for _, c := range im.Manifests {
				img, _ := ii.Image(c.Digest)
				add(img)
			}
			return total
		}
		img, _ := d.Image()
		add(img)
		return total
	}
	got := map[string]plan.ImageSummary{}
	for _, s := range p.Images {
		got[s.Image] = s
	}
	if s := got["app"]; !slices.Equal(s.Platforms, []string{"linux/arm64/v8"}) || s.Size != size(staging+"/s/app@"+single.String()) || s.Error != "" {
		t.Errorf("app summary = %+v", s)
	}
	if s := got["multi"]; !slices.Equal(s.Platforms, []string{"linux/amd64", "linux/s390x"}) || s.Size != size(staging+"/s/multi@"+idx.String()) || s.Error != "" {
		t.Errorf("multi summary = %+v", s)
	}
	if s := got["multi"]; !slices.Equal(s.Tags, []string{"2.0"}) || len(s.Destinations) != 1 || s.Counts[plan.Copy] != 1 {
		t.Errorf("multi summary = %+v", s)
	}
}
