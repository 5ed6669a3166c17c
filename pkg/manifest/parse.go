package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/imgpromoter/promoter/pkg/diag"
	yaml "go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest manifest or images file read: a larger one is
// refused before it is read, with a problem saying so. The largest real
// file known (registry.k8s.io's kubernetes project, 20,000 lines) is 1.2 MB;
// reading a file at the limit takes about 13 bytes of memory per byte of
// YAML (docs/manifests.md, "Input safety").
const MaxFileSize = 16 << 20

// maxNodes bounds how many YAML nodes one file may expand to through aliases,
// so that an alias bomb is an error rather than a hang. The budget of a file
// is also bounded by its size (see nodeBudget).
const maxNodes = 10_000_000

// nodeBudget is how many nodes the walker may visit in a file of size bytes.
// A file without aliases never has more nodes than bytes plus a few (every
// node but an empty value needs at least one character), so twice that lets
// every honest file through while an alias bomb, whose expansion can be
// exponential in its size, is stopped after a small multiple of its size
// instead of after maxNodes nodes and problems (gigabytes of memory).
func nodeBudget(size int) int {
	return min(maxNodes, 2*size+1024)
}

// readFile reads a manifest file with the size, encoding and YAML-document
// checks shared by every format. It returns the root mapping or sequence node
// (nil for a file holding only comments) and a walker sized for the file.
func readFile(path string) (*yaml.Node, *walker, *diag.Problem) {
	return readFileIn(filepath.Dir(path), path)
}

// readFileIn is readFile for a path that must lie inside root (see readIn).
func readFileIn(root, path string) (*yaml.Node, *walker, *diag.Problem) {
	data, err := readIn(root, path)
	if err != nil {
		msg := "cannot read: " + unwrapPathError(err).Error()
		var pe *fs.PathError
		switch {
		case errors.Is(err, ErrTooLarge):
			msg = fmt.Sprintf("file is larger than %d MiB", MaxFileSize>>20)
		case errors.As(err, &pe):
			msg = "cannot " + pe.Op + ": " + pe.Err.Error()
		}
		return nil, nil, &diag.Problem{Pos: diag.Position{File: path}, Severity: diag.SeverityError, Code: diag.CodeUnreadable, Message: msg}
	}
	doc, p := parseBytes(path, data)
	if p != nil {
		return nil, nil, p
	}
	w := newWalker(path, len(data))
	w.budget = min(w.budget, aliasBudget(doc))
	return doc, w, nil
}

// maxAliasExpansion is how many nodes more than the file holds the walker
// may visit by following aliases. Honest use of anchors (a tag list shared
// by a few digests) needs a few hundred; the limit stops an alias bomb after
// a few megabytes of memory, whatever the size of the file around it.
const maxAliasExpansion = 100_000

