package manifestedit

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// text is a file's bytes with a line index. Lines are 1-based and columns
// 1-based counts of runes, as in yaml.v3 node positions.
type text struct {
	path   string
	data   []byte
	starts []int  // starts[i] is the offset where line i+1 begins
	eol    string // the file's line break: "\r\n" when its first line ends so
}

func newText(path string, data []byte) *text {
	t := &text{path: path, data: data, starts: []int{0}, eol: "\n"}
	for i, b := range data {
		if b == '\n' && i+1 < len(data) {
			t.starts = append(t.starts, i+1)
		}
	}
	if i := bytes.IndexByte(data, '\n'); i > 0 && data[i-1] == '\r' {
		t.eol = "\r\n"
	}
	return t
}

// lines is the number of lines (an empty file has one, empty).
func (t *text) lines() int { return len(t.starts) }

// oddBreak returns the line of the first line break other than LF and
// CRLF (a CR alone, NEL, LS, PS: the YAML parser counts them as line breaks,
// the editor does not), or 0.
func (t *text) oddBreak() int {
	for i := 0; i < len(t.data); i++ {
		switch {
		case t.data[i] == '\r' && (i+1 == len(t.data) || t.data[i+1] != '\n'),
			bytes.HasPrefix(t.data[i:], []byte("\u0085")),
			bytes.HasPrefix(t.data[i:], []byte("\u2028")),
			bytes.HasPrefix(t.data[i:], []byte("\u2029")):
			return t.lineOf(i)
		}
	}
	return 0
}

// span returns the offsets of line n's content, without its line break.
func (t *text) span(n int) (start, end int) {
	n = min(max(n, 1), len(t.starts)) // positions come from the parser; never panic on one
	start = t.starts[n-1]
	if n < len(t.starts) {
		end = t.starts[n] - 1
	} else {
		end = len(t.data)
		if end > start && t.data[end-1] == '\n' {
			end--
		}
	}
	if end > start && t.data[end-1] == '\r' {
		end--
	}
	return start, end
}

// line returns line n's content without its line break.
func (t *text) line(n int) string {
	s, e := t.span(n)
	return string(t.data[s:e])
}

// after returns where text inserted after line n goes, and the line break
// to put first when line n is the last line and has none.
func (t *text) after(n int) (off int, prefix string) {
	if n < len(t.starts) {
		return t.starts[n], ""
	}
	if len(t.data) > 0 && t.data[len(t.data)-1] != '\n' {
		return len(t.data), t.eol
	}
	return len(t.data), ""
}

// offset converts a yaml.v3 position to a byte offset.
func (t *text) offset(line, col int) int {
	s, e := t.span(line)
	off := s
	for c := 1; c < col && off < e; c++ {
		_, size := utf8.DecodeRune(t.data[off:e])
		off += size
	}
	return off
}

// column converts a byte offset on line n to a yaml.v3 column.
func (t *text) column(n, off int) int {
	s, _ := t.span(n)
	return utf8.RuneCount(t.data[s:off]) + 1
}

// lineOf returns the line holding offset off.
func (t *text) lineOf(off int) int {
	return sort.Search(len(t.starts), func(i int) bool { return t.starts[i] > off })
}

func (t *text) pos(n *yaml.Node) int { return t.offset(n.Line, n.Column) }

// isBlank and commentCol classify whole lines.
func (t *text) isBlank(n int) bool { return strings.TrimSpace(t.line(n)) == "" }

// commentCol returns the column of the '#' of a line holding only a comment,
// or 0.
func (t *text) commentCol(n int) int {
	l := t.line(n)
	trimmed := strings.TrimLeft(l, " \t")
	if !strings.HasPrefix(trimmed, "#") {
		return 0
	}
	return utf8.RuneCountInString(l[:len(l)-len(trimmed)]) + 1
}

