package snapshot_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/snapshot"
	"github.com/imgpromoter/promoter/pkg/validate"
)

const corpus = "../../testdata/corpus/k8s.io-2024-06/registry.k8s.io"

// corpusRegistry is one of the production registries of the corpus: every
// project promotes to a path under it.
const corpusRegistry = "us-central1-docker.pkg.dev/k8s-artifacts-prod/images"

// TestFromGroupsCorpus renders what the Kubernetes thin manifests say one
// production registry holds, and checks it line by line against a count
// made straight from the manifests as read (kpromo's
// --manifest-based-snapshot-of skips thin directories; this must not).
func TestFromGroupsCorpus(t *testing.T) {
	set := manifest.Load(manifest.Inputs{ThinDirs: []string{corpus}})
	res := validate.Validate(set)
	p, err := snapshot.ParsePrefix(corpusRegistry)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.FromGroups(res.Groups, p)
	if err != nil {
		t.Fatal(err)
	}
	got := lines(render(t, snapshot.CSV, snap))

	// The same, from the raw manifests: every destination under the
	// prefix, every image, digest and tag as written. Only the corpus's
	// one malformed digest (63 hex digits; validation excludes it) is
	// skipped; its two empty dmaps add nothing anyway.
	digestRE := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	want := map[string]bool{}
	projects := map[string]bool{}
	edges := 0
	for _, m := range set.Manifests {
		if m.Broken {
			continue
		}
		for _, r := range m.Destinations() {
			rest, ok := strings.CutPrefix(r.Name, corpusRegistry)
			if !ok || rest != "" && !strings.HasPrefix(rest, "/") {
				continue
			}
			projects[m.Project] = true
			for _, img := range m.Images {
				name := strings.TrimPrefix(rest+"/"+img.Name, "/")
				for _, d := range img.Digests {
					if !digestRE.MatchString(d.Digest) {
						continue
					}
					edges += max(1, len(d.Tags))
					if len(d.Tags) == 0 {
						want[name+"@"+d.Digest+",-"] = true
					}
					for _, tag := range d.Tags {
						want[name+"@"+d.Digest+","+name+":"+tag.Name] = true
					}
				}
			}
		}
	}
	if len(projects) < 70 {
		t.Errorf("only %d thin projects promote to %s; the corpus has 75", len(projects), corpusRegistry)
	}
	// Compared as sets: the snapshot sorts by image name, then digest, not
	// by line ("app@..." sorts after "app-amd64@..." as a line).
	if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), slices.Sorted(slices.Values(got))); diff != "" {
		t.Errorf("snapshot lines (-from the raw manifests +snapshot):\n%s", diff)
	}
	// No edge of the corpus to this registry is asked for twice, so each
	// is one line.
	if len(got) != edges {
		t.Errorf("%d lines for %d edges to %s", len(got), edges, corpusRegistry)
	}
	images, digests, tags := snap.Counts()
	t.Logf("%s: %d images, %d digests, %d tags, %d edges in %d projects", corpusRegistry, images, digests, tags, edges, len(projects))
	if images != 445 || digests != 32679 || tags != 32748 {
		t.Errorf("counts = %d images, %d digests, %d tags; want 445, 32679, 32748 (the corpus is fixed)", images, digests, tags)
	}

	// The images.yaml form says the same.
	yaml := render(t, snapshot.YAML, snap)
	if n := strings.Count(yaml, "- name: "); n != images {
		t.Errorf("%d images in the YAML form, want %d", n, images)
	}
	// It reads back as a valid images.yaml holding as much.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "manifests", "prod", "promoter-manifest.yaml"),
		"registries:\n- name: "+corpusRegistry+"\n  src: true\n- name: mirror.example/images\n")
	writeFile(t, filepath.Join(dir, "images", "prod", "images.yaml"), yaml)
	back := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
	if len(back.Problems) != 0 || back.Stats.Images != images || back.Stats.Digests != digests || back.Stats.Tags != tags {
		t.Errorf("the images.yaml reads back as %+v with %d problems (first: %v)", back.Stats, len(back.Problems), first(back.Problems))
	}
}

