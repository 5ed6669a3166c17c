package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/validate"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	digestC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

// corpusGroups is a small world on host: two images of one staging project
// promoted to two mirrors, one by digest only.
func corpusGroups(t *testing.T, host string) []*edge.Group {
	t.Helper()
	repo := func(s string) name.Repository {
		r, err := name.NewRepository(host+"/"+s, name.StrictValidation)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	group := func(image, digest string, tags ...string) *edge.Group {
		h, err := v1.NewHash(digest)
		if err != nil {
			t.Fatal(err)
		}
		g := &edge.Group{Image: image, Source: repo("gcr.io/staging/" + image).Digest(digest), Digest: h,
			Dests: []name.Repository{repo("eu.pkg.dev/prod/" + image), repo("us.pkg.dev/prod/" + image)}}
		for _, tag := range tags {
			g.Tags = append(g.Tags, edge.Tag{Name: tag})
		}
		return g
	}
	return []*edge.Group{
		group("app", digestA, "v1.0.0", "v1.0", "v1"),
		group("app", digestB, "v1.1.0", "latest"),
		group("tool", digestC),
	}
}

func startCorpus(t *testing.T, opts ...CorpusOption) (*CorpusRegistry, string) {
	t.Helper()
	return StartCorpusRegistry(t, func(host string) []*edge.Group { return corpusGroups(t, host) }, opts...)
}

func TestCorpusRegistryHead(t *testing.T) {
	t.Parallel()
	reg, host := startCorpus(t)
	ctx := context.Background()
	tests := []struct {
		ref    string
		digest string // "": absent (a HEAD answer has no body, so no error code)
	}{
		{ref: "eu.pkg.dev/prod/app:v1.0", digest: digestA},
		{ref: "us.pkg.dev/prod/app:latest", digest: digestB},
		{ref: "us.pkg.dev/prod/app@" + digestB, digest: digestB},
		{ref: "eu.pkg.dev/prod/tool@" + digestC, digest: digestC},
		{ref: "gcr.io/staging/app@" + digestA, digest: digestA},
		{ref: "gcr.io/staging/app:v1.0.0"}, // sources hold digests only
		{ref: "eu.pkg.dev/prod/app:v2"},
		{ref: "eu.pkg.dev/prod/app@" + digestC},
		{ref: "eu.pkg.dev/prod/other:v1"},
	}
	for _, tc := range tests {
		ref, err := name.ParseReference(host+"/"+tc.ref, name.StrictValidation)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref, remote.WithContext(ctx))
		if tc.digest == "" {
			var te *transport.Error
			if desc != nil || err == nil {
				t.Errorf("HEAD %s = %v, %v; want a 404", tc.ref, desc, err)
			} else if !errors.As(err, &te) || te.StatusCode != 404 {
				t.Errorf("HEAD %s: %v, want a 404", tc.ref, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("HEAD %s: %v", tc.ref, err)
			continue
		}
		want := v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: tc.digest[len("sha256:"):]}, Size: CorpusManifestSize, MediaType: CorpusManifestType}
		if d := cmp.Diff(want, *desc); d != "" {
			t.Errorf("HEAD %s (-want +got):\n%s", tc.ref, d)
		}
	}
	// A GET of the same shows the error body HEAD cannot carry.
	resp, body, err := do(t, "GET", "http://"+host+"/v2/eu.pkg.dev/prod/app/manifests/v2")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 405 || !strings.Contains(string(body), `"UNSUPPORTED"`) {
		t.Errorf("GET manifest: %d %s, want 405 UNSUPPORTED", resp.StatusCode, body)
	}
	got := reg.Stats()
	// remote.Head pings /v2/ once per call.
	want := CorpusStats{Requests: 2*int64(len(tests)) + 1, Base: int64(len(tests)), ManifestHits: 5, ManifestMisses: 4, Other: 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	reg.ResetStats()
	if got := reg.Stats(); got != (CorpusStats{}) {
		t.Errorf("after ResetStats: %+v", got)
	}
}

func TestCorpusRegistryTags(t *testing.T) {
	t.Parallel()
	reg, host := startCorpus(t, CorpusMaxPage(2))
	repo, err := name.NewRepository(host+"/eu.pkg.dev/prod/app", name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	// go-containerregistry asks for 1000 a page and follows the Link headers.
	tags, err := remote.List(repo)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"latest", "v1", "v1.0", "v1.0.0", "v1.1.0"}, tags); d != "" {
		t.Errorf("tags (-want +got):\n%s", d)
	}
	if got := reg.Stats().TagLists; got != 3 {
		t.Errorf("%d tag list pages, want 3", got)
	}

	type page struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	base := "http://" + host + "/v2/eu.pkg.dev/prod/app/tags/list"
	tests := []struct {
		query, link string
		want        []string
	}{
		{query: "?n=1", want: []string{"latest"}, link: `</v2/eu.pkg.dev/prod/app/tags/list?n=1&last=latest>; rel="next"`},
		{query: "?n=1&last=latest", want: []string{"v1"}, link: `</v2/eu.pkg.dev/prod/app/tags/list?n=1&last=v1>; rel="next"`},
		{query: "?n=5&last=v1", want: []string{"v1.0", "v1.0.0"}, link: `</v2/eu.pkg.dev/prod/app/tags/list?n=2&last=v1.0.0>; rel="next"`}, // capped
		{query: "?last=v1.0.0", want: []string{"v1.1.0"}},
		{query: "?last=v1.05", want: []string{"v1.1.0"}}, // not a tag: after it
		{query: "?last=zzz", want: []string{}},
		{query: "?n=0", want: []string{}},
	}
	for _, tc := range tests {
		resp, body, err := do(t, "GET", base+tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var got page
		if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %d %s (%v)", tc.query, resp.StatusCode, body, err)
			continue
		}
		if d := cmp.Diff(page{"eu.pkg.dev/prod/app", tc.want}, got); d != "" {
			t.Errorf("%s: page (-want +got):\n%s", tc.query, d)
		}
		if l := resp.Header.Get("Link"); l != tc.link {
			t.Errorf("%s: Link %q, want %q", tc.query, l, tc.link)
		}
	}

	for _, tc := range []struct{ url, code string }{
		{"http://" + host + "/v2/eu.pkg.dev/prod/other/tags/list", "NAME_UNKNOWN"},
		{base + "?n=x", "PAGINATION_NUMBER_INVALID"},
	} {
		resp, body, err := do(t, "GET", tc.url)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Errors []struct{ Code string } }
		if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode < 400 || len(e.Errors) != 1 || e.Errors[0].Code != tc.code {
			t.Errorf("GET %s: %d %s, want error %s", tc.url, resp.StatusCode, body, tc.code)
		}
	}
}

