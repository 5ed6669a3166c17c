package policy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgpromoter/promoter/pkg/evidence"
	"github.com/imgpromoter/promoter/pkg/policy"
)

func pemKey(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// tree writes files under a fresh manifest root and returns it.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadErrorsHaveFileAndLine(t *testing.T) {
	key := string(pemKey(t))
	for _, tc := range []struct {
		name, policy, want string
	}{
		{"unknown top field", "default:\n  requirements: [{insecureAcceptAnything: {}}]\nscope: []\n", `promotion-policy.yaml:3:1: unknown field "scope"`},
		{"unknown requirement", "default:\n  requirements:\n    - signedByKey: {key: k.pub}\n", `promotion-policy.yaml:3:7: unknown field "signedByKey"`},
		{"unknown key field", "default:\n  requirements:\n    - signedBy: {key: k.pub, keyID: x}\n", `promotion-policy.yaml:3:30: unknown field "keyID"`},
		{"unknown gate", "default:\n  requirements: [{signedBy: {key: k.pub}}]\n  gates: {maxSeverty: high}\n", `promotion-policy.yaml:3:11: unknown field "maxSeverty"`},
		{"empty requirements", "default:\n  requirements: []\n", `promotion-policy.yaml:2:3: scope default needs a non-empty list`},
		{"bad severity", "default:\n  requirements: [{signedBy: {key: k.pub}}]\n  gates: {maxSeverity: severe}\n", `promotion-policy.yaml:3:24: maxSeverity "severe"`},
		{"gates without identities", "default:\n  requirements: [{insecureAcceptAnything: {}}]\n  gates: {maxSeverity: high}\n", `scope default: attestations and gates are verified against`},
		{"reject with others", "default:\n  requirements: [{reject: {}}, {signedBy: {key: k.pub}}]\n", `reject and insecureAcceptAnything stand alone`},
		{"missing key file", "default:\n  requirements: [{signedBy: {key: nope.pub}}]\n", `promotion-policy.yaml:2:35: `},
		{"key outside root", "default:\n  requirements: [{signedBy: {key: ../k.pub}}]\n", `is outside the manifest root`},
		{"not a key", "default:\n  requirements: [{signedBy: {key: promotion-policy.yaml}}]\n", `public key promotion-policy.yaml`},
		{"keyless without root", "default:\n  requirements: [{keyless: {issuer: i, subject: s}}]\n", `keyless needs trustedRoot`},
		{"bad prefix", "scopes:\n  - prefix: 'UPPER/x'\n    requirements: [{reject: {}}]\n", `promotion-policy.yaml:2:13: prefix "UPPER/x"`},
		{"duplicate prefix", "scopes:\n  - prefix: r.example/a\n    requirements: [{reject: {}}]\n  - prefix: r.example/a/\n    requirements: [{reject: {}}]\n", `promotion-policy.yaml:4:13: prefix "r.example/a" is scoped twice`},
		{"no scope", "version: 1\n", `no scope`},
		{"bad age", "default:\n  requirements: [{signedBy: {key: k.pub}}]\n  gates: {maxScanAge: 7d}\n", `maxScanAge "7d"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t, map[string]string{"promotion-policy.yaml": tc.policy, "k.pub": key})
			_, err := policy.Load(filepath.Join(dir, "promotion-policy.yaml"), dir)
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a *policy.Error", err)
			}
			if got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""); !strings.Contains(got, tc.want) {
				t.Errorf("error %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestSymlinkedKeyRefused(t *testing.T) {
	dir := tree(t, map[string]string{"promotion-policy.yaml": "default:\n  requirements: [{signedBy: {key: link.pub}}]\n", "real.pub": string(pemKey(t))})
	if err := os.Symlink("real.pub", filepath.Join(dir, "link.pub")); err != nil {
		t.Fatal(err)
	}
	_, err := policy.Load(filepath.Join(dir, "promotion-policy.yaml"), dir)
	if err == nil || !strings.Contains(err.Error(), "symbolic links are not followed") {
		t.Fatalf("error %v, want the symlink refused", err)
	}
}

const scoped = `version: 1
default:
  requirements:
    - reject: {}
scopes:
  - prefix: prod.example/team
    requirements:
      - signedBy: {key: keys/team.pub}
  - prefix: prod.example/team/strict
    requirements:
      - signedBy: {key: keys/team.pub}
      - attestation: {predicateType: https://slsa.dev/provenance/v1}
    gates:
      maxSeverity: medium
      maxScanAge: 24h
  - prefix: prod.example/open
    requirements:
      - insecureAcceptAnything: {}
`

func TestEvaluate(t *testing.T) {
	dir := tree(t, map[string]string{"promotion-policy.yaml": scoped, "keys/team.pub": string(pemKey(t))})
	p, err := policy.Load(filepath.Join(dir, "promotion-policy.yaml"), dir)
	if err != nil {
		t.Fatal(err)
	}
	team := "key:keys/team.pub"
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	signed := evidence.Evidence{Signatures: []evidence.Signature{{Identity: team}}}
	fresh := signed
	fresh.Attestations = []evidence.Attestation{{PredicateType: "https://slsa.dev/provenance/v1", Identity: team}}
	fresh.Vulns = &evidence.VulnSummary{Identity: team, Counts: map[string]int{"medium": 2, "low": 1}, ScanFinished: now.Add(-time.Hour)}
	critical := fresh
	critical.Vulns = &evidence.VulnSummary{Identity: team, Counts: map[string]int{"critical": 1}, ScanFinished: now.Add(-48 * time.Hour)}
	foreign := evidence.Evidence{Signatures: []evidence.Signature{{Identity: "key:other.pub"}}, Failures: []evidence.Failure{{Reason: "x"}}}

	for _, tc := range []struct {
		name string
		dst  string
		ev   evidence.Evidence
		want policy.Decision
	}{
		{"signed", "prod.example/team/app", signed, policy.Decision{Scope: "prod.example/team", Allowed: true}},
		{"unsigned", "prod.example/team/app", evidence.Evidence{}, policy.Decision{Scope: "prod.example/team", Reasons: []string{"not signed by key:keys/team.pub (unsigned)"}}},
		{"signed by another key", "prod.example/team/app", foreign, policy.Decision{Scope: "prod.example/team", Reasons: []string{"not signed by key:keys/team.pub (1 signature(s) or attestation(s) did not verify)"}}},
		{"prefix matches whole components", "prod.example/teamx/app", signed, policy.Decision{Scope: "default", Reasons: []string{"policy scope default rejects every image (" + filepath.Join(dir, "promotion-policy.yaml") + ":4:7)"}}},
		{"most specific wins", "prod.example/team/strict/app", signed, policy.Decision{Scope: "prod.example/team/strict", Reasons: []string{
			"no verified attestation of type https://slsa.dev/provenance/v1",
			"gate: no vulnerability scan attestation verified for the scope's identities"}}},
		{"gates pass", "prod.example/team/strict/app", fresh, policy.Decision{Scope: "prod.example/team/strict", Allowed: true}},
		{"gates fail", "prod.example/team/strict/app", critical, policy.Decision{Scope: "prod.example/team/strict", Reasons: []string{
			"gate: 1 critical vulnerabilities; the highest severity allowed is medium",
			"gate: the scan finished 48h0m0s ago, more than the 24h0m0s allowed"}}},
		{"accept anything", "prod.example/open/x", evidence.Evidence{}, policy.Decision{Scope: "prod.example/open", Allowed: true, Unverified: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, err := name.NewRepository(tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, p.Evaluate(dst, tc.ev, now)); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
	ids := p.Identities(name.MustParseReference("prod.example/team/app:x").Context(), name.MustParseReference("prod.example/open/app:x").Context())
	if len(ids) != 1 || ids[0].ID != team {
		t.Errorf("identities %v", ids)
	}
}

func TestNoScopeCoversRefuses(t *testing.T) {
	dir := tree(t, map[string]string{"promotion-policy.yaml": "scopes:\n  - prefix: prod.example/a\n    requirements: [{insecureAcceptAnything: {}}]\n"})
	p, err := policy.Load(filepath.Join(dir, "promotion-policy.yaml"), dir)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate(name.MustParseReference("prod.example/b/x:1").Context(), evidence.Evidence{}, time.Now())
	if d.Allowed || d.Scope != "" {
		t.Errorf("decision %+v: want refused, no scope", d)
	}
}
