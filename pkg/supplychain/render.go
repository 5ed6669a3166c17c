package supplychain

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/imgpromoter/promoter/pkg/evidence"
)

// Known predicate types, named for reviewers.
var predicateNames = map[string]string{
	"https://slsa.dev/provenance/v1":                            "SLSA provenance v1",
	"https://slsa.dev/provenance/v0.2":                          "SLSA provenance v0.2",
	"https://spdx.dev/Document":                                 "SBOM (SPDX)",
	"https://spdx.dev/Document/v2.3":                            "SBOM (SPDX 2.3)",
	"https://cyclonedx.org/bom":                                 "SBOM (CycloneDX)",
	"https://cyclonedx.org/bom/v1.4":                            "SBOM (CycloneDX 1.4)",
	evidence.CosignVulnPredicate:                                "vulnerability scan (cosign)",
	evidence.InTotoVulnsPredicate:                               "vulnerability scan (in-toto)",
	evidence.TestResultPredicate:                                "test results",
	"https://cosign.sigstore.dev/attestation/v1":                "cosign custom",
	"https://in-toto.io/attestation/release/v0.1":               "release",
	"https://in-toto.io/attestation/scai/attribute-report/v0.2": "SCAI report",
}

// PredicateName is a reviewer's name for a predicate type (the type itself
// when unknown).
func PredicateName(t string) string {
	if n, ok := predicateNames[t]; ok {
		return n
	}
	return t
}

// SignatureStatus says in one line who signed the image: the identities
// whose signatures verified, else "unsigned", else the failures.
func SignatureStatus(ev *evidence.Evidence, policyInForce bool) string {
	if ev == nil {
		return "not inspected"
	}
	var ids []string
	for _, s := range ev.Signatures {
		if !slices.Contains(ids, s.Identity) {
			ids = append(ids, s.Identity)
		}
	}
	switch {
	case len(ids) > 0:
		return "verified: " + strings.Join(ids, ", ")
	case len(ev.Failures) > 0 && policyInForce:
		return fmt.Sprintf("failed: %d signature(s) or attestation(s) did not verify", len(ev.Failures))
	case len(ev.Failures) > 0:
		return fmt.Sprintf("not verified (no policy): %d signature(s) or attestation(s) attached", len(ev.Failures))
	default:
		return "unsigned"
	}
}

func attestationList(ev *evidence.Evidence) string {
	if ev == nil || len(ev.Attestations) == 0 {
		return "none"
	}
	var parts []string
	for _, a := range ev.Attestations {
		s := PredicateName(a.PredicateType)
		if a.Verified() {
			s += " (verified)"
		} else {
			s += " (unverified)"
		}
		if !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	if len(ev.SBOMs) > 0 {
		parts = append(parts, fmt.Sprintf("SBOM attached with cosign attach (%d, unsigned)", len(ev.SBOMs)))
	}
	return strings.Join(parts, "; ")
}

func vulnLine(v *evidence.VulnSummary) string {
	if v == nil {
		return ""
	}
	var counts []string
	for i := len(evidence.Severities) - 1; i >= 0; i-- {
		if n := v.Counts[evidence.Severities[i]]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, evidence.Severities[i]))
		}
	}
	if len(counts) == 0 {
		counts = []string{"no findings"}
	}
	s := strings.Join(counts, ", ")
	if v.Scanner != "" {
		s += "; scanner " + v.Scanner
	}
	if v.DatabaseDate != "" {
		s += "; database " + v.DatabaseDate
	}
	if !v.ScanFinished.IsZero() {
		s += "; scanned " + v.ScanFinished.UTC().Format("2006-01-02 15:04Z")
	}
	return s
}

func testLine(t *evidence.TestSummary) string {
	if t == nil {
		return ""
	}
	s := fmt.Sprintf("%s (%d passed, %d warned, %d failed)", t.Result, t.Passed, t.Warned, t.Failed)
	if t.URL != "" {
		s += " " + t.URL
	}
	return s
}

func counts(dp *DestinationPlan) map[Status]int {
	m := map[Status]int{}
	for _, a := range dp.Artifacts {
		m[a.Status]++
	}
	return m
}

