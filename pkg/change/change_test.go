package change_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/change"
	"github.com/imgpromoter/promoter/pkg/gitrev"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/validate"
)

func digest(c string) string { return "sha256:" + strings.Repeat(c, 64) }

// letters name the test digests in manifests (<A>) and in expectations (A).
var letters = []string{"A", "B", "C", "D", "E"}

// expand replaces <A>... with full digests and \n with the line ending.
func expand(s, eol string) string {
	for _, l := range letters {
		s = strings.ReplaceAll(s, "<"+l+">", digest(strings.ToLower(l)))
	}
	return strings.ReplaceAll(s, "\n", eol)
}

// shorten replaces full digests with their letters, for readable expectations.
func shorten(s string) string {
	for _, l := range letters {
		s = strings.ReplaceAll(s, digest(strings.ToLower(l)), l)
	}
	return s
}

func writeFiles(t *testing.T, dir string, files map[string]string, eol string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if body == "" {
			if err := os.RemoveAll(full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(expand(body, eol)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	thinDir   = "deploy/promo"
	plainFile = "deploy/plain.yaml"
	manifestP = thinDir + "/manifests/p/promoter-manifest.yaml"
	imagesP   = thinDir + "/images/p/images.yaml"
	manifestQ = thinDir + "/manifests/q/promoter-manifest.yaml"
	imagesQ   = thinDir + "/images/q/images.yaml"
)

// The base: project p (staging to prod and a mirror) and a plain manifest
// (staging to prod only), in a sub-folder of the repository.
var baseFiles = map[string]string{
	manifestP: "registries:\n- name: r.example/stg\n  src: true\n- name: r.example/prod\n- name: m.example/mirror\n",
	imagesP: `- name: app
  dmap:
    "<A>": ["1.0"]
    "<B>": ["1.1", "latest"]
- name: tool
  dmap:
    "<C>": []
`,
	plainFile: `registries:
- name: r.example/stg
  src: true
- name: r.example/prod
images:
- name: lib
  dmap:
    "<D>":
    - "3.0"
`,
}

const imagesPNoTool = `- name: app
  dmap:
    "<A>": ["1.0"]
    "<B>": ["1.1", "latest"]
`

// states commits base, writes head over it in the work tree (eol for the
// head files), and reads both states of the inputs.
func states(t *testing.T, head map[string]string, eol string) (dir string, base, now change.State) {
	t.Helper()
	dir = t.TempDir()
	testenv.Git(t, dir, "init", "-q", "-b", "main")
	writeFiles(t, dir, baseFiles, "\n")
	testenv.Git(t, dir, "add", "-A")
	testenv.Git(t, dir, "commit", "-q", "-m", "base")
	writeFiles(t, dir, head, eol)
	in := manifest.Inputs{Files: []string{filepath.Join(dir, plainFile)}, ThinDirs: []string{filepath.Join(dir, thinDir)}}
	snap, err := gitrev.Load(context.Background(), "HEAD", in)
	if err != nil {
		t.Fatal(err)
	}
	return dir, change.Read(snap.Set), change.Read(manifest.Load(in))
}

// edges renders a result's edges as "source@digest -> destination[:tag]".
func edges(res *validate.Result) []string {
	var out []string
	for _, g := range res.Groups {
		for _, e := range g.Edges() {
			s := g.Source.Context().Name() + "@" + g.Digest.String() + " -> " + e.Dest.Name()
			if e.Tag != "" {
				s += ":" + e.Tag
			}
			out = append(out, shorten(s))
		}
	}
	slices.Sort(out)
	return out
}

// findings renders findings as "kind key position [(base)] [destinations]".
func findings(dir string, r *change.Report) []string {
	var out []string
	for _, f := range r.Findings {
		s := fmt.Sprintf("%s %s %s", f.Kind, f.Key, strings.TrimPrefix(f.Position.String(), dir+string(filepath.Separator)))
		if f.AtBase {
			s += " (base)"
		}
		if f.Related != nil {
			s += " was " + strings.TrimPrefix(f.Related.String(), dir+string(filepath.Separator))
		}
		if f.Allowed {
			s += " allowed"
		}
		s += " [" + strings.Join(f.Destinations, " ") + "]"
		out = append(out, shorten(s))
	}
	return out
}

func TestChange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		head     map[string]string
		eol      string
		allow    []string
		added    []string
		findings []string
		unused   []string
		accepted bool
	}{
		{name: "unchanged", accepted: true},
		{
			name: "reformatted, reordered, commented",
			head: map[string]string{
				manifestP: "# promotion of p\nregistries: [{name: m.example/mirror}, {name: 'r.example/prod'}, {src: true, name: r.example/stg}]\n",
				imagesP: `# images of project p
- {name: tool, dmap: {'<C>': []}}
- dmap:
    '<B>':
    - latest   # the newest
    - "1.1"
    <A>: [1.0]
  name: app
`,
				plainFile: "registries:\n  - {name: r.example/stg, src: true}\n  - name: \"r.example/prod\"\nimages: [{name: lib, dmap: {\"<D>\": [\"3.0\"]}}]\n",
			},
			accepted: true,
		},
		{
			name: "CRLF line endings",
			head: map[string]string{manifestP: baseFiles[manifestP], imagesP: baseFiles[imagesP], plainFile: baseFiles[plainFile]},
			eol:  "\r\n", accepted: true,
		},
		{
			name: "entries moved to another project and from the plain file",
			head: map[string]string{
				imagesP:   imagesPNoTool,
				manifestQ: "registries:\n- name: r.example/stg\n  src: true\n- name: m.example/mirror\n- name: r.example/prod\n",
				imagesQ:   "- name: tool\n  dmap:\n    \"<C>\": []\n- name: lib\n  dmap:\n    \"<D>\": [\"3.0\"]\n",
				plainFile: "registries:\n- name: r.example/stg\n  src: true\n- name: r.example/prod\nimages: []\n",
			},
			// lib now also goes to the mirror: that is added, nothing removed.
			added:    []string{"r.example/stg/lib@D -> m.example/mirror/lib:3.0"},
			accepted: true,
		},
		{
			name:     "unquoted digest key added",
			head:     map[string]string{imagesP: baseFiles[imagesP] + "- name: app\n  dmap:\n    <E>: [\"2.0\"]\n"},
			added:    []string{"r.example/stg/app@E -> m.example/mirror/app:2.0", "r.example/stg/app@E -> r.example/prod/app:2.0"},
			accepted: true,
		},
		{
			name:     "tag added to a digest-only entry",
			head:     map[string]string{imagesP: strings.Replace(baseFiles[imagesP], `"<C>": []`, `"<C>": [v1]`, 1)},
			added:    []string{"r.example/stg/tool@C -> m.example/mirror/tool:v1", "r.example/stg/tool@C -> r.example/prod/tool:v1"},
			accepted: true,
		},
		{
			name: "destination added",
			head: map[string]string{manifestP: baseFiles[manifestP] + "- name: n.example/new\n"},
			added: []string{
				"r.example/stg/app@A -> n.example/new/app:1.0", "r.example/stg/app@B -> n.example/new/app:1.1",
				"r.example/stg/app@B -> n.example/new/app:latest", "r.example/stg/tool@C -> n.example/new/tool",
			},
			accepted: true,
		},
		{
			name: "entry moved to a project with other destinations",
			head: map[string]string{
				imagesP:   imagesPNoTool,
				manifestQ: "registries:\n- name: r.example/stg\n  src: true\n- name: r.example/prod\n- name: x.example/q\n",
				imagesQ:   "- name: tool\n  dmap:\n    \"<C>\": []\n",
			},
			added:    []string{"r.example/stg/tool@C -> x.example/q/tool"},
			findings: []string{"digest-removed r.example/stg/tool@C " + imagesP + ":7:5 (base) [m.example/mirror/tool]"},
		},
		{
			name:     "digest removed",
			head:     map[string]string{imagesP: strings.Replace(baseFiles[imagesP], "    \"<B>\": [\"1.1\", \"latest\"]\n", "", 1)},
			findings: []string{"digest-removed r.example/stg/app@B " + imagesP + ":4:5 (base) [m.example/mirror/app r.example/prod/app]"},
		},
		{
			name:     "digest removed, allowed",
			head:     map[string]string{imagesP: strings.Replace(baseFiles[imagesP], "    \"<B>\": [\"1.1\", \"latest\"]\n", "", 1)},
			allow:    []string{"r.example/stg/app@" + digest("b")},
			findings: []string{"digest-removed r.example/stg/app@B " + imagesP + ":4:5 (base) allowed [m.example/mirror/app r.example/prod/app]"},
			accepted: true,
		},
		{
			name:     "digest removed, allowed, and an override left over",
			head:     map[string]string{imagesP: strings.Replace(baseFiles[imagesP], "    \"<B>\": [\"1.1\", \"latest\"]\n", "", 1)},
			allow:    []string{"r.example/stg/app@" + digest("b"), "r.example/stg/app:1.0"},
			findings: []string{"digest-removed r.example/stg/app@B " + imagesP + ":4:5 (base) allowed [m.example/mirror/app r.example/prod/app]"},
			unused:   []string{"r.example/stg/app:1.0"},
		},
		{
			name:   "override without any finding",
			allow:  []string{"r.example/stg/app:1.0"},
			unused: []string{"r.example/stg/app:1.0"},
		},
		{
			name:     "tag removed",
			head:     map[string]string{imagesP: strings.Replace(baseFiles[imagesP], `["1.1", "latest"]`, `["1.1"]`, 1)},
			findings: []string{"tag-removed r.example/stg/app:latest " + imagesP + ":4:88 (base) [m.example/mirror/app r.example/prod/app]"},
		},
		{
			name: "tag moved",
			head: map[string]string{imagesP: strings.NewReplacer(`["1.1", "latest"]`, `["1.1"]`, `["1.0"]`, `["1.0", "latest"]`).Replace(baseFiles[imagesP])},
			// Planning the moved tag is what a run would refuse: it is added.
			added:    []string{"r.example/stg/app@A -> m.example/mirror/app:latest", "r.example/stg/app@A -> r.example/prod/app:latest"},
			findings: []string{"tag-moved r.example/stg/app:latest " + imagesP + ":3:88 was " + imagesP + ":4:88 [m.example/mirror/app r.example/prod/app]"},
		},
		{
			name:     "tag moved, allowed",
			head:     map[string]string{imagesP: strings.NewReplacer(`["1.1", "latest"]`, `["1.1"]`, `["1.0"]`, `["1.0", "latest"]`).Replace(baseFiles[imagesP])},
			allow:    []string{"r.example/stg/app:latest"},
			added:    []string{"r.example/stg/app@A -> m.example/mirror/app:latest", "r.example/stg/app@A -> r.example/prod/app:latest"},
			findings: []string{"tag-moved r.example/stg/app:latest " + imagesP + ":3:88 was " + imagesP + ":4:88 allowed [m.example/mirror/app r.example/prod/app]"},
			accepted: true,
		},
		{
			name:     "destination removed",
			head:     map[string]string{manifestP: strings.Replace(baseFiles[manifestP], "- name: m.example/mirror\n", "", 1)},
			findings: []string{"destination-removed m.example/mirror " + manifestP + ":5:3 (base) [m.example/mirror/app m.example/mirror/tool]"},
		},
		{
			name: "source changed",
			head: map[string]string{manifestP: strings.Replace(baseFiles[manifestP], "r.example/stg\n", "r.example/stg2\n", 1)},
			added: []string{
				"r.example/stg2/app@A -> m.example/mirror/app:1.0", "r.example/stg2/app@A -> r.example/prod/app:1.0",
				"r.example/stg2/app@B -> m.example/mirror/app:1.1", "r.example/stg2/app@B -> m.example/mirror/app:latest",
				"r.example/stg2/app@B -> r.example/prod/app:1.1", "r.example/stg2/app@B -> r.example/prod/app:latest",
				"r.example/stg2/tool@C -> m.example/mirror/tool", "r.example/stg2/tool@C -> r.example/prod/tool",
			},
			// r.example/prod is also fed by the plain manifest, from the old
			// source: only the mirror lost its source.
			findings: []string{"source-changed r.example/stg->r.example/stg2 " + manifestP + ":2:3 was " + manifestP + ":2:3 [m.example/mirror/app m.example/mirror/tool]"},
		},
		{
			name: "project removed",
			head: map[string]string{manifestP: "", imagesP: ""},
			findings: []string{
				"digest-removed r.example/stg/app@A " + imagesP + ":3:5 (base) [r.example/prod/app]",
				"digest-removed r.example/stg/app@B " + imagesP + ":4:5 (base) [r.example/prod/app]",
				"digest-removed r.example/stg/tool@C " + imagesP + ":7:5 (base) [r.example/prod/tool]",
				"destination-removed m.example/mirror " + manifestP + ":5:3 (base) [m.example/mirror/app m.example/mirror/tool]",
			},
		},
		{
			// The conflict problem rejects the change; A's entry, refused
			// with it, is not reported again as removed.
			name: "tag claimed by a second digest",
			head: map[string]string{imagesP: strings.Replace(baseFiles[imagesP], `["1.1", "latest"]`, `["1.1", "latest", "1.0"]`, 1)},
		},
		{
			name:  "invalid entry added",
			head:  map[string]string{imagesP: baseFiles[imagesP] + "- name: app\n  dmap:\n    \"<E>\": [\"bad tag\", \"2.0\"]\n"},
			added: []string{"r.example/stg/app@E -> m.example/mirror/app:2.0", "r.example/stg/app@E -> r.example/prod/app:2.0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eol := tt.eol
			if eol == "" {
				eol = "\n"
			}
			dir, base, head := states(t, tt.head, eol)
			added := change.Added(base.Result, head.Result)
			if diff := cmp.Diff(tt.added, edges(added)); diff != "" {
				t.Errorf("added edges (-want +got):\n%s", diff)
			}
			if added.Stats.ValidEdges != len(tt.added) || added.Stats.Edges != len(tt.added) {
				t.Errorf("stats = %+v, want %d edges", added.Stats, len(tt.added))
			}
			rep := change.Check(base, head, tt.allow)
			if diff := cmp.Diff(tt.findings, findings(dir, rep)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(append([]string{}, tt.unused...), rep.UnusedOverrides); diff != "" {
				t.Errorf("unused overrides (-want +got):\n%s", diff)
			}
			if rep.Accepted != tt.accepted {
				var b bytes.Buffer
				_ = change.WriteText(&b, rep)
				t.Errorf("accepted = %v, want %v\n%s", rep.Accepted, tt.accepted, b.String())
			}
			if rep.AddedEdges != len(tt.added) {
				t.Errorf("report.AddedEdges = %d, want %d", rep.AddedEdges, len(tt.added))
			}
		})
	}
}

// TestAddedGroups checks how groups are cut: destinations with the same
// added tags share a group, positions are kept, stats count the cut groups.
func TestAddedGroups(t *testing.T) {
	_, base, head := states(t, map[string]string{
		manifestP: baseFiles[manifestP] + "- name: n.example/new\n",
		imagesP:   strings.Replace(baseFiles[imagesP], `["1.0"]`, `["1.0", "1.0.0"]`, 1),
	}, "\n")
	added := change.Added(base.Result, head.Result)
	var got []string
	for _, g := range added.Groups {
		var tags, dests []string
		for _, tg := range g.Tags {
			tags = append(tags, fmt.Sprintf("%s@%d:%d", tg.Name, tg.Pos.Line, tg.Pos.Column))
		}
		for _, d := range g.Dests {
			dests = append(dests, d.Name())
		}
		got = append(got, shorten(fmt.Sprintf("%s@%s %v -> %v", g.Image, g.Digest, tags, dests)))
	}
	want := []string{
		"app@A [1.0.0@3:88] -> [m.example/mirror/app r.example/prod/app]",
		"app@A [1.0@3:81 1.0.0@3:88] -> [n.example/new/app]",
		"app@B [1.1@4:81 latest@4:88] -> [n.example/new/app]",
		"tool@C [] -> [n.example/new/tool]",
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	want2 := validate.Stats{Manifests: 1, Images: 2, Digests: 3, Tags: 4, Edges: 7, ValidEdges: 7}
	if diff := cmp.Diff(want2, added.Stats); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

// TestReportOutput pins the text and JSON forms of a report.
func TestReportOutput(t *testing.T) {
	dir, base, head := states(t, map[string]string{
		manifestP: strings.Replace(baseFiles[manifestP], "- name: m.example/mirror\n", "", 1),
		imagesP:   strings.NewReplacer(`["1.1", "latest"]`, `["1.1"]`, `["1.0"]`, `["1.0", "latest"]`).Replace(baseFiles[imagesP]) + "- name: BAD\n  dmap: {}\n",
	}, "\n")
	rep := change.Check(base, head, []string{"m.example/mirror", "nothing"})
	rep.Base, rep.BaseCommit = "main", strings.Repeat("1", 40)
	var b bytes.Buffer
	if err := change.WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	got := strings.ReplaceAll(b.String(), dir+string(filepath.Separator), "")
	want := shorten(strings.Join([]string{
		"deploy/promo/images/p/images.yaml:3:88: tag-moved: tag latest of r.example/stg/app would move from B to A in destination r.example/prod/app (was at deploy/promo/images/p/images.yaml:4:88 at main)",
		"    to allow it: --allow-removal r.example/stg/app:latest",
		"deploy/promo/manifests/p/promoter-manifest.yaml:5:3 at main: destination-removed: m.example/mirror no longer receives images from r.example/stg (3 digests of 2 images were promoted there)",
		"    allowed by --allow-removal m.example/mirror",
		"error: --allow-removal nothing matches no finding: remove it",
		`deploy/promo/images/p/images.yaml:8:3: image BAD: image name "BAD" is not a valid OCI repository path (lowercase letters, digits and single separators . _ __ - between components, / between components)`,
		"check against main (111111111111): the change adds 1 edge; 2 removals or moves (1 allowed), 1 unused override; 1 problem (1 error, 0 warnings): rejected",
		"",
	}, "\n"))
	if diff := cmp.Diff(want, shorten(got)); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}

	b.Reset()
	if err := change.WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SchemaVersion   int
		Base            string
		BaseCommit      string
		Accepted        bool
		AddedEdges      int
		UnusedOverrides []string
		Findings        []struct {
			Kind, Key, Digest, NewDigest, Tag string
			AtBase, Allowed                   bool
			Position                          struct{ Line, Column int }
			Destinations                      []string
		}
		Problems []struct{ Code string }
		Stats    struct{ Errors int }
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SchemaVersion != 1 || doc.Base != "main" || doc.Accepted || doc.AddedEdges != 1 || len(doc.Findings) != 2 ||
		doc.Findings[0].Kind != "tag-moved" || doc.Findings[0].NewDigest != digest("a") || doc.Findings[0].Position.Line != 3 ||
		!doc.Findings[1].Allowed || !doc.Findings[1].AtBase || len(doc.Problems) != 1 || doc.Stats.Errors != 1 ||
		!slices.Equal(doc.UnusedOverrides, []string{"nothing"}) {
		t.Errorf("json:\n%s", b.String())
	}
}

const corpus = "../../testdata/corpus/k8s.io-2024-06/registry.k8s.io"

// TestCorpus compares the Kubernetes manifest tree with a pull request on
// it: a new digest (unquoted key), a reordered file with comments, a digest
// removed; every project has 22 destination registries.
func TestCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus test")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "registry.k8s.io")
	if err := os.CopyFS(root, os.DirFS(corpus)); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, dir, "init", "-q", "-b", "main")
	testenv.Git(t, dir, "add", "-A")
	testenv.Git(t, dir, "commit", "-q", "-m", "corpus")

	images := filepath.Join(root, "images", "k8s-staging-addon-manager", "images.yaml")
	data, err := os.ReadFile(images)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	// Drop the v9.1.2 digest of kube-addon-manager (line 7), reverse the
	// order of the others, add a digest, and comment.
	removed := strings.TrimSpace(lines[6])
	entry := []string{lines[0], lines[1], "    " + digest("e") + ": [v9.1.8]  # new"}
	for i := 5; i >= 2; i-- {
		entry = append(entry, lines[i])
	}
	head := append(entry, lines[7:]...)
	if err := os.WriteFile(images, []byte("# reviewed\n"+strings.Join(head, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	in := manifest.Inputs{ThinDirs: []string{root}}
	snap, err := gitrev.Load(context.Background(), "main", in)
	if err != nil {
		t.Fatal(err)
	}
	base, now := change.Read(snap.Set), change.Read(manifest.Load(in))
	added := change.Added(base.Result, now.Result)
	if added.Stats.ValidEdges != 22 || len(added.Groups) != 1 || added.Groups[0].Digest.String() != digest("e") || len(added.Groups[0].Tags) != 1 {
		t.Errorf("added: %+v", added.Stats)
	}
	rep := change.Check(base, now, nil)
	if len(rep.Findings) != 1 {
		t.Fatalf("findings: %+v", rep.Findings)
	}
	f := rep.Findings[0]
	key := "gcr.io/k8s-staging-addon-manager/kube-addon-manager@" + strings.Trim(strings.Fields(removed)[0], `":`)
	if f.Kind != change.DigestRemoved || f.Key != key || f.Position.Line != 7 || !f.AtBase || len(f.Destinations) != 22 || !slices.Equal(f.Tags, []string{"v9.1.2"}) {
		t.Errorf("finding: %+v", f)
	}
	if rep.Accepted || rep.Stats.Errors != 3 || rep.BaseErrors != 3 {
		t.Errorf("verdict: accepted %v, %d errors, %d at base", rep.Accepted, rep.Stats.Errors, rep.BaseErrors)
	}
}

// TestConflictElsewhereHidesNoRemoval checks that a tag refused by a
// conflict in some destinations excuses only what it takes away there: the
// same image and tag removed from another destination is still a finding.
// (Conflicts are matched by destination and tag, typed, not by the text of
// the conflict problem's entry, which names only the image and the tag.)
func TestConflictElsewhereHidesNoRemoval(t *testing.T) {
	t.Parallel()
	dir, base, head := states(t, map[string]string{
		// lib:3.0 is removed from r.example/prod ...
		plainFile: "registries:\n- name: r.example/stg\n  src: true\n- name: r.example/prod\nimages: []\n",
		// ... while project q asks for lib:3.0 with two digests in x.example/q.
		manifestQ: "registries:\n- name: r.example/stg\n  src: true\n- name: x.example/q\n",
		imagesQ:   "- name: lib\n  dmap:\n    \"<E>\": [\"3.0\"]\n    \"<C>\": [\"3.0\"]\n",
	}, "\n")
	rep := change.Check(base, head, nil)
	want := []string{"digest-removed r.example/stg/lib@D " + plainFile + ":8:5 (base) [r.example/prod/lib]"}
	if diff := cmp.Diff(want, findings(dir, rep)); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	if rep.Accepted {
		t.Error("accepted, want rejected (a removal and a conflict)")
	}
}
