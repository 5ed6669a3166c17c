package manifestedit

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/diag"
)

func TestAddToListGolden(t *testing.T) {
	tests := []struct {
		name  string // testdata/add/<input>.yaml -> testdata/add/<name>.golden
		input string
		image string
		adds  []Addition
		opts  []Option
		kinds []ChangeKind // per digest, in the order written
	}{
		{
			name: "comments-new-digest", input: "comments", image: "controller",
			adds:  []Addition{{Digest: hash("d"), Tags: []string{"v1.2.0", "1.2"}}},
			kinds: []ChangeKind{NewDigest},
		},
		{
			name: "comments-new-tag", input: "comments", image: "agent",
			adds:  []Addition{{Digest: hash("c"), Tags: []string{"2.0", "v2.0.0"}}},
			kinds: []ChangeKind{NewTags},
		},
		{
			name: "comments-new-image", input: "comments", image: "tools/cli",
			adds:  []Addition{{Digest: hash("e"), Tags: []string{"v0.1.0"}}, {Digest: hash("9")}},
			kinds: []ChangeKind{NewImage, NewImage},
		},
		{
			name: "crlf", input: "crlf", image: "controller",
			adds: []Addition{
				{Digest: hash("a"), Tags: []string{"1.0"}},
				{Digest: hash("c"), Tags: []string{"v1.2.0"}},
			},
			kinds: []ChangeKind{NewTags, NewDigest},
		},
		{
			name: "crlf-new-image", input: "crlf", image: "agent",
			adds:  []Addition{{Digest: hash("c"), Tags: []string{"v1"}}},
			kinds: []ChangeKind{NewImage},
		},
		{
			name: "flow-tags", input: "flow-tags", image: "sorted",
			adds: []Addition{
				{Digest: hash("a"), Tags: []string{"0.9", "v1.0", "v1.0.5", "zeta"}},
				{Digest: hash("b"), Tags: []string{"2.0"}},
			},
			kinds: []ChangeKind{NewTags, NewTags},
		},
		{
			name: "flow-tags-unsorted", input: "flow-tags", image: "unsorted",
			adds: []Addition{
				{Digest: hash("c"), Tags: []string{"3", "v3"}},
				{Digest: hash("d"), Tags: []string{"v4"}},
			},
			kinds: []ChangeKind{NewTags, NewTags},
		},
		{
			name: "block-tags", input: "block-tags", image: "controller",
			adds: []Addition{
				{Digest: hash("a"), Tags: []string{"1.0.0", "v1.0"}},
				{Digest: hash("b"), Tags: []string{"2"}},
			},
			kinds: []ChangeKind{NewTags, NewTags},
		},
		{
			name: "block-tags-new-digest", input: "block-tags", image: "controller",
			adds:  []Addition{{Digest: hash("c"), Tags: []string{"v3.0.0"}}},
			kinds: []ChangeKind{NewDigest},
		},
		{
			name: "repeated-new-digest", input: "repeated", image: "b",
			adds: []Addition{
				{Digest: hash("c"), Tags: []string{"1.0"}},
				{Digest: hash("d"), Tags: []string{"v1.2"}},
			},
			kinds: []ChangeKind{NewTags, NewDigest}, // in file order
		},
		{
			name: "repeated-digest-twice", input: "repeated", image: "b",
			adds:  []Addition{{Digest: hash("b"), Tags: []string{"v1.1", "1.1", "2"}}}, // only 2 is missing
			kinds: []ChangeKind{NewTags},
		},
		{
			name: "repeated-name-last", input: "repeated", image: "a",
			adds:  []Addition{{Digest: hash("d"), Tags: []string{"v1.2"}}},
			kinds: []ChangeKind{NewDigest},
		},
		{
			name: "unquoted-keys", input: "unquoted-keys", image: "controller",
			adds: []Addition{
				{Digest: hash("a"), Tags: []string{"1.0"}},
				{Digest: hash("b"), Tags: []string{"1.1"}},
				{Digest: hash("c"), Tags: []string{"v1.2.0"}},
			},
			kinds: []ChangeKind{NewTags, NewTags, NewDigest},
		},
		{
			name: "new-image", input: "new-image", image: "agent",
			adds:  []Addition{{Digest: hash("b"), Tags: []string{"v2.0.0"}}},
			kinds: []ChangeKind{NewImage},
		},
		{
			name: "new-digest-no-final-newline", input: "new-image", image: "controller",
			adds:  []Addition{{Digest: hash("b"), Tags: []string{"v2.0.0"}}},
			kinds: []ChangeKind{NewDigest},
		},
		{
			name: "empty", input: "empty", image: "first",
			adds:  []Addition{{Digest: hash("a"), Tags: []string{"v1", "latest"}}},
			opts:  []Option{AllowLatest()},
			kinds: []ChangeKind{NewImage},
		},
		{
			name: "null-tags", input: "null-values", image: "digest-only",
			adds: []Addition{
				{Digest: hash("a"), Tags: []string{"v1"}},
				{Digest: hash("b"), Tags: []string{"v2", "2"}},
			},
			kinds: []ChangeKind{NewTags, NewTags},
		},
		{
			name: "null-dmap", input: "null-values", image: "empty-dmap",
			adds:  []Addition{{Digest: hash("c"), Tags: []string{"v3"}}},
			kinds: []ChangeKind{NewDigest},
		},
		{
			name: "braces-dmap", input: "null-values", image: "braces",
			adds:  []Addition{{Digest: hash("d")}},
			kinds: []ChangeKind{NewDigest},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := readTestdata(t, "add/"+tt.input+".yaml")
			path := "images/team/images.yaml"
			out, changes, err := AddToList(path, in, tt.image, tt.adds, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "add/"+tt.name+".golden", out)
			var kinds []ChangeKind
			edited := []string{"dmap: {}"} // an empty dmap in braces gives way
			for _, c := range changes {
				kinds = append(kinds, c.Kind)
				if c.Kind == NewTags {
					edited = append(edited, c.Digest)
				}
				if c.Pos.Line == 0 {
					t.Errorf("change %+v has no position", c)
				}
			}
			if diff := cmp.Diff(tt.kinds, kinds); diff != "" {
				t.Errorf("change kinds (-want +got):\n%s", diff)
			}
			assertLinesKept(t, in, out, edited)
			if bytes.Contains(in, []byte("\r\n")) && bytes.Count(out, []byte("\n")) != bytes.Count(out, []byte("\r\n")) {
				t.Errorf("a CRLF file got LF line breaks:\n%q", out)
			}
			if tt.input != "null-values" { // its other entries are empty on purpose
				assertValid(t, out)
			}

			// Adding again changes nothing.
			again, changes, err := AddToList(path, out, tt.image, tt.adds, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, out) {
				t.Errorf("adding again changed the file:\n%s", again)
			}
			for _, c := range changes {
				if c.Kind != Present || len(c.Added) != 0 {
					t.Errorf("adding again: %+v", c)
				}
			}

			// A file in canonical form stays in canonical form.
			if canon, err := Format(path, in); err == nil && bytes.Equal(canon, in) {
				if f, err := Format(path, out); err != nil || !bytes.Equal(f, out) {
					t.Errorf("the canonical input is no longer canonical after the edit (%v):\n%s", err, f)
				}
			}
		})
	}
}

