package reliability

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 6: the re-check of a tag (HEAD) and its write (PUT) are
// next to each other: the host limiter's slot and rate token are taken
// before the HEAD, so nothing waits between the two, even under
// --host-rate and after a 429. The window measured here, from the end of
// the HEAD's answer to the arrival of the PUT, is the figure stated in
// docs/promotion.md.
func TestTagRecheckIsNextToTheWrite(t *testing.T) {
	t.Parallel()
	w := newRateWorld(t, 4)
	dest := testenv.NewFaultProxy(t, w.dest, testenv.FaultRule{
		Method: http.MethodHead, Path: testenv.PathManifest, Status: http.StatusTooManyRequests,
	})
	m := writeManifest(t, w.staging+"/s", []string{dest.Host() + "/p"}, w.images...)
	run(t.Context(), t, "--host-rate", "4", m).mustSucceed(t, 8)
	windows := tagWindows(t, dest.Log())
	if len(windows) != 8 {
		t.Fatalf("%d tag writes paired with their re-check, want 8: %v", len(windows), windows)
	}
	var worst time.Duration
	for _, w := range windows {
		worst = max(worst, w)
	}
	t.Logf("HEAD-to-PUT windows under --host-rate 4 after a 429: %v (worst %v)", windows, worst)
	// At 4 requests a second, a PUT queued behind the limiter after its
	// HEAD waits about 250 ms.
	if worst > 200*time.Millisecond {
		t.Errorf("worst window between a tag's re-check and its write is %v, want under 200ms", worst)
	}
}

// tagWindows pairs each tag PUT with the last HEAD of the same path
// answered before it, and returns the time from that answer to the PUT.
func tagWindows(t testing.TB, log []testenv.RequestRecord) []time.Duration {
	t.Helper()
	log = slices.Clone(log)
	slices.SortStableFunc(log, func(a, b testenv.RequestRecord) int { return a.Start.Compare(b.Start) })
	lastHead := map[string]time.Time{}
	var out []time.Duration
	for _, r := range log {
		if r.Class != testenv.ClassManifest || isDigestPath(r.Path) {
			continue
		}
		switch r.Method {
		case http.MethodHead:
			if r.Status == http.StatusOK || r.Status == http.StatusNotFound {
				lastHead[r.Path] = r.End
			}
		case http.MethodPut:
			h, ok := lastHead[r.Path]
			if !ok {
				t.Errorf("tag write %s without a re-check before it", r.Path)
				continue
			}
			out = append(out, r.Start.Sub(h))
		}
	}
	return out
}

func isDigestPath(p string) bool {
	return strings.Contains(p, "/manifests/sha256:")
}
