// Package report renders validation results, plans and run reports as text
// (for people), JSON (for tools; schema in docs/json-schema.md) and Markdown
// (for pull-request comments). Rendering is separate from computing: every
// renderer takes the result struct and writes deterministic output.
package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/supplychain"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// Format is an output format.
type Format string

// Formats.
const (
	Text     Format = "text"
	JSON     Format = "json"
	Markdown Format = "markdown"
)

// ParseFormat checks a --output value against the formats allowed.
func ParseFormat(s string, allowed ...Format) (Format, error) {
	for _, f := range allowed {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(allowed))
	for i, f := range allowed {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown output format %q (want %s)", s, strings.Join(names, ", "))
}

// Validation writes a validation result.
func Validation(w io.Writer, f Format, r *validate.Result) error {
	if f == JSON {
		return render.WriteJSON(w, r)
	}
	var b strings.Builder
	for _, p := range r.Problems {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	s := r.Stats
	fmt.Fprintf(&b, "%s, %s, %s, %s, %s (%d valid); %s (%s, %s)\n",
		render.Plural(s.Manifests, "manifest"), render.Plural(s.Images, "image"), render.Plural(s.Digests, "digest"), render.Plural(s.Tags, "tag"),
		render.Plural(s.Edges, "edge"), s.ValidEdges, render.Plural(len(r.Problems), "problem"), render.Plural(s.Errors, "error"), render.Plural(s.Warnings, "warning"))
	_, err := io.WriteString(w, b.String())
	return err
}

var classLabel = map[plan.Class]string{
	plan.Copy: "copy", plan.TagOnly: "tag", plan.Promoted: "already promoted",
	plan.Conflict: "conflict (refused)", plan.MissingSource: "missing in source", plan.Policy: "refused by policy", plan.Error: "error",
}

var classVerb = map[plan.Class]string{
	plan.Copy: "COPY", plan.TagOnly: "TAG", plan.Conflict: "REFUSED", plan.MissingSource: "MISSING", plan.Policy: "POLICY", plan.Error: "ERROR",
}

// Plan writes a plan (its JSON form, derived with plan.Plan.Document).
func Plan(w io.Writer, f Format, p *plan.Document) error {
	switch f {
	case JSON:
		return render.WriteJSON(w, p)
	case Markdown:
		return planMarkdown(w, p)
	}
	var b strings.Builder
	s := p.Stats
	fmt.Fprintf(&b, "Plan: %s from %s (%s, %s, %s)\n", render.Plural(p.Counts.Total(), "edge"), render.Plural(s.Manifests, "manifest"), render.Plural(s.Images, "image"), render.Plural(s.Digests, "digest"), render.Plural(s.Tags, "tag"))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range plan.ReportOrder() {
		if c == plan.Policy && p.Counts[c] == 0 {
			continue // only with a promotion policy
		}
		fmt.Fprintf(tw, "  %s\t%d\n", classLabel[c], p.Counts[c])
	}
	if n := diag.Errors(p.Problems); n > 0 {
		fmt.Fprintf(tw, "  invalid entries (excluded)\t%d\n", n)
	}
	tw.Flush()
	if len(p.Destinations) > 0 {
		b.WriteString("\nPer destination registry:\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  registry\tcopy\ttag\tpromoted\trefused\terror\n")
		for _, d := range p.Destinations {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\n", d.Registry, d.Counts[plan.Copy], d.Counts[plan.TagOnly], d.Counts[plan.Promoted],
				d.Counts[plan.Conflict]+d.Counts[plan.MissingSource]+d.Counts[plan.Policy], d.Counts[plan.Error])
		}
		tw.Flush()
	}
	if len(p.Actions) > 0 {
		b.WriteString("\nActions:\n")
		for _, a := range p.Actions {
			b.WriteString("  " + actionLine(a) + "\n")
		}
	} else {
		b.WriteString("\n" + nothingToDo(p.Counts[plan.Promoted], p.Problems) + "\n")
	}
	if p.SupplyChain != nil {
		if err := supplychain.Text(&b, p.SupplyChain); err != nil {
			return err
		}
	}
	if len(p.Problems) > 0 {
		b.WriteString("\nProblems (the entries named are excluded):\n")
		for _, pr := range p.Problems {
			b.WriteString("  " + pr.String() + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func target(a plan.Action) string {
	if a.Tag == "" {
		return a.Destination + "@" + a.Digest
	}
	return a.Destination + ":" + a.Tag
}

func actionLine(a plan.Action) string {
	line := fmt.Sprintf("%-8s %s@%s -> %s", classVerb[a.Class], a.Source, a.Digest, target(a))
	if a.Reason != "" {
		line += ": " + a.Reason
	}
	if a.Class.Refused() && a.Position.File != "" {
		line += " (" + a.Position.String() + ")"
	}
	return line
}

func planMarkdown(w io.Writer, p *plan.Document) error {
	var b strings.Builder
	refused := p.Counts[plan.Conflict] + p.Counts[plan.MissingSource] + p.Counts[plan.Policy] + p.Counts[plan.Error]
	icon := ":white_check_mark:"
	if p.Failed() {
		icon = ":x:"
	}
	fmt.Fprintf(&b, "### %s Promotion plan: %d to copy, %d to tag, %d already promoted, %d refused\n\n", icon, p.Counts[plan.Copy], p.Counts[plan.TagOnly], p.Counts[plan.Promoted], refused)
	var loud []plan.Action
	for _, a := range p.Actions {
		if a.Class.Refused() {
			loud = append(loud, a)
		}
	}
	if len(loud) > 0 || diag.Errors(p.Problems) > 0 {
		b.WriteString("**Refused and invalid entries**\n\n")
		const maxLoud = 50
		for i, a := range loud {
			if i == maxLoud {
				fmt.Fprintf(&b, "- ... and %d more refused edges (see the JSON report)\n", len(loud)-maxLoud)
				break
			}
			fmt.Fprintf(&b, "- `%s`: %s (`%s`)\n", target(a), mdEscape(a.Reason), a.Position.String())
		}
		for _, pr := range p.Problems {
			if pr.Severity == diag.SeverityError {
				fmt.Fprintf(&b, "- `%s`: %s\n", pr.Pos.String(), mdEscape(pr.Message))
			}
		}
		b.WriteString("\n")
	}
	if p.Images != nil {
		imagesMarkdown(&b, p.Images)
	}
	if p.SupplyChain != nil {
		if err := supplychain.Markdown(&b, p.SupplyChain); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	b.WriteString("<details><summary>Per destination registry</summary>\n\n")
	b.WriteString("| destination registry | copy | tag | promoted | refused | error |\n|---|---:|---:|---:|---:|---:|\n")
	for _, d := range p.Destinations {
		fmt.Fprintf(&b, "| `%s` | %d | %d | %d | %d | %d |\n", d.Registry, d.Counts[plan.Copy], d.Counts[plan.TagOnly], d.Counts[plan.Promoted],
			d.Counts[plan.Conflict]+d.Counts[plan.MissingSource]+d.Counts[plan.Policy], d.Counts[plan.Error])
	}
	b.WriteString("\n</details>\n")
	var todo []plan.Action
	for _, a := range p.Actions {
		if !a.Class.Refused() {
			todo = append(todo, a)
		}
	}
	if len(todo) > 0 {
		fmt.Fprintf(&b, "\n<details><summary>%d actions</summary>\n\n", len(todo))
		for _, a := range todo {
			fmt.Fprintf(&b, "- %s `%s@%s` → `%s`\n", classVerb[a.Class], a.Source, a.Digest, target(a))
		}
		b.WriteString("\n</details>\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// imagesMarkdown writes a summary table per project, then each project's
// images (tags, platforms, size, destinations) in a collapsed section.
func imagesMarkdown(b *strings.Builder, images []plan.ImageSummary) {
	type proj struct {
		images               []plan.ImageSummary
		copies, tags, refuse int
	}
	byProj := map[string]*proj{}
	var names []string
	for _, im := range images {
		pr := byProj[im.Project]
		if pr == nil {
			pr = &proj{}
			byProj[im.Project] = pr
			names = append(names, im.Project)
		}
		pr.images = append(pr.images, im)
		pr.copies += im.Counts[plan.Copy]
		pr.tags += im.Counts[plan.TagOnly]
		pr.refuse += im.Counts[plan.Conflict] + im.Counts[plan.MissingSource] + im.Counts[plan.Policy] + im.Counts[plan.Error]
	}
	slices.Sort(names)
	b.WriteString("| project | images | edges to copy | edges to tag | refused |\n|---|---:|---:|---:|---:|\n")
	for _, n := range names {
		pr := byProj[n]
		fmt.Fprintf(b, "| %s | %d | %d | %d | %d |\n", projectName(n), len(pr.images), pr.copies, pr.tags, pr.refuse)
	}
	b.WriteString("\n")
	for _, n := range names {
		pr := byProj[n]
		fmt.Fprintf(b, "<details><summary>%s: %s</summary>\n\n", projectName(n), render.Plural(len(pr.images), "image"))
		b.WriteString("| image | tags | digest | platforms | size | destinations | status |\n|---|---|---|---|---:|---:|---|\n")
		for _, im := range pr.images {
			tags := "(digest only)"
			if len(im.Tags) > 0 {
				tags = "`" + strings.Join(im.Tags, "`, `") + "`"
			}
			// Not described (the describe limit, a missing source) or no
			// platform recorded: say so rather than leave the cell blank.
			platforms := "unknown"
			if len(im.Platforms) > 0 {
				platforms = strings.Join(im.Platforms, ", ")
			}
			size := ""
			if im.Size > 0 {
				size = bytes(im.Size)
			}
			if im.Error != "" {
				platforms = "details unavailable: " + mdEscape(im.Error)
			}
			fmt.Fprintf(b, "| `%s` | %s | `%s` | %s | %s | %d | %s |\n", im.Image, tags, shortDigest(im.Digest), platforms, size, len(im.Destinations), status(im.Counts))
		}
		b.WriteString("\n")
		for _, im := range pr.images {
			fmt.Fprintf(b, "<details><summary><code>%s@%s</code>: %s</summary>\n\n", im.Image, shortDigest(im.Digest), render.Plural(len(im.Destinations), "destination"))
			for _, d := range im.Destinations {
				fmt.Fprintf(b, "- `%s`\n", d)
			}
			b.WriteString("\n</details>\n")
		}
		b.WriteString("\n</details>\n\n")
	}
}

func projectName(p string) string {
	if p == "" {
		return "(plain manifests)"
	}
	return p
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func status(c plan.Counts) string {
	var parts []string
	for _, cl := range plan.ReportOrder() {
		if n := c[cl]; n > 0 && cl != plan.Promoted {
			parts = append(parts, fmt.Sprintf("%s %d", classLabel[cl], n))
		}
	}
	return strings.Join(parts, ", ")
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Run writes a run report.
func Run(w io.Writer, f Format, r *promote.Report) error {
	if f == JSON {
		return render.WriteJSON(w, r)
	}
	var b strings.Builder
	t := r.Totals
	if f == Markdown {
		fmt.Fprintf(&b, "### Promotion run: %d promoted, %d already there, %d refused, %d failed\n\n", t.Promoted, t.Present, t.Refused, t.Failed)
		fmt.Fprintf(&b, "%s copied, %s uploaded (%s), %s mounted, in %s\n\n", render.Plural(r.Images, "image"), render.Plural(int(r.BlobUploads), "blob"), bytes(r.BytesUploaded), render.Plural(int(r.BlobMounts), "blob"), r.Duration.Round(time.Millisecond))
		for _, res := range r.Results {
			if res.Status == promote.StatusFailed || res.Status == promote.StatusRefused {
				fmt.Fprintf(&b, "- **%s** `%s`: %s\n", res.Status, target(res.Action), mdEscape(res.Error))
			}
		}
		for _, pr := range r.Problems {
			if pr.Severity == diag.SeverityError {
				fmt.Fprintf(&b, "- **excluded** `%s`: %s\n", pr.Pos.String(), mdEscape(pr.Message))
			}
		}
		if r.SupplyChain != nil {
			b.WriteString("\n")
			if err := supplychain.Markdown(&b, r.SupplyChain); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	for _, res := range r.Results {
		if res.Status == promote.StatusPromoted {
			fmt.Fprintf(&b, "promoted  %s@%s -> %s\n", res.Source, res.Digest, target(res.Action))
		}
	}
	for _, res := range r.Results {
		if res.Status != promote.StatusPromoted {
			line := fmt.Sprintf("%-9s %s@%s -> %s: %s", res.Status, res.Source, res.Digest, target(res.Action), res.Error)
			if res.Position.File != "" {
				line += " (" + res.Position.String() + ")"
			}
			b.WriteString(line + "\n")
		}
	}
	for _, pr := range r.Problems {
		if pr.Severity == diag.SeverityError {
			b.WriteString("excluded  " + pr.String() + "\n")
		}
	}
	if t.Promoted == 0 && t.Refused == 0 && t.Failed == 0 {
		b.WriteString(nothingToDo(t.Present, r.Problems) + "\n")
	}
	if r.SupplyChain != nil {
		if err := supplychain.Text(&b, r.SupplyChain); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Run: %s promoted, %d already there, %d refused, %d failed; %s copied, %s uploaded (%s), %d mounted; %s\n",
		render.Plural(t.Promoted, "edge"), t.Present, t.Refused, t.Failed, render.Plural(r.Images, "image"), render.Plural(int(r.BlobUploads), "blob"), bytes(r.BytesUploaded), r.BlobMounts, r.Duration.Round(time.Millisecond))
	_, err := io.WriteString(w, b.String())
	return err
}

func bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// nothingToDo says why a plan or run with no action has nothing to do:
// every edge is already promoted, or there is no valid edge at all (every
// entry excluded by an error), or both, or the manifests ask for nothing.
func nothingToDo(present int, problems []diag.Problem) string {
	invalid := diag.Errors(problems) > 0
	switch {
	case present > 0 && !invalid:
		return "Nothing to do: every edge is already promoted."
	case present > 0:
		return "Nothing to do: every valid edge is already promoted; the entries with errors are excluded (see the problems)."
	case invalid:
		return "Nothing to promote: no valid edge, every entry is excluded by an error (see the problems)."
	}
	return "Nothing to do: the manifests ask for no edge."
}
