package promote_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/promoter"
	"github.com/imgpromoter/promoter/pkg/regerr"
	"github.com/imgpromoter/promoter/pkg/transfer"
)

type harness struct {
	t      *testing.T
	path   string
	client *access.Client
}

func newHarness(t *testing.T, yaml string) *harness {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := access.New(testenv.FastRetries())
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, path: path, client: client}
}

func (h *harness) plan() *plan.Plan {
	h.t.Helper()
	res, err := promoter.Plan(context.Background(), promoter.Inputs{Files: []string{h.path}}, promoter.WithClient(h.client))
	if err != nil {
		h.t.Fatal(err)
	}
	if res.Plan.Stats.Errors > 0 {
		h.t.Fatalf("manifest problems: %v", res.Plan.Problems)
	}
	return res.Plan
}

func (h *harness) run() *promote.Report {
	h.t.Helper()
	rep, err := promote.Execute(context.Background(), h.client, h.plan())
	if err != nil {
		h.t.Fatal(err)
	}
	return rep
}

// rawManifest returns the exact bytes a registry serves for ref.
func rawManifest(t *testing.T, ref string) []byte {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(r)
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	return d.Manifest
}

func TestCopyIsByteForByteAndIdempotent(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prodA := testenv.InProcessRegistry(t)
	prodB := testenv.InProcessRegistry(t)
	single := testenv.PushImageWith(t, staging+"/s/app", testenv.ImageSpec{Seed: 1, Layers: 3})
	idx, children := testenv.PushIndex(t, staging+"/s/multi", 2)
	bare := testenv.PushImage(t, staging+"/s/bare", 3)
	h := newHarness(t, fmt.Sprintf(`registries:
- name: %s/s
  src: true
- name: %s/p
- name: %s/mirror/p
images:
- name: app
  dmap:
    %q: ["1.0", "1"]
- name: multi
  dmap:
    %q: ["2.0"]
- name: bare
  dmap:
    %q: []
`, staging, prodA, prodB, single, idx, bare))

	rep := h.run()
	if rep.Failed() {
		t.Fatalf("run failed: %+v", rep.Results)
	}
	if want := (promote.Totals{Promoted: 8}); rep.Totals != want {
		t.Errorf("totals = %+v, want %+v", rep.Totals, want)
	}
	for _, dst := range []string{prodA + "/p", prodB + "/mirror/p"} {
		want := map[string]v1.Hash{"1.0": single, "1": single}
		if diff := cmp.Diff(want, testenv.Digests(t, dst+"/app")); diff != "" {
			t.Errorf("%s/app tags (-want +got):\n%s", dst, diff)
		}
		if diff := cmp.Diff(map[string]v1.Hash{"2.0": idx}, testenv.Digests(t, dst+"/multi")); diff != "" {
			t.Errorf("%s/multi tags (-want +got):\n%s", dst, diff)
		}
		for _, c := range children {
			if !testenv.HasManifest(t, dst+"/multi@"+c.String()) {
				t.Errorf("%s/multi lacks child manifest %s", dst, c)
			}
		}
		if !testenv.HasManifest(t, dst+"/bare@"+bare.String()) {
			t.Errorf("%s/bare lacks digest-only image", dst)
		}
		if len(testenv.Digests(t, dst+"/bare")) != 0 {
			t.Errorf("%s/bare has tags; it was promoted by digest only", dst)
		}
		// Byte for byte: the served manifest is the source's.
		if string(rawManifest(t, dst+"/multi@"+idx.String())) != string(rawManifest(t, staging+"/s/multi@"+idx.String())) {
			t.Errorf("%s/multi index bytes differ from the source", dst)
		}
	}

	again := h.run()
	if want := (promote.Totals{Present: 8}); again.Totals != want {
		t.Errorf("second run totals = %+v, want %+v", again.Totals, want)
	}
	if len(again.Results) != 0 || again.Images != 0 {
		t.Errorf("second run did work: %d results, %d images copied", len(again.Results), again.Images)
	}
}

