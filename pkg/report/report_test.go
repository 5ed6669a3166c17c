package report_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/report"
	"github.com/imgpromoter/promoter/pkg/validate"
)

const (
	dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func samplePlan() *plan.Plan {
	pos := func(line int) diag.Position {
		return diag.Position{File: "images/p/images.yaml", Line: line, Column: 5}
	}
	actions := []plan.Action{
		{Class: plan.Conflict, Image: "app", Source: "stage.example/s/app", Destination: "prod.example/p/app", Digest: dB, Tag: "1.0", Existing: dA, Reason: "tag 1.0 already points at " + dA + "; a published tag never moves", Position: pos(4)},
		{Class: plan.Copy, Image: "app", Source: "stage.example/s/app", Destination: "prod.example/p/app", Digest: dB, Tag: "2.0", Position: pos(5)},
		{Class: plan.TagOnly, Image: "app", Source: "stage.example/s/app", Destination: "mirror.example/m/app", Digest: dA, Tag: "stable", Position: pos(6)},
		{Class: plan.MissingSource, Image: "gone", Source: "stage.example/s/gone", Destination: "prod.example/p/gone", Digest: dA, Reason: "stage.example/s/gone@" + dA + " is not in the source registry", Position: pos(9)},
	}
	plan.SortActions(actions)
	for i := range actions {
		actions[i].Project = "team-a"
	}
	p := &plan.Plan{
		SchemaVersion: plan.SchemaVersion,
		Stats:         validate.Stats{Manifests: 1, Images: 2, Digests: 2, Tags: 3, Edges: 6, ValidEdges: 5, Errors: 1},
		Counts:        plan.Counts{plan.Copy: 1, plan.TagOnly: 1, plan.Promoted: 1, plan.Conflict: 1, plan.MissingSource: 1},
		Destinations: []plan.DestinationSummary{
			{Registry: "mirror.example/m", Counts: plan.Counts{plan.TagOnly: 1, plan.Promoted: 1}},
			{Registry: "prod.example/p", Counts: plan.Counts{plan.Copy: 1, plan.Conflict: 1, plan.MissingSource: 1}},
		},
		Actions:  actions,
		Problems: []diag.Problem{{Pos: pos(12), Severity: diag.SeverityError, Code: diag.CodeDigest, Entry: "image bad", Message: `invalid digest "sha256:12" (2 hex digits, want 64)`}},
	}
	p.Images = plan.Summaries(p)
	for i := range p.Images {
		if p.Images[i].Digest == dB {
			p.Images[i].Platforms, p.Images[i].Size = []string{"linux/amd64", "linux/arm64"}, 3<<20+512
		}
	}
	return p
}

func sampleRun() *promote.Report {
	p := samplePlan()
	r := &promote.Report{SchemaVersion: plan.SchemaVersion, Totals: promote.Totals{Promoted: 2, Present: 1, Refused: 2}, Images: 1, Duration: 1500 * time.Millisecond, Problems: p.Problems}
	for _, a := range p.Actions {
		res := promote.Result{Action: a, Status: promote.StatusPromoted}
		if a.Class.Refused() {
			res.Status, res.Error = promote.StatusRefused, a.Reason
		}
		r.Results = append(r.Results, res)
	}
	r.AddTraffic([]access.HostStats{{Host: "prod.example", Requests: 9, BlobUploads: 3, BytesUploaded: 3 << 20, ManifestPuts: 2}, {Host: "stage.example", Requests: 5, BlobReads: 3, BytesRead: 3 << 20}})
	return r
}

func TestRenderers(t *testing.T) {
	for _, f := range []report.Format{report.Text, report.JSON, report.Markdown} {
		t.Run(string(f), func(t *testing.T) {
			var b bytes.Buffer
			if err := report.Plan(&b, f, samplePlan()); err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, "plan."+string(f), b.Bytes())
			b.Reset()
			if err := report.Run(&b, f, sampleRun()); err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, "run."+string(f), b.Bytes())
		})
	}
}

func TestParseFormat(t *testing.T) {
	if f, err := report.ParseFormat("json", report.Text, report.JSON); err != nil || f != report.JSON {
		t.Errorf("json: %v %v", f, err)
	}
	if _, err := report.ParseFormat("markdown", report.Text, report.JSON); err == nil {
		t.Error("markdown accepted where not allowed")
	}
}
