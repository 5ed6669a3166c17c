package supplychain_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/cosigntest"
	"github.com/imgpromoter/promoter/internal/plainreg"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/evidence"
	"github.com/imgpromoter/promoter/pkg/policy"
	"github.com/imgpromoter/promoter/pkg/supplychain"
)

func repo(t *testing.T, host, path string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(host+"/"+path, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// copyImage writes the image (an index with its children, or a manifest)
// by digest, as the transfer engine does before the supply chain.
func copyImage(t *testing.T, src, dst name.Repository, d v1.Hash) {
	t.Helper()
	desc, err := remote.Get(src.Digest(d.String()))
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(dst.Digest(d.String()), idx); err != nil {
			t.Fatal(err)
		}
		return
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst.Digest(d.String()), img); err != nil {
		t.Fatal(err)
	}
}

type dest struct {
	label string
	repo  name.Repository
}

// promote runs the supply-chain steps for one image to every destination
// and returns the plans (after writing).
func promote(t *testing.T, c *supplychain.Carrier, src name.Repository, d v1.Hash, children []v1.Hash, dests []dest) []supplychain.DestinationPlan {
	t.Helper()
	var repos []name.Repository
	for _, ds := range dests {
		repos = append(repos, ds.repo)
	}
	img := c.Inspect(t.Context(), src, d, children, repos)
	if img.Err != nil {
		t.Fatal(img.Err)
	}
	var out []supplychain.DestinationPlan
	for _, ds := range dests {
		p := c.PlanDestination(t.Context(), img, ds.repo, supplychain.Filter{}, true)
		if p.Err != "" {
			t.Fatal(p.Err)
		}
		if !p.Allowed() {
			out = append(out, p)
			continue
		}
		copyImage(t, src, ds.repo, d)
		if err := c.Write(t.Context(), img, ds.repo, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func counts(p supplychain.DestinationPlan) map[supplychain.Status]int {
	m := map[supplychain.Status]int{}
	for _, a := range p.Artifacts {
		m[a.Status]++
	}
	return m
}

var vuln = []byte(`{"scanner":{"uri":"pkg:github/aquasecurity/trivy","version":"0.58.0","db":{"version":"2026-11-28"},"result":{"Results":[{"Vulnerabilities":[{"Severity":"LOW"}]}]}},"metadata":{"scanStartedOn":"2026-11-28T10:00:00Z","scanFinishedOn":"2026-11-28T10:01:00Z"}}`)

// The acceptance test at library level: sign and attest in
// staging with the real cosign (v3 bundles and v2 legacy tags), carry to a
// registry with the referrers API and to Distribution without it, and
// cosign verify / verify-attestation pass against every destination; a
// second run writes nothing.
func TestCarryThenCosignVerifiesEveryDestination(t *testing.T) {
	v3 := cosigntest.New(t, 3)
	v2 := cosigntest.New(t, 2)
	staging := repo(t, testenv.InProcessReferrersRegistry(t, true), "staging/app")
	single := testenv.PushImage(t, staging.Tag("single").String(), 1)
	index, children := testenv.PushIndex(t, staging.Tag("multi").String(), 2)
	legacy := testenv.PushImage(t, staging.Tag("legacy").String(), 3)

	// cosign v3: bundles as referrers (recursively for the index); cosign
	// v2: the legacy .sig and .att tags. (cosign v2.6 verify refuses an
	// image that also has v3 bundles, so each image has one kind.)
	for _, d := range []v1.Hash{single, index} {
		ref := staging.Digest(d.String()).String()
		v3.Sign(t, ref, "--recursive")
		v3.Attest(t, ref, evidence.CosignVulnPredicate, vuln)
	}
	v2.Sign(t, staging.Digest(legacy.String()).String())
	v2.Attest(t, staging.Digest(legacy.String()).String(), evidence.TestResultPredicate, []byte(`{"result":"PASSED","passedTests":["a"]}`))

	dests := []dest{
		{"referrers-api", repo(t, testenv.InProcessReferrersRegistry(t, true), "prod/app")},
		{"distribution", repo(t, testenv.StartDistribution(t, "prod").Host, "prod/app")},
	}
	client := &plainreg.Client{}
	for _, img := range []struct {
		digest   v1.Hash
		children []v1.Hash
		cosign   *cosigntest.Cosign
		attested string
	}{{single, nil, v3, evidence.CosignVulnPredicate}, {index, children, v3, evidence.CosignVulnPredicate}, {legacy, nil, v2, evidence.TestResultPredicate}} {
		plans := promote(t, supplychain.New(client, client), staging, img.digest, img.children, dests)
		for i, p := range plans {
			if n := counts(p); n[supplychain.Copied] == 0 || n[supplychain.Refused] != 0 || n[supplychain.Copy] != 0 {
				t.Errorf("%s: first run statuses %v", dests[i].label, n)
			}
		}
		for _, ds := range dests {
			ref := ds.repo.Digest(img.digest.String()).String()
			if out, err := img.cosign.Verify(t, ref, ""); err != nil {
				t.Errorf("%s: cosign v%d verify %s: %v\n%s", ds.label, img.cosign.Major, ref, err, out)
			}
			if out, err := img.cosign.VerifyAttestation(t, ref, img.attested); err != nil {
				t.Errorf("%s: cosign v%d verify-attestation %s: %v\n%s", ds.label, img.cosign.Major, ref, err, out)
			}
			for _, child := range img.children {
				if out, err := img.cosign.Verify(t, ds.repo.Digest(child.String()).String(), ""); err != nil {
					t.Errorf("%s: cosign verify child %s: %v\n%s", ds.label, child, err, out)
				}
			}
		}

		// A second run writes nothing.
		client.Writes.Store(0)
		plans = promote(t, supplychain.New(client, client), staging, img.digest, img.children, dests)
		for i, p := range plans {
			if n := counts(p); n[supplychain.Present] != len(p.Artifacts) {
				t.Errorf("%s: second run statuses %v", dests[i].label, n)
			}
		}
		// (copyImage writes through its own client: these are the supply
		// chain's writes.)
		if w := client.Writes.Load(); w != 0 {
			t.Errorf("second run: %d writes", w)
		}
	}
}

// With a policy, only the unsigned image is refused.
func TestPolicyRefusesOnlyUnsigned(t *testing.T) {
	v3 := cosigntest.New(t, 3)
	staging := repo(t, testenv.InProcessReferrersRegistry(t, true), "staging/app")
	signed := testenv.PushImage(t, staging.Tag("signed").String(), 1)
	unsigned := testenv.PushImage(t, staging.Tag("unsigned").String(), 2)
	v3.Sign(t, staging.Digest(signed.String()).String())

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "team.pub"), v3.PublicKeyPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := repo(t, testenv.InProcessReferrersRegistry(t, false), "prod/app")
	pol := fmt.Sprintf("scopes:\n  - prefix: %s\n    requirements:\n      - signedBy: {key: team.pub}\n", dst.RegistryStr())
	if err := os.WriteFile(filepath.Join(dir, policy.DefaultFile), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(filepath.Join(dir, policy.DefaultFile), dir)
	if err != nil {
		t.Fatal(err)
	}
	client := &plainreg.Client{}
	c := supplychain.New(client, client, supplychain.WithPolicy(p))
	for _, tc := range []struct {
		d       v1.Hash
		allowed bool
	}{{signed, true}, {unsigned, false}} {
		plans := promote(t, c, staging, tc.d, nil, []dest{{"dst", dst}})
		if plans[0].Allowed() != tc.allowed {
			t.Errorf("%s: allowed = %v, want %v (%+v)", tc.d, plans[0].Allowed(), tc.allowed, plans[0].Decision)
		}
		if _, err := remote.Head(dst.Digest(tc.d.String())); (err == nil) != tc.allowed {
			t.Errorf("%s in destination: %v", tc.d, err)
		}
	}
}
