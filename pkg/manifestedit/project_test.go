package manifestedit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// staging is a test staging registry with the images of app.
type staging struct {
	host                              string
	v100, v110, rc, nightly, untagged v1.Hash
}

func newStaging(t *testing.T) *staging {
	s := &staging{host: testenv.InProcessRegistry(t)}
	repo := s.host + "/staging/app"
	s.v100 = testenv.PushImage(t, repo+":v1.0.0", 1)
	s.v110 = testenv.PushImage(t, repo+":v1.1.0", 2)
	testenv.PushImage(t, repo+":1.1", 2)
	s.rc = testenv.PushImage(t, repo+":v1.2.0-rc.1", 3)
	s.nightly = testenv.PushImage(t, repo+":latest", 4)
	s.untagged = testenv.PushImage(t, repo, 5)
	return s
}

func (s *staging) registries() string {
	return fmt.Sprintf("registries:\n- name: %s/staging\n  src: true\n- name: prod.example/team\n", s.host)
}

func client(t *testing.T) *access.Client {
	t.Helper()
	c, err := access.New(testenv.FastRetries())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assertDirValid loads and validates a thin directory: no problem at all.
func assertDirValid(t *testing.T, dir string) {
	t.Helper()
	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
	for _, p := range res.Problems {
		t.Errorf("after add: %v", p)
	}
}

func TestAdd(t *testing.T) {
	s := newStaging(t)
	images := fmt.Sprintf("# app, by release\n- name: app\n  dmap:\n    %q: [\"v1.0.0\"] # GA\n", s.v100)
	dir := writeThin(t, t.TempDir(), "team", s.registries(), []byte(images))
	file := filepath.Join(dir, "images", "team", "images.yaml")
	req := Request{ThinDir: dir, Project: "team", Image: "app",
		Tags:      []string{"1.1"},
		Digests:   []v1.Hash{s.untagged},
		TagFilter: regexp.MustCompile(`^(?:v1\..*|latest)$`),
	}
	rep, err := Add(t.Context(), client(t), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "add/project.golden", got)
	assertDirValid(t, dir)
	assertLinesKept(t, []byte(images), got, nil)
	if !rep.Changed || !rep.Written || rep.Source != s.host+"/staging/app" || rep.File != file {
		t.Errorf("report = %+v", rep)
	}
	type change struct {
		Digest v1.Hash
		Kind   ChangeKind
		Added  string
	}
	var changes []change
	for _, c := range rep.Changes {
		h, _ := v1.NewHash(c.Digest)
		changes = append(changes, change{h, c.Kind, strings.Join(c.Added, ",")})
	}
	want := []change{
		{s.v100, Present, ""},
		{s.v110, NewDigest, "1.1,v1.1.0"}, // new digests ordered by smallest tag

		{s.rc, NewDigest, "v1.2.0-rc.1"},
		{s.untagged, NewDigest, ""},
	}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Tag != "latest" {
		t.Errorf("skipped = %+v, want latest", rep.Skipped)
	}

	// Again: nothing to do.
	rep, err = Add(t.Context(), client(t), req)
	if err != nil || rep.Changed || rep.Written {
		t.Fatalf("second add: %+v, %v", rep, err)
	}
	again, _ := os.ReadFile(file)
	if !bytes.Equal(again, got) {
		t.Error("the second add changed the file")
	}

	// A tag that moved in staging is refused with where the manifest has it.
	testenv.PushImage(t, s.host+"/staging/app:v1.0.0", 9)
	rep, err = Add(t.Context(), client(t), Request{ThinDir: dir, Project: "team", Image: "app", Tags: []string{"v1.0.0"}})
	var re *RefusedError
	if !errors.As(err, &re) || len(rep.Problems) != 1 || rep.Problems[0].Code != diag.CodeConflict ||
		rep.Problems[0].Pos.String() != file+":4:81" {
		t.Errorf("moved tag: %+v, %v", rep, err)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(after, got) {
		t.Error("a refused add changed the file")
	}
}

func TestAddRefused(t *testing.T) {
	s := newStaging(t)
	tests := []struct {
		name string
		req  Request
		code diag.Code
		msg  string
	}{
		{"latest", Request{Tags: []string{"latest"}}, diag.CodeTag, "tag latest is refused"},
		{"missing tag", Request{Tags: []string{"v9"}}, diag.CodeTag, "tag v9 is not in " + s.host + "/staging/app"},
		{"missing digest", Request{Digests: []v1.Hash{hash("a")}}, diag.CodeDigest, "is not in"},
		{"no match", Request{TagFilter: regexp.MustCompile(`^v9`)}, diag.CodeTag, "no tag of " + s.host + "/staging/app matches ^v9"},
		{"bad tag", Request{Tags: []string{"-x"}}, diag.CodeTag, "invalid tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeThin(t, t.TempDir(), "team", s.registries(), []byte("# none yet\n"))
			tt.req.ThinDir, tt.req.Project, tt.req.Image = dir, "team", "app"
			rep, err := Add(t.Context(), client(t), tt.req)
			var re *RefusedError
			if !errors.As(err, &re) || rep == nil || len(rep.Problems) == 0 {
				t.Fatalf("Add = %+v, %v; want a refusal", rep, err)
			}
			if p := rep.Problems[0]; p.Code != tt.code || !strings.Contains(p.Message, tt.msg) {
				t.Errorf("problem = %v (%s), want %s %q", p, p.Code, tt.code, tt.msg)
			}
			if data, _ := os.ReadFile(filepath.Join(dir, "images", "team", "images.yaml")); string(data) != "# none yet\n" {
				t.Errorf("the file changed: %q", data)
			}
		})
	}
}

// TestAddCrossProjectConflict: a tag the same destination repository gets
// from another project is refused by the validation of the edited
// directory.
func TestAddCrossProjectConflict(t *testing.T) {
	s := newStaging(t)
	dir := writeThin(t, t.TempDir(), "team", s.registries(), []byte("[]\n"))
	writeThin(t, dir, "other", "registries:\n- name: other-staging.example/x\n  src: true\n- name: prod.example/team\n",
		[]byte(fmt.Sprintf("- name: app\n  dmap:\n    %q: [\"v1.1.0\"]\n", hash("e"))))
	rep, err := Add(t.Context(), client(t), Request{ThinDir: dir, Project: "team", Image: "app", Tags: []string{"v1.1.0"}})
	var re *RefusedError
	if !errors.As(err, &re) || len(rep.Problems) != 1 || rep.Problems[0].Code != diag.CodeConflict {
		t.Fatalf("Add = %+v, %v; want a tag conflict", rep, err)
	}
	if !strings.Contains(rep.Problems[0].String(), filepath.Join(dir, "images", "other", "images.yaml")+":3:") {
		t.Errorf("the problem does not name the other file: %v", rep.Problems[0])
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "images", "team", "images.yaml")); string(data) != "[]\n" {
		t.Errorf("the file changed: %q", data)
	}
}

