package manifestedit

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	yaml "go.yaml.in/yaml/v3"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/names"
)

// Latest is the tag add refuses unless AllowLatest is given: it names
// whatever was pushed last, not a reviewed release.
const Latest = "latest"

// Addition is one digest to list for an image, with the tags it gets (none:
// the digest is promoted by digest only).
type Addition struct {
	Digest v1.Hash
	Tags   []string
}

// ChangeKind says what adding one digest did to the file.
type ChangeKind string

// Change kinds.
const (
	NewImage  ChangeKind = "new-image"  // the image had no entry: one was appended
	NewDigest ChangeKind = "new-digest" // the digest was appended to the image's dmap
	NewTags   ChangeKind = "new-tags"   // tags were added to a digest already listed
	Present   ChangeKind = "present"    // the digest and all its tags were already listed
)

// Change is what happened to one requested digest. AddToList returns them
// in file order.
type Change struct {
	Digest string     `json:"digest"`
	Kind   ChangeKind `json:"kind"`
	// Added are the tags written by this change (all of them for a new
	// digest); empty when nothing was written.
	Added []string `json:"added"`
	// Tags are the digest's tags in the file afterwards.
	Tags []string `json:"tags"`
	// Pos is where the digest is listed afterwards.
	Pos diag.Position `json:"position"`
}

// RefusedError lists what was asked for and refused (a moving tag, a tag
// already pointing elsewhere, an invalid value, something missing in the
// staging registry). Nothing is written when anything is refused.
type RefusedError struct {
	Problems []diag.Problem
}

func (e *RefusedError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.String()
	}
	return "refused: " + strings.Join(msgs, "; ")
}

type options struct {
	allowLatest bool
	dryRun      bool
}

// Option configures Add and AddToList.
type Option func(*options)

// AllowLatest lets the tag "latest" be added (refused by default).
func AllowLatest() Option { return func(o *options) { o.allowLatest = true } }

// DryRun makes Add report what it would change without writing.
func DryRun() Option { return func(o *options) { o.dryRun = true } }

func makeOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// AddToList adds digests and tags for image to the images list in data (an
// images.yaml of a thin manifest directory) and returns the new content.
//
// It edits the text, never re-marshalling it: every existing line, comment
// and line ending stays as it is. A tag for a digest already listed extends
// that digest's tag list in place (a flow list gets the item, a block list a
// line; the first entry listing the digest is the one extended), a new
// digest is appended to the dmap of the image's last entry, and an image
// without an entry gets a new entry at the end of the file. What is written
// is in canonical form (see Format); tags go to their sorted place in a list
// that is sorted, else at its end. Adding what is there changes nothing.
//
// A tag that the image already has for another digest, the tag "latest"
// (unless AllowLatest) and malformed digests or tags are refused with a
// *RefusedError, and nothing changes.
func AddToList(path string, data []byte, image string, adds []Addition, opts ...Option) ([]byte, []Change, error) {
	o := makeOptions(opts)
	want, probs := normalize(path, image, adds, o)
	t := newText(path, data)
	root, err := parse(t)
	if err != nil {
		return nil, nil, err
	}
	var entries []*entry
	if root != nil {
		if root.Kind != yaml.SequenceNode {
			return nil, nil, t.errorf(root, "an images file must be a list of image entries")
		}
		if entries, err = checkList(t, root); err != nil {
			return nil, nil, err
		}
	}

	// What the file says about the image now.
	type listed struct {
		e        *entry
		key, val *yaml.Node
	}
	var target *entry // the image's last entry: new digests go there
	digests := map[string]listed{}
	type claim struct {
		digest string
		node   *yaml.Node
	}
	tags := map[string][]claim{}
	for _, e := range entries {
		if e.imageName() != image {
			continue
		}
		target = e
		for _, kv := range e.digests() {
			if _, ok := digests[kv[0].Value]; !ok {
				digests[kv[0].Value] = listed{e, kv[0], kv[1]}
			}
			for _, tn := range tagNodes(kv[1]) {
				tags[tn.Value] = append(tags[tn.Value], claim{kv[0].Value, tn})
			}
		}
	}
	for _, w := range want {
		for _, tag := range w.tags {
			for _, c := range tags[tag] {
				if c.digest != w.digest {
					probs = append(probs, diag.Problem{Pos: diag.Position{File: path, Line: c.node.Line, Column: c.node.Column}, Severity: diag.SeverityError,
						Code: diag.CodeConflict, Entry: image + ":" + tag,
						Message: fmt.Sprintf("tag %s already points to %s here; refusing to add it to %s (a published tag never moves)", tag, c.digest, w.digest)})
				}
			}
		}
	}
	if len(probs) > 0 {
		diag.Sort(probs)
		return nil, nil, &RefusedError{Problems: probs}
	}

	var edits []edit
	var changes []Change
	var newDigests []want1 // appended to the target entry, or to a new entry
	for _, w := range want {
		at, ok := digests[w.digest]
		if !ok {
			kind := NewDigest
			if target == nil {
				kind = NewImage
			}
			newDigests = append(newDigests, w)
			changes = append(changes, Change{Digest: w.digest, Kind: kind, Added: w.tags})
			continue
		}
		var missing []string // in none of the image's entries for this digest
		for _, tag := range w.tags {
			if !slices.ContainsFunc(tags[tag], func(c claim) bool { return c.digest == w.digest }) {
				missing = append(missing, tag)
			}
		}
		if len(missing) == 0 {
			changes = append(changes, Change{Digest: w.digest, Kind: Present, Added: []string{}})
			continue
		}
		es, err := t.addTags(at.key, at.val, missing)
		if err != nil {
			return nil, nil, err
		}
		edits = append(edits, es...)
		changes = append(changes, Change{Digest: w.digest, Kind: NewTags, Added: missing})
	}
	if len(newDigests) > 0 {
		var es []edit
		if target != nil {
			es, err = t.addDigests(target, newDigests)
		} else {
			es, err = t.addImage(root, image, newDigests)
		}
		if err != nil {
			return nil, nil, err
		}
		edits = append(edits, es...)
	}
	out := data
	if len(edits) > 0 {
		out = apply(data, edits)
	}
	if err := verifyAdd(path, out, entries, target, image, changes, want); err != nil {
		return nil, nil, err
	}
	return out, changes, nil
}

