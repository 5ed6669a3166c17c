package report_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/edge"
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
	hA, hB := v1.Hash{Algorithm: "sha256", Hex: dA[7:]}, v1.Hash{Algorithm: "sha256", Hex: dB[7:]}
	group := func(image string, d v1.Hash) *edge.Group {
		src, err := name.NewDigest("stage.example/s/" + image + "@" + d.String())
		if err != nil {
			panic(err)
		}
		return &edge.Group{Project: "team-a", Image: image, Source: src, Digest: d}
	}
	repo := func(s string) name.Repository {
		r, err := name.NewRepository(s)
		if err != nil {
			panic(err)
		}
		return r
	}
	appB, appA, gone := group("app", hB), group("app", hA), group("gone", hA)
	p := &plan.Plan{
		Stats: validate.Stats{Manifests: 1, Images: 2, Digests: 2, Tags: 3, Edges: 6, ValidEdges: 5, Errors: 1},
		Records: []*plan.Record{
			{Group: appB, Dest: repo("prod.example/p/app"), Registry: "prod.example/p", Edges: []plan.Decision{
				{Tag: "1.0", Class: plan.Conflict, Existing: hA, Reason: "tag 1.0 already points at " + dA + "; a published tag never moves", Position: pos(4)},
				{Tag: "2.0", Class: plan.Copy, Position: pos(5)},
			}},
			{Group: appA, Dest: repo("mirror.example/m/app"), Registry: "mirror.example/m", Edges: []plan.Decision{
				{Tag: "latest", Class: plan.Promoted, Position: pos(3)},
				{Tag: "stable", Class: plan.TagOnly, Position: pos(6)},
			}},
			{Group: gone, Dest: repo("prod.example/p/gone"), Registry: "prod.example/p", Edges: []plan.Decision{
				{Class: plan.MissingSource, Reason: "stage.example/s/gone@" + dA + " is not in the source registry", Position: pos(9)},
			}},
		},
		Problems: []diag.Problem{{Pos: pos(12), Severity: diag.SeverityError, Code: diag.CodeDigest, Entry: "image bad", Message: `invalid digest "sha256:12" (2 hex digits, want 64)`}},
	}
	p.Images = plan.Summaries(p.Actions())
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
	for _, a := range p.Actions() {
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
			if err := report.Plan(&b, f, samplePlan().Document()); err != nil {
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

// Issue 8 point 11: when every edge is invalid, the text reports said
// "every edge is already promoted".
func TestNothingToDo(t *testing.T) {
	bad := []diag.Problem{{Pos: diag.Position{File: "m.yaml", Line: 3, Column: 5}, Severity: diag.SeverityError, Code: diag.CodeDigest, Entry: "image bad", Message: "invalid digest"}}
	promoted := []*plan.Record{{Edges: []plan.Decision{{Tag: "1.0", Class: plan.Promoted}}}}
	tests := []struct {
		name     string
		records  []*plan.Record
		problems []diag.Problem
		present  int
		want     string
	}{
		{"all promoted", promoted, nil, 1, "Nothing to do: every edge is already promoted."},
		{"all invalid", nil, bad, 0, "Nothing to promote: no valid edge, every entry is excluded by an error (see the problems)."},
		{"promoted and invalid", promoted, bad, 1, "Nothing to do: every valid edge is already promoted; the entries with errors are excluded (see the problems)."},
		{"empty", nil, nil, 0, "Nothing to do: the manifests ask for no edge."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &plan.Plan{Records: tc.records, Problems: tc.problems}
			var b bytes.Buffer
			if err := report.Plan(&b, report.Text, p.Document()); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), "\n"+tc.want+"\n") {
				t.Errorf("plan text lacks %q:\n%s", tc.want, b.String())
			}
			b.Reset()
			r := &promote.Report{SchemaVersion: plan.SchemaVersion, Totals: promote.Totals{Present: tc.present}, Problems: tc.problems}
			if err := report.Run(&b, report.Text, r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tc.want+"\n") {
				t.Errorf("run text lacks %q:\n%s", tc.want, b.String())
			}
		})
	}
}

// TestSummariesSingular: a count of one reads "1 problem", "1 edge".
func TestSummariesSingular(t *testing.T) {
	var b bytes.Buffer
	res := &validate.Result{
		Stats:    validate.Stats{Manifests: 1, Images: 1, Digests: 1, Tags: 1, Edges: 1, Errors: 1},
		Problems: []diag.Problem{{Pos: diag.Position{File: "m.yaml", Line: 3, Column: 1}, Severity: diag.SeverityError, Code: diag.CodeDigest, Entry: "image a", Message: "bad"}},
	}
	if err := report.Validation(&b, report.Text, res); err != nil {
		t.Fatal(err)
	}
	if want := "1 manifest, 1 image, 1 digest, 1 tag, 1 edge (0 valid); 1 problem (1 error, 0 warnings)\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("validation summary:\n%s\nwant it to end with\n%s", b.String(), want)
	}

	b.Reset()
	run := &promote.Report{SchemaVersion: plan.SchemaVersion, Totals: promote.Totals{Promoted: 1}, Images: 1, Duration: time.Second}
	run.AddTraffic([]access.HostStats{{Host: "prod.example", BlobUploads: 1, BytesUploaded: 2048}})
	if err := report.Run(&b, report.Text, run); err != nil {
		t.Fatal(err)
	}
	if want := "Run: 1 edge promoted, 0 already there, 0 refused, 0 failed; 1 image copied, 1 blob uploaded (2.0 KiB), 0 mounted; 1s\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("run summary:\n%s\nwant it to end with\n%s", b.String(), want)
	}
}
