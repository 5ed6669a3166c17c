package validate

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/diag"
)

// TestValidate checks each rule on one manifest: what is reported, exactly
// where, and which promotions survive.
func TestValidate(t *testing.T) {
	long128 := strings.Repeat("t", 128)
	long129 := strings.Repeat("t", 129)
	tests := []struct {
		name   string
		text   string
		want   []prob
		groups []group
	}{
		{
			name: "valid: tags, digest only, path prefix rebase",
			text: doc([]string{"src:gcr.io/src", "r.io/a", "r.io/b/c"}, img("x/y", digA, "v1, v2", digB, "")),
			groups: []group{
				{Source: "gcr.io/src/x/y@a", Dests: []string{"r.io/a/x/y", "r.io/b/c/x/y"}, Tags: []string{"v1@m.yaml:9:81", "v2@m.yaml:9:85"}, Pos: "m.yaml:9:5"},
				{Source: "gcr.io/src/x/y@b", Dests: []string{"r.io/a/x/y", "r.io/b/c/x/y"}, Pos: "m.yaml:10:5"},
			},
		},
		{
			name: "host with a port, and localhost",
			text: doc([]string{"src:localhost:5000/staging", "registry.example.com:443/prod", "localhost/mirror"}, img("img", digA, "v1")),
			groups: []group{
				{Source: "localhost:5000/staging/img@a", Dests: []string{"localhost/mirror/img", "registry.example.com:443/prod/img"}, Tags: []string{"v1@m.yaml:9:81"}, Pos: "m.yaml:9:5"},
			},
		},
		{
			name: "no source registry",
			text: doc([]string{"r.io/a", "r.io/b"}, img("x", digA, "v1")),
			want: []prob{{Pos: "m.yaml:1:1", Code: diag.CodeSource, Entry: "registries", Msg: "no source registry"}},
		},
		{
			name: "two source registries",
			text: doc([]string{"src:gcr.io/a", "src:gcr.io/b", "r.io/d"}, img("x", digA, "v1")),
			want: []prob{{Pos: "m.yaml:4:3", Code: diag.CodeSource, Entry: "registry gcr.io/b", Msg: "more than one source registry (first at "}},
		},
		{
			name: "empty source registry name",
			text: doc([]string{"src:", "r.io/a"}, img("x", digA, "v1")),
			want: []prob{{Pos: "m.yaml:2:3", Code: diag.CodeRegistryName, Entry: "registry ", Msg: "registry name is empty"}},
		},
		{
			name: "empty destination registry name excludes only that destination",
			text: doc([]string{"src:gcr.io/src", "", "r.io/b"}, img("x", digA, "v1")),
			want: []prob{{Pos: "m.yaml:4:3", Code: diag.CodeRegistryName, Entry: "registry ", Msg: "registry name is empty"}},
			groups: []group{
				{Source: "gcr.io/src/x@a", Dests: []string{"r.io/b/x"}, Tags: []string{"v1@m.yaml:9:81"}, Pos: "m.yaml:9:5"},
			},
		},
		{
			name: "invalid registry names",
			text: doc([]string{"src:gcr.io/src", "gcr.io/", "gcr.io/Foo", "gcr", "-bad.io/x", "gcr.io/a//b", "gcr.io/a_", "r.io/ok", "gcr.io:x/y"}, img("x", digA, "v1")),
			want: []prob{
				{Pos: "m.yaml:4:3", Code: diag.CodeRegistryName, Entry: "registry gcr.io/", Msg: `invalid path prefix ""`},
				{Pos: "m.yaml:5:3", Code: diag.CodeRegistryName, Entry: "registry gcr.io/Foo", Msg: `invalid path prefix "Foo"`},
				{Pos: "m.yaml:6:3", Code: diag.CodeRegistryName, Entry: "registry gcr", Msg: "must start with a registry host"},
				{Pos: "m.yaml:7:3", Code: diag.CodeRegistryName, Entry: "registry -bad.io/x", Msg: "does not start with a valid registry host"},
				{Pos: "m.yaml:8:3", Code: diag.CodeRegistryName, Entry: "registry gcr.io/a//b", Msg: "invalid path prefix"},
				{Pos: "m.yaml:9:3", Code: diag.CodeRegistryName, Entry: "registry gcr.io/a_", Msg: "invalid path prefix"},
				{Pos: "m.yaml:11:3", Code: diag.CodeRegistryName, Entry: "registry gcr.io:x/y", Msg: "does not start with a valid registry host"},
			},
			groups: []group{
				{Source: "gcr.io/src/x@a", Dests: []string{"r.io/ok/x"}, Tags: []string{"v1@m.yaml:15:81"}, Pos: "m.yaml:15:5"},
			},
		},
		{
			name: "registry listed twice",
			text: doc([]string{"src:gcr.io/src", "r.io/a", "r.io/b", "r.io/a", "R.IO/b"}, img("x", digA, "v1")),
			want: []prob{
				{Pos: "m.yaml:6:3", Code: diag.CodeDuplicateReg, Entry: "registry r.io/a", Related: "m.yaml:4:3", Msg: "listed twice"},
				{Pos: "m.yaml:7:3", Code: diag.CodeDuplicateReg, Entry: "registry R.IO/b", Related: "m.yaml:5:3", Msg: "listed twice"},
			},
			groups: []group{
				{Source: "gcr.io/src/x@a", Dests: []string{"r.io/a/x", "r.io/b/x"}, Tags: []string{"v1@m.yaml:11:81"}, Pos: "m.yaml:11:5"},
			},
		},
		{
			name: "destination equal to the source is reported once, as that",
			text: doc([]string{"src:gcr.io/src", "r.io/a", "gcr.io/src", "GCR.IO/src"}, img("x", digA, "v1")),
			want: []prob{
				{Pos: "m.yaml:5:3", Code: diag.CodeDestIsSource, Entry: "registry gcr.io/src", Related: "m.yaml:2:3", Msg: "destination is the source registry"},
				{Pos: "m.yaml:6:3", Code: diag.CodeDestIsSource, Entry: "registry GCR.IO/src", Related: "m.yaml:2:3", Msg: "destination is the source registry"},
			},
			groups: []group{
				{Source: "gcr.io/src/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"v1@m.yaml:10:81"}, Pos: "m.yaml:10:5"},
			},
		},
		{
			name: "destination equal to the source, listed before it",
			text: doc([]string{"gcr.io/src", "src:gcr.io/src", "r.io/a"}, img("x", digA, "v1")),
			want: []prob{
				{Pos: "m.yaml:2:3", Code: diag.CodeDestIsSource, Entry: "registry gcr.io/src", Related: "m.yaml:3:3", Msg: "destination is the source registry"},
			},
			groups: []group{
				{Source: "gcr.io/src/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"v1@m.yaml:9:81"}, Pos: "m.yaml:9:5"},
			},
		},
		{
			name: "no destination",
			text: doc([]string{"src:gcr.io/src"}, img("x", digA, "v1")),
			want: []prob{{Pos: "m.yaml:1:1", Code: diag.CodeNoDestination, Entry: "registries", Msg: "no destination registry"}},
		},
		{
			name: "invalid image names exclude only themselves",
			text: doc([]string{"src:gcr.io/src", "r.io/a"},
				img("", digA, "v1"), img("Foo", digA, "v1"), img("a//b", digA, "v1"), img("a-", digA, "v1"),
				img("_a", digA, "v1"), img("a/", digA, "v1"), img("a b", digA, "v1"), img("good/one", digB, "v2")),
			want: []prob{
				{Pos: "m.yaml:6:3", Code: diag.CodeImageName, Entry: "image ", Msg: "image name is empty"},
				{Pos: "m.yaml:9:3", Code: diag.CodeImageName, Entry: "image Foo", Msg: "not a valid OCI repository path"},
				{Pos: "m.yaml:12:3", Code: diag.CodeImageName, Entry: "image a//b", Msg: "not a valid OCI repository path"},
				{Pos: "m.yaml:15:3", Code: diag.CodeImageName, Entry: "image a-", Msg: "not a valid OCI repository path"},
				{Pos: "m.yaml:18:3", Code: diag.CodeImageName, Entry: "image _a", Msg: "not a valid OCI repository path"},
				{Pos: "m.yaml:21:3", Code: diag.CodeImageName, Entry: "image a/", Msg: "not a valid OCI repository path"},
				{Pos: "m.yaml:24:3", Code: diag.CodeImageName, Entry: "image a b", Msg: "not a valid OCI repository path"},
			},
			groups: []group{
				{Source: "gcr.io/src/good/one@b", Dests: []string{"r.io/a/good/one"}, Tags: []string{"v2@m.yaml:29:81"}, Pos: "m.yaml:29:5"},
			},
		},
		{
			name: "valid OCI image names",
			text: doc([]string{"src:gcr.io/src", "r.io/a"}, img("a.b_c__d---e/f0/9", digA, "v1")),
			groups: []group{
				{Source: "gcr.io/src/a.b_c__d---e/f0/9@a", Dests: []string{"r.io/a/a.b_c__d---e/f0/9"}, Tags: []string{"v1@m.yaml:8:81"}, Pos: "m.yaml:8:5"},
			},
		},
		{
			name: "empty dmap",
			text: doc([]string{"src:gcr.io/src", "r.io/a"}, "- name: a\n  dmap: {}\n", "- name: b\n", "- name: c\n  dmap:\n", img("d", digA, "")),
			want: []prob{
				{Pos: "m.yaml:6:3", Code: diag.CodeEmptyDmap, Entry: "image a", Msg: "dmap is empty"},
				{Pos: "m.yaml:8:3", Code: diag.CodeEmptyDmap, Entry: "image b", Msg: "dmap is empty"},
				{Pos: "m.yaml:9:3", Code: diag.CodeEmptyDmap, Entry: "image c", Msg: "dmap is empty"},
			},
			groups: []group{{Source: "gcr.io/src/d@a", Dests: []string{"r.io/a/d"}, Pos: "m.yaml:13:5"}},
		},
		{
			name: "invalid digests exclude only themselves",
			text: doc([]string{"src:gcr.io/src", "r.io/a"}, img("x",
				digA[:len(digA)-1], "v1",
				"sha256:"+strings.Repeat("A", 64), "v1",
				"sha512:"+strings.Repeat("a", 128), "v1",
				"abc", "v1",
				"sha256:"+strings.Repeat("g", 64), "v1",
				digA+"a", "v1",
				digB, "v2",
			)),
			want: []prob{
				{Pos: "m.yaml:8:5", Code: diag.CodeDigest, Entry: "image x", Msg: "(63 hex digits, want 64)"},
				{Pos: "m.yaml:9:5", Code: diag.CodeDigest, Entry: "image x", Msg: "must be 64 lowercase hex digits"},
				{Pos: "m.yaml:10:5", Code: diag.CodeDigest, Entry: "image x", Msg: "must start with sha256:"},
				{Pos: "m.yaml:11:5", Code: diag.CodeDigest, Entry: "image x", Msg: `invalid digest "abc"`},
				{Pos: "m.yaml:12:5", Code: diag.CodeDigest, Entry: "image x", Msg: "must be 64 lowercase hex digits"},
				{Pos: "m.yaml:13:5", Code: diag.CodeDigest, Entry: "image x", Msg: "(65 hex digits, want 64)"},
			},
			groups: []group{{Source: "gcr.io/src/x@b", Dests: []string{"r.io/a/x"}, Tags: []string{"v2@m.yaml:14:81"}, Pos: "m.yaml:14:5"}},
		},
		{
			name: "invalid tags exclude only themselves",
			text: doc([]string{"src:gcr.io/src", "r.io/a"}, img("x",
				digA, `"-x", ".x", `+long129+`, "a+b", "ü", "", "a b", ok, _x, X.Y-z_9, `+long128,
			)),
			want: []prob{
				{Pos: "m.yaml:8:81", Code: diag.CodeTag, Entry: "x@" + digA, Msg: `invalid tag "-x"`},
				{Pos: "m.yaml:8:87", Code: diag.CodeTag, Entry: "x@" + digA, Msg: `invalid tag ".x"`},
				{Pos: "m.yaml:8:93", Code: diag.CodeTag, Entry: "x@" + digA, Msg: "invalid tag"},
				{Pos: "m.yaml:8:224", Code: diag.CodeTag, Entry: "x@" + digA, Msg: `invalid tag "a+b"`},
				{Pos: "m.yaml:8:231", Code: diag.CodeTag, Entry: "x@" + digA, Msg: `invalid tag "ü"`},
				{Pos: "m.yaml:8:236", Code: diag.CodeTag, Entry: "x@" + digA, Msg: `invalid tag ""`},
				{Pos: "m.yaml:8:240", Code: diag.CodeTag, Entry: "x@" + digA, Msg: `invalid tag "a b"`},
			},
			groups: []group{{Source: "gcr.io/src/x@a", Dests: []string{"r.io/a/x"},
				Tags: []string{"X.Y-z_9@m.yaml:8:255", "_x@m.yaml:8:251", "ok@m.yaml:8:247", long128 + "@m.yaml:8:264"}, Pos: "m.yaml:8:5"}},
		},
		{
			name:   "a digest whose tags are all invalid is not promoted by digest only",
			text:   doc([]string{"src:gcr.io/src", "r.io/a"}, img("x", digA, `"-x"`, digB, "ok")),
			want:   []prob{{Pos: "m.yaml:8:81", Code: diag.CodeTag, Entry: "x@" + digA, Msg: `invalid tag "-x"`}},
			groups: []group{{Source: "gcr.io/src/x@b", Dests: []string{"r.io/a/x"}, Tags: []string{"ok@m.yaml:9:81"}, Pos: "m.yaml:9:5"}},
		},
		{
			name:   "tag listed twice for one digest",
			text:   doc([]string{"src:gcr.io/src", "r.io/a"}, img("x", digA, "v1, v2, v1")),
			want:   []prob{{Pos: "m.yaml:8:89", Severity: diag.SeverityWarning, Code: diag.CodeTag, Entry: "x@" + digA, Related: "m.yaml:8:81", Msg: `tag "v1" listed twice`}},
			groups: []group{{Source: "gcr.io/src/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"v1@m.yaml:8:81", "v2@m.yaml:8:85"}, Pos: "m.yaml:8:5"}},
		},
		{
			name: "the same image repeated in one file is merged",
			text: doc([]string{"src:gcr.io/src", "r.io/a"},
				img("x", digA, "v1"), img("y", digA, "v1"), img("x", digA, "v2", digB, "v3"), img("x", digA, "")),
			groups: []group{
				{Source: "gcr.io/src/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"v1@m.yaml:8:81", "v2@m.yaml:14:81"}, Pos: "m.yaml:8:5"},
				{Source: "gcr.io/src/x@b", Dests: []string{"r.io/a/x"}, Tags: []string{"v3@m.yaml:15:81"}, Pos: "m.yaml:15:5"},
				{Source: "gcr.io/src/y@a", Dests: []string{"r.io/a/y"}, Tags: []string{"v1@m.yaml:11:81"}, Pos: "m.yaml:11:5"},
			},
		},
		{
			name: "prefix-sharing image paths are distinct repositories",
			text: doc([]string{"src:gcr.io/src", "r.io/a"},
				img("x/metrics-server", digA, "v1"), img("x/metrics-server-amd64", digB, "v1"), img("x/metrics-server/amd64", digC, "v1")),
			groups: []group{
				{Source: "gcr.io/src/x/metrics-server@a", Dests: []string{"r.io/a/x/metrics-server"}, Tags: []string{"v1@m.yaml:8:81"}, Pos: "m.yaml:8:5"},
				{Source: "gcr.io/src/x/metrics-server-amd64@b", Dests: []string{"r.io/a/x/metrics-server-amd64"}, Tags: []string{"v1@m.yaml:11:81"}, Pos: "m.yaml:11:5"},
				{Source: "gcr.io/src/x/metrics-server/amd64@c", Dests: []string{"r.io/a/x/metrics-server/amd64"}, Tags: []string{"v1@m.yaml:14:81"}, Pos: "m.yaml:14:5"},
			},
		},
		{
			name: "a destination repository name over 255 characters",
			text: doc([]string{"src:gcr.io/s", "r.io/" + strings.Repeat("p", 240)}, img(strings.Repeat("i", 20), digA, "v1"), img("ok", digA, "v1")),
			want: []prob{{Pos: "m.yaml:6:3", Code: diag.CodeImageName, Entry: "image " + strings.Repeat("i", 20), Msg: "255 characters"}},
			groups: []group{
				{Source: "gcr.io/s/ok@a", Dests: []string{"r.io/" + strings.Repeat("p", 240) + "/ok"}, Tags: []string{"v1@m.yaml:11:81"}, Pos: "m.yaml:11:5"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, dir := loadFiles(t, map[string]string{"m.yaml": tt.text})
			if len(set.Problems) != 0 {
				t.Fatalf("the test manifest does not read cleanly: %v", set.Problems)
			}
			res := Validate(set)
			if d := diffProbs(dir, res.Problems, tt.want); d != "" {
				t.Error(d)
			}
			if d := diffGroups(dir, res.Groups, tt.groups); d != "" {
				t.Error(d)
			}
			if res.Stats.Errors != diag.Errors(res.Problems) || res.Stats.Warnings != len(res.Problems)-res.Stats.Errors {
				t.Errorf("stats errors/warnings %d/%d do not match the problems", res.Stats.Errors, res.Stats.Warnings)
			}
			valid := 0
			for _, g := range res.Groups {
				valid += g.EdgeCount()
			}
			if res.Stats.ValidEdges != valid {
				t.Errorf("ValidEdges = %d, groups hold %d edges", res.Stats.ValidEdges, valid)
			}
		})
	}
}

// TestConflicts checks tags wanted with two digests in one destination
// repository, across manifests: reported with both places, refused for every
// claim, and only when the destination repositories really coincide.
func TestConflicts(t *testing.T) {
	src := func(n string) string { return "src:gcr.io/" + n }
	tests := []struct {
		name   string
		files  map[string]string
		want   []prob
		groups []group
	}{
		{
			name: "tag move across two manifests",
			files: map[string]string{
				"a.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digA, "v1, v2")),
				"b.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digB, "v3, v1")),
			},
			want: []prob{{Pos: "a.yaml:8:81", Code: diag.CodeConflict, Entry: "x:v1", Related: "b.yaml:8:85",
				Msg: "tag v1 in r.io/a/x is wanted with " + digA + " here and with " + digB + " at "}},
			groups: []group{
				{Source: "gcr.io/s/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"v2@a.yaml:8:85"}, Pos: "a.yaml:8:5"},
				{Source: "gcr.io/s/x@b", Dests: []string{"r.io/a/x"}, Tags: []string{"v3@b.yaml:8:81"}, Pos: "b.yaml:8:5"},
			},
		},
		{
			name: "tag move within one image entry",
			files: map[string]string{
				"a.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digA, "v1", digB, "v1, v2")),
			},
			want: []prob{{Pos: "a.yaml:8:81", Code: diag.CodeConflict, Entry: "x:v1", Related: "a.yaml:9:81", Msg: "the tag is refused for both"}},
			groups: []group{
				{Source: "gcr.io/s/x@b", Dests: []string{"r.io/a/x"}, Tags: []string{"v2@a.yaml:9:85"}, Pos: "a.yaml:9:5"},
			},
		},
		{
			name: "the same tag and digest in two manifests is no conflict",
			files: map[string]string{
				"a.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digA, "v1")),
				"b.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digA, "v1, v2")),
				"c.yaml": doc([]string{src("s"), "r.io/b"}, img("x", digA, "v1")),
			},
			groups: []group{
				{Source: "gcr.io/s/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"v1@a.yaml:8:81", "v2@b.yaml:8:85"}, Pos: "a.yaml:8:5"},
				{Source: "gcr.io/s/x@a", Dests: []string{"r.io/b/x"}, Tags: []string{"v1@c.yaml:8:81"}, Pos: "c.yaml:8:5"},
			},
		},
		{
			name: "registry path and image path meet in one repository",
			files: map[string]string{
				"a.yaml": doc([]string{src("s1"), "r.io/a"}, img("b/c", digA, "v1, v2")),
				"b.yaml": doc([]string{src("s2"), "r.io/a/b"}, img("c", digB, "v1")),
			},
			want: []prob{{Pos: "a.yaml:8:81", Code: diag.CodeConflict, Entry: "b/c:v1", Related: "b.yaml:8:81", Msg: "tag v1 in r.io/a/b/c"}},
			groups: []group{
				{Source: "gcr.io/s1/b/c@a", Dests: []string{"r.io/a/b/c"}, Tags: []string{"v2@a.yaml:8:85"}, Pos: "a.yaml:8:5"},
			},
		},
		{
			name: "registry host names are case-insensitive",
			files: map[string]string{
				"a.yaml": doc([]string{src("s1"), "r.io/a"}, img("x", digA, "v1")),
				"b.yaml": doc([]string{src("s2"), "R.IO/a"}, img("x", digB, "v1, v2")),
			},
			want: []prob{{Pos: "a.yaml:8:81", Code: diag.CodeConflict, Entry: "x:v1", Related: "b.yaml:8:81", Msg: "tag v1 in r.io/a/x"}},
			groups: []group{
				{Source: "gcr.io/s2/x@b", Dests: []string{"R.IO/a/x"}, Tags: []string{"v2@b.yaml:8:85"}, Pos: "b.yaml:8:5"},
			},
		},
		{
			name: "paths differing by case or a prefix are distinct",
			files: map[string]string{
				"a.yaml": doc([]string{src("s1"), "r.io/a"}, img("b/c", digA, "v1"), img("metrics-server", digA, "v1")),
				"b.yaml": doc([]string{src("s2"), "r.io/a/b"}, img("c2", digB, "v1"), img("cc", digB, "v1")),
				"c.yaml": doc([]string{src("s3"), "r.io/a"}, img("metrics-server-amd64", digB, "v1"), img("metrics-server/amd64", digC, "v1")),
				"d.yaml": doc([]string{src("s4"), "r.io/A"}, img("metrics-server", digD, "v1")),
			},
			groups: []group{
				{Source: "gcr.io/s1/b/c@a", Dests: []string{"r.io/a/b/c"}, Tags: []string{"v1@a.yaml:8:81"}, Pos: "a.yaml:8:5"},
				{Source: "gcr.io/s1/metrics-server@a", Dests: []string{"r.io/a/metrics-server"}, Tags: []string{"v1@a.yaml:11:81"}, Pos: "a.yaml:11:5"},
				{Source: "gcr.io/s2/c2@b", Dests: []string{"r.io/a/b/c2"}, Tags: []string{"v1@b.yaml:8:81"}, Pos: "b.yaml:8:5"},
				{Source: "gcr.io/s2/cc@b", Dests: []string{"r.io/a/b/cc"}, Tags: []string{"v1@b.yaml:11:81"}, Pos: "b.yaml:11:5"},
				{Source: "gcr.io/s3/metrics-server-amd64@b", Dests: []string{"r.io/a/metrics-server-amd64"}, Tags: []string{"v1@c.yaml:8:81"}, Pos: "c.yaml:8:5"},
				{Source: "gcr.io/s3/metrics-server/amd64@c", Dests: []string{"r.io/a/metrics-server/amd64"}, Tags: []string{"v1@c.yaml:11:81"}, Pos: "c.yaml:11:5"},
			},
			// d.yaml's registry has an invalid path ("A"): reported, no group.
			want: []prob{{Pos: "d.yaml:4:3", Code: diag.CodeRegistryName, Entry: "registry r.io/A", Msg: "invalid path prefix"}},
		},
		{
			name: "different destinations do not conflict",
			files: map[string]string{
				"a.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digA, "v1")),
				"b.yaml": doc([]string{src("s"), "r.io/b"}, img("x", digB, "v1")),
			},
			groups: []group{
				{Source: "gcr.io/s/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"v1@a.yaml:8:81"}, Pos: "a.yaml:8:5"},
				{Source: "gcr.io/s/x@b", Dests: []string{"r.io/b/x"}, Tags: []string{"v1@b.yaml:8:81"}, Pos: "b.yaml:8:5"},
			},
		},
		{
			name: "a conflict in many mirrors is reported once",
			files: map[string]string{
				"a.yaml": doc([]string{src("s"), "r1.io/p", "r2.io/p", "r3.io/p", "r4.io/p"}, img("x", digA, "v1")),
				"b.yaml": doc([]string{src("s"), "r1.io/p", "r2.io/p", "r3.io/p", "r4.io/p"}, img("x", digB, "v1")),
			},
			want: []prob{{Pos: "a.yaml:11:81", Code: diag.CodeConflict, Entry: "x:v1", Related: "b.yaml:11:81", Msg: "tag v1 in r1.io/p/x"}},
		},
		{
			name: "every claim of a contested tag is refused, also one agreeing with the first",
			files: map[string]string{
				"a.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digA, "v1, a1")),
				"b.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digB, "v1, b1")),
				"c.yaml": doc([]string{src("s"), "r.io/a", "r.io/z"}, img("x", digA, "v1, c1")),
			},
			want: []prob{
				{Pos: "a.yaml:8:81", Code: diag.CodeConflict, Entry: "x:v1", Related: "b.yaml:8:81", Msg: "tag v1 in r.io/a/x"},
				{Pos: "b.yaml:8:81", Code: diag.CodeConflict, Entry: "x:v1", Related: "c.yaml:9:81", Msg: "tag v1 in r.io/a/x is wanted with " + digB + " here and with " + digA},
			},
			groups: []group{
				{Source: "gcr.io/s/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"a1@a.yaml:8:85"}, Pos: "a.yaml:8:5"},
				// Refused in r.io/z too: refusal is per group (fail closed).
				{Source: "gcr.io/s/x@a", Dests: []string{"r.io/a/x", "r.io/z/x"}, Tags: []string{"c1@c.yaml:9:85"}, Pos: "c.yaml:9:5"},
				{Source: "gcr.io/s/x@b", Dests: []string{"r.io/a/x"}, Tags: []string{"b1@b.yaml:8:85"}, Pos: "b.yaml:8:5"},
			},
		},
		{
			name: "three digests for one tag",
			files: map[string]string{
				"a.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digA, "v1", digB, "v1", digC, "v1, v2")),
			},
			want: []prob{
				{Pos: "a.yaml:8:81", Code: diag.CodeConflict, Entry: "x:v1", Related: "a.yaml:9:81"},
				{Pos: "a.yaml:8:81", Code: diag.CodeConflict, Entry: "x:v1", Related: "a.yaml:10:81"},
			},
			groups: []group{
				{Source: "gcr.io/s/x@c", Dests: []string{"r.io/a/x"}, Tags: []string{"v2@a.yaml:10:85"}, Pos: "a.yaml:10:5"},
			},
		},
		{
			name: "a digest-only entry never conflicts",
			files: map[string]string{
				"a.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digA, "v1")),
				"b.yaml": doc([]string{src("s"), "r.io/a"}, img("x", digB, "")),
			},
			groups: []group{
				{Source: "gcr.io/s/x@a", Dests: []string{"r.io/a/x"}, Tags: []string{"v1@a.yaml:8:81"}, Pos: "a.yaml:8:5"},
				{Source: "gcr.io/s/x@b", Dests: []string{"r.io/a/x"}, Pos: "b.yaml:8:5"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, dir := loadFiles(t, tt.files)
			if len(set.Problems) != 0 {
				t.Fatalf("the test manifests do not read cleanly: %v", set.Problems)
			}
			res := Validate(set)
			if d := diffProbs(dir, res.Problems, tt.want); d != "" {
				t.Error(d)
			}
			if d := diffGroups(dir, res.Groups, tt.groups); d != "" {
				t.Error(d)
			}
		})
	}
}

// TestEveryProblemReported checks that one manifest full of mistakes gets
// all of them, read and semantic, and that what is right still passes.
func TestEveryProblemReported(t *testing.T) {
	text := doc([]string{"src:gcr.io/src", "r.io/a", "r.io/a", "gcr.io/src", "Bad"},
		img("ok", digA, "v1, -bad, v2"),
		img("Bad", digA, "v1"),
		img("ok", "sha256:1", "v1", digB, "v3"),
		"- name: broken\n  dmap: []\n",
		"- name: empty\n  dmap: {}\n",
	) + "extra: true\n"
	set, dir := loadFiles(t, map[string]string{"m.yaml": text})
	res := Validate(set)
	want := []prob{
		{Pos: "m.yaml:5:3", Code: diag.CodeDuplicateReg, Entry: "registry r.io/a", Related: "m.yaml:4:3"},
		{Pos: "m.yaml:6:3", Code: diag.CodeDestIsSource, Entry: "registry gcr.io/src", Related: "m.yaml:2:3"},
		{Pos: "m.yaml:7:3", Code: diag.CodeRegistryName, Entry: "registry Bad"},
		{Pos: "m.yaml:11:85", Code: diag.CodeTag, Entry: "ok@" + digA, Msg: `invalid tag "-bad"`},
		{Pos: "m.yaml:12:3", Code: diag.CodeImageName, Entry: "image Bad"},
		{Pos: "m.yaml:17:5", Code: diag.CodeDigest, Entry: "image ok"},
		{Pos: "m.yaml:20:9", Code: diag.CodeSyntax, Entry: "image broken", Msg: "dmap must be a mapping"},
		{Pos: "m.yaml:21:3", Code: diag.CodeEmptyDmap, Entry: "image empty"},
		{Pos: "m.yaml:23:1", Code: diag.CodeSyntax, Msg: `unknown key "extra"`},
	}
	if d := diffProbs(dir, res.Problems, want); d != "" {
		t.Error(d)
	}
	groups := []group{
		{Source: "gcr.io/src/ok@a", Dests: []string{"r.io/a/ok"}, Tags: []string{"v1@m.yaml:11:81", "v2@m.yaml:11:91"}, Pos: "m.yaml:11:5"},
		{Source: "gcr.io/src/ok@b", Dests: []string{"r.io/a/ok"}, Tags: []string{"v3@m.yaml:18:81"}, Pos: "m.yaml:18:5"},
	}
	if d := diffGroups(dir, res.Groups, groups); d != "" {
		t.Error(d)
	}
}

func TestStats(t *testing.T) {
	set, dir := loadFiles(t, map[string]string{
		// 3 images, 4 digests, 4 tags; 2 destinations: 10 edges, of which
		// image Bad's 2 are invalid.
		"a.yaml": doc([]string{"src:gcr.io/s", "r.io/a", "r.io/b"},
			img("x", digA, "v1, v2", digB, ""), img("y", digC, "v1"), img("Bad", digD, "v9")),
		// Unreadable registries: 1 image, 1 digest, 3 tags, 1 destination
		// as written: 3 edges, none valid.
		"b.yaml": "registries:\n- name: gcr.io/s\n  src: true\n  bogus: 1\n- name: r.io/c\nimages:\n" + img("z", digA, "t1, t2, t3"),
		// A conflict: 1 image, 2 digests, 4 tags, 2 destinations as written
		// (one listed twice): 8 edges; v1 is refused for both digests, v2
		// and v3 stay: 2 valid.
		"c.yaml": doc([]string{"src:gcr.io/t", "r.io/d", "r.io/d"}, img("w", digA, "v1, v2", digB, "v1, v3")),
	})
	res := Validate(set)
	want := Stats{
		Manifests:  3,
		Images:     3 + 1 + 1,
		Digests:    4 + 1 + 2,
		Tags:       4 + 3 + 4,
		Edges:      10 + 3 + 4*2,
		ValidEdges: (2*2 + 1*2 + 1*2) + 0 + (1 + 1),
		Errors:     4, // Bad, bogus, duplicate r.io/d, conflict v1
		Warnings:   0,
	}
	if d := cmp.Diff(want, res.Stats); d != "" {
		t.Errorf("stats (-want +got):\n%s\nproblems:\n%s", d, diffProbs(dir, res.Problems, nil))
	}
}

// TestValidateIsRepeatable checks that validating does not change the set:
// the same set validated twice gives the same result.
func TestValidateIsRepeatable(t *testing.T) {
	set, _ := loadFiles(t, map[string]string{
		"a.yaml": doc([]string{"r.io/a"}, img("x", digA, "v1")),                                 // no source
		"b.yaml": doc([]string{"src:", "r.io/a"}, img("x", digA, "v1")),                         // invalid source
		"c.yaml": doc([]string{"src:gcr.io/a", "src:gcr.io/b", "r.io/a"}, img("x", digA)),       // two sources
		"d.yaml": doc([]string{"src:gcr.io/s", "r.io/a"}, img("x", digA, "v1"), img("Y", digB)), // fine but one image
	})
	first := Validate(set)
	second := Validate(set)
	if d := cmp.Diff(first.Problems, second.Problems); d != "" {
		t.Errorf("problems differ on the second run (-first +second):\n%s", d)
	}
	if d := cmp.Diff(first.Stats, second.Stats); d != "" {
		t.Errorf("stats differ on the second run (-first +second):\n%s", d)
	}
	if d := cmp.Diff(toGroups("", first.Groups), toGroups("", second.Groups)); d != "" {
		t.Errorf("groups differ on the second run (-first +second):\n%s", d)
	}
	for _, m := range set.Manifests {
		if m.Broken {
			t.Errorf("%s: Validate marked the manifest broken", m.File)
		}
	}
}

func TestReadProblemsKept(t *testing.T) {
	set, dir := loadFiles(t, map[string]string{
		"a.yaml": doc([]string{"src:gcr.io/s", "r.io/a"}, img("x", digA, "v1")),
		"b.yaml": "{",
	})
	res := Validate(set)
	if !res.Unreadable {
		t.Error("Unreadable = false, want true")
	}
	if d := diffProbs(dir, res.Problems, []prob{{Pos: "b.yaml:1", Code: diag.CodeUnreadable, Msg: "not valid YAML"}}); d != "" {
		t.Error(d)
	}
	if len(res.Groups) != 1 {
		t.Errorf("groups = %v, want the one from a.yaml", toGroups(dir, res.Groups))
	}
}
