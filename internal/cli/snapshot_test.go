package cli_test

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/testenv"
)

func TestSnapshotUsage(t *testing.T) {
	clean := t.TempDir()
	writeThin(t, clean, "p", "registries:\n- name: r.example/s\n  src: true\n- name: r.example/p\n",
		"- name: a\n  dmap:\n    \"sha256:"+strings.Repeat("a", 64)+"\": [\"1.0\"]\n")
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no prefix", []string{"snapshot"}, "snapshot takes one REGISTRY"},
		{"two prefixes", []string{"snapshot", "r.example/a", "r.example/b"}, "snapshot takes one REGISTRY"},
		{"no host", []string{"snapshot", "team/app"}, "must start with a registry host"},
		{"bad output", []string{"snapshot", "-o", "json", "r.example/a"}, "want yaml or csv"},
		{"bad tag", []string{"snapshot", "--tag", "-rc1", "r.example/a"}, "not a valid tag"},
		{"bad repo", []string{"snapshot", "--repo", "App", "r.example/a"}, "not a valid OCI repository path"},
		{"bad jobs", []string{"snapshot", "--jobs", "0", "r.example/a"}, "--jobs"},
		{"manifests without --from-manifests", []string{"snapshot", "--thin-manifest-dir", clean, "r.example/a"}, "with --from-manifests only"},
		{"minimal from manifests", []string{"snapshot", "--minimal", "--from-manifests", "r.example/p", clean}, "--minimal does not apply"},
		{"from manifests without manifests", []string{"snapshot", "--from-manifests", "r.example/p"}, "no manifests given"},
		{"from manifests bad prefix", []string{"snapshot", "--from-manifests", "p", clean}, "--from-manifests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != cli.ExitUsage || !strings.Contains(errOut, tt.want) || out != "" {
				t.Errorf("exit %d, want %d; stderr lacks %q?\nstdout:\n%s\nstderr:\n%s", code, cli.ExitUsage, tt.want, out, errOut)
			}
		})
	}
}

func TestSnapshotRegistry(t *testing.T) {
	host := testenv.InProcessRegistry(t)
	app := testenv.PushImage(t, host+"/team/app:v1", 1)
	testenv.PushImage(t, host+"/team/app:latest", 1)
	idx, children := testenv.PushIndex(t, host+"/team/x/multi:v2", 2)
	other := testenv.PushImage(t, host+"/other/app:v1", 3)
	testenv.PushImage(t, host+"/team:v0", 4) // the prefix's own repository: no image name under it

	code, out, errOut := run(t, "snapshot", host+"/team")
	want := fmt.Sprintf(`- name: app
  dmap:
    %q: ["latest", "v1"]
- name: x/multi
  dmap:
`, app)
	multi := map[string]string{idx.String(): `["v2"]`, children[0].String(): "[]", children[1].String(): "[]"}
	for _, d := range slices.Sorted(maps.Keys(multi)) {
		want += fmt.Sprintf("    %q: %s\n", d, multi[d])
	}
	if code != cli.ExitOK || out != want {
		t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
	}
	if !strings.Contains(errOut, "snapshot of "+host+"/team: 2 images, 4 digests, 3 tags") || !strings.Contains(errOut, "it is the prefix itself") {
		t.Errorf("no summary or no warning for the prefix's repository:\n%s", errOut)
	}
	code, out, errOut = run(t, "snapshot", "--repo", "app", "--repo", "ap", host+"/team")
	if code != cli.ExitOK || !strings.Contains(out, "- name: app\n") || !strings.Contains(errOut, "no tags (or does not exist)") {
		t.Errorf("a named repository without tags: exit %d\n%s\nstderr:\n%s", code, out, errOut)
	}

	code, out, _ = run(t, "snapshot", "-o", "csv", "--minimal", "--repo", "x/multi", host+"/team")
	if want := fmt.Sprintf("x/multi@%s,x/multi:v2\n", idx); code != cli.ExitOK || out != want {
		t.Errorf("csv: exit %d\n%s\nwant:\n%s", code, out, want)
	}
	code, out, _ = run(t, "snapshot", "-o", "csv", "--tag", "v1", host)
	if want := fmt.Sprintf("other/app@%s,other/app:v1\nteam/app@%s,team/app:v1\n", other, app); code != cli.ExitOK || out != want {
		t.Errorf("whole registry, tag v1: exit %d\n%s\nwant:\n%s", code, out, want)
	}
}

// TestSnapshotNoCatalog: without a catalog the command says to name the
// repositories, and exits 1.
func TestSnapshotNoCatalog(t *testing.T) {
	backend := testenv.InProcessRegistry(t)
	u, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/_catalog" {
			http.NotFound(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	d := testenv.PushImage(t, host+"/team/app:v1", 1)

	code, out, errOut := run(t, "snapshot", host+"/team")
	if code != cli.ExitProblems || out != "" || !strings.Contains(errOut, "does not list its repositories") || !strings.Contains(errOut, "--repo NAME") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, "snapshot", "--repo", "app", host+"/team")
	if want := fmt.Sprintf("- name: app\n  dmap:\n    %q: [\"v1\"]\n", d); code != cli.ExitOK || out != want {
		t.Errorf("with --repo: exit %d\n%s\nwant:\n%s\n%s", code, out, want, errOut)
	}
}

func TestSnapshotFromManifests(t *testing.T) {
	dir := t.TempDir()
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	writeThin(t, dir, "p", "registries:\n- name: staging.example/p\n  src: true\n- name: prod.example/images/p\n- name: mirror.example/p\n",
		fmt.Sprintf("- name: app\n  dmap:\n    %q: [\"1.0\", \"latest\"]\n    %q: []\n", b, a))
	writeThin(t, dir, "q", "registries:\n- name: staging.example/q\n  src: true\n- name: prod.example/images\n",
		fmt.Sprintf("- name: tool\n  dmap:\n    %q: [\"v1\"]\n", a))

	code, out, errOut := run(t, "snapshot", "--from-manifests", "prod.example/images", dir)
	want := fmt.Sprintf(`- name: p/app
  dmap:
    %q: []
    %q: ["1.0", "latest"]
- name: tool
  dmap:
    %q: ["v1"]
`, a, b, a)
	if code != cli.ExitOK || out != want {
		t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
	}
	code, out, _ = run(t, "snapshot", "-o", "csv", "--tag", "latest", "--from-manifests", "prod.example/images", "--thin-manifest-dir", dir)
	if want := "p/app@" + b + ",p/app:latest\n"; code != cli.ExitOK || out != want {
		t.Errorf("csv --tag latest: exit %d\n%s", code, out)
	}
	// The sources are not what the manifests say a registry holds.
	code, out, _ = run(t, "snapshot", "--from-manifests", "staging.example", dir)
	if code != cli.ExitOK || out != "" {
		t.Errorf("snapshot of a source: exit %d\n%s", code, out)
	}

	// The corpus has errors: their entries are left out, and the exit
	// status says so.
	code, out, errOut = run(t, "snapshot", "-o", "csv", "--from-manifests", "us-central1-docker.pkg.dev/k8s-artifacts-prod/images", corpus)
	if code != cli.ExitProblems || strings.Count(out, "\n") != 32748 ||
		!strings.Contains(errOut, "445 images, 32679 digests, 32748 tags") || !strings.Contains(errOut, "the manifests have 3 errors") {
		t.Errorf("corpus: exit %d, %d lines\nstderr:\n%s", code, strings.Count(out, "\n"), errOut)
	}
}
