package drift_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/snapshot"
	"github.com/imgpromoter/promoter/pkg/validate"
)

func digest(t *testing.T, spec testenv.ImageSpec) v1.Hash {
	t.Helper()
	d, err := testenv.BuildImage(t, spec).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCheck is the specification of drift, against an in-process registry
// holding, besides what the manifests list, each kind of drift and each
// kind of expected extra (index children, a cosign signature tag, an OCI
// referrer).
func TestCheck(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	a := digest(t, testenv.ImageSpec{Seed: 1})
	b := digest(t, testenv.ImageSpec{Seed: 2})
	c := digest(t, testenv.ImageSpec{Seed: 3})
	onlyDigest := digest(t, testenv.ImageSpec{Seed: 4})
	idx, err := testenv.BuildIndex(t, 5).Digest()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "m.yaml")
	yaml := fmt.Sprintf(`registries:
- name: %s
  src: true
- name: %s/team
images:
- name: app
  dmap:
    %q: ["1.0"]
    %q: ["2.0"]
    %q: []
    %q: []
    %q: ["3.0"]
- name: gone
  dmap:
    %q: ["1.0"]
`, staging, prod, a, b, c, onlyDigest, idx, a)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	repo := prod + "/team/app"
	testenv.PushImage(t, repo+":1.0", 1)
	testenv.PushImage(t, repo+":2.0", 9) // moved: 2.0 should be b
	testenv.PushImage(t, repo, 2)        // b is there, untagged
	testenv.PushImage(t, repo, 4)        // the digest-only entry is there, untagged
	// c (digest only) is missing.
	testenv.PushIndex(t, repo+":3.0", 5) // its children are expected
	testenv.PushImage(t, repo+":evil", 666)
	testenv.PushImage(t, prod+"/team/stray:1", 7)
	testenv.PushImage(t, prod+"/elsewhere/app:1", 8) // outside the prefix
	// A cosign signature tag of a listed digest is expected.
	sig := strings.Replace(a.String(), ":", "-", 1) + ".sig"
	testenv.PushImage(t, repo+":"+sig, 10)
	// "gone" is listed but empty: its tag is missing.

	res := validate.Validate(manifest.Load(manifest.Inputs{Files: []string{path}}))
	if res.Unreadable || len(res.Groups) == 0 {
		t.Fatalf("manifest: %+v", res.Problems)
	}
	client, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := snapshot.ParsePrefix(prod + "/team")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := drift.Check(t.Context(), client, drift.NewExpected(res.Groups), []snapshot.Prefix{prefix})
	if err != nil {
		t.Fatal(err)
	}
	want := []drift.Finding{
		{Kind: drift.MissingDigest, Repository: repo, Digest: c.String()},
		{Kind: drift.MovedTag, Repository: repo, Tag: "2.0", Digest: digest(t, testenv.ImageSpec{Seed: 9}).String(), Expected: b.String()},
		{Kind: drift.UnexpectedTag, Repository: repo, Tag: "evil", Digest: digest(t, testenv.ImageSpec{Seed: 666}).String()},
		{Kind: drift.MissingTag, Repository: prod + "/team/gone", Tag: "1.0", Expected: a.String()},
		{Kind: drift.MissingDigest, Repository: prod + "/team/gone", Digest: a.String()},
		{Kind: drift.UnexpectedRepository, Repository: prod + "/team/stray"},
	}
	drift.SortFindings(want)
	if d := cmp.Diff(want, rep.Findings); d != "" {
		t.Errorf("findings (-want +got):\n%s", d)
	}

	// The same registry state gives byte-identical JSON.
	rep2, err := drift.Check(t.Context(), client, drift.NewExpected(res.Groups), []snapshot.Prefix{prefix})
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := json.Marshal(rep)
	j2, _ := json.Marshal(rep2)
	if string(j1) != string(j2) {
		t.Error("two checks of the same state differ")
	}
}

