package gitrev_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/gitrev"
	"github.com/imgpromoter/promoter/pkg/manifest"
)

// repo is a git repository in a temporary directory, isolated from the
// user's and the system's git configuration.
type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	r := &repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	return testenv.Git(r.t, r.dir, args...)
}

func (r *repo) write(files map[string]string) {
	r.t.Helper()
	for p, body := range files {
		full := filepath.Join(r.dir, filepath.FromSlash(p))
		if body == "" {
			if err := os.RemoveAll(full); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *repo) commit(msg string) string {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
)

const registries = "registries:\n- name: r.example/stg\n  src: true\n- name: r.example/prod\n"

// digestsOf lists image@digest:tags of a set, for comparing contents.
func digestsOf(s *manifest.Set) []string {
	var out []string
	for _, m := range s.Manifests {
		for _, img := range m.Images {
			for _, d := range img.Digests {
				var tags []string
				for _, t := range d.Tags {
					tags = append(tags, t.Name)
				}
				out = append(out, img.Name+"@"+d.Digest+":"+strings.Join(tags, ","))
			}
		}
	}
	return out
}

// TestLoadSubfolder reads a thin directory and a plain manifest that sit in
// a sub-folder whose name pathspecs would read as a pattern, named by
// absolute paths, and checks that contents come from the revision and
// positions name the paths given.
func TestLoadSubfolder(t *testing.T) {
	r := newRepo(t)
	sub := "deploy/pro*mo [x]"
	r.write(map[string]string{
		sub + "/thin/manifests/p/promoter-manifest.yaml": registries,
		sub + "/thin/images/p/images.yaml":               "- name: app\n  dmap:\n    \"" + digestA + "\": [\"1.0\"]\n",
		sub + "/plain.yaml":                              registries + "images:\n- name: tool\n  dmap:\n    \"" + digestA + "\": []\n",
		"deploy/pro*mo [y]/plain.yaml":                   "not read",
	})
	base := r.commit("base")
	r.write(map[string]string{
		sub + "/thin/images/p/images.yaml": "- name: app\n  dmap:\n    \"" + digestB + "\": [\"2.0\"]\n    \"" + digestA + "\": [\"1.0\"]\n",
		sub + "/plain.yaml":                registries + "images: []\n",
	})
	r.commit("head")
	r.write(map[string]string{sub + "/new.yaml": registries + "images: []\n"})

	thin := filepath.Join(r.dir, filepath.FromSlash(sub), "thin")
	plain := filepath.Join(r.dir, filepath.FromSlash(sub), "plain.yaml")
	added := filepath.Join(r.dir, filepath.FromSlash(sub), "new.yaml")
	for _, rev := range []string{base, "HEAD~1", "main^"} {
		snap, err := gitrev.Load(context.Background(), rev, manifest.Inputs{Files: []string{plain, added}, ThinDirs: []string{thin}})
		if err != nil {
			t.Fatalf("%s: %v", rev, err)
		}
		if snap.Rev.Commit != base || snap.Rev.Name != rev {
			t.Errorf("%s: revision = %+v, want commit %s", rev, snap.Rev, base)
		}
		if diff := cmp.Diff([]string{added}, snap.Absent); diff != "" {
			t.Errorf("%s: absent inputs (-want +got):\n%s", rev, diff)
		}
		want := []string{"tool@" + digestA + ":", "app@" + digestA + ":1.0"}
		if diff := cmp.Diff(want, digestsOf(snap.Set)); diff != "" {
			t.Errorf("%s: contents at the revision (-want +got):\n%s", rev, diff)
		}
		if len(snap.Set.Problems) != 0 {
			t.Errorf("%s: problems: %v", rev, snap.Set.Problems)
		}
		var got []diag.Position
		for _, m := range snap.Set.Manifests {
			got = append(got, diag.Position{File: m.File}, diag.Position{File: m.ImagesFile}, m.Images[0].Digests[0].Pos)
		}
		wantPos := []diag.Position{
			{File: plain}, {File: plain}, {File: plain, Line: 8, Column: 5},
			{File: filepath.Join(thin, "manifests", "p", "promoter-manifest.yaml")},
			{File: filepath.Join(thin, "images", "p", "images.yaml")},
			{File: filepath.Join(thin, "images", "p", "images.yaml"), Line: 3, Column: 5},
		}
		if diff := cmp.Diff(wantPos, got); diff != "" {
			t.Errorf("%s: positions (-want +got):\n%s", rev, diff)
		}
	}
}

// TestLoadRelativeRoot names the inputs relative to the current directory,
// from a sub-folder, with the repository root itself as the thin directory;
// a thin directory missing at the revision is absent, not an error, and
// problems at the revision name the given paths too.
func TestLoadRelativeRoot(t *testing.T) {
	r := newRepo(t)
	r.write(map[string]string{
		"manifests/p/promoter-manifest.yaml": registries,
		"images/p/images.yaml":               "- name: app\n  dmap:\n    \"" + digestA + "\": [\"1.0\"]\n",
		"images/q/images.yaml":               "- name: orphan\n  dmap: {}\n",
		"sub/keep":                           "x",
	})
	base := r.commit("base")
	r.write(map[string]string{"other/manifests/p/promoter-manifest.yaml": registries, "other/images/p/images.yaml": "[]\n"})
	t.Chdir(filepath.Join(r.dir, "sub"))
	snap, err := gitrev.Load(context.Background(), base, manifest.Inputs{ThinDirs: []string{"..", "../other"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"../other"}, snap.Absent); diff != "" {
		t.Errorf("absent (-want +got):\n%s", diff)
	}
	if len(snap.Set.Manifests) != 1 || snap.Set.Manifests[0].ImagesFile != filepath.Join("..", "images", "p", "images.yaml") {
		t.Fatalf("manifests: %+v", snap.Set.Manifests)
	}
	want := []diag.Problem{{Pos: diag.Position{File: filepath.Join("..", "images", "q", "images.yaml")}, Severity: diag.SeverityError, Code: diag.CodeLayout,
		Message: "images file of project q has no promoter manifest (expected " + filepath.Join("..", "manifests", "q", "promoter-manifest.yaml") + ")"}}
	if diff := cmp.Diff(want, snap.Set.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestLoadRawBlobs reads the objects, not an archive: export-ignored files
// are read, and a file normalised to LF on commit (text attribute) while the
// work tree has CRLF reads the same as the work tree.
func TestLoadRawBlobs(t *testing.T) {
	r := newRepo(t)
	body := "- name: app\r\n  dmap:\r\n    \"" + digestA + "\": [\"1.0\"]\r\n"
	r.write(map[string]string{
		".gitattributes":                     "images/** export-ignore\n*.yaml text eol=lf\n",
		"manifests/p/promoter-manifest.yaml": strings.ReplaceAll(registries, "\n", "\r\n"),
		"images/p/images.yaml":               body,
	})
	r.git("-c", "core.autocrlf=false", "add", "-A")
	base := r.commit("base")
	snap, err := gitrev.Load(context.Background(), base, manifest.Inputs{ThinDirs: []string{r.dir}})
	if err != nil {
		t.Fatal(err)
	}
	now := manifest.Load(manifest.Inputs{ThinDirs: []string{r.dir}})
	if diff := cmp.Diff(now, snap.Set); diff != "" {
		t.Errorf("set at the revision differs from the work tree (-tree +rev):\n%s", diff)
	}
}

// TestLoadMissingRevision checks the errors for a revision that is not in
// the clone: in a full clone, and in a shallow one (how to fetch it).
func TestLoadMissingRevision(t *testing.T) {
	r := newRepo(t)
	r.write(map[string]string{"m.yaml": registries + "images: []\n"})
	first := r.commit("one")
	r.write(map[string]string{"m.yaml": registries + "images: []\n# two\n"})
	r.commit("two")
	r.commit("three")

	clone := t.TempDir()
	testenv.Git(t, clone, "clone", "-q", "--depth=1", "file://"+r.dir, clone)
	full := t.TempDir()
	testenv.Git(t, full, "clone", "-q", "file://"+r.dir, full)
	zeros := strings.Repeat("0", 40)
	// Each message ends with a command that fetches what is missing: a
	// remote-tracking name is fetched as its remote's branch, and --depth
	// only where the clone is shallow.
	tests := []struct {
		name, dir, rev string
		shallow        bool
		fetch          string // the end of the message, after the clone
	}{
		{"no remote", r.dir, zeros, false, "this clone has no remote to fetch it from: fetch it into the clone, or name a revision it has"},
		{"full clone, commit", full, zeros, false, "fetch it with `git fetch origin " + zeros + "`"},
		{"full clone, remote-tracking name", full, "origin/feature", false, "fetch it with `git fetch origin feature`"},
		{"full clone, full remote-tracking ref", full, "refs/remotes/origin/feature", false, "fetch it with `git fetch origin feature`"},
		{"full clone, unknown branch", full, "no-such-branch", false, "fetch it with `git fetch origin no-such-branch`"},
		{"full clone, parent", full, "origin/feature~1", false, "fetch the history it names with `git fetch origin`"},
		{"shallow commit", clone, first, true, "fetch it with `git fetch --depth=1 origin " + first + "` (or `git fetch --unshallow`)"},
		// A --depth clone fetches one branch: origin/feature is written only when named.
		{"shallow, remote-tracking name", clone, "origin/feature", true, "fetch it with `git fetch --depth=1 origin feature:refs/remotes/origin/feature` (or `git fetch --unshallow`)"},
		{"shallow parent", clone, "HEAD~2", true, "deepen the history with `git fetch --deepen=N` (or `git fetch --unshallow`)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gitrev.Load(context.Background(), tt.rev, manifest.Inputs{Files: []string{filepath.Join(tt.dir, "m.yaml")}})
			var me *gitrev.MissingRevisionError
			if !errors.As(err, &me) {
				t.Fatalf("error = %v, want a MissingRevisionError", err)
			}
			if me.Shallow != tt.shallow || me.Rev != tt.rev {
				t.Errorf("error = %+v", me)
			}
			clone := "the local clone"
			if tt.shallow {
				clone += ", which is shallow"
			}
			want := fmt.Sprintf("git revision %q is not in %s (%s): %s", tt.rev, clone, me.Root, tt.fetch)
			if err.Error() != want {
				t.Errorf("message\n%s\nwant\n%s", err, want)
			}
		})
	}
	// The advice works: once the branch exists upstream, running the
	// command the message gives makes the revision readable.
	r.git("branch", "feature", first)
	for _, dir := range []string{full, clone} {
		_, err := gitrev.Load(context.Background(), "origin/feature", manifest.Inputs{Files: []string{filepath.Join(dir, "m.yaml")}})
		msg := fmt.Sprint(err)
		_, cmdText, ok := strings.Cut(msg, "`git ")
		cmdText, _, ok2 := strings.Cut(cmdText, "`")
		if !ok || !ok2 {
			t.Fatalf("no command in %q", msg)
		}
		testenv.Git(t, dir, strings.Fields(cmdText)...)
		if _, err := gitrev.Load(context.Background(), "origin/feature", manifest.Inputs{Files: []string{filepath.Join(dir, "m.yaml")}}); err != nil {
			t.Errorf("after `git %s` in %s: %v", cmdText, dir, err)
		}
	}
	// In the shallow clone, the commit it has reads fine.
	if _, err := gitrev.Load(context.Background(), "HEAD", manifest.Inputs{Files: []string{filepath.Join(clone, "m.yaml")}}); err != nil {
		t.Errorf("HEAD of the shallow clone: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	outside := t.TempDir()
	r := newRepo(t)
	r.commit("empty")
	var nr *gitrev.NotInRepositoryError
	if _, err := gitrev.Load(context.Background(), "HEAD", manifest.Inputs{Files: []string{filepath.Join(outside, "m.yaml")}}); !errors.As(err, &nr) {
		t.Errorf("outside a repository: error = %v", err)
	}
	other := newRepo(t)
	other.commit("empty")
	if _, err := gitrev.Load(context.Background(), "HEAD", manifest.Inputs{Files: []string{filepath.Join(r.dir, "a.yaml"), filepath.Join(other.dir, "b.yaml")}}); err == nil || !strings.Contains(err.Error(), "different git repositories") {
		t.Errorf("two repositories: error = %v", err)
	}
	for _, rev := range []string{"", "--output=/tmp/x"} {
		if _, err := gitrev.Load(context.Background(), rev, manifest.Inputs{Files: []string{filepath.Join(r.dir, "a.yaml")}}); err == nil {
			t.Errorf("revision %q accepted", rev)
		}
	}
}