// want1 is one normalised addition.
type want1 struct {
	digest string
	tags   []string // sorted, unique
}

// normalize merges additions by digest, checks them, and orders them as new
// digests are written: by smallest tag, digests without tags last, then by
// digest.
func normalize(path, image string, adds []Addition, o options) ([]want1, []diag.Problem) {
	var probs []diag.Problem
	refuse := func(code diag.Code, entry, format string, args ...any) {
		probs = append(probs, diag.Problem{Pos: diag.Position{File: path}, Severity: diag.SeverityError, Code: code, Entry: entry, Message: fmt.Sprintf(format, args...)})
	}
	byDigest := map[string]*want1{}
	owner := map[string]string{} // tag -> digest
	var out []*want1
	for _, a := range adds {
		d := a.Digest.String()
		if msg := names.CheckDigest(d); msg != "" {
			refuse(diag.CodeDigest, image+"@"+d, "%s", msg)
			continue
		}
		w := byDigest[d]
		if w == nil {
			w = &want1{digest: d, tags: []string{}}
			byDigest[d] = w
			out = append(out, w)
		}
		for _, tag := range a.Tags {
			switch {
			case !names.ValidTag(tag):
				refuse(diag.CodeTag, image+":"+tag, "%s", names.CheckTag(tag))
				continue
			case tag == Latest && !o.allowLatest:
				refuse(diag.CodeTag, image+":"+tag, "tag latest is refused: it names whatever was pushed last, not a reviewed release (allow it explicitly with --allow-latest)")
				continue
			}
			if prev, ok := owner[tag]; ok && prev != d {
				refuse(diag.CodeConflict, image+":"+tag, "tag %s is asked for both %s and %s", tag, prev, d)
				continue
			}
			owner[tag] = d
			if !slices.Contains(w.tags, tag) {
				w.tags = append(w.tags, tag)
			}
		}
		slices.Sort(w.tags)
	}
	res := make([]want1, len(out))
	for i, w := range out {
		res[i] = *w
	}
	slices.SortFunc(res, func(a, b want1) int {
		if (len(a.tags) == 0) != (len(b.tags) == 0) {
			if len(a.tags) == 0 {
				return 1
			}
			return -1
		}
		if len(a.tags) > 0 {
			if c := cmp.Compare(a.tags[0], b.tags[0]); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.digest, b.digest)
	})
	return res, probs
}

func quote(s string) string { return strconv.Quote(s) }

// digestLine is a canonical dmap line.
func (t *text) digestLine(indent int, w want1) string {
	return strings.Repeat(" ", indent) + quote(w.digest) + ": " + render.YAMLFlowList(w.tags) + t.eol
}

func isSorted(items []*yaml.Node) bool {
	return slices.IsSortedFunc(items, func(a, b *yaml.Node) int { return cmp.Compare(a.Value, b.Value) })
}

// insertionPoints says before which existing item each new tag goes
// (len(items): after the last): in a sorted list, at its sorted place;
// otherwise at the end.
func insertionPoints(items []*yaml.Node, tags []string) map[int][]string {
	at := map[int][]string{}
	sorted := isSorted(items)
	for _, tag := range tags {
		j := len(items)
		if sorted {
			j = slices.IndexFunc(items, func(n *yaml.Node) bool { return n.Value > tag })
			if j < 0 {
				j = len(items)
			}
		}
		at[j] = append(at[j], tag)
	}
	return at
}