func artifactSummary(dp *DestinationPlan) string {
	m := counts(dp)
	var parts []string
	for _, s := range []Status{Copy, Copied, Present, Refused, Skipped} {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[s], s))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func policyLine(dp *DestinationPlan) string {
	switch d := dp.Decision; {
	case d == nil:
		return "no policy: not verified"
	case d.Allowed && d.Unverified:
		return "accepted unverified (" + d.Scope + ": insecureAcceptAnything)"
	case d.Allowed:
		return "allowed (" + d.Scope + ")"
	default:
		scope := d.Scope
		if scope == "" {
			scope = "no scope"
		}
		return "refused (" + scope + "): " + strings.Join(d.Reasons, "; ")
	}
}

func md(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Markdown writes the supply-chain section of a plan or report for a pull
// request: per image, signatures, attestations, vulnerability and test
// summaries, and per destination the policy's decision and the artifacts.
func Markdown(w io.Writer, p *Plan) error {
	if p == nil {
		return nil
	}
	var b strings.Builder
	b.WriteString("#### Supply chain\n\n")
	if p.Policy == "" {
		b.WriteString("No policy: signatures and attestations are carried but **not verified**.\n\n")
	} else {
		fmt.Fprintf(&b, "Policy: `%s`\n\n", p.Policy)
	}
	b.WriteString("| image | digest | signature | attestations | vulnerabilities | tests |\n|---|---|---|---|---|---|\n")
	for _, ip := range p.Images {
		sig := SignatureStatus(ip.Evidence, p.Policy != "")
		if ip.Error != "" {
			sig = "error: " + ip.Error
		}
		vul, tst := "", ""
		if ip.Evidence != nil {
			vul, tst = vulnLine(ip.Evidence.Vulns), testLine(ip.Evidence.Tests)
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s | %s |\n", ip.Image, short(ip.Digest), md(sig), md(attestationList(ip.Evidence)), md(vul), md(tst))
	}
	b.WriteString("\n<details><summary>Per destination</summary>\n\n| image | destination | policy | artifacts |\n|---|---|---|---|\n")
	for _, ip := range p.Images {
		for _, dp := range ip.Destinations {
			fmt.Fprintf(&b, "| `%s@%s` | `%s` | %s | %s |\n", ip.Image, short(ip.Digest), dp.Repository, md(policyLine(dp)), md(artifactSummary(dp)))
		}
	}
	b.WriteString("\n</details>\n")
	for _, ip := range p.Images {
		for _, dp := range ip.Destinations {
			for _, a := range dp.Artifacts {
				if a.Status == Refused {
					fmt.Fprintf(&b, "- :x: `%s` artifact `%s` (%s) refused: %s\n", dp.Repository, short(a.Digest), md(a.ArtifactType), md(a.Reason))
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Text writes the supply-chain section for a terminal.
func Text(w io.Writer, p *Plan) error {
	if p == nil {
		return nil
	}
	var b strings.Builder
	b.WriteString("\nSupply chain")
	if p.Policy == "" {
		b.WriteString(" (no policy: nothing verified):\n")
	} else {
		fmt.Fprintf(&b, " (policy %s):\n", p.Policy)
	}
	for _, ip := range p.Images {
		fmt.Fprintf(&b, "  %s@%s\n", ip.Source, ip.Digest)
		if ip.Error != "" {
			fmt.Fprintf(&b, "    error: %s\n", ip.Error)
		}
		fmt.Fprintf(&b, "    signature: %s\n", SignatureStatus(ip.Evidence, p.Policy != ""))
		fmt.Fprintf(&b, "    attestations: %s\n", attestationList(ip.Evidence))
		if ip.Evidence != nil {
			if v := vulnLine(ip.Evidence.Vulns); v != "" {
				fmt.Fprintf(&b, "    vulnerabilities: %s\n", v)
			}
			if t := testLine(ip.Evidence.Tests); t != "" {
				fmt.Fprintf(&b, "    tests: %s\n", t)
			}
		}
		for _, dp := range ip.Destinations {
			fmt.Fprintf(&b, "    -> %s: %s; artifacts: %s\n", dp.Repository, policyLine(dp), artifactSummary(dp))
			if dp.Err != "" {
				fmt.Fprintf(&b, "       error: %s\n", dp.Err)
			}
			for _, a := range dp.Artifacts {
				if a.Status == Refused {
					fmt.Fprintf(&b, "       refused %s (%s): %s\n", a.Digest, a.ArtifactType, a.Reason)
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func short(d string) string {
	if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
