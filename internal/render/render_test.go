package render

import (
	"bytes"
	"testing"
)

func TestPlural(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want string
	}{{0, "0 edges"}, {1, "1 edge"}, {2, "2 edges"}} {
		if got := Plural(tt.n, "edge"); got != tt.want {
			t.Errorf("Plural(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	if got := Count(3, "removal or move", "removals or moves"); got != "3 removals or moves" {
		t.Errorf("Count = %q", got)
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, map[string]string{"a": "<&>"}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "{\n  \"a\": \"<&>\"\n}\n"; got != want {
		t.Errorf("WriteJSON = %q, want %q", got, want)
	}
}

func TestShortCommit(t *testing.T) {
	if got := ShortCommit("0123456789abcdef"); got != "0123456789ab" {
		t.Errorf("ShortCommit = %q", got)
	}
	if got := ShortCommit("abc"); got != "abc" {
		t.Errorf("ShortCommit = %q", got)
	}
}

func TestPrintable(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain/name:1.0", "plain/name:1.0"},
		{"émoji ✓", "émoji ✓"},
		{"a\x1b[2Jb", `a\u001b[2Jb`},
		{"line\nforged: ok", `line\nforged: ok`},
		{"tab\there\r", `tab\there\r`},
		{"del\x7f c1\u009b", `del\u007f c1\u009b`},
		{"bad\xffutf8", `bad\ufffdutf8`},
	} {
		if got := Printable(tt.in); got != tt.want {
			t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestYAML(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"app", "app"}, {"team/app", "team/app"}, {"null", `"null"`}, {"Web_UI", `"Web_UI"`}, {"a b", `"a b"`},
	} {
		if got := YAMLName(tt.in); got != tt.want {
			t.Errorf("YAMLName(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := YAMLFlowList(nil); got != "[]" {
		t.Errorf("YAMLFlowList(nil) = %s", got)
	}
	if got := YAMLFlowList([]string{"1.0", "latest"}); got != `["1.0", "latest"]` {
		t.Errorf("YAMLFlowList = %s", got)
	}
}
