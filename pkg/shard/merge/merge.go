// Package merge combines the JSON reports of the shards of one promotion
// (plan or run reports, see package shard) into the report one unsharded
// process would have written, after checking that they are exactly the
// shards of one plan.
package merge

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/shard"
)

// Kind is what a report is.
type Kind string

// Kinds of reports.
const (
	KindPlan  Kind = "plan"  // promoter plan -o json
	KindRun   Kind = "run"   // promoter run --confirm -o json
	KindDrift Kind = "drift" // promoter drift -o json
)

// Input is one shard's report as read from a file.
type Input struct {
	// Name names the report in messages (its file name).
	Name string
	// Data is the JSON report.
	Data []byte
}

// Result is the combined report: Plan, Run or Drift, after Kind.
type Result struct {
	Kind  Kind
	Plan  *plan.Document
	Run   *promote.Report
	Drift *drift.Report
	Shard shard.Info
}

// Failed reports whether the combined report fails (exit status 1).
func (r *Result) Failed() bool {
	switch {
	case r.Run != nil:
		return r.Run.Failed()
	case r.Drift != nil:
		return len(r.Drift.Findings) > 0
	}
	return r.Plan.Failed()
}

// JSON is the combined report's JSON form: the report with its "shard"
// section (Merged set, every unit listed).
func (r *Result) JSON() any {
	if r.Drift != nil {
		return struct {
			*drift.Report
			Shard *shard.Info `json:"shard"`
		}{r.Drift, &r.Shard}
	}
	if r.Run != nil {
		return struct {
			*promote.Report
			Shard *shard.Info `json:"shard"`
		}{r.Run, &r.Shard}
	}
	return struct {
		*plan.Document
		Shard *shard.Info `json:"shard"`
	}{r.Plan, &r.Shard}
}

// envelope is what every report has to say which kind it is and which
// shard.
type envelope struct {
	SchemaVersion *int            `json:"schemaVersion"`
	Totals        json.RawMessage `json:"totals"`
	Counts        json.RawMessage `json:"counts"`
	Findings      json.RawMessage `json:"findings"`
	Shard         *shard.Info     `json:"shard"`
}

// Merge checks that inputs are the shards of one plan (see
// shard.CheckSet; any inconsistency is a *shard.SetError, a usage error)
// and combines them. Every input must be the same kind of report.
func Merge(inputs []Input) (*Result, error) {
	names := make([]string, len(inputs))
	infos := make([]*shard.Info, len(inputs))
	kinds := make([]Kind, len(inputs))
	var probs []string
	for i, in := range inputs {
		names[i] = in.Name
		var env envelope
		if err := json.Unmarshal(in.Data, &env); err != nil {
			probs = append(probs, fmt.Sprintf("%s: not a JSON report: %v", in.Name, err))
			continue
		}
		switch {
		case env.SchemaVersion == nil:
			probs = append(probs, fmt.Sprintf("%s: not a promoter report (no schemaVersion)", in.Name))
		case *env.SchemaVersion != plan.SchemaVersion:
			probs = append(probs, fmt.Sprintf("%s: schema version %d, want %d", in.Name, *env.SchemaVersion, plan.SchemaVersion))
		case env.Findings != nil:
			kinds[i] = KindDrift
		case env.Totals != nil:
			kinds[i] = KindRun
		case env.Counts != nil:
			kinds[i] = KindPlan
		default:
			probs = append(probs, fmt.Sprintf("%s: not a plan, run or drift report", in.Name))
		}
		if env.Shard != nil && env.Shard.Merged {
			probs = append(probs, fmt.Sprintf("%s: already a merged report", in.Name))
		}
		infos[i] = env.Shard
	}
	if len(probs) > 0 {
		return nil, &shard.SetError{Problems: probs}
	}
	for i := range kinds {
		if kinds[i] != kinds[0] {
			probs = append(probs, fmt.Sprintf("%s is a %s report, but %s is a %s report", names[i], kinds[i], names[0], kinds[0]))
		}
	}
	if len(probs) > 0 {
		return nil, &shard.SetError{Problems: probs}
	}
	if err := shard.CheckSet(names, infos); err != nil {
		return nil, err
	}
	res := &Result{Kind: kinds[0], Shard: mergedInfo(infos)}
	var err error
	switch res.Kind {
	case KindRun:
		res.Run, err = mergeRuns(inputs)
	case KindDrift:
		res.Drift, err = mergeDrifts(inputs)
	default:
		res.Plan, err = mergePlans(inputs)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// mergedInfo describes the whole: every unit, all edges.
func mergedInfo(infos []*shard.Info) shard.Info {
	out := shard.Info{PlanID: infos[0].PlanID, Count: infos[0].Count, TotalUnits: infos[0].TotalUnits, TotalEdges: infos[0].TotalEdges,
		UnitsDigest: infos[0].UnitsDigest, Merged: true, Units: []string{}}
	for _, in := range infos {
		out.Units = append(out.Units, in.Units...)
		out.Edges += in.Edges
	}
	slices.Sort(out.Units)
	return out
}

// decode reads a report strictly enough to notice a different schema.
func decode[T any](in Input) (*T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(in.Data))
	if err := dec.Decode(&v); err != nil {
		return nil, &shard.SetError{Problems: []string{fmt.Sprintf("%s: %v", in.Name, err)}}
	}
	return &v, nil
}

// mergePlans adds the shards' counts and concatenates their actions. The
// validation statistics and problems are about the whole manifest set,
// which every shard reads: they are taken once.
func mergePlans(inputs []Input) (*plan.Document, error) {
	out := &plan.Document{SchemaVersion: plan.SchemaVersion, Counts: plan.Counts{}, Actions: []plan.Action{}, Destinations: []plan.DestinationSummary{}}
	byReg := map[string]plan.Counts{}
	var problems [][]diag.Problem
	for i, in := range inputs {
		p, err := decode[plan.Document](in)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			out.Stats = p.Stats
		}
		for c, n := range p.Counts {
			out.Counts[c] += n
		}
		for _, d := range p.Destinations {
			if byReg[d.Registry] == nil {
				byReg[d.Registry] = plan.Counts{}
			}
			for c, n := range d.Counts {
				byReg[d.Registry][c] += n
			}
		}
		out.Actions = append(out.Actions, p.Actions...)
		out.Images = append(out.Images, p.Images...)
		problems = append(problems, p.Problems)
	}
	for _, reg := range slices.Sorted(maps.Keys(byReg)) {
		out.Destinations = append(out.Destinations, plan.DestinationSummary{Registry: reg, Counts: byReg[reg]})
	}
	plan.SortActions(out.Actions)
	if out.Images != nil {
		// The order Summaries gives: refused first, then project, image, digest.
		slices.SortFunc(out.Images, func(a, b plan.ImageSummary) int {
			return cmp.Or(cmp.Compare(refused(b.Counts), refused(a.Counts)), cmp.Compare(a.Project, b.Project), cmp.Compare(a.Image, b.Image), cmp.Compare(a.Digest, b.Digest))
		})
	}
	out.Problems = unionProblems(problems)
	return out, nil
}

