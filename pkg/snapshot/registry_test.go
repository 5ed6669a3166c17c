package snapshot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/regerr"
	"github.com/imgpromoter/promoter/pkg/snapshot"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// golden compares got with testdata/name. Snapshot outputs name images
// relative to the prefix, so they hold no host:port to normalise; the check
// below keeps it that way.
func golden(t *testing.T, name, got string, hosts ...string) {
	t.Helper()
	for _, h := range hosts {
		if strings.Contains(got, h) {
			t.Errorf("%s: output names the registry host %s:\n%s", name, h, got)
		}
	}
	testenv.Golden(t, name, []byte(got))
}

// content is what seed pushes, for the assertions.
type content struct {
	app1, app2        v1.Hash   // team/app: app1 as v1.0.0, 1.0, latest; app2 as v0.9.0
	cli               v1.Hash   // team/tools/cli: a two-platform index as v2.0.0 and stable
	cliChildren       []v1.Hash // amd64 (also tagged v2.0.0-amd64), arm64 (tagless)
	agent             v1.Hash   // team/nested/deep/agent:v1
	untagged          v1.Hash   // team/untagged, pushed by digest only
	prefixItself      v1.Hash   // team:v1, the prefix's own repository
	teammate, outside v1.Hash   // teammate/app:v1 and other/app:v1, not under team
}

// seed pushes the test content under prefix ("team" or "mirror/team") of a
// registry host, and the repositories outside it next to the prefix.
func seed(t *testing.T, host, prefix string) content {
	t.Helper()
	base := host + "/" + prefix
	parent := host
	if i := strings.LastIndex(base, "/"); i > len(host) {
		parent = base[:i]
	}
	var c content
	c.app1 = testenv.PushImage(t, base+"/app:v1.0.0", 1)
	testenv.PushImage(t, base+"/app:1.0", 1)
	testenv.PushImage(t, base+"/app:latest", 1)
	c.app2 = testenv.PushImage(t, base+"/app:v0.9.0", 2)
	c.cli, c.cliChildren = testenv.PushIndex(t, base+"/tools/cli:v2.0.0", 3)
	testenv.PushIndex(t, base+"/tools/cli:stable", 3)
	if d := testenv.PushImageWith(t, base+"/tools/cli:v2.0.0-amd64", testenv.ImageSpec{Seed: 3, Platform: "linux/amd64"}); d != c.cliChildren[0] {
		t.Fatalf("amd64 image %s is not the index's first child %s", d, c.cliChildren[0])
	}
	c.agent = testenv.PushImage(t, base+"/nested/deep/agent:v1", 4)
	c.untagged = testenv.PushImage(t, base+"/untagged", 5)
	c.prefixItself = testenv.PushImage(t, base+":v1", 6)
	c.teammate = testenv.PushImage(t, base+"mate/app:v1", 7)
	c.outside = testenv.PushImage(t, parent+"/other/app:v1", 8)
	return c
}

