package evidence

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Severities in increasing order. Unknown sorts lowest.
var Severities = []string{"unknown", "negligible", "low", "medium", "high", "critical"}

// SeverityRank is a severity's position in Severities (-1: not one).
func SeverityRank(s string) int { return slices.Index(Severities, strings.ToLower(s)) }

// VulnSummary is read from a verified vulnerability scan attestation.
type VulnSummary struct {
	PredicateType string         `json:"predicateType"`
	Identity      string         `json:"identity"`
	Scanner       string         `json:"scanner,omitempty"` // uri and version
	Database      string         `json:"database,omitempty"`
	DatabaseDate  string         `json:"databaseDate,omitempty"`
	ScanFinished  time.Time      `json:"scanFinished,omitzero"`
	Counts        map[string]int `json:"counts"` // severity -> findings
}

// Highest is the highest severity found ("" when none).
func (v VulnSummary) Highest() string {
	best := ""
	for s, n := range v.Counts {
		if n > 0 && SeverityRank(s) > SeverityRank(best) {
			best = s
		}
	}
	return best
}

// TestSummary is read from a verified in-toto test-result attestation.
type TestSummary struct {
	Identity string `json:"identity"`
	Result   string `json:"result"` // PASSED, WARNED, FAILED
	Passed   int    `json:"passed"`
	Warned   int    `json:"warned"`
	Failed   int    `json:"failed"`
	URL      string `json:"url,omitempty"`
}

// summarise fills Vulns and Tests from the newest verified attestations of
// those types (in attachment order, the last one wins).
func (ev *Evidence) summarise() {
	for _, a := range ev.Attestations {
		if !a.Verified() {
			continue
		}
		switch a.PredicateType {
		case CosignVulnPredicate, InTotoVulnsPredicate:
			if v, ok := vulnSummary(a); ok {
				ev.Vulns = &v
			}
		case TestResultPredicate:
			var p struct {
				Result      string   `json:"result"`
				URL         string   `json:"url"`
				PassedTests []string `json:"passedTests"`
				WarnedTests []string `json:"warnedTests"`
				FailedTests []string `json:"failedTests"`
			}
			if json.Unmarshal(a.Predicate, &p) == nil {
				ev.Tests = &TestSummary{Identity: a.Identity, Result: p.Result, URL: p.URL,
					Passed: len(p.PassedTests), Warned: len(p.WarnedTests), Failed: len(p.FailedTests)}
			}
		}
	}
}

// vulnPredicate covers cosign's vuln/v1 and in-toto's vulns/v0.1: both
// have a scanner with a database and a result, and scan metadata.
type vulnPredicate struct {
	Scanner struct {
		URI     string `json:"uri"`
		Version string `json:"version"`
		DB      struct {
			URI        string `json:"uri"`
			Version    string `json:"version"`
			LastUpdate string `json:"lastUpdate"`
		} `json:"db"`
		Result json.RawMessage `json:"result"`
	} `json:"scanner"`
	Metadata struct {
		ScanStartedOn  time.Time `json:"scanStartedOn"`
		ScanFinishedOn time.Time `json:"scanFinishedOn"`
	} `json:"metadata"`
}

func vulnSummary(a Attestation) (VulnSummary, bool) {
	var p vulnPredicate
	if json.Unmarshal(a.Predicate, &p) != nil {
		return VulnSummary{}, false
	}
	v := VulnSummary{
		PredicateType: a.PredicateType, Identity: a.Identity,
		Scanner:      strings.TrimSpace(p.Scanner.URI + " " + p.Scanner.Version),
		Database:     strings.TrimSpace(p.Scanner.DB.URI + " " + p.Scanner.DB.Version),
		DatabaseDate: p.Scanner.DB.LastUpdate,
		ScanFinished: p.Metadata.ScanFinishedOn,
		Counts:       map[string]int{},
	}
	if v.DatabaseDate == "" {
		v.DatabaseDate = p.Scanner.DB.Version
	}
	var result any
	_ = json.Unmarshal(p.Scanner.Result, &result)
	countSeverities(result, v.Counts)
	return v, true
}

// countSeverities walks a scanner's result and counts each finding (an
// object with a severity) once. It understands in-toto vulns results
// ([{id, severity: [{method, score}]}]) and reports such as Trivy's and
// Grype's whose findings carry a "Severity"/"severity" string.
func countSeverities(node any, counts map[string]int) {
	switch n := node.(type) {
	case []any:
		for _, e := range n {
			countSeverities(e, counts)
		}
	case map[string]any:
		for _, key := range []string{"severity", "Severity"} {
			switch s := n[key].(type) {
			case string:
				counts[normalise(s)]++
				return
			case []any:
				if sev := scoreOf(s); sev != "" {
					counts[sev]++
					return
				}
			}
		}
		keys := make([]string, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			countSeverities(n[k], counts)
		}
	}
}

// scoreOf takes the first score of an in-toto severity list that names a
// severity.
func scoreOf(list []any) string {
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		if s, ok := m["score"].(string); ok && SeverityRank(s) >= 0 {
			return strings.ToLower(s)
		}
	}
	return "unknown"
}

func normalise(s string) string {
	s = strings.ToLower(s)
	if SeverityRank(s) < 0 {
		return "unknown"
	}
	return s
}
