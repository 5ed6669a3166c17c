package snapshot_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/snapshot"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want string // want "" for an error
		path     string
	}{
		{"registry.example/team", "registry.example/team", "team"},
		{"registry.example/team/sub/", "registry.example/team/sub", "team/sub"},
		{"registry.example", "registry.example", ""},
		{"127.0.0.1:5000/x", "127.0.0.1:5000/x", "x"},
		{"localhost/x", "localhost/x", "x"},
		{"team/app", "", ""},              // no host: would be Docker Hub
		{"registry.example/Team", "", ""}, // paths are lowercase
		{"registry.example/a//b", "", ""},
		{"/x", "", ""},
		{"", "", ""},
		{"bad_host.example/x", "", ""},
	}
	for _, tt := range tests {
		p, err := snapshot.ParsePrefix(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParsePrefix(%q) = %v, want an error", tt.in, p)
		case tt.want != "" && err != nil:
			t.Errorf("ParsePrefix(%q): %v", tt.in, err)
		case tt.want != "" && (p.String() != tt.want || p.Path != tt.path):
			t.Errorf("ParsePrefix(%q) = %q (path %q), want %q (path %q)", tt.in, p, p.Path, tt.want, tt.path)
		}
	}
}

func TestPrefixRel(t *testing.T) {
	p, err := snapshot.ParsePrefix("Registry.Example/team")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		repo string
		rel  string
		ok   bool
	}{
		{"registry.example/team/app", "app", true},
		{"REGISTRY.example/team/a/b", "a/b", true}, // hosts compare case-insensitively
		{"registry.example/team", "", true},        // the prefix itself
		{"registry.example/teammate/app", "", false},
		{"registry.example/other/team/app", "", false},
		{"other.example/team/app", "", false},
	}
	for _, tt := range tests {
		r, err := name.NewRepository(tt.repo)
		if err != nil {
			t.Fatal(err)
		}
		rel, ok := p.RelRepo(r)
		if rel != tt.rel || ok != tt.ok {
			t.Errorf("RelRepo(%s) = %q, %v; want %q, %v", tt.repo, rel, ok, tt.rel, tt.ok)
		}
	}
	whole, _ := snapshot.ParsePrefix("registry.example")
	if rel, ok := whole.Rel("team/app"); rel != "team/app" || !ok {
		t.Errorf("whole registry: Rel = %q, %v", rel, ok)
	}
}

func hash(c byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(c), 64)}
}

func TestWrite(t *testing.T) {
	s := &snapshot.Snapshot{Images: []snapshot.Image{
		{Name: "a", Digests: []snapshot.Digest{{Digest: hash('0'), Tags: []string{"1.0", "latest"}}, {Digest: hash('1')}}},
		{Name: "null", Digests: []snapshot.Digest{{Digest: hash('2'), Tags: []string{"true"}}}},
	}}
	yaml := `- name: a
  dmap:
    "sha256:0000000000000000000000000000000000000000000000000000000000000000": ["1.0", "latest"]
    "sha256:1111111111111111111111111111111111111111111111111111111111111111": []
- name: "null"
  dmap:
    "sha256:2222222222222222222222222222222222222222222222222222222222222222": ["true"]
`
	csv := `a@sha256:0000000000000000000000000000000000000000000000000000000000000000,a:1.0
a@sha256:0000000000000000000000000000000000000000000000000000000000000000,a:latest
a@sha256:1111111111111111111111111111111111111111111111111111111111111111,-
null@sha256:2222222222222222222222222222222222222222222222222222222222222222,null:true
`
	if got := render(t, snapshot.YAML, s); got != yaml {
		t.Errorf("YAML:\n%s\nwant:\n%s", got, yaml)
	}
	if got := render(t, snapshot.CSV, s); got != csv {
		t.Errorf("CSV:\n%s\nwant:\n%s", got, csv)
	}
	empty := &snapshot.Snapshot{}
	if got := render(t, snapshot.YAML, empty) + render(t, snapshot.CSV, empty); got != "" {
		t.Errorf("empty snapshot renders as %q", got)
	}
	for in, want := range map[string]snapshot.Format{"yaml": snapshot.YAML, "YAML": snapshot.YAML, "csv": snapshot.CSV, "Csv": snapshot.CSV} {
		if f, err := snapshot.ParseFormat(in); f != want || err != nil {
			t.Errorf("ParseFormat(%q) = %q, %v", in, f, err)
		}
	}
	if _, err := snapshot.ParseFormat("json"); err == nil {
		t.Error("ParseFormat(json): no error")
	}
}

func TestBadOptions(t *testing.T) {
	p, _ := snapshot.ParsePrefix("registry.example/team")
	for _, opt := range []snapshot.Option{snapshot.WithTag("-rc1"), snapshot.WithTag("a+b"), snapshot.WithRepos("Bad"), snapshot.WithRepos("a//b")} {
		if _, err := snapshot.FromGroups(nil, p, opt); !errors.Is(err, snapshot.ErrBadOption) {
			t.Errorf("error = %v, want ErrBadOption", err)
		}
		// Take checks them before reading the registry (nil would panic).
		if _, err := snapshot.Take(t.Context(), nil, p, opt); !errors.Is(err, snapshot.ErrBadOption) {
			t.Errorf("Take: error = %v, want ErrBadOption", err)
		}
	}
}