// scalarEnd returns the offset just after a scalar's text, or -1 when the
// scalar does not end on the line it starts on (or is not written the way
// its node says): the editor only handles single-line scalars.
func (t *text) scalarEnd(n *yaml.Node) int {
	start := t.pos(n)
	_, end := t.span(n.Line)
	b := t.data[start:end]
	switch {
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle|yaml.TaggedStyle) != 0:
		return -1
	case n.Style&yaml.DoubleQuotedStyle != 0:
		if len(b) == 0 || b[0] != '"' {
			return -1
		}
		for i := 1; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return start + i + 1
			}
		}
		return -1
	case n.Style&yaml.SingleQuotedStyle != 0:
		if len(b) == 0 || b[0] != '\'' {
			return -1
		}
		for i := 1; i < len(b); i++ {
			if b[i] == '\'' {
				if i+1 < len(b) && b[i+1] == '\'' {
					i++
					continue
				}
				return start + i + 1
			}
		}
		return -1
	default:
		if !bytes.HasPrefix(b, []byte(n.Value)) {
			return -1
		}
		return start + len(n.Value)
	}
}

// skipFiller skips what may stand between the items of a flow collection:
// white space, line breaks, commas and comments.
func (t *text) skipFiller(i int) int {
	for i < len(t.data) {
		switch t.data[i] {
		case ' ', '\t', '\r', '\n', ',':
			i++
		case '#':
			for i < len(t.data) && t.data[i] != '\n' {
				i++
			}
		default:
			return i
		}
	}
	return i
}

// nodeEnd returns the offset just after a node's text.
func (t *text) nodeEnd(n *yaml.Node) (int, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if e := t.scalarEnd(n); e >= 0 {
			return e, nil
		}
		return 0, t.errorf(n, "a value spread over several lines, or written with a YAML tag or block style, cannot be edited")
	case yaml.SequenceNode, yaml.MappingNode:
		if n.Style&yaml.FlowStyle == 0 {
			if len(n.Content) == 0 {
				return t.pos(n), nil
			}
			return t.nodeEnd(n.Content[len(n.Content)-1])
		}
		from := t.pos(n) + 1
		if len(n.Content) > 0 {
			e, err := t.nodeEnd(n.Content[len(n.Content)-1])
			if err != nil {
				return 0, err
			}
			from = e
		}
		closer := byte(']')
		if n.Kind == yaml.MappingNode {
			closer = '}'
		}
		i := t.skipFiller(from)
		if i >= len(t.data) || t.data[i] != closer {
			return 0, t.errorf(n, "cannot find the end of this flow collection")
		}
		return i + 1, nil
	}
	return 0, t.errorf(n, "anchors and aliases cannot be edited")
}

// endLine is the line where a node's text ends.
func (t *text) endLine(n *yaml.Node) (int, error) {
	e, err := t.nodeEnd(n)
	if err != nil {
		return 0, err
	}
	if e > t.pos(n) {
		e--
	}
	return t.lineOf(e), nil
}

// trailingComment returns the comment at the end of line n after offset
// from (the end of the line's content), without trailing white space.
func (t *text) trailingComment(n, from int) string {
	s, e := t.span(n)
	from = max(from, s)
	for i := from; i < e; i++ {
		if t.data[i] == '#' && (i == s || t.data[i-1] == ' ' || t.data[i-1] == '\t') {
			return strings.TrimRight(string(t.data[i:e]), " \t")
		}
	}
	return ""
}

// edit replaces data[start:end] with text; start == end inserts.
type edit struct {
	start, end int
	text       string
}

// apply makes non-overlapping edits; insertions at one offset keep their
// order.
func apply(data []byte, edits []edit) []byte {
	slices.SortStableFunc(edits, func(a, b edit) int { return cmp.Compare(a.start, b.start) })
	var out bytes.Buffer
	out.Grow(len(data) + 256)
	at := 0
	for _, e := range edits {
		out.Write(data[at:e.start])
		out.WriteString(e.text)
		at = max(at, e.end)
	}
	out.Write(data[at:])
	return out.Bytes()
}

func (t *text) errorf(n *yaml.Node, format string, args ...any) error {
	return &Error{Pos: diag.Position{File: t.path, Line: n.Line, Column: n.Column}, Message: fmt.Sprintf(format, args...)}
}

// Error is a file the editor cannot handle (a structural problem, or a
// construct it does not rewrite), located at the node in question. The file
// is left as it is.
type Error struct {
	Pos     diag.Position
	Message string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Message }
