// Package diag holds the positions and problems that every stage of the
// promoter reports: where in which manifest file something was found, and what
// is wrong with it.
package diag

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/imgpromoter/promoter/internal/render"
)

// Position is a place in a manifest file. Line and Column are 1-based; zero
// means unknown (for example a problem about a whole file).
type Position struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

// String renders the position as file:line:column, omitting unknown parts,
// with control characters in the file name escaped.
func (p Position) String() string {
	file := render.Printable(p.File)
	switch {
	case p.Line == 0:
		return file
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", file, p.Line)
	default:
		return fmt.Sprintf("%s:%d:%d", file, p.Line, p.Column)
	}
}

// Compare orders positions by file, line, then column.
func (p Position) Compare(o Position) int {
	return cmp.Or(cmp.Compare(p.File, o.File), cmp.Compare(p.Line, o.Line), cmp.Compare(p.Column, o.Column))
}

// Code classifies a problem so that tools can match it without parsing text.
type Code string

// Problem codes. They are part of the JSON schema: never rename one.
const (
	CodeUnreadable    Code = "unreadable"         // the file cannot be read or is not YAML
	CodeSyntax        Code = "syntax"             // YAML structure: unknown key, wrong type, duplicate key
	CodeLayout        Code = "layout"             // thin-manifest directory layout
	CodeSource        Code = "source-registry"    // not exactly one source registry
	CodeRegistryName  Code = "registry-name"      // empty or invalid registry name
	CodeDuplicateReg  Code = "duplicate-registry" // a registry listed twice in one manifest
	CodeNoDestination Code = "no-destination"     // a manifest without destination registries
	CodeDestIsSource  Code = "destination-is-source"
	CodeImageName     Code = "image-name"
	CodeEmptyDmap     Code = "empty-dmap"
	CodeDigest        Code = "digest"
	CodeTag           Code = "tag"
	CodeConflict      Code = "tag-conflict" // one destination tag wanted with two digests
	CodeDeprecated    Code = "deprecated"   // a warning: accepted, but should be changed
)

// Severity tells whether a problem excludes entries or is only advice.
type Severity string

// Severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Problem is one thing wrong in the manifests, located precisely.
type Problem struct {
	Pos      Position  `json:"position"`
	Severity Severity  `json:"severity"`
	Code     Code      `json:"code"`
	Entry    string    `json:"entry,omitempty"` // what it is about: "image foo", "registry bar", "foo@sha256:..."
	Message  string    `json:"message"`
	Related  *Position `json:"related,omitempty"` // the other place, for conflicts and duplicates
}

// Error makes a problem usable as an error value.
func (p Problem) Error() string { return p.String() }

// String renders "file:line: entry: message (see other place)". Control
// characters (which names read from a manifest may hold) are escaped as JSON
// escapes them, so that one line of text output is one problem.
func (p Problem) String() string {
	s := p.Pos.String() + ": "
	if p.Severity == SeverityWarning {
		s += "warning: "
	}
	if p.Entry != "" {
		s += render.Printable(p.Entry) + ": "
	}
	s += render.Printable(p.Message)
	if p.Related != nil {
		s += " (other place: " + p.Related.String() + ")"
	}
	return s
}

// Sort orders problems by position, then code and message, so output is
// deterministic.
func Sort(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(a.Pos.Compare(b.Pos), cmp.Compare(a.Code, b.Code), cmp.Compare(a.Entry, b.Entry), cmp.Compare(a.Message, b.Message))
	})
}

// Errors counts the problems of error severity.
func Errors(ps []Problem) int {
	n := 0
	for _, p := range ps {
		if p.Severity == SeverityError {
			n++
		}
	}
	return n
}
