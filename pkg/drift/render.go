package drift

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/imgpromoter/promoter/internal/render"
)

// Format is an output format of a drift report.
type Format string

// Formats.
const (
	Text     Format = "text"
	JSON     Format = "json"
	Markdown Format = "markdown"
)

// ParseFormat reads an --output value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Text, JSON, Markdown:
		return f, nil
	}
	return "", fmt.Errorf("unknown output format %q (want text, json or markdown)", s)
}

// Write renders a report.
func Write(w io.Writer, f Format, r *Report) error {
	switch f {
	case JSON:
		return render.WriteJSON(w, r)
	case Markdown:
		return writeMarkdown(w, r)
	}
	return writeText(w, r)
}

func summary(r *Report) string {
	if len(r.Findings) == 0 {
		return fmt.Sprintf("no drift: %s hold exactly what the manifests list", strings.Join(r.Prefixes, ", "))
	}
	c := r.Counts()
	var parts []string
	for _, k := range []Kind{MissingDigest, MissingTag, MovedTag, UnexpectedRepository, UnexpectedTag, UnexpectedDigest} {
		if c[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c[k], k))
		}
	}
	return fmt.Sprintf("drift: %d findings (%s)", len(r.Findings), strings.Join(parts, ", "))
}

func writeText(w io.Writer, r *Report) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, f := range r.Findings {
		if d := detail(f); d != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Kind, subject(f), d)
		} else {
			fmt.Fprintf(tw, "%s\t%s\n", f.Kind, subject(f))
		}
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	b.WriteString(summary(r) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func subject(f Finding) string {
	switch {
	case f.Tag != "":
		return f.Repository + ":" + f.Tag
	case f.Digest != "":
		return f.Repository + "@" + f.Digest
	}
	return f.Repository
}

func detail(f Finding) string {
	switch f.Kind {
	case MovedTag:
		return fmt.Sprintf("is %s, manifests list %s", f.Digest, f.Expected)
	case MissingTag:
		return fmt.Sprintf("manifests list %s", f.Expected)
	case UnexpectedTag:
		return fmt.Sprintf("is %s", f.Digest)
	}
	return ""
}

func writeMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### Drift: %s\n\n%s\n", strings.Join(r.Prefixes, ", "), summary(r))
	if len(r.Findings) > 0 {
		b.WriteString("\n| kind | repository | tag | digest | manifests list |\n| --- | --- | --- | --- | --- |\n")
		for _, f := range r.Findings {
			fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s |\n", f.Kind, f.Repository, code(f.Tag), code(f.Digest), code(f.Expected))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n> %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}
