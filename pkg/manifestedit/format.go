package manifestedit

import (
	"bytes"
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/manifest"
)

// Format returns data with its images list in canonical form. data is an
// images.yaml of a thin manifest directory (a bare list) or a plain manifest
// (the list under its images key; the registries and anything else are kept
// byte for byte). A promoter-manifest.yaml, or a file with no images, is
// returned unchanged.
//
// The canonical form, in short (docs/manifest-editing.md has it all):
//
//   - an images.yaml list starts at column 0; a plain manifest's list keeps
//     its indentation;
//   - each entry is "- name: NAME", then "  dmap:", then one line per digest
//     "    "sha256:...": ["a", "b"]": the name plain when it is a valid OCI
//     path, digests and tags double-quoted, tags sorted within their list;
//   - entries and digests keep their order, and nothing is merged or dropped:
//     a repeated image or tag stays (promoter validate reports it);
//   - comments stay with what they are about, re-indented to it; a tag list
//     holding comments stays a block list, one tag per line, so that each
//     comment keeps its tag;
//   - runs of blank lines become one; the file ends with one line break;
//     CRLF line breaks stay CRLF.
//
// Files using anchors, aliases, YAML tags, multi-line or block scalars, a
// flow-style images list, or with structural problems are not formatted: an
// *Error says where.
func Format(path string, data []byte) ([]byte, error) {
	t := newText(path, data)
	l, err := analyze(t)
	if err != nil || l == nil {
		return data, err
	}
	out := l.print()
	// Read the result back: it must say the same and keep every comment.
	t2 := newText(path, out)
	l2, err := analyze(t2)
	if err != nil {
		return nil, fmt.Errorf("internal error: formatted %s does not read back: %w", path, err)
	}
	if l2 == nil || !reflect.DeepEqual(contentOf(l.entries), contentOf(l2.entries)) || !slices.Equal(l.comments(), l2.comments()) {
		return nil, fmt.Errorf("internal error: formatting %s would change what it says; left as it is", path)
	}
	return out, nil
}

// FormatFile formats one file. With write, a file that changes is replaced
// (atomically); it reports whether the file is not (or was not) in canonical
// form.
func FormatFile(path string, write bool) (changed bool, err error) {
	data, err := manifest.ReadFile(path)
	if err != nil {
		return false, err
	}
	out, err := Format(path, data)
	if err != nil {
		return false, err
	}
	if bytes.Equal(out, data) {
		return false, nil
	}
	if write {
		if err := manifest.WriteFile(filepath.Dir(path), path, out); err != nil {
			return true, err
		}
	}
	return true, nil
}