// addTags extends the tag list val of digest key.
func (t *text) addTags(key, val *yaml.Node, tags []string) ([]edit, error) {
	switch {
	case isNull(val) && val.Value != "":
		// "sha256:...": ~ — the explicit null becomes the list.
		return []edit{{t.pos(val), t.scalarEnd(val), render.YAMLFlowList(tags)}}, nil
	case isNull(val):
		ke := t.scalarEnd(key)
		i := ke
		for i < len(t.data) && (t.data[i] == ' ' || t.data[i] == '\t') {
			i++
		}
		if i >= len(t.data) || t.data[i] != ':' {
			return nil, t.errorf(key, "cannot find the colon after this digest")
		}
		return []edit{{i + 1, i + 1, " " + render.YAMLFlowList(tags)}}, nil
	case isFlow(val):
		items := val.Content
		var edits []edit
		for j, group := range insertionPoints(items, tags) {
			q := make([]string, len(group))
			for i, tag := range group {
				q[i] = quote(tag)
			}
			switch {
			case j < len(items):
				off := t.pos(items[j])
				edits = append(edits, edit{off, off, strings.Join(q, ", ") + ", "})
			case len(items) == 0:
				off := t.pos(val) + 1
				edits = append(edits, edit{off, off, strings.Join(q, ", ")})
			default:
				off, err := t.nodeEnd(items[len(items)-1])
				if err != nil {
					return nil, err
				}
				edits = append(edits, edit{off, off, ", " + strings.Join(q, ", ")})
			}
		}
		return edits, nil
	default: // a block list: one line per tag
		indent := strings.Repeat(" ", val.Column-1)
		items := val.Content
		var edits []edit
		for j, group := range insertionPoints(items, tags) {
			var b strings.Builder
			for _, tag := range group {
				b.WriteString(indent + "- " + quote(tag) + t.eol)
			}
			if j < len(items) {
				// Before the item and the comments directly above it,
				// which are about it.
				off := t.starts[t.headStart(items[j].Line)-1]
				edits = append(edits, edit{off, off, b.String()})
				continue
			}
			end, err := t.endLine(val)
			if err != nil {
				return nil, err
			}
			off, pre := t.after(t.pastDeeper(end, val.Column))
			edits = append(edits, edit{off, off, pre + b.String()})
		}
		return edits, nil
	}
}

// pastDeeper moves past the comment lines after line n that are indented
// deeper than col: they are about what precedes them (fmt attaches them so),
// and lines inserted at col go after them.
func (t *text) pastDeeper(n, col int) int {
	for n < t.lines() && t.commentCol(n+1) > col {
		n++
	}
	return n
}

// headStart is the first line of the comment block directly above line n
// (n itself when there is none).
func (t *text) headStart(n int) int {
	for n > 1 && t.commentCol(n-1) > 0 {
		n--
	}
	return n
}

// addDigests appends dmap lines to an image entry.
func (t *text) addDigests(e *entry, ws []want1) ([]edit, error) {
	lines := func(indent int) string {
		var b strings.Builder
		for _, w := range ws {
			b.WriteString(t.digestLine(indent, w))
		}
		return b.String()
	}
	runFmt := func(n *yaml.Node) error {
		return t.errorf(n, "the entry of image %s is written in flow style; run promoter manifest fmt on the file first", e.imageName())
	}
	switch {
	case e.dmap != nil && e.dmap.Kind == yaml.MappingNode && !isFlow(e.dmap):
		end, err := t.endLine(e.dmap)
		if err != nil {
			return nil, err
		}
		col := e.dmap.Content[0].Column
		off, pre := t.after(t.pastDeeper(end, col))
		return []edit{{off, off, pre + lines(col-1)}}, nil
	case isFlow(e.node):
		return nil, runFmt(e.node)
	case e.dmap == nil:
		// An entry without dmap: the key and its lines go after the entry.
		end, err := t.endLine(e.node)
		if err != nil {
			return nil, err
		}
		indent := e.node.Column - 1
		off, pre := t.after(t.pastDeeper(end, e.node.Column))
		return []edit{{off, off, pre + strings.Repeat(" ", indent) + "dmap:" + t.eol + lines(indent+2)}}, nil
	case e.dmap.Kind == yaml.MappingNode && len(e.dmap.Content) > 0:
		return nil, runFmt(e.dmap)
	default:
		// dmap: (null), dmap: ~ or dmap: {} — the empty value goes, the
		// lines follow the key.
		var edits []edit
		if e.dmap.Kind == yaml.MappingNode || e.dmap.Value != "" {
			start := t.pos(e.dmap)
			end, err := t.nodeEnd(e.dmap)
			if err != nil {
				return nil, err
			}
			if t.lineOf(end-1) != e.dmapKey.Line {
				return nil, runFmt(e.dmap)
			}
			for start > 0 && (t.data[start-1] == ' ' || t.data[start-1] == '\t') {
				start--
			}
			edits = append(edits, edit{start, end, ""})
		}
		off, pre := t.after(e.dmapKey.Line)
		edits = append(edits, edit{off, off, pre + lines(e.dmapKey.Column-1+2)})
		return edits, nil
	}
}