// TestRelations: a digest is expected when it is listed, a child of a
// listed index (read from staging when production lacks the index yet), or
// a referrer (subject) of an expected digest.
func TestRelations(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	idx, children := testenv.PushIndex(t, staging+"/app", 5)
	src, err := name.NewDigest(staging + "/app@" + idx.String())
	if err != nil {
		t.Fatal(err)
	}
	dest, err := name.NewRepository(prod + "/app")
	if err != nil {
		t.Fatal(err)
	}
	r := drift.NewRelations(mustClient(t))
	repo := &drift.Repo{Ref: dest, Tags: map[string]v1.Hash{"1.0": idx}, Sources: map[v1.Hash]name.Digest{idx: src}}
	for _, d := range append([]v1.Hash{idx}, children...) {
		ok, err := r.Expected(t.Context(), repo, d)
		if err != nil || !ok {
			t.Errorf("%s: expected=%v, %v; want expected (listed or a child of the listed index)", d, ok, err)
		}
	}
	stray := digest(t, testenv.ImageSpec{Seed: 99})
	testenv.PushImage(t, prod+"/app", 99)
	if ok, err := r.Expected(t.Context(), repo, stray); err != nil || ok {
		t.Errorf("an unrelated digest: expected=%v, %v", ok, err)
	}
	// A referrer (a signature, say) of the index, pushed to production.
	idxDesc, err := remote.Head(src, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	ref := mutate.Subject(testenv.BuildImage(t, testenv.ImageSpec{Seed: 100}), *idxDesc).(v1.Image)
	refDigest, err := ref.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dest.Digest(refDigest.String()), ref, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Expected(t.Context(), repo, refDigest); err != nil || !ok {
		t.Errorf("a referrer of the listed index: expected=%v, %v; want expected", ok, err)
	}
}

func mustClient(t *testing.T) *access.Client {
	t.Helper()
	c, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// googleStyle serves an in-process registry with tag lists that carry
// Google's "manifest" map: every manifest of the repository, tagged or not,
// as Google's registries list them.
func googleStyle(t *testing.T, manifests map[string][]string) string {
	t.Helper()
	upstream := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(upstream.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, upstream.URL+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		req.ContentLength = r.ContentLength
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.HasSuffix(r.URL.Path, "/tags/list") && resp.StatusCode == http.StatusOK {
			var page map[string]any
			_ = json.Unmarshal(body, &page)
			m := map[string]any{}
			repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/tags/list")
			for d, tags := range manifests {
				if strings.HasPrefix(d, repo+"@") {
					m[strings.TrimPrefix(d, repo+"@")] = map[string]any{"tag": tags, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
				}
			}
			page["manifest"] = m
			body, _ = json.Marshal(page)
			resp.Header.Del("Content-Length")
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestUnexpectedDigests: where the registry lists untagged manifests
// (Google's tag lists), an untagged manifest that no manifest lists is
// drift; the untagged children of a listed index are not.
func TestUnexpectedDigests(t *testing.T) {
	listing := map[string][]string{}
	prod := googleStyle(t, listing)
	staging := testenv.InProcessRegistry(t)
	a := testenv.PushImage(t, prod+"/app:1.0", 1)
	idx, children := testenv.PushIndex(t, prod+"/app:2.0", 5)
	stray := testenv.PushImage(t, prod+"/app", 77)
	listing["app@"+a.String()] = []string{"1.0"}
	listing["app@"+idx.String()] = []string{"2.0"}
	for _, c := range children {
		listing["app@"+c.String()] = []string{}
	}
	listing["app@"+stray.String()] = []string{}
	path := filepath.Join(t.TempDir(), "m.yaml")
	yaml := fmt.Sprintf("registries:\n- name: %s\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n    %q: [\"2.0\"]\n", staging, prod, a, idx)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	res := validate.Validate(manifest.Load(manifest.Inputs{Files: []string{path}}))
	prefix, err := snapshot.ParsePrefix(prod)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := drift.Check(t.Context(), mustClient(t), drift.NewExpected(res.Groups), []snapshot.Prefix{prefix})
	if err != nil {
		t.Fatal(err)
	}
	want := []drift.Finding{{Kind: drift.UnexpectedDigest, Repository: prod + "/app", Digest: stray.String()}}
	if d := cmp.Diff(want, rep.Findings); d != "" {
		t.Errorf("findings (-want +got):\n%s", d)
	}
}
