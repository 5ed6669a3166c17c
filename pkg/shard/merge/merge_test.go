package merge_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/shard"
	"github.com/imgpromoter/promoter/pkg/shard/merge"
)

var problem = diag.Problem{Pos: diag.Position{File: "images.yaml", Line: 3}, Severity: diag.SeverityWarning, Code: "x", Message: "bad"}

func info(idx int, units ...string) *shard.Info {
	return &shard.Info{PlanID: "sha256:p", Index: idx, Count: 2, Units: units, Edges: len(units), TotalUnits: 3, TotalEdges: 3,
		UnitsDigest: shard.UnitsDigest([]string{"a", "b", "c"})}
}

func runReport(t *testing.T, in *shard.Info, results ...promote.Result) []byte {
	t.Helper()
	r := &promote.Report{SchemaVersion: plan.SchemaVersion, Results: results, Problems: []diag.Problem{problem},
		Duration: time.Duration(len(results)) * time.Second, Hosts: []access.HostStats{{Host: "prod", Requests: 10, BlobUploads: 2}}}
	for _, res := range results {
		switch res.Status {
		case promote.StatusPromoted:
			r.Totals.Promoted++
		case promote.StatusFailed:
			r.Totals.Failed++
		}
	}
	r.Totals.Present = 5
	data, err := json.Marshal(struct {
		*promote.Report
		Shard *shard.Info `json:"shard,omitempty"`
	}{r, in})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func result(dest, tag string, st promote.Status) promote.Result {
	return promote.Result{Action: plan.Action{Class: plan.Copy, Destination: dest, Tag: tag, Digest: "sha256:d"}, Status: st}
}

func TestMergeRuns(t *testing.T) {
	inputs := []merge.Input{
		{Name: "1.json", Data: runReport(t, info(1, "b"), result("prod/b", "v1", promote.StatusPromoted))},
		{Name: "0.json", Data: runReport(t, info(0, "a", "c"), result("prod/c", "v1", promote.StatusPromoted), result("prod/a", "v2", promote.StatusPromoted))},
	}
	res, err := merge.Merge(inputs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != merge.KindRun || res.Failed() {
		t.Fatalf("kind %s, failed %v", res.Kind, res.Failed())
	}
	r := res.Run
	if want := (promote.Totals{Promoted: 3, Present: 10}); r.Totals != want {
		t.Errorf("totals %+v, want %+v", r.Totals, want)
	}
	var dests []string
	for _, x := range r.Results {
		dests = append(dests, x.Destination)
	}
	if diff := cmp.Diff([]string{"prod/a", "prod/b", "prod/c"}, dests); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if r.Duration != 2*time.Second || r.BlobUploads != 4 || len(r.Hosts) != 1 || r.Hosts[0].Requests != 20 {
		t.Errorf("duration %v, uploads %d, hosts %+v", r.Duration, r.BlobUploads, r.Hosts)
	}
	if len(r.Problems) != 1 {
		t.Errorf("problems %v: want the one problem once", r.Problems)
	}
	if !res.Shard.Merged || !cmp.Equal(res.Shard.Units, []string{"a", "b", "c"}) || res.Shard.Edges != 3 {
		t.Errorf("merged shard info %+v", res.Shard)
	}

	// A failed edge in one shard fails the whole.
	inputs[0].Data = runReport(t, info(1, "b"), result("prod/b", "v1", promote.StatusFailed))
	res, err = merge.Merge(inputs)
	if err != nil || !res.Failed() {
		t.Fatalf("failed shard: merged failed=%v, err %v", res != nil && res.Failed(), err)
	}

	// A merged report cannot be merged again.
	data, err := json.Marshal(res.JSON())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := merge.Merge([]merge.Input{{Name: "merged.json", Data: data}}); err == nil || !strings.Contains(err.Error(), "already a merged report") {
		t.Errorf("merging a merged report: %v", err)
	}
}

func TestMergePlans(t *testing.T) {
	planJSON := func(in *shard.Info, actions ...plan.Action) []byte {
		p := &plan.Document{SchemaVersion: plan.SchemaVersion, Counts: plan.Counts{plan.Promoted: 4}, Actions: actions, Problems: []diag.Problem{}}
		for _, a := range actions {
			p.Counts[a.Class]++
		}
		p.Destinations = []plan.DestinationSummary{{Registry: "prod", Counts: p.Counts}}
		data, err := json.Marshal(struct {
			*plan.Document
			Shard *shard.Info `json:"shard"`
		}{p, in})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	res, err := merge.Merge([]merge.Input{
		{Name: "0", Data: planJSON(info(0, "a", "c"), plan.Action{Class: plan.Copy, Destination: "prod/c", Tag: "v1"})},
		{Name: "1", Data: planJSON(info(1, "b"), plan.Action{Class: plan.Conflict, Destination: "prod/b", Tag: "v1"})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != merge.KindPlan || !res.Failed() {
		t.Fatalf("kind %s, failed %v: want a failing plan (a conflict)", res.Kind, res.Failed())
	}
	want := plan.Counts{plan.Promoted: 8, plan.Copy: 1, plan.Conflict: 1}
	if diff := cmp.Diff(want, res.Plan.Counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]plan.DestinationSummary{{Registry: "prod", Counts: want}}, res.Plan.Destinations); diff != "" {
		t.Errorf("destinations (-want +got):\n%s", diff)
	}
	if len(res.Plan.Actions) != 2 || res.Plan.Actions[0].Destination != "prod/b" {
		t.Errorf("actions %+v", res.Plan.Actions)
	}
}

func TestMergeRejects(t *testing.T) {
	run0 := runReport(t, info(0, "a", "c"))
	run1 := runReport(t, info(1, "b"))
	foreign := info(1, "b")
	foreign.PlanID = "sha256:q"
	tests := []struct {
		name   string
		inputs []merge.Input
		want   string
	}{
		{"missing", []merge.Input{{"0", run0}}, "shard index 1 of 2 is missing"},
		{"duplicated", []merge.Input{{"0", run0}, {"1", run1}, {"1b", run1}}, "shard index 1 appears 2 times"},
		{"foreign", []merge.Input{{"0", run0}, {"f", runReport(t, foreign)}}, "f: plan id sha256:q"},
		{"unsharded", []merge.Input{{"0", run0}, {"u", runReport(t, nil)}}, "u: not a shard report"},
		{"not json", []merge.Input{{"0", run0}, {"x", []byte("plan: yes")}}, "x: not a JSON report"},
		{"mixed kinds", []merge.Input{{"0", run0}, {"p", []byte(`{"schemaVersion":1,"counts":{},"shard":{}}`)}}, "p is a plan report, but 0 is a run report"},
		{"other schema", []merge.Input{{"0", run0}, {"s", []byte(`{"schemaVersion":99,"totals":{}}`)}}, "s: schema version 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := merge.Merge(tt.inputs)
			if !errors.Is(err, shard.ErrUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v: want a usage error saying %q", err, tt.want)
			}
		})
	}
}
