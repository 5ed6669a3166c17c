package reliability

import (
	"bytes"
	"math"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 2: a source serving wrong bytes for a blob too large to
// hold in memory. The bytes are checked while they stream, and every
// upload is aborted before its final byte: a destination never receives a
// complete upload of bytes that do not match their digest (a registry that
// does not check would store them under a trusted digest).
func TestCorruptStreamedBlobNeverCompletesAnUpload(t *testing.T) {
	t.Parallel()
	upstream := testenv.InProcessRegistry(t)
	spec := testenv.ImageSpec{Seed: 5, LayerSize: 6 << 20}
	dig := testenv.PushImageWith(t, upstream+"/s/app", spec)
	layers, err := testenv.BuildImage(t, spec).Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	// Every read of the layer has one byte flipped, early in the blob.
	staging := testenv.NewFaultProxy(t, upstream, testenv.FaultRule{
		Method: http.MethodGet, Path: `/blobs/` + layer.String() + `$`, Last: math.MaxInt, Kind: testenv.FaultCorrupt, Offset: 1 << 20,
	})
	var dests []*testenv.FaultProxy
	var names []string
	for range 2 {
		p := testenv.NewFaultProxy(t, testenv.InProcessRegistry(t))
		dests = append(dests, p)
		names = append(names, p.Host()+"/p")
	}
	m := writeManifest(t, staging.Host()+"/s", names, image{name: "app", digest: dig, tags: []string{"1.0"}})

	r := run(t.Context(), t, m)
	if r.report.Totals.Failed != 2 || r.report.Totals.Promoted != 0 {
		t.Errorf("totals %+v, want both edges failed\n%s", r.report.Totals, r.failures())
	}
	for _, d := range dests {
		sessions := map[string][]byte{}
		for _, u := range d.Uploads() {
			sessions[u.Session] = append(sessions[u.Session], u.Body...)
			if u.Digest == "" || !u.Complete {
				continue
			}
			got, _, err := v1.SHA256(bytes.NewReader(sessions[u.Session]))
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != u.Digest {
				t.Errorf("%s received a complete upload of %d bytes with digest %s under %s (answered %d)",
					d.Host(), len(sessions[u.Session]), got, u.Digest, u.Status)
			}
		}
		if tags := testenv.Digests(t, d.Host()+"/p/app"); len(tags) != 0 {
			t.Errorf("%s has tags %v although the image could not be copied", d.Host(), tags)
		}
	}
}
