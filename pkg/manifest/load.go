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

// pathField is a file name read from a manifest, with where it was read.
type pathField struct {
	value string
	pos   diag.Position
}

// parseThinManifest reads a promoter-manifest.yaml inside the thin directory
// dir: registries and the deprecated imagesPath, which it returns for the
// caller to warn about (it is never read).
func parseThinManifest(path string) (*Manifest, *pathField, []diag.Problem) {
	return parseThinManifestIn(filepath.Dir(path), path)
}

// parseThinManifestIn is parseThinManifest for a file inside the thin
// directory dir.
func parseThinManifestIn(dir, path string) (m *Manifest, imagesPath *pathField, probs []diag.Problem) {
	root, w, bad := readFileIn(dir, path)
	if bad != nil {
		return nil, nil, []diag.Problem{*bad}
	}
	m = &Manifest{File: path, Pos: diag.Position{File: path}}
	if root == nil {
		m.Broken = true
		return m, nil, []diag.Problem{{Pos: m.Pos, Severity: diag.SeverityError, Code: diag.CodeSyntax, Message: "promoter manifest is empty: it needs registries"}}
	}
	w.manifestFields(root, m, "a promoter manifest", map[string]func(k, v *yaml.Node){
		"imagesPath": func(k, v *yaml.Node) {
			if s, ok := w.str(v, "imagesPath", ""); ok {
				imagesPath = &pathField{value: s, pos: w.pos(k)}
			}
		},
	})
	return m, imagesPath, w.problems
}

// parseImagesFile reads a thin images.yaml: a bare list of images (a file with
// only comments is an empty list).
func parseImagesFile(path string) ([]Image, []diag.Problem) {
	return parseImagesFileIn(filepath.Dir(path), path)
}

// parseImagesFileIn is parseImagesFile for a file inside the thin directory
// dir.
func parseImagesFileIn(dir, path string) ([]Image, []diag.Problem) {
	root, w, bad := readFileIn(dir, path)
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
// its images file, an images file without its manifest, either one nested
// deeper than <project>/, and a directory without any project manifest are
// layout problems.
//
// Only files inside root are read, and only regular files: symbolic links
// are never followed (a linked manifests/ or images/ folder, project folder
// or file is reported, not read), and the deprecated imagesPath is never
// read either: as kpromo does, the images of project P are always
// images/P/images.yaml, with a warning when imagesPath names another file.
func LoadThinDir(root string) ([]*Manifest, []diag.Problem) {
	var probs []diag.Problem
	layout := func(path, format string, args ...any) {
		probs = append(probs, diag.Problem{Pos: diag.Position{File: path}, Severity: diag.SeverityError, Code: diag.CodeLayout, Message: fmt.Sprintf(format, args...)})
	}
	unreadable := func(path string, err error) {
		probs = append(probs, diag.Problem{Pos: diag.Position{File: path}, Severity: diag.SeverityError, Code: diag.CodeUnreadable, Message: unwrapPathError(err).Error()})
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
	found := map[string]bool{} // sub -> some file of the wanted name was found
	scan := func(sub, want string, into map[string]string) {
		dir := filepath.Join(root, sub)
		st, err := os.Lstat(dir)
		switch {
		case err != nil:
			if sub == ThinManifestsDir {
				layout(dir, "thin manifest directory has no %s/ folder", sub)
			}
			return
		case st.Mode()&fs.ModeSymlink != 0:
			found[sub] = true
			unreadable(dir, ErrSymlink)
			return
		}
		err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				unreadable(path, err)
				return nil
			}
			rel, _ := filepath.Rel(dir, path)
			parts := strings.Split(filepath.ToSlash(rel), "/")
			// WalkDir does not follow links; a linked project folder
			// would otherwise be skipped without a word.
			if d.Type()&fs.ModeSymlink != 0 && len(parts) == 1 && d.Name() != want {
				unreadable(path, ErrSymlink)
				return nil
			}
			if d.IsDir() || d.Name() != want {
				return nil
			}
			found[sub] = true
			if len(parts) != 2 {
				layout(path, "%s must sit at %s/<project>/%s, not deeper or shallower", want, sub, want)
				return nil
			}
			// A link, a named pipe or a device is refused when read, with
			// the reason.
			into[parts[0]] = path
			return nil
		})
		if err != nil {
			layout(dir, "cannot walk: %v", err)
		}
	}
	scan(ThinManifestsDir, ThinManifestFile, manifests)
	scan(ThinImagesDir, ThinImagesFile, images)
	if _, err := os.Lstat(filepath.Join(root, ThinManifestsDir)); err == nil && !found[ThinManifestsDir] {
		// As kpromo: a misspelt promoter-manifest.yaml must not pass as a
		// directory with nothing to promote.
		layout(root, "thin manifest directory has no project manifest (expected %s)", filepath.Join(root, ThinManifestsDir, "<project>", ThinManifestFile))
	}

	projects := make([]string, 0, len(manifests))
	for p := range manifests {
		projects = append(projects, p)
	}
	slices.Sort(projects)
	var out []*Manifest
	used := map[string]bool{}
	for _, p := range projects {
		mpath := manifests[p]
		m, imagesPath, mp := parseThinManifestIn(root, mpath)
		probs = append(probs, mp...)
		ipath, ok := images[p]
		if ok {
			used[ipath] = true
		}
		if m == nil {
			continue // unreadable: its images file is accounted for but not read
		}
		m.Project = p
		canonical := filepath.Join(root, ThinImagesDir, p, ThinImagesFile)
		if imagesPath != nil {
			probs = append(probs, imagesPathWarning(imagesPath, mpath, canonical, root))
		}
		if !ok {
			layout(mpath, "project %s has no images file (expected %s)", p, canonical)
			m.ImagesFile = ""
			out = append(out, m)
			continue
		}
		m.ImagesFile = ipath
		imgs, ip := parseImagesFileIn(root, ipath)
		probs = append(probs, ip...)
		m.Images = imgs
		out = append(out, m)
	}
	for p, ipath := range images {
		if !used[ipath] {
			layout(ipath, "images file of project %s has no promoter manifest (expected %s)", p, filepath.Join(root, ThinManifestsDir, p, ThinManifestFile))
		}
	}
	diag.Sort(probs)
	return out, probs
}

// imagesPathWarning is the warning for the deprecated imagesPath of the
// promoter manifest mpath. The field is never read: the images are always
// read from canonical, so it only says whether the field names that file.
func imagesPathWarning(f *pathField, mpath, canonical, root string) diag.Problem {
	msg := "imagesPath is deprecated (kpromo reads images/<project>/images.yaml): move the images there and remove the key"
	named := filepath.Join(filepath.Dir(mpath), filepath.FromSlash(f.value))
	if filepath.IsAbs(f.value) || named != canonical {
		rel, _ := filepath.Rel(root, canonical)
		msg = fmt.Sprintf("imagesPath is deprecated and ignored: it names %q, but the images are read from %s, as kpromo reads them (never from another file): move them there and remove the key",
			f.value, filepath.ToSlash(rel))
	}
	return diag.Problem{Pos: f.pos, Severity: diag.SeverityWarning, Code: diag.CodeDeprecated, Message: msg}
}