func TestAddNewFileAndDryRun(t *testing.T) {
	s := newStaging(t)
	dir := writeThin(t, t.TempDir(), "team", s.registries(), nil)
	file := filepath.Join(dir, "images", "team", "images.yaml")
	req := Request{ThinDir: dir, Project: "team", Image: "app", Tags: []string{"v1.0.0"}}

	rep, err := Add(t.Context(), client(t), req, DryRun())
	if err != nil || !rep.Changed || rep.Written {
		t.Fatalf("dry run: %+v, %v", rep, err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a dry run wrote %s", file)
	}

	if _, err := Add(t.Context(), client(t), req); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	want := fmt.Sprintf("- name: app\n  dmap:\n    %q: [\"v1.0.0\"]\n", s.v100)
	if string(got) != want {
		t.Errorf("new images.yaml:\n%s\nwant:\n%s", got, want)
	}
	assertDirValid(t, dir)
}

func TestAddBadInputs(t *testing.T) {
	s := newStaging(t)
	dir := writeThin(t, t.TempDir(), "team", s.registries(), []byte("[]\n"))
	writeThin(t, dir, "nosrc", "registries:\n- name: prod.example/team\n", []byte("[]\n"))
	for name, req := range map[string]Request{
		"unknown project": {ThinDir: dir, Project: "nope", Image: "app", Tags: []string{"v1.0.0"}},
		"project path":    {ThinDir: dir, Project: "../team", Image: "app", Tags: []string{"v1.0.0"}},
		"no source":       {ThinDir: dir, Project: "nosrc", Image: "app", Tags: []string{"v1.0.0"}},
		"bad image":       {ThinDir: dir, Project: "team", Image: "App!", Tags: []string{"v1.0.0"}},
		"missing dir":     {ThinDir: filepath.Join(dir, "nope"), Project: "team", Image: "app", Tags: []string{"v1.0.0"}},
	} {
		t.Run(name, func(t *testing.T) {
			rep, err := Add(t.Context(), client(t), req)
			var re *RefusedError
			if err == nil || errors.As(err, &re) {
				t.Errorf("Add = %+v, %v; want an error", rep, err)
			}
		})
	}
}

// TestAddCorpus adds a release to a project of the Kubernetes corpus (all
// 75 projects, rehosted onto an in-process registry): every line stays,
// the directory validates as before plus the new edges, and a tag the
// corpus already gives another digest is refused.
func TestAddCorpus(t *testing.T) {
	const corpus = "../../testdata/corpus/k8s.io-2024-06/registry.k8s.io"
	host := testenv.InProcessRegistry(t)
	dir := testenv.RehostThinDir(t, corpus, host)
	file := filepath.Join(dir, "images", "k8s-staging-etcd", "images.yaml")
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
	d := testenv.PushImage(t, host+"/gcr.io/k8s-staging-etcd/etcd:3.6.0-0", 7)
	testenv.PushImage(t, host+"/gcr.io/k8s-staging-etcd/etcd:3.5.9-0", 8) // moved in staging

	rep, err := Add(t.Context(), client(t), Request{ThinDir: dir, Project: "k8s-staging-etcd", Image: "etcd", Tags: []string{"3.6.0-0"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Changes) != 1 || rep.Changes[0].Kind != NewDigest || rep.Changes[0].Digest != d.String() {
		t.Fatalf("changes = %+v", rep.Changes)
	}
	after, _ := os.ReadFile(file)
	assertLinesKept(t, before, after, nil)
	want := string(before[:bytes.Index(before, []byte("- name: etcd-empty-dir-cleanup"))]) +
		fmt.Sprintf("    %q: [\"3.6.0-0\"]\n", d) + string(before[bytes.Index(before, []byte("- name: etcd-empty-dir-cleanup")):])
	if string(after) != want {
		t.Errorf("etcd's images.yaml:\n%s", after)
	}
	res2 := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{dir}}))
	dests := 0
	for _, m := range res2.Groups {
		if m.Image == "etcd" && m.Digest == d {
			dests = len(m.Dests)
		}
	}
	if dests == 0 || res2.Stats.ValidEdges != res.Stats.ValidEdges+dests || res2.Stats.Errors != res.Stats.Errors {
		t.Errorf("validation: %+v, then %+v (new digest to %d destinations)", res.Stats, res2.Stats, dests)
	}

	_, err = Add(t.Context(), client(t), Request{ThinDir: dir, Project: "k8s-staging-etcd", Image: "etcd", Tags: []string{"3.5.9-0"}})
	var re *RefusedError
	if !errors.As(err, &re) || re.Problems[0].Code != diag.CodeConflict {
		t.Errorf("moved tag: %v", err)
	}
}
