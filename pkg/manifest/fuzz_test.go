package manifest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// FuzzParse feeds arbitrary bytes to every reader: as a plain manifest, a thin
// promoter manifest and a thin images file. It must never panic, every problem
// must name the file it is about, and a file without aliases must never be
// taken for an alias bomb.
//
// Run: go test -run XXX -fuzz FuzzParse -fuzztime 60s ./pkg/manifest/
func FuzzParse(f *testing.F) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil {
			f.Add(data)
		}
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		strictHeader + "- name: a\n  dmap:\n    " + digA + ": &t [v1]\n    " + digB + ": *t\n",
		strictHeader + "- !<x> a\n",
		"registries: !!str\nimages: !!null\n",
		"imagesPath: x\nregistries: [{name: a, src: true, service-account: b}]\n",
		"---\n...\n",
	} {
		f.Add([]byte(s))
	}
	// One file per fuzzing process, rewritten by each input: iterations of
	// a process run one at a time.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		// The reader as it runs on files, without the file system.
		root, bad := parseBytes(name, data)
		if bad != nil {
			checkProblems(t, name, []diag.Problem{*bad})
		}
		if root != nil {
			images, registries := newWalker(name, len(data)), newWalker(name, len(data))
			images.images(root)
			registries.registries(root)
			for _, w := range []*walker{images, registries} {
				checkProblems(t, name, w.problems)
				if w.exploded && !bytes.Contains(data, []byte("*")) {
					t.Errorf("a file without aliases (%d bytes, %d nodes) was taken for an alias bomb", len(data), w.nodes)
				}
			}
		}

		// The whole readers, from a file.
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, probs := LoadFile(path)
		checkProblems(t, path, probs)
		checkManifest(t, path, path, m)
		tm, _, probs := parseThinManifest(path)
		checkProblems(t, path, probs)
		checkManifest(t, path, "", tm)
		imgs, probs := parseImagesFile(path)
		checkProblems(t, path, probs)
		checkManifest(t, "", path, &Manifest{File: "", Pos: diag.Position{}, Images: imgs})
	})
}

func checkProblems(t *testing.T, file string, ps []diag.Problem) {
	t.Helper()
	for _, p := range ps {
		if p.Pos.File != file || p.Pos.Line < 0 || p.Pos.Column < 0 {
			t.Errorf("problem %q: position %+v, want one in %s", p.String(), p.Pos, file)
		}
		if p.Related != nil && p.Related.File != file {
			t.Errorf("problem %q: related position %+v, want one in %s", p.String(), *p.Related, file)
		}
		if p.Code == "" || p.Message == "" || (p.Severity != diag.SeverityError && p.Severity != diag.SeverityWarning) {
			t.Errorf("problem %+v: missing code, message or severity", p)
		}
	}
}

// checkManifest checks that every position read is in the file it came from.
func checkManifest(t *testing.T, file, imagesFile string, m *Manifest) {
	t.Helper()
	if m == nil {
		return
	}
	check := func(what string, p diag.Position, file string) {
		if p.File != file || p.Line < 0 || p.Column < 0 {
			t.Errorf("%s: position %+v, want one in %q", what, p, file)
		}
	}
	check("manifest", m.Pos, file)
	for _, r := range m.Registries {
		check("registry "+r.Name, r.Pos, file)
	}
	for _, img := range m.Images {
		check("image "+img.Name, img.Pos, imagesFile)
		for _, d := range img.Digests {
			check("digest "+d.Digest, d.Pos, imagesFile)
			for _, tag := range d.Tags {
				check("tag "+tag.Name, tag.Pos, imagesFile)
			}
		}
	}
}