// aliasBudget is the node budget of a file whose tree is root: every node
// it holds once, plus maxAliasExpansion for what its aliases repeat.
func aliasBudget(root *yaml.Node) int {
	n := 0
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if top == nil {
			continue
		}
		n++
		if top.Kind != yaml.AliasNode {
			stack = append(stack, top.Content...)
		}
	}
	return n + maxAliasExpansion
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseBytes is readFile without the file system, for tests and fuzzing.
func parseBytes(path string, data []byte) (*yaml.Node, *diag.Problem) {
	bad := func(line int, format string, args ...any) *diag.Problem {
		return &diag.Problem{Pos: diag.Position{File: path, Line: line}, Severity: diag.SeverityError, Code: diag.CodeUnreadable, Message: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxFileSize {
		return nil, bad(0, "file is larger than %d MiB", MaxFileSize>>20)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, bad(bytes.Count(data[:i], []byte("\n"))+1, "not a text file (NUL byte at offset %d)", i)
	}
	if !utf8.Valid(data) {
		off := validPrefix(data)
		return nil, bad(bytes.Count(data[:off], []byte("\n"))+1, "not valid UTF-8 text (offset %d)", off)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty or only comments
		}
		return nil, bad(yamlErrorLine(err), "not valid YAML: %v", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, bad(line, "not valid YAML: %v", err)
		}
		return nil, bad(line, "more than one YAML document in the file")
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		root = doc.Content[0]
	}
	// A document with nothing in it ("---" and comments) is an empty file,
	// not a null value.
	if root.Kind == yaml.ScalarNode && root.Style == 0 && root.Value == "" && isNull(root) {
		return nil, nil
	}
	return root, nil
}

// yamlLineRE finds the line in the YAML library's syntax errors, which are
// not typed; the line is only used to place the problem.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+):`)

func yamlErrorLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func validPrefix(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// walker turns YAML nodes into the model, recording every structural problem.
type walker struct {
	file     string
	budget   int // most nodes to visit; zero means maxNodes
	nodes    int
	problems []diag.Problem
	exploded bool
}

// newWalker returns a walker for a file of size bytes.
func newWalker(file string, size int) *walker {
	return &walker{file: file, budget: nodeBudget(size)}
}

func (w *walker) pos(n *yaml.Node) diag.Position {
	return diag.Position{File: w.file, Line: n.Line, Column: n.Column}
}

func (w *walker) errorf(n *yaml.Node, entry, format string, args ...any) {
	w.problems = append(w.problems, diag.Problem{Pos: w.pos(n), Severity: diag.SeverityError, Code: diag.CodeSyntax, Entry: entry, Message: fmt.Sprintf(format, args...)})
}

// resolve follows aliases and charges the node budget.
func (w *walker) resolve(n *yaml.Node) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode; depth++ {
		if depth > 100 {
			return nil
		}
		n = n.Alias
	}
	budget := w.budget
	if budget <= 0 {
		budget = maxNodes
	}
	w.nodes++
	if w.nodes > budget {
		if !w.exploded {
			w.exploded = true
			w.problems = append(w.problems, diag.Problem{Pos: diag.Position{File: w.file}, Severity: diag.SeverityError, Code: diag.CodeUnreadable,
				Message: fmt.Sprintf("YAML aliases expand to more than %d nodes (an alias bomb?): the rest of the file is not read", budget)})
		}
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		// Custom and verbatim tags (!foo, !<x>) can be shorter than "!!";
		// only the standard ones read well without their prefix.
		t := n.ShortTag()
		if !strings.HasPrefix(t, "!!") {
			return "a scalar tagged " + strconv.Quote(t)
		}
		return "a " + t[2:] + " scalar"
	default:
		return "an unexpected node"
	}
}

// fields walks a mapping, calling handle for each known key; unknown keys,
// duplicate keys and non-mapping values are problems. It returns false when
// the node is not a mapping at all.
func (w *walker) fields(n *yaml.Node, what, entry string, handle map[string]func(k, v *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		w.errorf(n, entry, "%s must be a mapping, found %s", what, kindName(n))
		return false
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := w.resolve(n.Content[i])
		v := w.resolve(n.Content[i+1])
		if k == nil || v == nil {
			return false
		}
		if k.Kind != yaml.ScalarNode {
			w.errorf(k, entry, "%s has a key that is %s", what, kindName(k))
			ok = false
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.problems = append(w.problems, diag.Problem{Pos: w.pos(k), Severity: diag.SeverityError, Code: diag.CodeSyntax, Entry: entry,
				Message: fmt.Sprintf("duplicate key %q in %s", k.Value, what), Related: ptr(w.pos(first))})
			ok = false
			continue
		}
		seen[k.Value] = k
		h, known := handle[k.Value]
		if !known {
			w.errorf(k, entry, "unknown key %q in %s", k.Value, what)
			ok = false
			continue
		}
		h(k, v)
	}
	return ok
}

func ptr[T any](v T) *T { return &v }

// str reads a scalar as the exact text written; null reads as "".
func (w *walker) str(n *yaml.Node, what, entry string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		w.errorf(n, entry, "%s must be a string, found %s", what, kindName(n))
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

// list returns the items of a sequence (null is an empty list).
func (w *walker) list(n *yaml.Node, what, entry string) ([]*yaml.Node, bool) {
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		w.errorf(n, entry, "%s must be a list, found %s", what, kindName(n))
		return nil, false
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		c = w.resolve(c)
		if c == nil {
			return nil, false
		}
		out = append(out, c)
	}
	return out, true
}

func (w *walker) registries(n *yaml.Node) ([]Registry, bool) {
	before := len(w.problems)
	items, ok := w.list(n, "registries", "")
	if !ok {
		return nil, false
	}
	out := make([]Registry, 0, len(items))
	for i, it := range items {
		r := Registry{Pos: w.pos(it)}
		entry := fmt.Sprintf("registry #%d", i+1)
		w.fields(it, "a registry", entry, map[string]func(k, v *yaml.Node){
			"name": func(_, v *yaml.Node) {
				r.Name, _ = w.str(v, "registry name", entry)
			},
			"src": func(_, v *yaml.Node) {
				if v.Kind != yaml.ScalarNode || (v.Tag != "!!bool" && !isNull(v)) {
					w.errorf(v, entry, "src must be true or false, found %s", kindName(v))
					return
				}
				r.Src = v.Value == "true" || v.Value == "True" || v.Value == "TRUE"
			},
			"service-account": func(_, v *yaml.Node) {
				if s, ok := w.str(v, "service-account", entry); ok {
					r.ServiceAccount = s
				}
			},
			"referrers": func(_, v *yaml.Node) {
				r.Referrers = w.referrers(v, entry)
			},
		})
		out = append(out, r)
	}
	// A registries list with any structural problem is not used: guessing
	// which registry is the source would risk promoting to the wrong place.
	if len(w.problems) > before {
		ok = false
	}
	return out, ok
}

func (w *walker) images(n *yaml.Node) []Image {
	items, ok := w.list(n, "images", "")
	if !ok {
		return nil
	}
	out := make([]Image, 0, len(items))
	for i, it := range items {
		out = append(out, w.image(it, i))
	}
	return out
}

func (w *walker) image(n *yaml.Node, index int) Image {
	img := Image{Pos: w.pos(n)}
	before := len(w.problems)
	entry := fmt.Sprintf("image #%d", index+1)
	// Read the name first so that problems in the dmap can name the image.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "name" {
				if v := n.Content[i+1]; v.Kind == yaml.ScalarNode && !isNull(v) {
					entry = "image " + v.Value
				}
				break // the first name is the one read; a second is a duplicate key
			}
		}
	}
	w.fields(n, "an image entry", entry, map[string]func(k, v *yaml.Node){
		"name": func(_, v *yaml.Node) {
			if s, ok := w.str(v, "image name", entry); ok {
				img.Name = s
			}
		},
		"dmap": func(_, v *yaml.Node) {
			img.Digests = w.dmap(v, entry)
		},
		"referrers": func(_, v *yaml.Node) {
			img.Referrers = w.referrers(v, entry)
		},
	})
	// After an alias explosion nothing more is read, so the entry is
	// incomplete even when it has no problem of its own.
	img.Broken = len(w.problems) > before || w.exploded
	return img
}