func TestTagOnlyDoesNotNeedTheSource(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	img := testenv.BuildImage(t, testenv.ImageSpec{Seed: 7})
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// The digest is in production (promoted earlier) but no longer in
	// staging: adding a tag still works, from the destination's own copy.
	testenv.PushImage(t, prod+"/p/app@"+d.String(), 7)
	h := newHarness(t, fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\nimages:\n- name: app\n  dmap:\n    %q: [\"new\"]\n", staging, prod, d))
	p := h.plan()
	if p.Counts()[plan.TagOnly] != 1 {
		t.Fatalf("want one tag-only edge, got %v", p.Counts())
	}
	rep, err := promote.Execute(context.Background(), h.client, p)
	if err != nil || rep.Failed() {
		t.Fatalf("run: %v %+v", err, rep.Results)
	}
	if diff := cmp.Diff(map[string]v1.Hash{"new": d}, testenv.Digests(t, prod+"/p/app")); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
}

func TestTagSetSincePlanningIsNeverMoved(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	want := testenv.PushImage(t, staging+"/s/app", 1)
	h := newHarness(t, fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n", staging, prod, want))
	p := h.plan()
	// Someone publishes app:1.0 with other content after the plan was made.
	other := testenv.PushImage(t, prod+"/p/app:1.0", 2)
	rep, err := promote.Execute(context.Background(), h.client, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Failed != 1 {
		t.Fatalf("want the edge failed, got %+v", rep.Totals)
	}
	if err := failedErr(rep); !errors.Is(err, transfer.ErrTagMoved) {
		t.Errorf("error %v is not ErrTagMoved", err)
	}
	if got := testenv.Digests(t, prod+"/p/app")["1.0"]; got != other {
		t.Errorf("app:1.0 = %s, want it left at %s", got, other)
	}
	// The image itself was copied by digest: a later tag fix can use it.
	if !testenv.HasManifest(t, prod+"/p/app@"+want.String()) {
		t.Error("image was not copied by digest")
	}
}

// failedErr returns the typed error of the first failed edge.
func failedErr(rep *promote.Report) error {
	for _, r := range rep.Results {
		if r.Status == promote.StatusFailed {
			return r.Err
		}
	}
	return nil
}

func TestOneFailingDestinationDoesNotBlockTheOther(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	good := testenv.InProcessRegistry(t)
	badUpstream := testenv.InProcessRegistry(t)
	// Every manifest write to the bad mirror fails, for good.
	bad := testenv.NewFaultProxy(t, badUpstream, testenv.FaultRule{Method: http.MethodPut, Path: testenv.PathManifest, First: 1, Last: math.MaxInt, Kind: testenv.FaultStatus, Status: http.StatusInternalServerError})
	d := testenv.PushImage(t, staging+"/s/app", 1)
	h := newHarness(t, fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\n- name: %s/p\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n", staging, good, bad.Host(), d))
	rep := h.run()
	if want := (promote.Totals{Promoted: 1, Failed: 1}); rep.Totals != want {
		t.Fatalf("totals = %+v, want %+v", rep.Totals, want)
	}
	if got := testenv.Digests(t, good+"/p/app")["1.0"]; got != d {
		t.Errorf("good mirror app:1.0 = %s, want %s", got, d)
	}
	if len(testenv.Digests(t, badUpstream+"/p/app")) != 0 {
		t.Error("bad mirror has a tag although every manifest write failed")
	}
	for _, r := range rep.Results {
		if r.Status == promote.StatusFailed {
			var ce *transfer.Error
			if !errors.As(r.Err, &ce) || ce.Side != transfer.SideDestination {
				t.Errorf("failure %v should be a destination CopyError", r.Err)
			}
			if regerr.Status(r.Err) != http.StatusInternalServerError {
				t.Errorf("failure %v should keep the registry's status code", r.Err)
			}
		}
	}
}
