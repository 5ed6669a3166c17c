package validate

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imgpromoter/promoter/pkg/manifest"
)

// FuzzValidate reads arbitrary bytes as a plain manifest and validates them:
// no panic, every problem and group placed in the file, and the stats
// consistent with the groups.
//
// Run: go test -run XXX -fuzz FuzzValidate -fuzztime 60s ./pkg/validate/
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		doc([]string{"src:gcr.io/src", "r.io/a", "r.io/b/c"}, img("x/y", digA, "v1, v2", digB, "")),
		doc([]string{"src:gcr.io/src", "r.io/a", "r.io/a", "gcr.io/src", "Bad"}, img("ok", digA, "v1, -bad"), img("Bad", digA, "v1")),
		doc([]string{"src:gcr.io/s", "r.io/a"}, img("x", digA, "v1", digB, "v1, v2"), img("x", digC, "v1")),
		doc([]string{"src:gcr.io/s1", "r.io/a"}, img("b/c", digA, "v1")) + "- name: c\n  dmap: {" + digB + ": [v1]}\n",
		doc([]string{"r.io/a"}, img("x", "sha256:1", "1.20")),
	} {
		f.Add([]byte(s))
	}
	// One file per fuzzing process, rewritten by each input: iterations of
	// a process run one at a time.
	path := filepath.Join(f.TempDir(), "m.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		res := Validate(manifest.Load(manifest.Inputs{Files: []string{path}}))
		for _, p := range res.Problems {
			if p.Pos.File != path || (p.Related != nil && p.Related.File != path) {
				t.Errorf("problem %q is not placed in %s", p.String(), path)
			}
		}
		edges := 0
		for _, g := range res.Groups {
			edges += g.EdgeCount()
			if g.Pos.File != path || len(g.Dests) == 0 {
				t.Errorf("group %v: position %v, %d destinations", g.Source, g.Pos, len(g.Dests))
			}
			for i := 1; i < len(g.Tags); i++ {
				if g.Tags[i-1].Name >= g.Tags[i].Name {
					t.Errorf("group %v: tags not sorted and unique: %v", g.Source, g.Tags)
				}
			}
		}
		if res.Stats.ValidEdges != edges || edges > res.Stats.Edges {
			t.Errorf("stats %+v, groups hold %d edges", res.Stats, edges)
		}
	})
}
