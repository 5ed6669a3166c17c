package manifest

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/imgpromoter/promoter/pkg/diag"
	yaml "go.yaml.in/yaml/v3"
)

// Thin-manifest layout names, as kpromo lays them out.
const (
	ThinManifestsDir = "manifests"
	ThinImagesDir    = "images"
	ThinManifestFile = "promoter-manifest.yaml"
	ThinImagesFile   = "images.yaml"
)

// Inputs names what to read: plain manifest files and thin manifest
// directories, in any number.
type Inputs struct {
	Files    []string
	ThinDirs []string
}

// Load reads every input. Problems never stop the load: they are collected in
// the returned set, and broken parts are marked so later stages skip them.
// Manifests are ordered by file name.
func Load(in Inputs) *Set {
	s := &Set{}
	for _, f := range in.Files {
		m, probs := LoadFile(f)
		s.Problems = append(s.Problems, probs...)
		if m != nil {
			s.Manifests = append(s.Manifests, m)
		}
	}
	for _, d := range in.ThinDirs {
		ms, probs := LoadThinDir(d)
		s.Manifests = append(s.Manifests, ms...)
		s.Problems = append(s.Problems, probs...)
	}
	slices.SortStableFunc(s.Manifests, func(a, b *Manifest) int { return cmp.Compare(a.File, b.File) })
	diag.Sort(s.Problems)
	return s
}

// LoadFile reads a plain manifest: a mapping with "registries" and "images".
// A nil manifest is returned only when the file could not be read at all.
func LoadFile(path string) (*Manifest, []diag.Problem) {
	root, w, bad := readFile(path)
	if bad != nil {
		return nil, []diag.Problem{*bad}
	}
	m := &Manifest{File: path, ImagesFile: path, Pos: diag.Position{File: path}}
	if root == nil {
		m.Broken = true
		return m, []diag.Problem{{Pos: m.Pos, Severity: diag.SeverityError, Code: diag.CodeSyntax, Message: "manifest is empty: it needs registries and images"}}
	}
	w.manifestFields(root, m, "a manifest", map[string]func(k, v *yaml.Node){
		"images": func(_, v *yaml.Node) { m.Images = w.images(v) },
	})
	return m, w.problems
}

// manifestFields reads the top-level mapping of a manifest: "registries"
// plus the format's other keys. Without registries there is no source: the
// manifest is excluded here, once, rather than again by every later check.
func (w *walker) manifestFields(root *yaml.Node, m *Manifest, what string, other map[string]func(k, v *yaml.Node)) {
	sawRegistries := false
	other["registries"] = func(k, v *yaml.Node) {
		sawRegistries = true
		m.Pos = w.pos(k)
		var good bool
		m.Registries, good = w.registries(v)
		m.Broken = m.Broken || !good
	}
	w.fields(root, what, "", other)
	if !sawRegistries {
		m.Broken = true
		if root.Kind == yaml.MappingNode && !w.exploded { // otherwise already reported
			w.errorf(root, "", "%s has no registries", what[2:])
		}
	}
}

// parseThinManifest reads a promoter-manifest.yaml: registries and the
// deprecated imagesPath.
func parseThinManifest(path string) (m *Manifest, imagesPath string, probs []diag.Problem) {
	root, w, bad := readFile(path)
	if bad != nil {
		return nil, "", []diag.Problem{*bad}
	}
	m = &Manifest{File: path, Pos: diag.Position{File: path}}
	if root == nil {
		m.Broken = true
		return m, "", []diag.Problem{{Pos: m.Pos, Severity: diag.SeverityError, Code: diag.CodeSyntax, Message: "promoter manifest is empty: it needs registries"}}
	}
	w.manifestFields(root, m, "a promoter manifest", map[string]func(k, v *yaml.Node){
		"imagesPath": func(k, v *yaml.Node) {
			s, ok := w.str(v, "imagesPath", "")
			if !ok {
				return
			}
			imagesPath = s
			w.problems = append(w.problems, diag.Problem{Pos: w.pos(k), Severity: diag.SeverityWarning, Code: diag.CodeDeprecated,
				Message: "imagesPath is deprecated (kpromo reads images/<project>/images.yaml): move the images there and remove the key"})
		},
	})
	return m, imagesPath, w.problems
}

