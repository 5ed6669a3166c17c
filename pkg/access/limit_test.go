package access

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/time/rate"
)

// statusServer answers 429 (with retryAfter, if set) to the requests
// whose number (from 1) is in limited, 200 to the others.
func statusServer(t *testing.T, retryAfter string, limited ...int64) (host string, starts *[]time.Time) {
	t.Helper()
	var n atomic.Int64
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		times = append(times, time.Now())
		for _, l := range limited {
			if i == l {
				if retryAfter != "" {
					w.Header().Set("Retry-After", retryAfter)
				}
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &times
}

func get(t *testing.T, l http.RoundTripper, host string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+host+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := l.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Issue 8 point 4: one 429 used to halve a host's rate for a whole quiet
// minute, so a run with a 429 early on crawled to its end. The rate now
// comes back with the successes that follow.
func TestRateRecoversAfterSuccesses(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate float64
		want rate.Limit
	}{
		{"unlimited host", 0, rate.Inf},
		{"host with --host-rate 50", 50, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, _ := statusServer(t, "", 1)
			l := newLimiter(http.DefaultTransport, HostLimits{Concurrency: 4, Rate: tc.rate}, time.Minute)
			if got := get(t, l, host); got != http.StatusTooManyRequests {
				t.Fatalf("first answer %d, want 429", got)
			}
			if r := l.currentRate(host); r >= tc.want {
				t.Fatalf("rate after a 429 = %v, want below %v", r, tc.want)
			}
			for i := range 40 {
				get(t, l, host)
				if l.currentRate(host) == tc.want {
					t.Logf("rate back to %v after %d successes", tc.want, i+1)
					return
				}
			}
			t.Errorf("rate after a 429 and 40 successes = %v, want %v again", l.currentRate(host), tc.want)
		})
	}
}

// A 429 with Retry-After pauses the whole host (capped by the longest
// retry wait), not only the request that got it.
func TestRetryAfterPausesTheHost(t *testing.T) {
	host, starts := statusServer(t, "30", 1)
	l := newLimiter(http.DefaultTransport, HostLimits{Concurrency: 4}, 300*time.Millisecond)
	get(t, l, host)
	get(t, l, host)
	if gap := (*starts)[1].Sub((*starts)[0]); gap < 250*time.Millisecond {
		t.Errorf("the next request started %v after a 429 with Retry-After (capped at 300ms)", gap)
	}
}

// Reserve takes the host's slot and rate tokens first: the reserved
// requests then go back to back, however slow the host's rate.
func TestReserveSendsBackToBack(t *testing.T) {
	host, starts := statusServer(t, "")
	c, err := New(WithHostLimits(HostLimits{Concurrency: 1, Rate: 2}))
	if err != nil {
		t.Fatal(err)
	}
	get(t, c.lim, host) // uses the host's one token of burst
	repo, err := name.NewRepository(host+"/p/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	ctx, done, err := c.Reserve(context.Background(), repo, 2)
	if err != nil {
		t.Fatal(err)
	}
	reserved := time.Now()
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
		resp, err := c.lim.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	done()
	if gap := (*starts)[2].Sub((*starts)[1]); gap > 200*time.Millisecond {
		t.Errorf("reserved requests %v apart, want back to back", gap)
	}
	if (*starts)[1].Before(reserved) {
		t.Error("a reserved request started before the reservation")
	}
}
