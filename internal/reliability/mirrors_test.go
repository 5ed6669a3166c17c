package reliability

import (
	"math"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 12: mirrors never disagree. A tag that one destination of
// a manifest already holds on another digest is refused on every
// destination of that manifest in the run, with the reason naming the
// mirror that holds the other digest. Run against three Distribution
// registries.
func TestMirrorsAgreeOnAConflict(t *testing.T) {
	t.Parallel()
	staging := testenv.StartDistribution(t, "staging")
	mirrors := []*testenv.Distribution{
		testenv.StartDistribution(t, "mirror-a"),
		testenv.StartDistribution(t, "mirror-b"),
		testenv.StartDistribution(t, "mirror-c"),
	}
	want := testenv.PushImage(t, staging.Host+"/s/app", 1)
	other := testenv.PushImage(t, mirrors[1].Host+"/p/app:1.0", 2)
	var dests []string
	for _, m := range mirrors {
		dests = append(dests, m.Host+"/p")
	}
	m := writeManifest(t, staging.Host+"/s", dests, image{name: "app", digest: want, tags: []string{"1.0", "1.0.1"}})
	r := run(t.Context(), t, m)
	if r.code == 0 {
		t.Error("exit 0 although a tag was refused")
	}
	for i, mir := range mirrors {
		got := testenv.Digests(t, mir.Host+"/p/app")
		switch {
		case i == 1 && got["1.0"] != other:
			t.Errorf("%s: app:1.0 = %s, want it left at %s", mir.Name, got["1.0"], other)
		case i != 1 && got["1.0"] != (v1.Hash{}):
			t.Errorf("%s: app:1.0 = %s while %s has app:1.0 = %s: the mirrors disagree", mir.Name, got["1.0"], mirrors[1].Name, other)
		}
		if got["1.0.1"] != want {
			t.Errorf("%s: app:1.0.1 = %s, want %s (no conflict on that tag)", mir.Name, got["1.0.1"], want)
		}
	}
	refused := map[string]string{}
	for _, res := range r.report.Results {
		if res.Tag == "1.0" && res.Status == "refused" {
			refused[res.Destination] = res.Reason + res.Error
		}
	}
	for i, mir := range mirrors {
		reason, ok := refused[mir.Host+"/p/app"]
		if !ok {
			t.Errorf("%s: app:1.0 not refused; results:\n%s", mir.Name, r.failures())
			continue
		}
		// The mirror holding the other digest is named by its own row.
		if i != 1 && !strings.Contains(reason, mirrors[1].Host) {
			t.Errorf("%s: reason %q does not name the mirror holding the other digest (%s)", mir.Name, reason, mirrors[1].Host)
		}
	}
}

// TestMirrorTransientErrorDoesNotBlockTheOthers: a mirror that cannot be
// read this run fails its own edges (retried next run); the other mirrors
// get the tag.
func TestMirrorTransientErrorDoesNotBlockTheOthers(t *testing.T) {
	t.Parallel()
	staging := testenv.StartDistribution(t, "staging")
	good := testenv.StartDistribution(t, "good")
	flaky := testenv.StartDistribution(t, "flaky")
	proxy := testenv.NewFaultProxy(t, flaky.Host, testenv.FaultRule{Method: http.MethodGet, Path: testenv.PathTags, Last: math.MaxInt, Status: http.StatusServiceUnavailable})
	want := testenv.PushImage(t, staging.Host+"/s/app", 1)
	m := writeManifest(t, staging.Host+"/s", []string{good.Host + "/p", proxy.Host() + "/p"}, image{name: "app", digest: want, tags: []string{"1.0"}})
	r := run(t.Context(), t, m)
	if r.report.Totals.Promoted != 1 || r.report.Totals.Failed != 1 {
		t.Errorf("totals %+v, want 1 promoted, 1 failed\n%s", r.report.Totals, r.failures())
	}
	if got := testenv.Digests(t, good.Host+"/p/app")["1.0"]; got != want {
		t.Errorf("good mirror app:1.0 = %s, want %s", got, want)
	}
}
