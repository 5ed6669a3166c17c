package reliability

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 5: a tag list whose Link header leads back to a page
// already read, or on and on to new pages, ends with a clear error naming
// the registry after a bounded number of requests, and the edges into
// other registries are promoted.
func TestTagListPaginationIsBounded(t *testing.T) {
	t.Parallel()
	for _, kind := range []struct {
		name string
		kind testenv.FaultKind
		// maxPages bounds the tag list requests to the looping registry.
		maxPages int
	}{
		{"loop", testenv.FaultLinkLoop, 10},
		{"endless", testenv.FaultLinkEndless, 20000},
	} {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			staging, good := testenv.InProcessRegistry(t), testenv.InProcessRegistry(t)
			dig := testenv.PushImage(t, staging+"/s/app", 1)
			badUpstream := testenv.InProcessRegistry(t)
			testenv.PushImage(t, badUpstream+"/p/app:old", 2)
			bad := testenv.NewFaultProxy(t, badUpstream, testenv.FaultRule{Method: http.MethodGet, Path: testenv.PathTags, Last: math.MaxInt, Kind: kind.kind})
			m := writeManifest(t, staging+"/s", []string{good + "/p", bad.Host() + "/p"}, image{name: "app", digest: dig, tags: []string{"1.0"}})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			r := run(ctx, t, m)
			if ctx.Err() != nil {
				t.Fatalf("the run did not end within a minute (%d tag list requests)", bad.Stats().ByClass["GET tags"])
			}
			if r.report.Totals.Promoted != 1 || r.report.Totals.Failed != 1 {
				t.Fatalf("totals %+v, want 1 promoted and 1 failed\n%s", r.report.Totals, r.failures())
			}
			for _, res := range r.report.Results {
				if res.Status != "failed" {
					continue
				}
				msg := res.Error + res.Reason
				if !strings.Contains(msg, bad.Host()) || !strings.Contains(strings.ToLower(msg), "page") {
					t.Errorf("failure %q should name the registry %s and the pagination", msg, bad.Host())
				}
			}
			t.Logf("%s: %d tag list requests to the looping registry", kind.name, bad.Stats().ByClass["GET tags"])
			if n := bad.Stats().ByClass["GET tags"]; n > kind.maxPages {
				t.Errorf("%d tag list requests, want at most %d", n, kind.maxPages)
			}
		})
	}
}
