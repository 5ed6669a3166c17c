package regerr_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

func TestSentinels(t *testing.T) {
	tests := []struct {
		name                                     string
		err                                      error
		notFound, temporary, denied, unsupported bool
	}{
		{"404", &regerr.Error{Status: http.StatusNotFound, Err: errors.New("x")}, true, false, false, false},
		{"manifest unknown with 400", &regerr.Error{Status: http.StatusBadRequest, Codes: []string{"MANIFEST_UNKNOWN"}, Err: errors.New("x")}, true, false, false, false},
		{"429", &regerr.Error{Status: http.StatusTooManyRequests, Err: errors.New("x")}, false, true, false, false},
		{"503", &regerr.Error{Status: http.StatusServiceUnavailable, Err: errors.New("x")}, false, true, false, false},
		{"403", &regerr.Error{Status: http.StatusForbidden, Err: errors.New("x")}, false, false, true, false},
		{"denied code", &regerr.Error{Status: http.StatusBadRequest, Codes: []string{"DENIED"}, Err: errors.New("x")}, false, false, true, false},
		{"405", &regerr.Error{Status: http.StatusMethodNotAllowed, Err: errors.New("x")}, false, false, false, true},
		{"unsupported code", &regerr.Error{Status: http.StatusBadRequest, Codes: []string{"UNSUPPORTED"}, Err: errors.New("x")}, false, false, false, true},
		{"400", &regerr.Error{Status: http.StatusBadRequest, Err: errors.New("x")}, false, false, false, false},
		{"marked temporary", regerr.Temporary(io.ErrUnexpectedEOF), false, true, false, false},
		{"marked unsupported", regerr.Unsupported(errors.New("no API")), false, false, false, true},
		{"wrapped", fmt.Errorf("reading: %w", &regerr.Error{Status: http.StatusNotFound, Err: errors.New("x")}), true, false, false, false},
		{"plain", errors.New("x"), false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				sentinel error
				want     bool
			}{{regerr.ErrNotFound, tt.notFound}, {regerr.ErrTemporary, tt.temporary}, {regerr.ErrDenied, tt.denied}, {regerr.ErrUnsupported, tt.unsupported}} {
				if got := errors.Is(tt.err, c.sentinel); got != c.want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, c.sentinel, got, c.want)
				}
			}
		})
	}
}

func TestErrorKeepsTheAnswer(t *testing.T) {
	inner := errors.New("GET https://r/v2/x/manifests/y: MANIFEST_UNKNOWN: manifest unknown")
	err := fmt.Errorf("source: %w", regerr.Temporary(&regerr.Error{Status: 502, Codes: []string{"X"}, Err: inner}))
	var re *regerr.Error
	if !errors.As(err, &re) || re.Status != 502 || re.Codes[0] != "X" {
		t.Fatalf("errors.As found %+v", re)
	}
	if re.Error() != inner.Error() || !errors.Is(err, inner) {
		t.Errorf("message %q, want the underlying %q", re.Error(), inner)
	}
	if regerr.Status(err) != 502 || regerr.Status(inner) != 0 {
		t.Errorf("Status = %d, %d; want 502, 0", regerr.Status(err), regerr.Status(inner))
	}
	if regerr.Temporary(nil) != nil {
		t.Error("Temporary(nil) must be nil")
	}
}