func TestFromGroupsFilters(t *testing.T) {
	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{corpus}}))
	p, _ := snapshot.ParsePrefix(corpusRegistry + "/kas-network-proxy")
	// The tag filter keeps only digests with the tag, listed with it alone.
	snap, err := snapshot.FromGroups(res.Groups, p, snapshot.WithTag("v0.0.16"))
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range snap.Images {
		for _, d := range img.Digests {
			if !cmp.Equal(d.Tags, []string{"v0.0.16"}) {
				t.Errorf("%s@%s: tags %v", img.Name, d.Digest, d.Tags)
			}
		}
	}
	if len(snap.Images) == 0 {
		t.Fatal("no image of kas-network-proxy has v0.0.16")
	}
	// Named repositories restrict the snapshot.
	all, err := snapshot.FromGroups(res.Groups, p)
	if err != nil {
		t.Fatal(err)
	}
	one, err := snapshot.FromGroups(res.Groups, p, snapshot.WithRepos("proxy-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Images) < 2 || len(one.Images) != 1 || one.Images[0].Name != "proxy-agent" {
		t.Errorf("restricted to proxy-agent: %d of %d images: %v", len(one.Images), len(all.Images), names(one))
	}
	// A prefix that is not a path component of the destinations matches
	// nothing: kas-network is not kas-network-proxy.
	partial, _ := snapshot.ParsePrefix(corpusRegistry + "/kas-network")
	none, err := snapshot.FromGroups(res.Groups, partial)
	if err != nil {
		t.Fatal(err)
	}
	if len(none.Images) != 0 {
		t.Errorf("prefix kas-network matched %v", names(none))
	}
}

func first[T any](s []T) any {
	if len(s) == 0 {
		return nil
	}
	return s[0]
}

func lines(s string) []string {
	out := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

// TestTakeCorpusRegistry snapshots a registry holding everything the
// corpus promotes (testenv.CorpusRegistry, the whole corpus on one test
// server, with and without Google's tag digests) and compares it with what
// the manifests say: the same, but for the digests promoted without tags,
// which the OCI API cannot list. The test registry answers manifest HEADs
// only and has no catalog: the snapshot is minimal (it reads no index) and
// names its repositories.
func TestTakeCorpusRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("a HEAD per corpus tag (33 thousand)")
	}
	for _, mode := range []struct {
		name string
		opts []testenv.CorpusOption
	}{
		{"plain OCI", nil},
		{"tag digests", []testenv.CorpusOption{testenv.CorpusTagDigests(), testenv.CorpusMaxPage(100)}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			var res *validate.Result
			_, host := testenv.StartCorpusRegistry(t, func(host string) []*edge.Group {
				res = validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{testenv.RehostThinDir(t, corpus, host)}}))
				return res.Groups
			}, mode.opts...)
			p, err := snapshot.ParsePrefix(host + "/" + corpusRegistry)
			if err != nil {
				t.Fatal(err)
			}
			want, err := snapshot.FromGroups(res.Groups, p)
			if err != nil {
				t.Fatal(err)
			}
			client := newClient(t)
			if _, err := snapshot.Take(context.Background(), client, p, snapshot.WithMinimal(true)); !errors.Is(err, snapshot.ErrNoCatalog) {
				t.Fatalf("without a catalog: error = %v, want ErrNoCatalog", err)
			}
			got, err := snapshot.Take(context.Background(), client, p, snapshot.WithMinimal(true), snapshot.WithRepos(names(want)...), snapshot.WithJobs(32))
			if err != nil {
				t.Fatal(err)
			}
			tagged := asMap(want)
			for _, ds := range tagged {
				maps.DeleteFunc(ds, func(_ v1.Hash, tags []string) bool { return len(tags) == 0 })
			}
			maps.DeleteFunc(tagged, func(_ string, ds map[v1.Hash][]string) bool { return len(ds) == 0 })
			if diff := cmp.Diff(tagged, asMap(got)); diff != "" {
				t.Errorf("registry snapshot (-manifests, tagged digests +registry):\n%s", diff)
			}
			_, wd, wt := want.Counts()
			_, gd, gt := got.Counts()
			t.Logf("manifests: %d digests, %d tags; registry: %d digests, %d tags", wd, wt, gd, gt)
		})
	}
}
