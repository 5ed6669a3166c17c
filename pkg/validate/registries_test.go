package validate

import (
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// TestRegistryIdentity checks the registry names that name one registry in
// two ways (Docker Hub's spellings, localhost and 127.0.0.1) and the ports
// a registry host may have: the same registry as source and destination,
// or twice in one manifest, is refused with a message that says why.
func TestRegistryIdentity(t *testing.T) {
	tests := []struct {
		name       string
		registries []string
		code       diag.Code // "" for no problem
		msg        string
		valid      int // valid edges
	}{
		{"docker.io is index.docker.io", []string{"src:docker.io/team", "index.docker.io/team", "r.io/b"}, diag.CodeDestIsSource,
			"destination is the source registry (docker.io/team and index.docker.io/team name the same registry)", 1},
		{"docker.io twice", []string{"src:gcr.io/src", "docker.io/team", "index.docker.io/team"}, diag.CodeDuplicateReg,
			"registry listed twice in one manifest (docker.io/team and index.docker.io/team name the same registry)", 1},
		{"localhost is 127.0.0.1", []string{"src:localhost:5000/s", "127.0.0.1:5000/s", "r.io/b"}, diag.CodeDestIsSource,
			"destination is the source registry (localhost:5000/s and 127.0.0.1:5000/s name the same registry)", 1},
		{"127.0.0.1 is localhost", []string{"src:127.0.0.1:5000", "LOCALHOST:5000", "r.io/b"}, diag.CodeDestIsSource,
			"name the same registry", 1},
		{"localhost twice", []string{"src:gcr.io/src", "localhost:5000/p", "127.0.0.1:5000/p"}, diag.CodeDuplicateReg,
			"registry listed twice in one manifest (localhost:5000/p and 127.0.0.1:5000/p name the same registry)", 1},
		{"same host, other path: a real promotion", []string{"src:localhost:5000/staging", "127.0.0.1:5000/prod"}, "", "", 1},
		{"other port: another registry", []string{"src:localhost:5000/s", "127.0.0.1:5001/s"}, "", "", 1},
		{"port 0", []string{"src:gcr.io/src", "r.io:0/p", "r.io/b"}, diag.CodeRegistryName, `registry name "r.io:0/p" has an invalid port "0" (want 1 to 65535)`, 1},
		{"port 99999", []string{"src:gcr.io/src", "r.io:99999/p", "r.io/b"}, diag.CodeRegistryName, `has an invalid port "99999"`, 1},
		{"port 65536 on the source", []string{"src:localhost:65536", "r.io/b"}, diag.CodeRegistryName, `has an invalid port "65536"`, 0},
		{"ports 1 and 65535", []string{"src:localhost:1", "r.io:65535/b"}, "", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, _ := loadFiles(t, map[string]string{"m.yaml": doc(tt.registries, img("app", digA, "v1"))})
			res := Validate(set)
			var got []string
			found := false
			for _, p := range res.Problems {
				got = append(got, p.String())
				if p.Code == tt.code && strings.Contains(p.Message, tt.msg) {
					found = true
				}
			}
			if tt.code == "" && len(res.Problems) > 0 || tt.code != "" && !found {
				t.Errorf("problems = %q, want %s %q", got, tt.code, tt.msg)
			}
			if res.Stats.ValidEdges != tt.valid {
				t.Errorf("valid edges = %d, want %d", res.Stats.ValidEdges, tt.valid)
			}
		})
	}
}

// TestControlCharactersEscaped checks that a name holding control
// characters is printed escaped, as JSON escapes it: one problem stays one
// line and can neither forge another nor drive the terminal.
func TestControlCharactersEscaped(t *testing.T) {
	set, _ := loadFiles(t, map[string]string{"m.yaml": doc([]string{"src:gcr.io/src", "r.io/b"}, img("app\x1b[2J\nm.yaml:1:1: forged", digA, "v1"))})
	res := Validate(set)
	if len(res.Problems) != 1 {
		t.Fatalf("problems = %v", res.Problems)
	}
	line := res.Problems[0].String()
	if strings.ContainsAny(line, "\x1b\n") {
		t.Errorf("control characters printed raw: %q", line)
	}
	if !strings.Contains(line, `image app\u001b[2J\nm.yaml:1:1: forged: image name "app\x1b[2J\nm.yaml:1:1: forged"`) {
		t.Errorf("line = %s", line)
	}
}

// TestRefusedTags checks the typed record of the tags a conflict refuses,
// and that a group losing every tag is dropped by that record, not by an
// empty-but-not-nil tag list: in every group, no tags means digest only.
func TestRefusedTags(t *testing.T) {
	set, _ := loadFiles(t, map[string]string{"m.yaml": doc([]string{"src:gcr.io/s", "r.io/a", "r.io/b"},
		img("x", digA, "v1", digB, "v1, v2", digC, ""))})
	res := Validate(set)
	var got []string
	for _, r := range res.Refused {
		var dests []string
		for _, d := range r.Dests {
			dests = append(dests, d.String())
		}
		got = append(got, r.Source.DigestStr()[7:8]+":"+r.Tag+" "+strings.Join(dests, ","))
	}
	want := []string{"a:v1 r.io/a/x,r.io/b/x", "b:v1 r.io/a/x,r.io/b/x"}
	if strings.Join(got, " ; ") != strings.Join(want, " ; ") {
		t.Errorf("refused = %q, want %q", got, want)
	}
	var groups []string
	for _, g := range res.Groups {
		if g.Tags != nil && len(g.Tags) == 0 {
			t.Errorf("group %s has an empty, non-nil tag list", g.Source)
		}
		groups = append(groups, g.Digest.String()[7:8])
	}
	// A lost its only tag: not promoted by digest only. C is digest only.
	if strings.Join(groups, "") != "bc" {
		t.Errorf("groups = %v, want b and c", groups)
	}
}
