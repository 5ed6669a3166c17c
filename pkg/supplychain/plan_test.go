package supplychain_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/cosigntest"
	"github.com/imgpromoter/promoter/internal/plainreg"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/evidence"
	"github.com/imgpromoter/promoter/pkg/policy"
	"github.com/imgpromoter/promoter/pkg/supplychain"
)

func group(t *testing.T, image string, src name.Repository, d v1.Hash, dests ...name.Repository) *edge.Group {
	t.Helper()
	return &edge.Group{Image: image, Source: src.Digest(d.String()), Digest: d, Dests: dests}
}

// The pull request's evidence: signature status, attestations,
// vulnerability and test summaries, the policy's decision per destination.
func TestPlanGroupsEvidenceAndPolicy(t *testing.T) {
	v3 := cosigntest.New(t, 3)
	staging := repo(t, testenv.InProcessReferrersRegistry(t, true), "staging/app")
	signed := testenv.PushImage(t, staging.Tag("signed").String(), 1)
	unsigned := testenv.PushImage(t, staging.Tag("unsigned").String(), 2)
	ref := staging.Digest(signed.String()).String()
	v3.Sign(t, ref)
	v3.Attest(t, ref, evidence.CosignVulnPredicate, vuln)
	v3.Attest(t, ref, evidence.TestResultPredicate, []byte(`{"result":"PASSED","passedTests":["unit","e2e"]}`))

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "team.pub"), v3.PublicKeyPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	prod := repo(t, testenv.StartDistribution(t, "prod").Host, "prod/app")
	pol := fmt.Sprintf("scopes:\n  - prefix: %s\n    requirements:\n      - signedBy: {key: team.pub}\n    gates: {maxSeverity: medium}\n", prod.RegistryStr())
	pf := filepath.Join(dir, policy.DefaultFile)
	if err := os.WriteFile(pf, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(pf, dir)
	if err != nil {
		t.Fatal(err)
	}
	client := &plainreg.Client{}
	c := supplychain.New(client, client, supplychain.WithPolicy(p))
	sc, err := c.PlanGroups(t.Context(), []*edge.Group{group(t, "app", staging, signed, prod), group(t, "app", staging, unsigned, prod)}, nil, pf, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.For(signed, prod); got == nil || !got.Allowed() || !got.Pending() {
		t.Fatalf("signed image: %+v", got)
	}
	if got := sc.For(unsigned, prod); got == nil || got.Allowed() {
		t.Fatalf("unsigned image allowed: %+v", got)
	}

	var md strings.Builder
	if err := supplychain.Markdown(&md, sc); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"verified: key:team.pub",
		"vulnerability scan (cosign) (verified)",
		"test results (verified)",
		"1 low; scanner pkg:github/aquasecurity/trivy 0.58.0; database 2026-11-28; scanned 2026-11-28 10:01Z",
		"PASSED (2 passed, 0 warned, 0 failed)",
		"| unsigned | none |",
		"refused (" + prod.RegistryStr() + "): not signed by key:team.pub (unsigned)",
		"allowed (" + prod.RegistryStr() + ") | 3 copy |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}

	// Writing what was planned; the image is promoted first.
	copyImage(t, staging, prod, signed)
	if err := sc.Write(t.Context(), c, staging, signed, prod); err != nil {
		t.Fatal(err)
	}
	if out, err := v3.Verify(t, prod.Digest(signed.String()).String(), ""); err != nil {
		t.Fatalf("cosign verify after Write: %v\n%s", err, out)
	}
	if n := counts(*sc.For(signed, prod)); n[supplychain.Copied] != 3 {
		t.Errorf("after Write: %v", n)
	}
}
