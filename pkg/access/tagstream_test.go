package access

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestDecodeTagsPage(t *testing.T) {
	d1 := "sha256:" + strings.Repeat("1", 64)
	tests := []struct {
		name    string
		body    string
		want    []string
		wantErr bool
	}{
		{"plain", `{"name":"a/b","tags":["v1","v2"]}`, []string{"v1 -", "v2 -"}, false},
		{"null tags", `{"name":"a/b","tags":null}`, nil, false},
		{"digest map first", `{"manifest":{"` + d1 + `":{"mediaType":"x","tag":["v1"],"timeCreatedMs":"1"},"bad":{"tag":["z"]}},"tags":["v1"],"child":[]}`,
			[]string{"v1 " + d1, "v1 -"}, false},
		{"truncated", `{"name":"a/b","tags":["v1","v`, []string{"v1 -"}, true},
		{"not an object", `["v1"]`, nil, true},
		{"tags not an array", `{"tags":"v1"}`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := decodeTagsPage(strings.NewReader(tc.body), func(tag string, d v1.Hash) error {
				s := "-"
				if d != (v1.Hash{}) {
					s = d.String()
				}
				got = append(got, tag+" "+s)
				return nil
			})
			if (err != nil) != tc.wantErr {
				t.Errorf("error = %v, want error: %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("visited (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeTagsPageStopsOnCallbackError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := decodeTagsPage(strings.NewReader(`{"tags":["a","b","c"]}`), func(string, v1.Hash) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("error %v after %d calls, want stop after 1", err, n)
	}
}

// tagStream is a tags/list body of n tags, generated as it is read.
type tagStream struct {
	n, i int
	buf  []byte
}

func (s *tagStream) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) && s.i <= s.n {
		switch {
		case s.i == 0:
			s.buf = append(s.buf, `{"name":"a","tags":[`...)
		case s.i == s.n:
			s.buf = append(s.buf, `"last"]}`...)
		default:
			s.buf = fmt.Appendf(s.buf, `"t%07d",`, s.i)
		}
		s.i++
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func BenchmarkDecodeTagsPageMillion(b *testing.B) {
	for range b.N {
		n := 0
		if err := decodeTagsPage(&tagStream{n: 1_000_000}, func(string, v1.Hash) error { n++; return nil }); err != nil || n != 1_000_000 {
			b.Fatalf("%d tags, %v", n, err)
		}
	}
}
