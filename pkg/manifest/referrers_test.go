package manifest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// The optional referrers settings: read on registries and images, strict
// like every other key, absent (nil) when not written.
func TestReferrersField(t *testing.T) {
	text := "registries:\n- name: gcr.io/src\n  src: true\n- name: r.io/dst\n  referrers: {carry: false}\n- name: r.io/other\n" +
		"images:\n- name: a\n  referrers:\n    artifactTypes: [application/vnd.dev.sigstore.bundle.v0.3+json, cosign/sig]\n  dmap: {\"" + digA + "\": [v1]}\n"
	path := writeFile(t, "m.yaml", text)
	m, probs := LoadFile(path)
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	p := func(line, col int) diag.Position { return diag.Position{File: path, Line: line, Column: col} }
	if diff := cmp.Diff(&Referrers{Carry: false, Pos: p(5, 14)}, m.Registries[1].Referrers); diff != "" {
		t.Errorf("registry referrers (-want +got):\n%s", diff)
	}
	if m.Registries[0].Referrers != nil || m.Registries[2].Referrers != nil {
		t.Errorf("referrers read where none was written")
	}
	want := &Referrers{Carry: true, ArtifactTypes: []string{"application/vnd.dev.sigstore.bundle.v0.3+json", "cosign/sig"}, Pos: p(10, 5)}
	if diff := cmp.Diff(want, m.Images[0].Referrers); diff != "" {
		t.Errorf("image referrers (-want +got):\n%s", diff)
	}

	for _, tc := range []struct{ name, text, want string }{
		{"unknown key", strictHeader + "- name: a\n  referrers: {carry: true, types: [x]}\n  dmap: {}\n", `m.yaml:7:28: unknown key "types" in referrers`},
		{"carry not a bool", strictHeader + "- name: a\n  referrers: {carry: \"no\"}\n  dmap: {}\n", `m.yaml:7:22: carry must be true or false`},
		{"not a mapping", strictHeader + "- name: a\n  referrers: none\n  dmap: {}\n", `m.yaml:7:14: referrers must be a mapping`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "m.yaml", tc.text)
			_, probs := LoadFile(path)
			if len(probs) != 1 {
				t.Fatalf("problems %v, want one", probs)
			}
			got := relPos(filepath.Dir(path), probs[0].Pos) + ": " + probs[0].Message
			if !strings.Contains(got, tc.want) {
				t.Errorf("problem %q, want %q", got, tc.want)
			}
		})
	}
}