// parseImagesFile reads a thin images.yaml: a bare list of images (a file with
// only comments is an empty list).
func parseImagesFile(path string) ([]Image, []diag.Problem) {
	root, w, bad := readFile(path)
	if bad != nil {
		return nil, []diag.Problem{*bad}
	}
	if root == nil {
		return nil, nil
	}
	return w.images(root), w.problems
}

// LoadThinDir reads a thin manifest directory: every
// manifests/<project>/promoter-manifest.yaml paired with
// images/<project>/images.yaml. Other files are ignored. A manifest without
// its images file, an images file without its manifest, and either one nested
// deeper than <project>/ are layout problems.
func LoadThinDir(root string) ([]*Manifest, []diag.Problem) {
	var probs []diag.Problem
	layout := func(path, format string, args ...any) {
		probs = append(probs, diag.Problem{Pos: diag.Position{File: path}, Severity: diag.SeverityError, Code: diag.CodeLayout, Message: fmt.Sprintf(format, args...)})
	}
	st, err := os.Stat(root)
	if err != nil || !st.IsDir() {
		msg := "not a directory"
		if err != nil {
			msg = unwrapPathError(err).Error()
		}
		return nil, []diag.Problem{{Pos: diag.Position{File: root}, Severity: diag.SeverityError, Code: diag.CodeUnreadable, Message: "cannot read thin manifest directory: " + msg}}
	}
	manifests := map[string]string{} // project -> path
	images := map[string]string{}
	scan := func(sub, want string, into map[string]string) {
		dir := filepath.Join(root, sub)
		if _, err := os.Stat(dir); err != nil {
			if sub == ThinManifestsDir {
				layout(dir, "thin manifest directory has no %s/ folder", sub)
			}
			return
		}
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				probs = append(probs, diag.Problem{Pos: diag.Position{File: path}, Severity: diag.SeverityError, Code: diag.CodeUnreadable, Message: unwrapPathError(err).Error()})
				return nil
			}
			if d.IsDir() || d.Name() != want {
				return nil
			}
			rel, _ := filepath.Rel(dir, path)
			parts := strings.Split(filepath.ToSlash(rel), "/")
			if len(parts) != 2 {
				layout(path, "%s must sit at %s/<project>/%s, not deeper or shallower", want, sub, want)
				return nil
			}
			into[parts[0]] = path
			return nil
		})
		if err != nil {
			layout(dir, "cannot walk: %v", err)
		}
	}
	scan(ThinManifestsDir, ThinManifestFile, manifests)
	scan(ThinImagesDir, ThinImagesFile, images)

	projects := make([]string, 0, len(manifests))
	for p := range manifests {
		projects = append(projects, p)
	}
	slices.Sort(projects)
	var out []*Manifest
	used := map[string]bool{}
	for _, p := range projects {
		mpath := manifests[p]
		m, imagesPath, mp := parseThinManifest(mpath)
		probs = append(probs, mp...)
		if m == nil {
			// Unreadable: its images file is accounted for but not read.
			if ip, ok := images[p]; ok {
				used[ip] = true
			}
			continue
		}
		m.Project = p
		ipath, ok := images[p]
		if imagesPath != "" {
			ipath = filepath.Join(filepath.Dir(mpath), filepath.FromSlash(imagesPath))
			_, err := os.Stat(ipath)
			ok = err == nil
		}
		if !ok {
			expected := filepath.Join(root, ThinImagesDir, p, ThinImagesFile)
			if imagesPath != "" {
				expected = ipath + " (from imagesPath)"
			}
			layout(mpath, "project %s has no images file (expected %s)", p, expected)
			m.ImagesFile = ""
			out = append(out, m)
			continue
		}
		used[filepath.Clean(ipath)] = true
		m.ImagesFile = ipath
		imgs, ip := parseImagesFile(ipath)
		probs = append(probs, ip...)
		m.Images = imgs
		out = append(out, m)
	}
	for p, ipath := range images {
		if !used[filepath.Clean(ipath)] {
			layout(ipath, "images file of project %s has no promoter manifest (expected %s)", p, filepath.Join(root, ThinManifestsDir, p, ThinManifestFile))
		}
	}
	diag.Sort(probs)
	return out, probs
}
