package manifestedit

import (
	"bytes"
	"errors"
	"io"
	"slices"

	yaml "go.yaml.in/yaml/v3"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// parse reads a file's one YAML document. It returns nil for a file holding
// nothing but comments (or nothing at all).
func parse(t *text) (*yaml.Node, error) {
	fail := func(format string) error {
		return &Error{Pos: diag.Position{File: t.path}, Message: format}
	}
	if n := t.oddBreak(); n > 0 {
		return nil, &Error{Pos: diag.Position{File: t.path, Line: n}, Message: "line break other than LF or CRLF (a CR alone, NEL, LS or PS): not supported here"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(t.data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fail("not valid YAML: " + err.Error())
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fail("more than one YAML document in the file")
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		root = doc.Content[0]
	}
	if isNull(root) && root.Value == "" {
		return nil, nil
	}
	return root, nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func isFlow(n *yaml.Node) bool { return n.Style&yaml.FlowStyle != 0 }

// entry is one image entry of an images list, as nodes.
type entry struct {
	node    *yaml.Node // the mapping
	nameKey *yaml.Node
	name    *yaml.Node // the value of name (nil when absent)
	dmapKey *yaml.Node
	dmap    *yaml.Node // the value of dmap: a mapping, null, or nil when absent
}

func (e *entry) imageName() string {
	if e.name == nil || isNull(e.name) {
		return ""
	}
	return e.name.Value
}

// digests returns the dmap's key and value nodes, pairwise.
func (e *entry) digests() [][2]*yaml.Node {
	if e.dmap == nil || e.dmap.Kind != yaml.MappingNode {
		return nil
	}
	out := make([][2]*yaml.Node, 0, len(e.dmap.Content)/2)
	for i := 0; i+1 < len(e.dmap.Content); i += 2 {
		out = append(out, [2]*yaml.Node{e.dmap.Content[i], e.dmap.Content[i+1]})
	}
	return out
}

// tagNodes returns the tags of a dmap value (a list or null).
func tagNodes(v *yaml.Node) []*yaml.Node {
	if v.Kind != yaml.SequenceNode {
		return nil
	}
	return v.Content
}

// checkList reads an images list strictly, with the rules of pkg/manifest
// (known keys only, no duplicate keys, the right kinds), and refuses what the
// editor does not rewrite faithfully: anchors, aliases, YAML tags, block
// scalars and scalars spread over several lines. Files like that are rare;
// they are left for a human.
func checkList(t *text, seq *yaml.Node) ([]*entry, error) {
	if err := t.plainNode(seq); err != nil {
		return nil, err
	}
	out := make([]*entry, 0, len(seq.Content))
	for _, it := range seq.Content {
		if err := t.plainNode(it); err != nil {
			return nil, err
		}
		if it.Kind != yaml.MappingNode {
			return nil, t.errorf(it, "an image entry must be a mapping with name and dmap")
		}
		e := &entry{node: it}
		for i := 0; i+1 < len(it.Content); i += 2 {
			k, v := it.Content[i], it.Content[i+1]
			if err := t.plainNodes(k, v); err != nil {
				return nil, err
			}
			if k.Kind != yaml.ScalarNode {
				return nil, t.errorf(k, "an image entry has a key that is not a string")
			}
			switch k.Value {
			case "name":
				if e.nameKey != nil {
					return nil, t.errorf(k, "duplicate key name in an image entry")
				}
				if v.Kind != yaml.ScalarNode {
					return nil, t.errorf(v, "image name must be a string")
				}
				e.nameKey, e.name = k, v
			case "dmap":
				if e.dmapKey != nil {
					return nil, t.errorf(k, "duplicate key dmap in an image entry")
				}
				if v.Kind != yaml.MappingNode && !isNull(v) {
					return nil, t.errorf(v, "dmap must be a mapping of digest to tag list")
				}
				e.dmapKey, e.dmap = k, v
				if err := t.checkDmap(v); err != nil {
					return nil, err
				}
			default:
				return nil, t.errorf(k, "unknown key %q in an image entry", k.Value)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func (t *text) checkDmap(m *yaml.Node) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if err := t.plainNodes(k, v); err != nil {
			return err
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			return t.errorf(k, "a dmap key must be a digest")
		}
		if seen[k.Value] {
			return t.errorf(k, "duplicate digest key %q in dmap", k.Value)
		}
		seen[k.Value] = true
		if v.Kind != yaml.SequenceNode && !isNull(v) {
			return t.errorf(v, "the tag list of %s must be a list", k.Value)
		}
		for _, tag := range tagNodes(v) {
			if err := t.plainNode(tag); err != nil {
				return err
			}
			if tag.Kind != yaml.ScalarNode || isNull(tag) {
				return t.errorf(tag, "a tag must be a string")
			}
		}
	}
	return nil
}

func (t *text) plainNodes(ns ...*yaml.Node) error {
	for _, n := range ns {
		if err := t.plainNode(n); err != nil {
			return err
		}
	}
	return nil
}

// plainNode refuses what the editor cannot rewrite faithfully.
func (t *text) plainNode(n *yaml.Node) error {
	switch {
	case n.Kind == yaml.AliasNode || n.Anchor != "":
		return t.errorf(n, "anchors and aliases are not supported here: write the value out")
	case n.Style&yaml.TaggedStyle != 0:
		return t.errorf(n, "YAML tags (!!str and the like) are not supported here: remove the tag")
	case n.Kind == yaml.ScalarNode:
		if t.scalarEnd(n) < 0 {
			return t.errorf(n, "a value spread over several lines, or in block style, is not supported here: write it on one line")
		}
	}
	return nil
}

// imageContent is what an image entry says, for comparing a file before and
// after an edit: names, digests and tags as read, tags sorted.
type imageContent struct {
	Name    string
	Digests []digestContent
}

type digestContent struct {
	Digest string
	Tags   []string
}

func contentOf(entries []*entry) []imageContent {
	out := make([]imageContent, 0, len(entries))
	for _, e := range entries {
		ic := imageContent{Name: e.imageName()}
		for _, kv := range e.digests() {
			dc := digestContent{Digest: kv[0].Value, Tags: []string{}}
			for _, tag := range tagNodes(kv[1]) {
				dc.Tags = append(dc.Tags, tag.Value)
			}
			slices.Sort(dc.Tags)
			ic.Digests = append(ic.Digests, dc)
		}
		out = append(out, ic)
	}
	return out
}
