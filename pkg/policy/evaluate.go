package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgpromoter/promoter/pkg/evidence"
)

// Decision is the policy's answer for one image and destination.
type Decision struct {
	// Scope is the scope that decided ("default", a prefix), or "" when no
	// scope covers the destination.
	Scope   string   `json:"scope"`
	Allowed bool     `json:"allowed"`
	Reasons []string `json:"reasons,omitempty"` // why it is refused
	// Unverified is set when the scope accepts anything without checking.
	Unverified bool `json:"unverified,omitempty"`
}

// Evaluate decides whether the image the evidence is about may enter dst.
// now is the time scan ages are measured at.
func (p *Policy) Evaluate(dst name.Repository, ev evidence.Evidence, now time.Time) Decision {
	s := p.For(dst)
	if s == nil {
		return Decision{Reasons: []string{fmt.Sprintf("no policy scope covers %s (add a scope or a default)", dst)}}
	}
	d := Decision{Scope: s.Name()}
	var ids []string
	for _, id := range s.Identities() {
		ids = append(ids, id.ID)
	}
	for _, r := range s.Requirements {
		switch r.Kind {
		case InsecureAcceptAnything:
			d.Unverified = true
		case Reject:
			d.Reasons = append(d.Reasons, fmt.Sprintf("policy scope %s rejects every image (%s)", s.Name(), r.Pos))
		case SignedBy, KeylessSigned:
			if !ev.SignedBy(r.Identity.ID) {
				d.Reasons = append(d.Reasons, "not signed by "+r.Identity.ID+failureNote(ev))
			}
		case Attestation:
			if !ev.AttestedBy(r.PredicateType, ids...) {
				d.Reasons = append(d.Reasons, "no verified attestation of type "+r.PredicateType)
			}
		}
	}
	g := s.Gates
	for _, pt := range g.RequiredPredicateTypes {
		if !ev.AttestedBy(pt, ids...) {
			d.Reasons = append(d.Reasons, "gate: no verified attestation of type "+pt)
		}
	}
	if g.MaxSeverity != "" || g.MaxScanAge > 0 {
		v := ev.Vulns
		switch {
		case v == nil || !slices.Contains(ids, v.Identity):
			d.Reasons = append(d.Reasons, "gate: no vulnerability scan attestation verified for the scope's identities")
		default:
			if g.MaxSeverity != "" {
				if h := v.Highest(); evidence.SeverityRank(h) > evidence.SeverityRank(g.MaxSeverity) {
					d.Reasons = append(d.Reasons, fmt.Sprintf("gate: %d %s vulnerabilities; the highest severity allowed is %s", v.Counts[h], h, g.MaxSeverity))
				}
			}
			if g.MaxScanAge > 0 {
				switch {
				case v.ScanFinished.IsZero():
					d.Reasons = append(d.Reasons, "gate: the scan does not say when it finished")
				case now.Sub(v.ScanFinished) > g.MaxScanAge:
					d.Reasons = append(d.Reasons, fmt.Sprintf("gate: the scan finished %s ago, more than the %s allowed", now.Sub(v.ScanFinished).Round(time.Minute), g.MaxScanAge))
				}
			}
		}
	}
	d.Allowed = len(d.Reasons) == 0
	return d
}

// failureNote says why signatures present did not verify, briefly.
func failureNote(ev evidence.Evidence) string {
	switch n := len(ev.Failures); {
	case n == 0 && len(ev.Signatures) == 0:
		return " (unsigned)"
	case n == 0:
		return ""
	default:
		return fmt.Sprintf(" (%d signature(s) or attestation(s) did not verify)", n)
	}
}
