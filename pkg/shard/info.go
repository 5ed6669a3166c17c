package shard

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/imgpromoter/promoter/pkg/edge"
)

// Info describes one shard in its report (JSON field "shard"): which plan
// it belongs to, which shard it is, and which units it planned.
type Info struct {
	// PlanID is the plan every shard of one promotion shares (see PlanID).
	PlanID string `json:"planId"`
	// Index and Count: this is shard Index of Count, 0-based.
	Index int `json:"index"`
	Count int `json:"count"`
	// Units are the names of this shard's units, sorted.
	Units []string `json:"units"`
	// Edges is the number of edges of this shard's units.
	Edges int `json:"edges"`
	// TotalUnits and TotalEdges are the whole plan's.
	TotalUnits int `json:"totalUnits"`
	TotalEdges int `json:"totalEdges"`
	// UnitsDigest is UnitsDigest of every unit of the plan.
	UnitsDigest string `json:"unitsDigest"`
	// Merged is set in a report combined by `promoter report merge`: it
	// then covers every unit (Units lists them all).
	Merged bool `json:"merged,omitempty"`
}

// PlanID identifies a plan across processes: "sha256:" and the hex SHA-256
// of the canonical form of what the manifests ask for (every valid group:
// source digest, sorted tags, sorted destinations, in sorted order), the
// options that change the plan ("name=value", order does not matter) and
// the promoter's version. Formatting, comments and file layout of the
// manifests do not change it; a different digest, tag, destination,
// option or promoter version does.
func PlanID(groups []*edge.Group, options []string, version string) string {
	lines := make([]string, 0, len(groups))
	for _, g := range groups {
		var b strings.Builder
		b.WriteString(g.Source.Context().Name())
		b.WriteByte('@')
		b.WriteString(g.Digest.String())
		tags := make([]string, len(g.Tags))
		for i, t := range g.Tags {
			tags[i] = t.Name
		}
		slices.Sort(tags)
		b.WriteString(" tags=")
		b.WriteString(strings.Join(tags, ","))
		dests := make([]string, len(g.Dests))
		for i, d := range g.Dests {
			dests[i] = d.Name()
		}
		slices.Sort(dests)
		b.WriteString(" dests=")
		b.WriteString(strings.Join(dests, ","))
		lines = append(lines, b.String())
	}
	slices.Sort(lines)
	opts := slices.Clone(options)
	slices.Sort(opts)
	h := sha256.New()
	fmt.Fprintf(h, "promoter plan id v1\nversion %s\n", version)
	for _, o := range opts {
		fmt.Fprintf(h, "option %s\n", o)
	}
	for _, l := range lines {
		fmt.Fprintf(h, "group %s\n", l)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// SetError says why shard reports do not make one whole promotion; every
// problem found is listed.
type SetError struct {
	Problems []string
}

func (e *SetError) Error() string {
	return "the shard reports are not one whole promotion:\n  " + strings.Join(e.Problems, "\n  ")
}

// Is makes errors.Is(err, ErrUsage) true: an inconsistent set is a usage
// error (exit 2).
func (e *SetError) Is(target error) bool { return target == ErrUsage }

// CheckSet checks that infos (one per report, named by names for messages;
// nil for a report without shard information) are the shards of one plan:
// one plan id and count, every index exactly once, units disjoint and
// together the plan's.
func CheckSet(names []string, infos []*Info) error {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	var ref *Info
	refName := ""
	for i, in := range infos {
		if in == nil {
			bad("%s: not a shard report (no shard section: run plan or run with --shard-index/--shard-count)", names[i])
			continue
		}
		if ref == nil {
			ref, refName = in, names[i]
			continue
		}
		if in.PlanID != ref.PlanID {
			bad("%s: plan id %s, but %s has %s (different manifests, options or promoter version)", names[i], in.PlanID, refName, ref.PlanID)
		}
		if in.Count != ref.Count {
			bad("%s: shard count %d, but %s has %d", names[i], in.Count, refName, ref.Count)
		}
		if in.UnitsDigest != ref.UnitsDigest || in.TotalUnits != ref.TotalUnits {
			bad("%s: plan of %d units (%s), but %s has %d (%s)", names[i], in.TotalUnits, in.UnitsDigest, refName, ref.TotalUnits, ref.UnitsDigest)
		}
	}
	if ref == nil {
		if len(probs) == 0 {
			bad("no reports")
		}
		return &SetError{Problems: probs}
	}
	if len(probs) > 0 {
		return &SetError{Problems: probs}
	}
	byIndex := map[int][]string{}
	owner := map[string]string{}
	var all []string
	for i, in := range infos {
		if in.Index < 0 || in.Index >= in.Count {
			bad("%s: shard index %d out of range for count %d", names[i], in.Index, in.Count)
		}
		byIndex[in.Index] = append(byIndex[in.Index], names[i])
		for _, u := range in.Units {
			if o, ok := owner[u]; ok {
				bad("unit %s is in %s and in %s", u, o, names[i])
				continue
			}
			owner[u] = names[i]
			all = append(all, u)
		}
	}
	for idx := 0; idx < ref.Count; idx++ {
		switch n := byIndex[idx]; {
		case len(n) == 0:
			bad("shard index %d of %d is missing", idx, ref.Count)
		case len(n) > 1:
			bad("shard index %d appears %d times: %s", idx, len(n), strings.Join(n, ", "))
		}
	}
	if len(probs) == 0 && (len(all) != ref.TotalUnits || UnitsDigest(all) != ref.UnitsDigest) {
		bad("the reports' %d units are not the plan's %d units (%s)", len(all), ref.TotalUnits, ref.UnitsDigest)
	}
	if len(probs) > 0 {
		return &SetError{Problems: probs}
	}
	return nil
}