func newClient(t *testing.T) *access.Client {
	t.Helper()
	c, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func render(t *testing.T, f snapshot.Format, s *snapshot.Snapshot) string {
	t.Helper()
	var b bytes.Buffer
	if err := snapshot.Write(&b, f, s); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func take(t *testing.T, prefix string, opts ...snapshot.Option) *snapshot.Snapshot {
	t.Helper()
	p, err := snapshot.ParsePrefix(prefix)
	if err != nil {
		t.Fatal(err)
	}
	s, err := snapshot.Take(context.Background(), newClient(t), p, opts...)
	if err != nil {
		t.Fatalf("snapshot of %s: %v", prefix, err)
	}
	return s
}

// TestTakeDistribution snapshots a real CNCF Distribution registry, whose
// catalog is read page by page.
func TestTakeDistribution(t *testing.T) {
	reg := testenv.StartDistribution(t, "snapshot")
	c := seed(t, reg.Host, "team")
	prefix := reg.Host + "/team"

	full := take(t, prefix)
	golden(t, "distribution.yaml", render(t, snapshot.YAML, full), reg.Host)
	golden(t, "distribution.csv", render(t, snapshot.CSV, full), reg.Host)
	golden(t, "distribution-minimal.yaml", render(t, snapshot.YAML, take(t, prefix, snapshot.WithMinimal(true))), reg.Host)
	golden(t, "distribution-tag.csv", render(t, snapshot.CSV, take(t, prefix, snapshot.WithTag("v1"))), reg.Host)

	// The goldens are checked by eye once; these say what they must hold.
	want := map[string]map[v1.Hash][]string{
		"app": {
			c.app1: {"1.0", "latest", "v1.0.0"},
			c.app2: {"v0.9.0"},
		},
		"tools/cli": {
			c.cli:            {"stable", "v2.0.0"},
			c.cliChildren[0]: {"v2.0.0-amd64"},
			c.cliChildren[1]: nil, // tagless child of a tagged index
		},
		"nested/deep/agent": {c.agent: {"v1"}},
	}
	if diff := cmp.Diff(want, asMap(full)); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	wantCLI := maps.Clone(want["tools/cli"])
	minimal := asMap(take(t, prefix, snapshot.WithMinimal(true)))
	delete(want["tools/cli"], c.cliChildren[1])
	if diff := cmp.Diff(want, minimal); diff != "" {
		t.Errorf("minimal snapshot (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]map[v1.Hash][]string{"nested/deep/agent": {c.agent: {"v1"}}},
		asMap(take(t, prefix, snapshot.WithTag("v1")))); diff != "" {
		t.Errorf("--tag v1 snapshot (-want +got):\n%s", diff)
	}
	// A tag filter lists only that tag, also for digests with several.
	if diff := cmp.Diff(map[string]map[v1.Hash][]string{"app": {c.app1: {"latest"}}},
		asMap(take(t, prefix, snapshot.WithTag("latest")))); diff != "" {
		t.Errorf("--tag latest snapshot (-want +got):\n%s", diff)
	}

	// Named repositories skip the catalog; a name without tags is empty.
	named := take(t, prefix, snapshot.WithRepos("tools/cli", "untagged", "does/not/exist"))
	if diff := cmp.Diff(map[string]map[v1.Hash][]string{"tools/cli": wantCLI}, asMap(named)); diff != "" {
		t.Errorf("snapshot of named repositories (-want +got):\n%s", diff)
	}

	// The whole registry: the prefix's own repository and its neighbours
	// appear, named from the root.
	all := names(take(t, reg.Host, snapshot.WithMinimal(true)))
	wantAll := []string{"other/app", "team", "team/app", "team/nested/deep/agent", "team/tools/cli", "teammate/app"}
	if !cmp.Equal(all, wantAll) {
		t.Errorf("registry snapshot images = %v, want %v", all, wantAll)
	}
	// A deeper prefix.
	if got := names(take(t, prefix+"/nested")); !cmp.Equal(got, []string{"deep/agent"}) {
		t.Errorf("snapshot of team/nested = %v", got)
	}
}

// TestRoundTrip writes a snapshot of a staging prefix as a thin manifest
// promoting to a registry that already holds the same content, and plans
// it: every edge must be already promoted.
func TestRoundTrip(t *testing.T) {
	staging := testenv.StartDistribution(t, "staging")
	prod := testenv.StartDistribution(t, "prod")
	seed(t, staging.Host, "team")
	seed(t, prod.Host, "mirror/team")

	snap := take(t, staging.Host+"/team")
	// The same content gives the same snapshot, wherever it is.
	if diff := cmp.Diff(render(t, snapshot.YAML, snap), render(t, snapshot.YAML, take(t, prod.Host+"/mirror/team"))); diff != "" {
		t.Errorf("staging and prod snapshots differ (-staging +prod):\n%s", diff)
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "manifests", "team", "promoter-manifest.yaml"),
		fmt.Sprintf("registries:\n- name: %s/team\n  src: true\n- name: %s/mirror/team\n", staging.Host, prod.Host))
	writeFile(t, filepath.Join(dir, "images", "team", "images.yaml"), render(t, snapshot.YAML, snap))

	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
	if len(res.Problems) != 0 {
		t.Fatalf("the snapshot is not a valid images.yaml: %v", res.Problems)
	}
	_, digests, tags := snap.Counts()
	if res.Stats.Digests != digests || res.Stats.Tags != tags {
		t.Errorf("manifest has %d digests and %d tags, the snapshot %d and %d", res.Stats.Digests, res.Stats.Tags, digests, tags)
	}
	p, err := plan.Make(context.Background(), newClient(t), res.Groups)
	if err != nil {
		t.Fatal(err)
	}
	if p.Failed() || p.Counts()[plan.Promoted] != res.Stats.ValidEdges || p.Counts().Total() != res.Stats.ValidEdges || len(p.Records) != 0 {
		t.Errorf("plan of the snapshot against a registry holding it: counts %v of %d edges, %d work items, actions %+v", p.Counts(), res.Stats.ValidEdges, len(p.Records), p.Actions())
	}
	// 3 tags of app:1 + 1 of app:2 + 2 of the index + 1 of its amd64 child
	// + its tagless arm64 child + agent:v1.
	if res.Stats.ValidEdges != 9 {
		t.Errorf("valid edges = %d, want 9", res.Stats.ValidEdges)
	}

	// Against an empty registry, everything is to copy: the snapshot says
	// something, and the plan reads it.
	empty := testenv.StartDistribution(t, "empty")
	writeFile(t, filepath.Join(dir, "manifests", "team", "promoter-manifest.yaml"),
		fmt.Sprintf("registries:\n- name: %s/team\n  src: true\n- name: %s/team\n", staging.Host, empty.Host))
	res = validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
	p, err = plan.Make(context.Background(), newClient(t), res.Groups)
	if err != nil {
		t.Fatal(err)
	}
	if p.Failed() || p.Counts()[plan.Promoted] != 0 || p.Counts().Total() != 9 {
		t.Errorf("plan against an empty registry: %v", p.Counts())
	}
}

// TestNoCatalog: a registry that does not list its repositories is an
// ErrNoCatalog, and naming the repositories works around it.
func TestNoCatalog(t *testing.T) {
	backend := testenv.InProcessRegistry(t)
	u, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // requests cancelled by a failed snapshot
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/_catalog" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"code":"UNSUPPORTED","message":"catalog is not offered"}]}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	d := testenv.PushImage(t, host+"/p/app:v1", 1)

	p, err := snapshot.ParsePrefix(host + "/p")
	if err != nil {
		t.Fatal(err)
	}
	_, err = snapshot.Take(context.Background(), newClient(t), p)
	if !errors.Is(err, snapshot.ErrNoCatalog) {
		t.Fatalf("error = %v, want ErrNoCatalog", err)
	}
	if regerr.Status(err) != http.StatusNotFound {
		t.Errorf("the registry's answer is lost: %v", err)
	}
	s := take(t, host+"/p", snapshot.WithRepos("app"))
	if diff := cmp.Diff(map[string]map[v1.Hash][]string{"app": {d: {"v1"}}}, asMap(s)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestTakeFailure: a registry error stops the snapshot (a partial snapshot
// would read as missing images) and keeps the registry's answer.
func TestTakeFailure(t *testing.T) {
	backend := testenv.InProcessRegistry(t)
	u, _ := url.Parse("http://" + backend)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // requests cancelled by a failed snapshot
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/manifests/broken") {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	testenv.PushImage(t, host+"/p/app:v1", 1)
	testenv.PushImage(t, host+"/p/app:broken", 2)
	p, _ := snapshot.ParsePrefix(host + "/p")
	_, err := snapshot.Take(context.Background(), newClient(t), p)
	if err == nil || regerr.Status(err) != http.StatusForbidden || !strings.Contains(err.Error(), "app:broken") {
		t.Errorf("error = %v, want the 403 of app:broken", err)
	}
}

// asMap is a snapshot as repository -> digest -> tags (nil: none).
func asMap(s *snapshot.Snapshot) map[string]map[v1.Hash][]string {
	out := map[string]map[v1.Hash][]string{}
	for _, img := range s.Images {
		m := map[v1.Hash][]string{}
		for _, d := range img.Digests {
			m[d.Digest] = d.Tags
		}
		out[img.Name] = m
	}
	return out
}

func names(s *snapshot.Snapshot) []string {
	var out []string
	for _, img := range s.Images {
		out = append(out, img.Name)
	}
	return out
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// googleTags serves an in-process registry behind a proxy whose tag lists
// carry the digest map of Google's registries, and counts the manifest
// HEADs clients send by tag.
func googleTags(t *testing.T) (host string, tagHeads *atomic.Int64) {
	t.Helper()
	backend := testenv.InProcessRegistry(t)
	u, _ := url.Parse("http://" + backend)
	proxy := httputil.NewSingleHostReverseProxy(u)
	tagHeads = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, isList := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/tags/list")
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "/manifests/sha256:") {
			tagHeads.Add(1)
		}
		if !isList {
			proxy.ServeHTTP(w, r)
			return
		}
		type entry struct {
			Tag       []string `json:"tag"`
			MediaType string   `json:"mediaType"`
		}
		page := struct {
			Name     string           `json:"name"`
			Tags     []string         `json:"tags"`
			Manifest map[string]entry `json:"manifest"`
		}{Name: repo, Manifest: map[string]entry{}}
		for tag, d := range testenv.Digests(t, backend+"/"+repo) {
			page.Tags = append(page.Tags, tag)
			e := page.Manifest[d.String()]
			e.Tag = append(e.Tag, tag)
			page.Manifest[d.String()] = e
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), tagHeads
}

// TestTakeTagDigests: when the tag list gives each tag's digest, no tag is
// resolved by HEAD, and indexes are still found and read (their media type
// is not in the list this test registry gives).
func TestTakeTagDigests(t *testing.T) {
	host, tagHeads := googleTags(t)
	c := seed(t, host, "team")
	tagHeads.Store(0) // seeding pushes HEAD tags too
	got := asMap(take(t, host+"/team"))
	want := map[string]map[v1.Hash][]string{
		"app":               {c.app1: {"1.0", "latest", "v1.0.0"}, c.app2: {"v0.9.0"}},
		"tools/cli":         {c.cli: {"stable", "v2.0.0"}, c.cliChildren[0]: {"v2.0.0-amd64"}, c.cliChildren[1]: nil},
		"nested/deep/agent": {c.agent: {"v1"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := tagHeads.Load(); n != 0 {
		t.Errorf("%d tags resolved by HEAD although the tag lists give their digests", n)
	}
}