func TestAddToListRefused(t *testing.T) {
	tests := []struct {
		name  string
		input string
		image string
		adds  []Addition
		opts  []Option
		code  diag.Code
	}{
		{
			name: "refused-latest", input: "comments", image: "controller",
			adds: []Addition{{Digest: hash("d"), Tags: []string{"v1.2.0", "latest"}}},
			code: diag.CodeTag,
		},
		{
			name: "refused-conflict", input: "comments", image: "controller",
			adds: []Addition{{Digest: hash("d"), Tags: []string{"v1.2.0", "1.1"}}},
			code: diag.CodeConflict,
		},
		{
			name: "refused-conflict-block", input: "block-tags", image: "controller",
			adds: []Addition{{Digest: hash("b"), Tags: []string{"v1.0.0"}}},
			code: diag.CodeConflict,
		},
		{
			name: "refused-conflict-repeated", input: "repeated", image: "b",
			adds: []Addition{{Digest: hash("b"), Tags: []string{"v1.0"}}},
			code: diag.CodeConflict,
		},
		{
			name: "refused-bad-tag", input: "comments", image: "controller",
			adds: []Addition{{Digest: hash("d"), Tags: []string{"-rc1"}}},
			code: diag.CodeTag,
		},
		{
			name: "refused-tag-twice", input: "comments", image: "controller",
			adds: []Addition{{Digest: hash("d"), Tags: []string{"v9"}}, {Digest: hash("e"), Tags: []string{"v9"}}},
			code: diag.CodeConflict,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := readTestdata(t, "add/"+tt.input+".yaml")
			out, _, err := AddToList("images/team/images.yaml", in, tt.image, tt.adds, tt.opts...)
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v (output %q), want a refusal", err, out)
			}
			for _, p := range re.Problems {
				if p.Code != tt.code {
					t.Errorf("problem %v: code %s, want %s", p, p.Code, tt.code)
				}
			}
			var b strings.Builder
			for _, p := range re.Problems {
				b.WriteString(p.String() + "\n")
			}
			golden(t, "add/"+tt.name+".golden", []byte(b.String()))
		})
	}
}

func TestAddToListCannotEdit(t *testing.T) {
	a := `"sha256:` + strings.Repeat("a", 64) + `"`
	tests := []struct {
		name, input, want string
	}{
		{"flow entry", "- {name: app, dmap: {" + a + ": [v1]}}\n", "images.yaml:1:3: the entry of image app is written in flow style"},
		{"flow list", "[{name: other, dmap: {}}]\n", "images.yaml:1:1: the images list is written in flow style"},
		{"alias", "- name: app\n  dmap: &d\n    " + a + ": [v1]\n- name: other\n  dmap: *d\n", "images.yaml:2:9: anchors and aliases"},
		{"unknown key", "- name: app\n  tags: [v1]\n", `images.yaml:2:3: unknown key "tags" in an image entry`},
		{"not a list", "name: app\n", "images.yaml:1:1: an images file must be a list"},
		{"multi-line", "- name: app\n  dmap:\n    " + a + ": [\"v1\n      v2\"]\n", "images.yaml:3:81: a value spread over several lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := AddToList("images.yaml", []byte(tt.input), "app", []Addition{{Digest: hash("b"), Tags: []string{"v2"}}})
			var ee *Error
			if !errors.As(err, &ee) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("err = %v, want an *Error starting %q", err, tt.want)
			}
		})
	}
}