func TestCorpusRegistryTagDigests(t *testing.T) {
	t.Parallel()
	_, host := startCorpus(t, CorpusTagDigests(), CorpusMaxPage(4))
	type info struct {
		MediaType string   `json:"mediaType"`
		Tag       []string `json:"tag"`
	}
	type page struct {
		Tags     []string        `json:"tags"`
		Manifest map[string]info `json:"manifest"`
	}
	base := "http://" + host + "/v2/us.pkg.dev/prod/app/tags/list"
	tests := []struct {
		query string
		want  page
	}{
		{"", page{Tags: []string{"latest", "v1", "v1.0", "v1.0.0"}, Manifest: map[string]info{
			digestA: {CorpusManifestType, []string{"v1", "v1.0", "v1.0.0"}},
			digestB: {CorpusManifestType, []string{"latest"}},
		}}},
		{"?last=v1.0.0", page{Tags: []string{"v1.1.0"}, Manifest: map[string]info{digestB: {CorpusManifestType, []string{"v1.1.0"}}}}},
	}
	for _, tc := range tests {
		resp, body, err := do(t, "GET", base+tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var got page
		if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%q: %d %s (%v)", tc.query, resp.StatusCode, body, err)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%q: page (-want +got):\n%s", tc.query, d)
		}
	}
}

// TestRehostThinDir rehosts a small thin directory and checks that the
// result validates into the same groups, named on the new host.
func TestRehostThinDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(rel, text string) {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("manifests/alpha/promoter-manifest.yaml", `registries:
- name: gcr.io/k8s-staging-alpha
  src: true
- name: "eu.pkg.dev/prod/images"
  service-account: x@example.iam.gserviceaccount.com
-   name: us.pkg.dev/prod/images
`)
	write("images/alpha/images.yaml", `- name: gcr.io/tricky   # an image name that looks like a registry: left alone
  dmap:
    "`+digestA+`": ["v1"]
`)
	write("manifests/beta/promoter-manifest.yaml", "registries:\n- name: gcr.io/k8s-staging-beta\n  src: true\n- name: eu.pkg.dev/prod/images\n")
	write("images/beta/images.yaml", "- name: b\n  dmap:\n    \""+digestB+"\": []\n")
	write("OWNERS", "approvers: []\n")

	out := RehostThinDir(t, dir, "127.0.0.1:5001", "alpha")
	if _, err := os.Stat(filepath.Join(out, "OWNERS")); err != nil {
		t.Errorf("top-level file not copied: %v", err)
	}
	for _, rel := range []string{"manifests/beta", "images/beta"} {
		if _, err := os.Stat(filepath.Join(out, rel)); err == nil {
			t.Errorf("%s copied, but only alpha was asked for", rel)
		}
	}
	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{out}}))
	if res.Stats.Errors != 0 || len(res.Groups) != 1 {
		t.Fatalf("stats %+v, problems %v", res.Stats, res.Problems)
	}
	g := res.Groups[0]
	got := []string{g.Source.String()}
	for _, d := range g.Dests {
		got = append(got, d.Name())
	}
	want := []string{
		"127.0.0.1:5001/gcr.io/k8s-staging-alpha/gcr.io/tricky@" + digestA,
		"127.0.0.1:5001/eu.pkg.dev/prod/images/gcr.io/tricky",
		"127.0.0.1:5001/us.pkg.dev/prod/images/gcr.io/tricky",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("names (-want +got):\n%s", d)
	}
	if p := g.Tags[0].Pos; p.Line != 3 {
		t.Errorf("tag position %v moved", p)
	}
}