// referrers reads the optional supply-chain carrying settings:
// {carry: bool, artifactTypes: [string]}.
func (w *walker) referrers(n *yaml.Node, entry string) *Referrers {
	r := &Referrers{Carry: true, Pos: w.pos(n)}
	if n.Kind != yaml.MappingNode {
		w.errorf(n, entry, "referrers must be a mapping (carry, artifactTypes), found %s", kindName(n))
		return r
	}
	w.fields(n, "referrers", entry, map[string]func(k, v *yaml.Node){
		"carry": func(_, v *yaml.Node) {
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
				w.errorf(v, entry, "carry must be true or false, found %s", kindName(v))
				return
			}
			r.Carry = v.Value == "true" || v.Value == "True" || v.Value == "TRUE"
		},
		"artifactTypes": func(_, v *yaml.Node) {
			items, ok := w.list(v, "artifactTypes", entry)
			if !ok {
				return
			}
			for _, t := range items {
				if t.Kind != yaml.ScalarNode || isNull(t) || t.Value == "" {
					w.errorf(t, entry, "an artifact type must be a non-empty string, found %s", kindName(t))
					continue
				}
				r.ArtifactTypes = append(r.ArtifactTypes, t.Value)
			}
		},
	})
	return r
}

func (w *walker) dmap(n *yaml.Node, entry string) []DigestEntry {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		w.errorf(n, entry, "dmap must be a mapping of digest to tag list, found %s", kindName(n))
		return nil
	}
	out := make([]DigestEntry, 0, len(n.Content)/2)
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := w.resolve(n.Content[i])
		v := w.resolve(n.Content[i+1])
		if k == nil || v == nil {
			return out
		}
		d, ok := w.str(k, "digest", entry)
		if !ok {
			continue
		}
		if first, dup := seen[d]; dup {
			w.problems = append(w.problems, diag.Problem{Pos: w.pos(k), Severity: diag.SeverityError, Code: diag.CodeSyntax, Entry: entry,
				Message: fmt.Sprintf("duplicate digest key %q in dmap", d), Related: ptr(w.pos(first))})
			continue
		}
		seen[d] = k
		de := DigestEntry{Digest: d, Pos: w.pos(k)}
		items, ok := w.list(v, "the tag list of "+d, entry)
		if !ok {
			continue
		}
		de.Tags = make([]Tag, 0, len(items))
		for _, t := range items {
			if t.Kind != yaml.ScalarNode || isNull(t) {
				w.errorf(t, entry, "tag must be a string, found %s", kindName(t))
				continue
			}
			de.Tags = append(de.Tags, Tag{Name: t.Value, Pos: w.pos(t)})
		}
		out = append(out, de)
	}
	return out
}