func refused(c plan.Counts) int {
	n := 0
	for cl, v := range c {
		if cl.Refused() {
			n += v
		}
	}
	return n
}

// mergeRuns adds the shards' totals and traffic and concatenates their
// results. The duration is the longest shard's: shards run side by side.
func mergeRuns(inputs []Input) (*promote.Report, error) {
	out := &promote.Report{SchemaVersion: plan.SchemaVersion, Results: []promote.Result{}}
	hosts := map[string]access.HostStats{}
	var problems [][]diag.Problem
	for _, in := range inputs {
		r, err := decode[promote.Report](in)
		if err != nil {
			return nil, err
		}
		out.Totals.Promoted += r.Totals.Promoted
		out.Totals.Present += r.Totals.Present
		out.Totals.Refused += r.Totals.Refused
		out.Totals.Failed += r.Totals.Failed
		out.Images += r.Images
		out.Duration = max(out.Duration, r.Duration)
		e := &out.Engine
		e.ManifestsRead += r.Engine.ManifestsRead
		e.SourceBlobReads += r.Engine.SourceBlobReads
		e.SourceBytes += r.Engine.SourceBytes
		e.Uploads += r.Engine.Uploads
		e.Mounts += r.Engine.Mounts
		e.UploadRetries += r.Engine.UploadRetries
		e.ManifestsPut += r.Engine.ManifestsPut
		e.TagsPut += r.Engine.TagsPut
		for _, h := range r.Hosts {
			s := hosts[h.Host]
			s.Host = h.Host
			s.Requests += h.Requests
			s.BlobReads += h.BlobReads
			s.BytesRead += h.BytesRead
			s.BlobUploads += h.BlobUploads
			s.BlobMounts += h.BlobMounts
			s.BytesUploaded += h.BytesUploaded
			s.ManifestPuts += h.ManifestPuts
			hosts[h.Host] = s
		}
		out.Results = append(out.Results, r.Results...)
		problems = append(problems, r.Problems)
	}
	hs := make([]access.HostStats, 0, len(hosts))
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		hs = append(hs, hosts[h])
	}
	out.AddTraffic(hs)
	slices.SortFunc(out.Results, func(a, b promote.Result) int {
		return cmp.Or(cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.Tag, b.Tag), cmp.Compare(a.Digest, b.Digest))
	})
	out.Problems = unionProblems(problems)
	return out, nil
}

// mergeDrifts concatenates the shards' findings (each shard checked its own
// repositories; the first also the registries' catalogs) and their notes.
func mergeDrifts(inputs []Input) (*drift.Report, error) {
	out := &drift.Report{SchemaVersion: plan.SchemaVersion, Findings: []drift.Finding{}, Notes: []string{}}
	prefixes, notes := map[string]bool{}, map[string]bool{}
	for _, in := range inputs {
		r, err := decode[drift.Report](in)
		if err != nil {
			return nil, err
		}
		out.Findings = append(out.Findings, r.Findings...)
		for _, p := range r.Prefixes {
			if !prefixes[p] {
				prefixes[p] = true
				out.Prefixes = append(out.Prefixes, p)
			}
		}
		for _, n := range r.Notes {
			if !notes[n] {
				notes[n] = true
				out.Notes = append(out.Notes, n)
			}
		}
	}
	drift.SortFindings(out.Findings)
	return out, nil
}

// unionProblems returns each distinct problem once, in the first report's
// order, then any the others add.
func unionProblems(lists [][]diag.Problem) []diag.Problem {
	out := []diag.Problem{}
	seen := map[string]bool{}
	for _, l := range lists {
		for _, p := range l {
			k := p.String()
			if !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
		}
	}
	return out
}