// Files lists the files Format handles in the inputs: every plain manifest
// given, and the images/<project>/images.yaml files of every thin manifest
// directory (the deprecated imagesPath is never followed, as the loader
// never reads it). A folder of a thin directory that is a symbolic link is
// an error.
func Files(in manifest.Inputs) ([]string, error) {
	out := slices.Clone(in.Files)
	for _, dir := range in.ThinDirs {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%s: not a directory", dir)
		}
		found, err := filepath.Glob(filepath.Join(dir, manifest.ThinImagesDir, "*", manifest.ThinImagesFile))
		if err != nil {
			return nil, err
		}
		// The glob goes through linked folders; the loader does not, and
		// neither may a rewrite (a linked images file itself is refused
		// when read).
		for _, f := range found {
			for _, d := range []string{filepath.Dir(filepath.Dir(f)), filepath.Dir(f)} {
				if st, err := os.Lstat(d); err != nil || st.Mode()&fs.ModeSymlink != 0 {
					return nil, &fs.PathError{Op: "open", Path: d, Err: manifest.ErrSymlink}
				}
			}
		}
		out = append(out, found...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

type entKind int

const (
	entImage entKind = iota
	entKey
	entDigest
	entTag
)

// entity is something printed on a line of its own (or on the dash line):
// an image entry, a key of it, a digest, a tag of a block list. Comments are
// attached to entities.
type entity struct {
	kind  entKind
	node  *yaml.Node // image: its mapping; key, digest: the key; tag: the item
	value *yaml.Node // key, digest: the value
	// Where it starts in the source; for an image, the column of its dash.
	line, col int
	parent    *entity
	children  []*entity

	head        []string // comment lines before it; "" is a blank line
	blankBefore bool     // a blank line before it (and its head)
	lineComment string   // the comment at the end of its line
	foot        []string // comment lines after it, indented deeper than what follows
}

// layout is an analysed file: the images list region, its entities and
// where every comment of the region belongs.
type layout struct {
	t          *text
	standalone bool // an images.yaml (a bare list), not a plain manifest
	indent     int  // the dash column of the list, 0-based
	start, end int  // the region's first and last line
	entries    []*entry
	images     []*entity
	header     []string // comments at the top, kept apart from the first image by a blank line
	footer     []string // comments after the last image, at the list's indentation
}

// analyze finds the images list and attaches the comments; nil when the file
// has no images list to format.
func analyze(t *text) (*layout, error) {
	root, err := parse(t)
	if err != nil || root == nil {
		return nil, err
	}
	l := &layout{t: t}
	var seq *yaml.Node
	switch root.Kind {
	case yaml.SequenceNode:
		seq, l.standalone = root, true
	case yaml.MappingNode:
		seen := false
		for i := 0; i+1 < len(root.Content); i += 2 {
			k, v := root.Content[i], root.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Value != "images" {
				continue
			}
			if seen {
				return nil, t.errorf(k, "duplicate key images in the manifest")
			}
			seen = true
			if v.Kind == yaml.SequenceNode {
				seq, l.start = v, k.Line+1
			}
		}
		if seq == nil {
			return nil, nil
		}
	default:
		return nil, t.errorf(root, "neither an images list nor a manifest")
	}
	if isFlow(seq) {
		if len(seq.Content) == 0 {
			return nil, nil
		}
		return nil, t.errorf(seq, "the images list is written in flow style ([...]); write it as a block list (- name: ...)")
	}
	if l.entries, err = checkList(t, seq); err != nil {
		return nil, err
	}
	if l.standalone {
		// Keep "---" and directives where they are.
		l.start = 1
		for n := 1; n < seq.Line; n++ {
			if !t.isBlank(n) && t.commentCol(n) == 0 {
				l.start = n + 1
			}
		}
	} else {
		l.indent = seq.Column - 1
	}
	last, err := t.endLine(seq)
	if err != nil {
		return nil, err
	}
	l.end = last
	for n := last + 1; n <= t.lines(); n++ {
		if t.isBlank(n) {
			continue
		}
		if col := t.commentCol(n); col > 0 && (l.standalone || col > seq.Column) {
			l.end = n
			continue
		}
		break
	}
	flat, err := l.build(seq)
	if err != nil {
		return nil, err
	}
	ends, err := l.contentEnds(seq)
	if err != nil {
		return nil, err
	}
	l.attach(flat, ends)
	if len(l.images) > 0 {
		first := l.images[0]
		if i := lastBlank(first.head); i >= 0 {
			l.header = slices.Clone(first.head[:i])
			first.head = first.head[i+1:]
		}
		first.blankBefore = false
	}
	return l, nil
}

func lastBlank(lines []string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i] == "" {
			return i
		}
	}
	return -1
}

// build makes the entities of the list and returns them in source order.
func (l *layout) build(seq *yaml.Node) ([]*entity, error) {
	t := l.t
	var flat []*entity
	add := func(e *entity) *entity {
		if e.parent != nil {
			e.parent.children = append(e.parent.children, e)
		}
		flat = append(flat, e)
		return e
	}
	for _, en := range l.entries {
		img := add(&entity{kind: entImage, node: en.node, line: en.node.Line, col: seq.Column})
		l.images = append(l.images, img)
		for i := 0; i+1 < len(en.node.Content); i += 2 {
			k, v := en.node.Content[i], en.node.Content[i+1]
			key := add(&entity{kind: entKey, node: k, value: v, line: k.Line, col: k.Column, parent: img})
			if k.Value != "dmap" || v.Kind != yaml.MappingNode {
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				dk, dv := v.Content[j], v.Content[j+1]
				d := add(&entity{kind: entDigest, node: dk, value: dv, line: dk.Line, col: dk.Column, parent: key})
				if dv.Kind != yaml.SequenceNode {
					continue
				}
				multiline := !isFlow(dv)
				if !multiline {
					end, err := t.endLine(dv)
					if err != nil {
						return nil, err
					}
					multiline = end != dv.Line
				}
				if !multiline {
					continue // a one-line flow list: its comment is the digest's
				}
				for _, it := range dv.Content {
					col := it.Column
					if !isFlow(dv) {
						col = dv.Column // the dash
					}
					add(&entity{kind: entTag, node: it, line: it.Line, col: col, parent: d})
				}
			}
		}
	}
	slices.SortStableFunc(flat, func(a, b *entity) int { return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.col, b.col)) })
	return flat, nil
}

