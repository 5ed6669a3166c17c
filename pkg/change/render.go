package change

import (
	"fmt"
	"io"
	"strings"

	"github.com/imgpromoter/promoter/internal/render"
)

// OverrideFlag is the command-line flag that allows a finding by its key;
// the text report prints it next to each finding.
const OverrideFlag = "--allow-removal"

// WriteText renders a check report for people: one block per finding
// (position, kind, what, and the override that would allow it), the unused
// overrides, head's problems, then a summary line ending in the verdict.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	base := r.Base
	if r.BaseCommit != "" && !strings.HasPrefix(r.BaseCommit, r.Base) {
		base += " (" + render.ShortCommit(r.BaseCommit) + ")"
	}
	for _, f := range r.Findings {
		b.WriteString(f.Position.String())
		if f.AtBase {
			b.WriteString(" at " + r.Base)
		}
		fmt.Fprintf(&b, ": %s: %s", f.Kind, render.Printable(f.Message))
		if f.Related != nil {
			fmt.Fprintf(&b, " (was at %s at %s)", f.Related, r.Base)
		}
		b.WriteByte('\n')
		if f.Allowed {
			fmt.Fprintf(&b, "    allowed by %s %s\n", OverrideFlag, render.Printable(f.Key))
		} else {
			fmt.Fprintf(&b, "    to allow it: %s %s\n", OverrideFlag, render.Printable(f.Key))
		}
	}
	for _, k := range r.UnusedOverrides {
		fmt.Fprintf(&b, "error: %s %s matches no finding: remove it\n", OverrideFlag, render.Printable(k))
	}
	for _, p := range r.Problems {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	if r.BaseErrors > 0 {
		fmt.Fprintf(&b, "note: the manifests at %s have %s; entries invalid there promoted nothing and are not compared\n", r.Base, render.Plural(r.BaseErrors, "error"))
	}
	verdict := "accepted"
	if !r.Accepted {
		verdict = "rejected"
	}
	allowed := len(r.Findings) - r.Refused()
	fmt.Fprintf(&b, "check against %s: the change adds %s; %s (%d allowed), %s; %s (%s, %s): %s\n",
		base, render.Plural(r.AddedEdges, "edge"), render.Count(len(r.Findings), "removal or move", "removals or moves"), allowed,
		render.Plural(len(r.UnusedOverrides), "unused override"), render.Plural(len(r.Problems), "problem"), render.Plural(r.Stats.Errors, "error"), render.Plural(r.Stats.Warnings, "warning"), verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON renders a check report as JSON (schema in docs/review.md).
func WriteJSON(w io.Writer, r *Report) error { return render.WriteJSON(w, r) }
