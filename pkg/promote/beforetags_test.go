package promote_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/promote"
)

// TestBeforeTags: the hook runs once every image is complete in every
// destination and no tag is written yet; a digest it refuses gets no tag
// (its edges fail), the others are tagged.
func TestBeforeTags(t *testing.T) {
	staging, prodA, prodB := testenv.InProcessRegistry(t), testenv.InProcessRegistry(t), testenv.InProcessRegistry(t)
	good := testenv.PushImage(t, staging+"/s/app", 1)
	bad := testenv.PushImage(t, staging+"/s/tool", 2)
	h := newHarness(t, fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\n- name: %s/p\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n- name: tool\n  dmap:\n    %q: [\"2.0\"]\n",
		staging, prodA, prodB, good, bad))
	var seen []string
	hook := func(_ context.Context, images []promote.Complete) map[v1.Hash]error {
		for _, c := range images {
			for _, d := range c.Dests {
				if !testenv.HasManifest(t, d.Digest(c.Digest.String()).String()) {
					t.Errorf("hook: %s not complete in %s", c.Digest, d)
				}
				if tags := testenv.Digests(t, d.Name()); len(tags) != 0 {
					t.Errorf("hook: %s already has tags %v", d, tags)
				}
				seen = append(seen, d.Name()+"@"+c.Digest.String())
			}
		}
		return map[v1.Hash]error{bad: errors.New("refused by test")}
	}
	rep, err := promote.Execute(t.Context(), h.client, h.plan(), promote.WithBeforeTags(hook))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(seen)
	want := []string{prodA + "/p/app@" + good.String(), prodA + "/p/tool@" + bad.String(), prodB + "/p/app@" + good.String(), prodB + "/p/tool@" + bad.String()}
	sort.Strings(want)
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("hook saw (-want +got):\n%s", diff)
	}
	if rep.Totals.Promoted != 2 || rep.Totals.Failed != 2 {
		t.Errorf("totals = %+v, want 2 promoted, 2 failed", rep.Totals)
	}
	for _, p := range []string{prodA, prodB} {
		if got := testenv.Digests(t, p+"/p/app"); got["1.0"] != good {
			t.Errorf("%s/p/app:1.0 = %v, want %s", p, got["1.0"], good)
		}
		if got := testenv.Digests(t, p+"/p/tool"); len(got) != 0 {
			t.Errorf("%s/p/tool has tags %v after the hook refused it", p, got)
		}
	}
	for _, r := range rep.Results {
		var he *promote.HookError
		if r.Digest == bad.String() && !errors.As(r.Err, &he) {
			t.Errorf("%s: err = %v, want a HookError", r.Destination, r.Err)
		}
	}
}