// contentEnds returns, per line, the offset where the YAML content of the
// line ends (a comment can only start after it).
func (l *layout) contentEnds(seq *yaml.Node) (map[int]int, error) {
	t := l.t
	ends := map[int]int{}
	mark := func(line, off int) { ends[line] = max(ends[line], off) }
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		switch {
		case n.Kind == yaml.ScalarNode:
			mark(n.Line, t.scalarEnd(n))
		case isFlow(n):
			e, err := t.nodeEnd(n)
			if err != nil {
				return err
			}
			mark(n.Line, t.pos(n)+1)
			mark(t.lineOf(e-1), e)
		}
		for _, c := range n.Content {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return ends, walk(seq)
}

// attach gives every comment line and trailing comment of the region to an
// entity. A comment line belongs to the entity after it (its head) unless it
// is indented deeper than that entity: then it is the foot of the innermost
// entity before it that is indented less than the comment (a commented-out
// digest at the end of a dmap stays in that dmap).
func (l *layout) attach(flat []*entity, ends map[int]int) {
	t := l.t
	at := map[int][]*entity{}
	for _, e := range flat {
		at[e.line] = append(at[e.line], e)
	}
	blank := false
	put := func(list *[]string, text string, headOf *entity) {
		if blank {
			if len(*list) > 0 || headOf == nil {
				*list = append(*list, "")
			} else {
				headOf.blankBefore = true
			}
			blank = false
		}
		*list = append(*list, text)
	}
	setLine := func(e *entity, c string) {
		if e.lineComment == "" {
			e.lineComment = c
		} else {
			e.foot = append(e.foot, c)
		}
	}
	next := 0
	var prev *entity
	// Within one gap between entities comments keep their order: once one
	// is a foot of x, later ones are not put deeper than x, and once one is
	// a head, the rest are too.
	var floor *entity
	headed := false
	for n := l.start; n <= l.end; n++ {
		if es := at[n]; len(es) > 0 {
			floor, headed = nil, false
			e := es[0]
			if blank {
				if len(e.head) > 0 {
					e.head = append(e.head, "")
				} else {
					e.blankBefore = true
				}
				blank = false
			}
			if c := t.trailingComment(n, ends[n]); c != "" {
				setLine(es[len(es)-1], c)
			}
			next += len(es)
			prev = es[len(es)-1]
			continue
		}
		if t.isBlank(n) {
			blank = true
			continue
		}
		var following *entity
		if next < len(flat) {
			following = flat[next]
		}
		col := t.commentCol(n)
		if col == 0 {
			// The rest of a flow collection: its comment goes with the
			// entity before.
			if c := t.trailingComment(n, ends[n]); c != "" {
				if prev != nil {
					setLine(prev, c)
				} else if following != nil {
					put(&following.head, c, following)
				}
			}
			continue
		}
		c := strings.TrimSpace(t.line(n))
		if following != nil && (headed || prev == nil || col <= following.col) {
			put(&following.head, c, following)
			headed = true
			continue
		}
		x := prev
		for x != nil && x.col >= col {
			x = x.parent
		}
		if floor != nil && x != nil && x != floor && isWithin(x, floor) {
			x = floor
		}
		switch {
		case x != nil:
			put(&x.foot, c, nil)
			floor = x
		case following != nil:
			put(&following.head, c, following)
			headed = true
		default:
			put(&l.footer, c, nil)
		}
	}
}

// isWithin reports whether e is inside (or is) outer.
func isWithin(e, outer *entity) bool {
	for ; e != nil; e = e.parent {
		if e == outer {
			return true
		}
	}
	return false
}

// comments lists every comment of the region, for checking that formatting
// keeps them all.
func (l *layout) comments() []string {
	var out []string
	keep := func(cs ...string) {
		for _, c := range cs {
			if c != "" {
				out = append(out, c)
			}
		}
	}
	keep(l.header...)
	keep(l.footer...)
	var walk func(e *entity)
	walk = func(e *entity) {
		keep(e.head...)
		keep(e.lineComment)
		keep(e.foot...)
		for _, c := range e.children {
			walk(c)
		}
	}
	for _, img := range l.images {
		walk(img)
	}
	slices.Sort(out)
	return out
}

// printer writes canonical lines.
type printer struct {
	b   bytes.Buffer
	eol string
}

func (p *printer) line(indent int, s, comment string) {
	p.b.WriteString(strings.Repeat(" ", indent))
	p.b.WriteString(s)
	if comment != "" {
		p.b.WriteString(" " + comment)
	}
	p.b.WriteString(p.eol)
}

func (p *printer) comments(indent int, cs []string) {
	for _, c := range cs {
		if c == "" {
			p.b.WriteString(p.eol)
			continue
		}
		p.line(indent, c, "")
	}
}

// print writes the file: what precedes the region, the region in canonical
// form, what follows it.
func (l *layout) print() []byte {
	t := l.t
	p := &printer{eol: t.eol}
	p.b.Write(t.data[:t.starts[l.start-1]])
	c := l.indent
	if len(l.header) > 0 {
		p.comments(c, l.header)
		p.b.WriteString(p.eol)
	}
	for i, img := range l.images {
		l.printImage(p, img, c, i == 0)
	}
	p.comments(c, l.footer)
	rest := []byte{}
	if l.end < t.lines() {
		rest = t.data[t.starts[l.end]:]
	}
	if l.standalone && len(bytes.TrimSpace(rest)) == 0 {
		rest = nil // the file ends with one line break
	}
	p.b.Write(rest)
	return p.b.Bytes()
}

func (l *layout) printImage(p *printer, img *entity, c int, first bool) {
	if img.blankBefore && !first {
		p.b.WriteString(p.eol)
	}
	p.comments(c, img.head)
	keys := slices.Clone(img.children)
	slices.SortStableFunc(keys, func(a, b *entity) int {
		return cmp.Compare(keyRank(a.node.Value), keyRank(b.node.Value))
	})
	if len(keys) == 0 {
		p.line(c, "- {}", img.lineComment)
	}
	for i, k := range keys {
		indent, prefix := c+2, ""
		if i == 0 {
			indent, prefix = c, "- "
		}
		p.comments(indent, k.head)
		lc := k.lineComment
		if i == 0 && img.lineComment != "" {
			if lc == "" {
				lc = img.lineComment
			} else {
				p.comments(c, []string{img.lineComment})
			}
		}
		switch {
		case k.node.Value == "name":
			v := `""`
			if !isNull(k.value) {
				v = render.YAMLName(k.value.Value)
			}
			p.line(indent, prefix+"name: "+v, lc)
		case len(k.children) == 0:
			p.line(indent, prefix+"dmap: {}", lc)
		default:
			p.line(indent, prefix+"dmap:", lc)
			for j, d := range k.children {
				printDigest(p, d, c+4, j == 0)
			}
		}
		p.comments(c+4, k.foot)
	}
	p.comments(c+2, img.foot)
}

func keyRank(k string) int {
	if k == "name" {
		return 0
	}
	return 1
}

func printDigest(p *printer, d *entity, indent int, first bool) {
	if d.blankBefore && !first {
		p.b.WriteString(p.eol)
	}
	p.comments(indent, d.head)
	key := quote(d.node.Value)
	commented := slices.ContainsFunc(d.children, func(e *entity) bool {
		return len(e.head) > 0 || e.lineComment != "" || len(e.foot) > 0
	})
	if !commented {
		var tags []string
		for _, n := range tagNodes(d.value) {
			tags = append(tags, n.Value)
		}
		slices.Sort(tags)
		p.line(indent, key+": "+render.YAMLFlowList(tags), d.lineComment)
	} else {
		// One tag per line, so that each comment stays with its tag.
		p.line(indent, key+":", d.lineComment)
		tags := slices.Clone(d.children)
		slices.SortStableFunc(tags, func(a, b *entity) int { return cmp.Compare(a.node.Value, b.node.Value) })
		for _, tag := range tags {
			p.comments(indent, tag.head)
			p.line(indent, "- "+quote(tag.node.Value), tag.lineComment)
			p.comments(indent+2, tag.foot)
		}
	}
	p.comments(indent+2, d.foot)
}
