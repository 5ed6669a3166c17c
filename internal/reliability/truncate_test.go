package reliability

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 3: a connection reset part-way through a response body.
// Idempotent reads (tag lists, manifests, blobs) are retried like a reset
// before the headers; a blob read resumes (Range) or starts again.
func TestTruncatedBodiesAreRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// onSource says the rule applies to the staging registry, else to
		// the destination.
		onSource bool
		rule     testenv.FaultRule
	}{
		{"destination tag list", false, testenv.FaultRule{Method: http.MethodGet, Path: testenv.PathTags, Kind: testenv.FaultTruncate, TruncateAfter: 20}},
		{"source manifest", true, testenv.FaultRule{Method: http.MethodGet, Path: testenv.PathManifest, Kind: testenv.FaultTruncate, TruncateAfter: 100}},
		{"small blob", true, testenv.FaultRule{Method: http.MethodGet, Path: testenv.PathBlob, Kind: testenv.FaultTruncate, TruncateAfter: 300}},
		{"streamed blob", true, testenv.FaultRule{Method: http.MethodGet, Path: testenv.PathBlob, Kind: testenv.FaultTruncate, TruncateAfter: 3 << 20}},
		{"streamed blob twice", true, testenv.FaultRule{Method: http.MethodGet, Path: testenv.PathBlob, Last: 2, Kind: testenv.FaultTruncate, TruncateAfter: 2 << 20}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := testenv.InProcessRegistry(t), testenv.InProcessRegistry(t)
			spec := testenv.ImageSpec{Seed: int64(10 + i), LayerSize: 6 << 20}
			if tc.name == "small blob" {
				spec.LayerSize = 4 << 10
			}
			dig := testenv.PushImageWith(t, src+"/s/app", spec)
			// The destination repository exists with some tags, so that
			// its tag list is long enough to be cut.
			for j := range 5 {
				testenv.PushImage(t, fmt.Sprintf("%s/p/app:old-%d", dst, j), int64(100+j))
			}
			var srcHost, dstHost string
			if tc.onSource {
				srcHost, dstHost = testenv.NewFaultProxy(t, src, tc.rule).Host(), dst
			} else {
				srcHost, dstHost = src, testenv.NewFaultProxy(t, dst, tc.rule).Host()
			}
			m := writeManifest(t, srcHost+"/s", []string{dstHost + "/p"}, image{name: "app", digest: dig, tags: []string{"1.0"}})
			run(t.Context(), t, m).mustSucceed(t, 1)
			if got := testenv.Digests(t, dst+"/p/app")["1.0"]; got != dig {
				t.Errorf("app:1.0 = %s, want %s", got, dig)
			}
		})
	}
}