// addImage appends a new image entry at the end of the list.
func (t *text) addImage(root *yaml.Node, image string, ws []want1) ([]edit, error) {
	entryText := func(c int) string {
		var b strings.Builder
		b.WriteString(strings.Repeat(" ", c) + "- name: " + render.YAMLName(image) + t.eol)
		b.WriteString(strings.Repeat(" ", c+2) + "dmap:" + t.eol)
		for _, w := range ws {
			b.WriteString(t.digestLine(c+4, w))
		}
		return b.String()
	}
	c := 0
	var edits []edit
	switch {
	case root == nil:
	case !isFlow(root):
		c = root.Column - 1
	case len(root.Content) == 0:
		// [] — an empty list in flow style makes way for the block list.
		start := t.pos(root)
		end, err := t.nodeEnd(root)
		if err != nil {
			return nil, err
		}
		s, e := t.span(root.Line)
		if strings.TrimSpace(string(t.data[s:e])) == "[]" {
			return []edit{{s, e, strings.TrimSuffix(entryText(0), t.eol)}}, nil
		}
		edits = append(edits, edit{start, end, ""})
	default:
		return nil, t.errorf(root, "the images list is written in flow style; run promoter manifest fmt on the file first")
	}
	off, pre := t.after(t.lines())
	return append(edits, edit{off, off, pre + entryText(c)}), nil
}

// verifyAdd reads the edited file back and checks that it says exactly what
// it said before plus what was added, and fills in where each change is.
// A failure here is a bug of the editor; the file is not written.
func verifyAdd(path string, out []byte, before []*entry, target *entry, image string, changes []Change, want []want1) error {
	t := newText(path, out)
	root, err := parse(t)
	if err != nil {
		return fmt.Errorf("internal error: the edited file does not read back: %w", err)
	}
	var after []*entry
	if root != nil {
		if after, err = checkList(t, root); err != nil {
			return fmt.Errorf("internal error: the edited file does not read back: %w", err)
		}
	}
	expect := contentOf(before)
	targetIdx := slices.Index(before, target)
	tagsOf := map[string][]string{}
	for _, w := range want {
		tagsOf[w.digest] = w.tags
	}
	var appended []digestContent
	for _, c := range changes {
		switch c.Kind {
		case NewTags:
		found:
			for i := range expect {
				if expect[i].Name != image {
					continue
				}
				for j := range expect[i].Digests {
					if d := &expect[i].Digests[j]; d.Digest == c.Digest {
						d.Tags = append(d.Tags, c.Added...)
						slices.Sort(d.Tags)
						break found
					}
				}
			}
		case NewDigest, NewImage:
			appended = append(appended, digestContent{Digest: c.Digest, Tags: slices.Clone(tagsOf[c.Digest])})
		}
	}
	if len(appended) > 0 {
		// In the order written, which is the order of want.
		slices.SortStableFunc(appended, func(a, b digestContent) int {
			return cmp.Compare(slices.IndexFunc(want, func(w want1) bool { return w.digest == a.Digest }),
				slices.IndexFunc(want, func(w want1) bool { return w.digest == b.Digest }))
		})
		if targetIdx >= 0 {
			expect[targetIdx].Digests = append(expect[targetIdx].Digests, appended...)
		} else {
			expect = append(expect, imageContent{Name: image, Digests: appended})
		}
	}
	if got := contentOf(after); !reflect.DeepEqual(got, expect) {
		return fmt.Errorf("internal error: the edited %s does not say what was asked for; nothing written", path)
	}
	for i := range changes {
		c := &changes[i]
	locate:
		for _, e := range after {
			if e.imageName() != image {
				continue
			}
			for _, kv := range e.digests() {
				if kv[0].Value == c.Digest {
					c.Pos = diag.Position{File: path, Line: kv[0].Line, Column: kv[0].Column}
					c.Tags = []string{}
					for _, tn := range tagNodes(kv[1]) {
						c.Tags = append(c.Tags, tn.Value)
					}
					break locate
				}
			}
		}
	}
	slices.SortStableFunc(changes, func(a, b Change) int { return a.Pos.Compare(b.Pos) })
	return nil
}
