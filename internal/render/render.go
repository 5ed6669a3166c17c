// Package render holds the small text and JSON helpers every output of the
// promoter shares (counts with their noun, the one JSON style, short commit
// hashes, names made safe to print), so that each renderer says things the
// same way.
package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/imgpromoter/promoter/pkg/names"
)

// Plural writes "1 word" or "n words".
func Plural(n int, word string) string {
	return Count(n, word, word+"s")
}

// Count writes "1 one" or "n many", for nouns whose plural is not word+"s".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// WriteJSON writes v as indented JSON, with <, > and & as they are: the one
// JSON style of every command.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// ShortCommit is a commit hash shortened to 12 hex digits, for messages.
func ShortCommit(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// Printable returns s with control characters escaped as JSON escapes them
// (\n, \t, \u001b, ...), so that a name read from a manifest or a registry
// can never move the cursor, clear the screen or forge a line of text
// output. C1 controls and DEL, which terminals also obey, are escaped the
// same way; invalid UTF-8 bytes become \ufffd. Everything else is unchanged.
func Printable(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\ufffd`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case isControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n <= 1) || isControl(r) {
			return true
		}
		i += n
	}
	return false
}

// isControl reports C0 and C1 control characters and DEL, and the line and
// paragraph separators JSON also escapes.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029'
}

// YAMLName writes an image name for an images.yaml: plain when that reads
// back as the same string (a valid repository path other than "null", the
// one a YAML reader would take for no value), quoted otherwise.
func YAMLName(s string) string {
	if names.ValidPath(s) && s != "null" {
		return s
	}
	return strconv.Quote(s)
}

// YAMLFlowList writes tags as a YAML flow list of quoted strings, the form
// of a dmap value: ["1.0", "latest"], or [] for none.
func YAMLFlowList(tags []string) string {
	q := make([]string, len(tags))
	for i, tag := range tags {
		q[i] = strconv.Quote(tag)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
