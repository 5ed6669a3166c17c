package access

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// scripted answers each request with the next status of the script (200
// once the script is used up) and counts requests.
type scripted struct {
	statuses   []int
	retryAfter string
	n          atomic.Int32
	bodies     []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(s.n.Add(1)) - 1
	b, _ := io.ReadAll(r.Body)
	s.bodies = append(s.bodies, string(b))
	if i < len(s.statuses) {
		if s.retryAfter != "" {
			w.Header().Set("Retry-After", s.retryAfter)
		}
		w.WriteHeader(s.statuses[i])
		return
	}
	w.WriteHeader(http.StatusOK)
}

func newRetry(b remote.Backoff) *retryTransport {
	return &retryTransport{next: http.DefaultTransport, backoff: b, maxRetryWait: time.Minute, log: defaults().logger}
}

var quick = remote.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 4}

func TestRetryTransport(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		statuses   []int
		wantStatus int
		wantErr    bool
		wantCalls  int32
	}{
		{"transient then success", http.MethodGet, "/v2/r/manifests/x", "", []int{503, 502}, 200, false, 3},
		{"rate limited then success", http.MethodHead, "/v2/r/manifests/x", "", []int{429}, 200, false, 2},
		{"not transient: no retry", http.MethodGet, "/v2/r/manifests/x", "", []int{404}, 404, false, 1},
		{"exhausted: typed error", http.MethodGet, "/v2/r/manifests/x", "", []int{500, 500, 500, 500, 500}, 0, true, 4},
		{"manifest PUT body replayed", http.MethodPut, "/v2/r/manifests/x", "{}", []int{500}, 200, false, 2},
		{"upload session PATCH not replayed", http.MethodPatch, "/v2/r/blobs/uploads/abc", "data", []int{500}, 500, false, 1},
		{"upload session PUT not replayed", http.MethodPut, "/v2/r/blobs/uploads/abc", "", []int{500}, 500, false, 1},
		{"upload start POST retried", http.MethodPost, "/v2/r/blobs/uploads/", "", []int{500}, 200, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{statuses: tt.statuses}
			srv := httptest.NewServer(s)
			defer srv.Close()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := newRetry(quick).RoundTrip(req)
			if got := s.n.Load(); got != tt.wantCalls {
				t.Errorf("requests = %d, want %d", got, tt.wantCalls)
			}
			if tt.wantErr {
				var ex *exhaustedError
				if !errors.As(err, &ex) || regerr.Status(err) != 500 {
					t.Fatalf("err = %v, want an exhausted registry error with status 500", err)
				}
				if restartable(err) {
					t.Error("an exhausted error must not be retried again by the upper layer")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			for i, b := range s.bodies {
				if b != tt.body {
					t.Errorf("attempt %d sent body %q, want %q", i+1, b, tt.body)
				}
			}
		})
	}
}

func TestRetryAfterIsHonouredAndCapped(t *testing.T) {
	s := &scripted{statuses: []int{429}, retryAfter: "1"}
	srv := httptest.NewServer(s)
	defer srv.Close()
	rt := newRetry(quick)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/r/tags/list", nil)
	start := time.Now()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("waited %s, want at least the 1s Retry-After", waited)
	}

	s2 := &scripted{statuses: []int{429}, retryAfter: "3600"}
	srv2 := httptest.NewServer(s2)
	defer srv2.Close()
	rt.maxRetryWait = 10 * time.Millisecond
	req, _ = http.NewRequest(http.MethodGet, srv2.URL+"/v2/r/tags/list", nil)
	start = time.Now()
	resp, err = rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("waited %s although the cap is 10ms", waited)
	}
}

func TestRetryWaitStopsOnCancel(t *testing.T) {
	s := &scripted{statuses: []int{503, 503, 503}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	rt := newRetry(remote.Backoff{Duration: time.Hour, Factor: 1, Steps: 3})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/r/manifests/x", nil)
	done := make(chan error, 1)
	go func() {
		_, err := rt.RoundTrip(req)
		done <- err
	}()
	for s.n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the retry wait ignored cancellation")
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"7", 7 * time.Second, true},
		{"0", 0, true},
		{"-3", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := retryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "registry.localhost:80": true, "127.0.0.1": true, "127.9.9.9:443": true,
		"[::1]:5000": true, "::1": true, "10.0.0.1:5000": false, "gcr.io": false, "localhost.example.com": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}
