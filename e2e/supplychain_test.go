package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/cosigntest"
	"github.com/imgpromoter/promoter/internal/plainreg"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/evidence"
	"github.com/imgpromoter/promoter/pkg/referrers"
)

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// transplant attaches the cosign v3 signature of one image to another image
// of the same repository (a signature that is genuine, but not for this
// image), through the fallback index as cosign would on Distribution.
func transplant(t *testing.T, repo name.Repository, from, to v1.Hash) {
	t.Helper()
	c := &plainreg.Client{}
	arts, err := referrers.NewFinder(c, nil).Find(t.Context(), repo, from)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arts {
		if a.Descriptor.Annotations["dev.sigstore.bundle.predicateType"] != evidence.CosignSignPredicate {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(a.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(repo.Digest(to.String()))
		if err != nil {
			t.Fatal(err)
		}
		m["subject"] = map[string]any{"mediaType": string(desc.MediaType), "digest": to.String(), "size": desc.Size}
		raw, _ := json.Marshal(m)
		moved, err := referrers.NewArtifact(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := referrers.NewWriter(c, nil).Write(t.Context(), repo, to, []referrers.Artifact{moved}, nil); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("no cosign signature to transplant")
}

type runReport struct {
	Totals struct {
		Promoted, Present, Refused, Failed int
	} `json:"totals"`
	Engine struct {
		ManifestsPut int `json:"manifestsPut"`
		TagsPut      int `json:"tagsPut"`
		Uploads      int `json:"uploads"`
	} `json:"engine"`
	Hosts []struct {
		Host         string `json:"host"`
		Requests     int    `json:"requests"`
		ManifestPuts int    `json:"manifestPuts"`
		BlobUploads  int    `json:"blobUploads"`
	} `json:"hosts"`
	SupplyChain struct {
		Images []struct {
			Image        string `json:"image"`
			Digest       string `json:"digest"`
			Destinations []struct {
				Repository string `json:"repository"`
				Policy     struct {
					Allowed bool     `json:"allowed"`
					Reasons []string `json:"reasons"`
				} `json:"policy"`
				Artifacts []struct {
					Status string `json:"status"`
					Reason string `json:"reason"`
				} `json:"artifacts"`
			} `json:"destinations"`
		} `json:"images"`
	} `json:"supplyChain"`
}

// TestSupplyChain is the acceptance test with the real binary,
// the real cosign CLI (v3 bundles, v2 legacy tags) and real registries:
// staging is Distribution (cosign writes fallback indexes there), one
// mirror has the referrers API (go-containerregistry's registry), the
// other is Distribution. With a policy, exactly the unsigned image and the
// image carrying another image's signature are refused; cosign verify and
// verify-attestation pass against every mirror for the rest; a corrupted
// fallback tag on a mirror is refused, not overwritten; a second run
// writes nothing.
func TestSupplyChain(t *testing.T) {
	e2e(t)
	v3 := cosigntest.New(t, 3)
	v2 := cosigntest.New(t, 2)
	v2.UseKey(v3)
	staging := testenv.StartDistribution(t, "staging")
	prodB := testenv.StartDistribution(t, "prod-b")
	src := staging.Host + "/" + stagingPrefix
	destA := testenv.InProcessReferrersRegistry(t, true) + "/" + prodAPrefix
	destB := prodB.Host + "/" + prodBPrefix
	dests := []string{destA, destB}

	app := pushImage(t, src, "app", 1, "1.0")
	multi := pushIndex(t, src, "multi", 100, "v2.0")
	legacy := pushImage(t, src, "legacy", 3, "0.9")
	unsigned := pushImage(t, src, "unsigned", 4, "1.0")
	forged := pushImage(t, src, "app", 5, "1.1") // same repository as app
	ref := func(p promo) string { return fmt.Sprintf("%s/%s@%s", src, p.image, p.digest) }

	vuln := []byte(`{"scanner":{"uri":"pkg:github/aquasecurity/trivy","version":"0.58.0","db":{"version":"2026-11-28"},"result":{"Results":[{"Vulnerabilities":[{"Severity":"HIGH"},{"Severity":"LOW"}]}]}},"metadata":{"scanFinishedOn":"2026-11-28T10:01:00Z"}}`)
	v3.Sign(t, ref(app))
	v3.Attest(t, ref(app), evidence.CosignVulnPredicate, vuln)
	v3.Sign(t, ref(multi), "--recursive")
	v2.Sign(t, ref(legacy))
	v2.Attest(t, ref(legacy), evidence.TestResultPredicate, []byte(`{"result":"PASSED","passedTests":["unit"]}`))
	transplant(t, mustRepo(t, src+"/app"), app.digest, forged.digest)

	// A mirror whose fallback tag for multi holds an image: not a
	// referrers index, so multi's referrers there are refused, the tag kept.
	junk := testenv.PushImage(t, fmt.Sprintf("%s/multi:sha256-%s", destB, multi.digest.Hex), 77)

	dir, _ := thinDir(t, "sample", registrySpec{src: src, dests: dests}, entries(app, multi, legacy, unsigned, forged))
	writeFile(t, filepath.Join(dir, "keys", "release.pub"), string(v3.PublicKeyPEM(t)))
	writeFile(t, filepath.Join(dir, "promotion-policy.yaml"), "default:\n  requirements:\n    - signedBy: {key: keys/release.pub}\n")

	// The pull request's evidence.
	r := promoter(t, "plan", "-o", "markdown", dir)
	wantExit(t, r, 1)
	wantContains(t, "stdout", r.stdout, r,
		"#### Supply chain", "Policy: `"+filepath.Join(dir, "promotion-policy.yaml")+"`",
		"verified: key:keys/release.pub",
		"vulnerability scan (cosign) (verified)", "1 high, 1 low; scanner pkg:github/aquasecurity/trivy 0.58.0",
		"test results (verified)", "PASSED (1 passed, 0 warned, 0 failed)",
		"not signed by key:keys/release.pub (unsigned)")

	r = promoter(t, "run", "--confirm", "-o", "json", dir)
	wantExit(t, r, 1)
	var rep runReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, r)
	}
	for _, d := range dests {
		for _, p := range []promo{app, multi, legacy} {
			sameImage(t, parseRepo(t, src+"/"+p.image), parseRepo(t, d+"/"+p.image), p.digest)
			tags := testenv.Digests(t, d+"/"+p.image)
			for _, tag := range p.tags {
				if tags[tag] != p.digest {
					t.Errorf("%s/%s:%s is %s, want %s", d, p.image, tag, tags[tag], p.digest)
				}
			}
			for tag, got := range tags {
				// Besides the human tags: cosign's and the fallback tags.
				if !slices.Contains(p.tags, tag) && !strings.HasPrefix(tag, "sha256-") {
					t.Errorf("%s/%s: unexpected tag %s (%s)", d, p.image, tag, got)
				}
			}
		}
	}
	for _, p := range []promo{unsigned, forged} {
		for _, d := range dests {
			if testenv.HasManifest(t, fmt.Sprintf("%s/%s@%s", d, p.image, p.digest)) {
				t.Errorf("%s@%s was promoted to %s despite the policy", p.image, p.digest, d)
			}
		}
	}
	if rep.Totals.Refused != 2*2 {
		t.Errorf("refused %d edges, want 4 (unsigned and forged, two mirrors)\n%s", rep.Totals.Refused, r)
	}
	for _, d := range dests {
		for _, p := range []promo{app, multi} {
			target := fmt.Sprintf("%s/%s@%s", d, p.image, p.digest)
			if d == destB && p.image == "multi" {
				continue // its fallback tag is corrupted there: see below
			}
			if out, err := v3.Verify(t, target, ""); err != nil {
				t.Errorf("cosign v3 verify %s: %v\n%s", target, err, out)
			}
			for _, c := range p.children {
				if out, err := v3.Verify(t, fmt.Sprintf("%s/%s@%s", d, p.image, c), ""); err != nil {
					t.Errorf("cosign v3 verify child %s of %s: %v\n%s", c, target, err, out)
				}
			}
		}
		target := fmt.Sprintf("%s/app@%s", d, app.digest)
		if out, err := v3.VerifyAttestation(t, target, evidence.CosignVulnPredicate); err != nil {
			t.Errorf("cosign v3 verify-attestation %s: %v\n%s", target, err, out)
		}
		target = fmt.Sprintf("%s/legacy@%s", d, legacy.digest)
		if out, err := v2.Verify(t, target, ""); err != nil {
			t.Errorf("cosign v2 verify %s: %v\n%s", target, err, out)
		}
		if out, err := v2.VerifyAttestation(t, target, evidence.TestResultPredicate); err != nil {
			t.Errorf("cosign v2 verify-attestation %s: %v\n%s", target, err, out)
		}
	}
	// The corrupted fallback tag: untouched, and multi's own referrers
	// refused there (its children's went through their own tags).
	if got := testenv.Digests(t, destB+"/multi")["sha256-"+multi.digest.Hex]; got != junk {
		t.Errorf("fallback tag of multi on %s now holds %s, want it untouched (%s)", destB, got, junk)
	}
	refusedThere := 0
	for _, im := range rep.SupplyChain.Images {
		for _, d := range im.Destinations {
			for _, a := range d.Artifacts {
				if a.Status == "refused" {
					refusedThere++
					if !strings.HasPrefix(d.Repository, destB+"/multi") || !strings.Contains(a.Reason, "not a referrers index") {
						t.Errorf("refused %s in %s: %s", im.Image, d.Repository, a.Reason)
					}
				}
			}
		}
	}
	if refusedThere == 0 {
		t.Errorf("no artifact refused on the corrupted fallback tag\n%s", r)
	}

	// A second run has nothing to write.
	r = promoter(t, "run", "--confirm", "-o", "json", dir)
	var again runReport
	if err := json.Unmarshal([]byte(r.stdout), &again); err != nil {
		t.Fatalf("report: %v\n%s", err, r)
	}
	for _, h := range again.Hosts {
		if h.ManifestPuts != 0 || h.BlobUploads != 0 {
			t.Errorf("second run wrote to %s: %d manifests, %d blobs\n%s", h.Host, h.ManifestPuts, h.BlobUploads, r)
		}
	}
	total := 0
	for _, h := range again.Hosts {
		total += h.Requests
	}
	t.Logf("second run: %d requests in all (%+v)", total, again.Hosts)
}
