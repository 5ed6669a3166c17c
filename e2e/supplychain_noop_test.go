package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/imgpromoter/promoter/internal/cosigntest"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/evidence"
)

// noopRequests runs the promotion again (everything is already there) and
// returns the requests it sent, in all and per registry host.
func noopRequests(t *testing.T, args ...string) (int, map[string]int) {
	t.Helper()
	r := promoter(t, append([]string{"run", "--confirm", "-o", "json"}, args...)...)
	wantExit(t, r, 0)
	var rep runReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, r)
	}
	total, per := 0, map[string]int{}
	for _, h := range rep.Hosts {
		if h.ManifestPuts != 0 || h.BlobUploads != 0 {
			t.Errorf("no-op run wrote to %s\n%s", h.Host, r)
		}
		total += h.Requests
		per[h.Host] = h.Requests
	}
	return total, per
}

// TestSupplyChainNoopCost measures what carrying signatures costs a no-op
// run: the same promotion of signed images (cosign v3: a signature and an
// attestation each, as referrers) run again with and without
// --supply-chain, to a mirror with the referrers API and to Distribution.
// The figures are quoted in docs/benchmarks.md; the destination side must
// stay within one request per digest and destination, plus the one probe
// per registry and run that finds a registry has no referrers API.
func TestSupplyChainNoopCost(t *testing.T) {
	e2e(t)
	v3 := cosigntest.New(t, 3)
	staging := testenv.StartDistribution(t, "staging")
	prodB := testenv.StartDistribution(t, "prod-b")
	src := staging.Host + "/" + stagingPrefix
	destA := testenv.InProcessReferrersRegistry(t, true) + "/" + prodAPrefix
	destB := prodB.Host + "/" + prodBPrefix
	const images = 8
	var ps []promo
	for i := range images {
		p := pushImage(t, src, fmt.Sprintf("img%d", i), int64(200+i), "v1")
		ref := fmt.Sprintf("%s/%s@%s", src, p.image, p.digest)
		v3.Sign(t, ref)
		v3.Attest(t, ref, evidence.TestResultPredicate, []byte(`{"result":"PASSED"}`))
		ps = append(ps, p)
	}
	dir, _ := thinDir(t, "bench", registrySpec{src: src, dests: []string{destA, destB}}, entries(ps...))
	r := promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 0)

	with, withPer := noopRequests(t, dir)
	without, withoutPer := noopRequests(t, "--supply-chain=false", dir)
	dests := 0
	for _, h := range []string{destA, destB} {
		host := parseRepo(t, h+"/x").RegistryStr()
		extra := withPer[host] - withoutPer[host]
		dests += extra
		t.Logf("destination %s: %d requests without the supply chain, %d with (%+d, %.2f per image)", host, withoutPer[host], withPer[host], extra, float64(extra)/images)
		if extra > images+1 {
			t.Errorf("destination %s: %d extra requests for %d images: more than one per digest and destination (and one probe)", host, extra, images)
		}
	}
	srcHost := staging.Host
	t.Logf("staging: %d requests without, %d with (%+d, %.2f per image)", withoutPer[srcHost], withPer[srcHost], withPer[srcHost]-withoutPer[srcHost], float64(withPer[srcHost]-withoutPer[srcHost])/images)
	t.Logf("no-op run, %d signed images, 2 mirrors: %d requests without the supply chain, %d with (ratio %.2f)", images, without, with, float64(with)/float64(without))
}
