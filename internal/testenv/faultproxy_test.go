package testenv

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// do sends a bodiless request on a fresh connection, so that a dropped
// connection cannot leak into the next request, and reads the whole answer.
func do(t *testing.T, method, url string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestFaultProxyStatus(t *testing.T) {
	t.Parallel()
	upstream := InProcessRegistry(t)
	PushImage(t, upstream+"/app:v1", 1)

	tests := []struct {
		name           string
		rule           FaultRule
		wantStatus     []int // one per request, in order
		wantCode       string
		wantRetryAfter string
	}{
		{
			name:       "500 once then pass",
			rule:       FaultRule{Method: http.MethodGet, Path: PathManifest, Status: http.StatusInternalServerError},
			wantStatus: []int{500, 200, 200},
			wantCode:   "UNKNOWN",
		},
		{
			name:           "429 on the second and third",
			rule:           FaultRule{Path: PathManifest, First: 2, Last: 3, Status: http.StatusTooManyRequests, RetryAfter: 1500 * time.Millisecond},
			wantStatus:     []int{200, 429, 429, 200},
			wantCode:       "TOOMANYREQUESTS",
			wantRetryAfter: "2",
		},
		{
			name:       "404 forever",
			rule:       FaultRule{Method: http.MethodGet, Path: PathManifest, Last: math.MaxInt, Status: http.StatusNotFound},
			wantStatus: []int{404, 404, 404},
			wantCode:   "MANIFEST_UNKNOWN",
		},
		{
			name:       "other method does not match",
			rule:       FaultRule{Method: http.MethodPut, Status: http.StatusInternalServerError},
			wantStatus: []int{200, 200},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := NewFaultProxy(t, upstream, tc.rule)
			var got []int
			for range tc.wantStatus {
				resp, body, err := do(t, http.MethodGet, "http://"+p.Host()+"/v2/app/manifests/v1")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, resp.StatusCode)
				if resp.StatusCode == http.StatusOK {
					continue
				}
				var e struct{ Errors []struct{ Code string } }
				if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != tc.wantCode {
					t.Errorf("fault body %q, want one error with code %s", body, tc.wantCode)
				}
				if ra := resp.Header.Get("Retry-After"); ra != tc.wantRetryAfter {
					t.Errorf("Retry-After = %q, want %q", ra, tc.wantRetryAfter)
				}
			}
			if diff := cmp.Diff(tc.wantStatus, got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFaultProxyDrop(t *testing.T) {
	t.Parallel()
	p := NewFaultProxy(t, InProcessRegistry(t), FaultRule{Path: `^/v2/$`, Kind: FaultDrop})
	if resp, _, err := do(t, http.MethodGet, "http://"+p.Host()+"/v2/"); err == nil {
		t.Fatalf("dropped request answered %s", resp.Status)
	}
	resp, _, err := do(t, http.MethodGet, "http://"+p.Host()+"/v2/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("request after the drop: %v, %v", resp, err)
	}
}

func TestFaultProxyTruncate(t *testing.T) {
	t.Parallel()
	upstream := InProcessRegistry(t)
	PushImageWith(t, upstream+"/app:v1", ImageSpec{Seed: 1, LayerSize: 100 << 10})
	layer := layerDigests(t, BuildImage(t, ImageSpec{Seed: 1, LayerSize: 100 << 10}))[0]
	p := NewFaultProxy(t, upstream, FaultRule{Method: http.MethodGet, Path: PathBlob, Kind: FaultTruncate, TruncateAfter: 1000})
	blobURL := "http://" + p.Host() + "/v2/app/blobs/" + layer.String()

	resp, body, err := do(t, http.MethodGet, blobURL)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated read error = %v, want unexpected EOF", err)
	}
	if resp == nil || resp.StatusCode != http.StatusOK || len(body) != 1000 {
		t.Errorf("truncated response: %v with %d body bytes, want 200 with 1000", resp, len(body))
	}

	_, body, err = do(t, http.MethodGet, blobURL)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := v1.SHA256(strings.NewReader(string(body))); got != layer {
		t.Errorf("second read has digest %s, want %s", got, layer)
	}
}

func TestFaultProxyStats(t *testing.T) {
	t.Parallel()
	upstream := InProcessRegistry(t)
	PushImage(t, upstream+"/app:v1", 1)
	layer := layerDigests(t, BuildImage(t, ImageSpec{Seed: 1}))[0]
	p := NewFaultProxy(t, upstream, FaultRule{Method: http.MethodHead, Path: PathManifest, Status: http.StatusServiceUnavailable})
	base := "http://" + p.Host()
	for _, r := range []struct{ method, path string }{
		{"GET", "/v2/"},
		{"HEAD", "/v2/app/manifests/v1"},
		{"HEAD", "/v2/app/manifests/v1"},
		{"GET", "/v2/app/blobs/" + layer.String()},
		{"GET", "/v2/app/blobs/" + layer.String()},
		{"GET", "/v2/app/tags/list"},
		{"POST", "/v2/app/blobs/uploads/"},
	} {
		if _, _, err := do(t, r.method, base+r.path); err != nil {
			t.Fatal(err)
		}
	}
	want := ProxyStats{
		Requests: 7,
		ByMethod: map[string]int{"GET": 4, "HEAD": 2, "POST": 1},
		ByClass: map[string]int{
			"GET base": 1, "HEAD manifest": 2, "GET blob": 2, "GET tags": 1, "POST upload": 1,
		},
		BlobGETs:         2,
		BlobGETsByDigest: map[v1.Hash]int{layer: 2},
		Faults:           1,
	}
	if diff := cmp.Diff(want, p.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestFaultProxyDistributionUpload checks that uploads to a real
// Distribution registry, which answers with absolute Location URLs naming
// itself, stay on the proxy, and that a client's retry of an injected
// failure goes through to a complete push.
func TestFaultProxyDistributionUpload(t *testing.T) {
	t.Parallel()
	d := StartDistribution(t, "behind-proxy")
	p := NewFaultProxy(t, d.Host, FaultRule{Method: http.MethodPut, Path: PathUpload, Status: http.StatusInternalServerError})

	resp, _, err := do(t, http.MethodPost, "http://"+p.Host()+"/v2/probe/blobs/uploads/")
	if err != nil {
		t.Fatal(err)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusAccepted || err != nil || loc.Host != p.Host() {
		t.Fatalf("upload start via proxy: %s, Location %q; want 202 with a Location on %s\n%s",
			resp.Status, resp.Header.Get("Location"), p.Host(), d.Logs())
	}

	spec := ImageSpec{Seed: 9, Layers: 2, LayerSize: 32 << 10}
	dig := PushImageWith(t, p.Host()+"/app:v1", spec)
	if diff := cmp.Diff(map[string]v1.Hash{"v1": dig}, Digests(t, d.Host+"/app")); diff != "" {
		t.Errorf("tags on the upstream (-want +got):\n%s", diff)
	}
	// Two layers and a config, each committed by one PUT through the proxy,
	// plus the retried one that the rule failed.
	if s := p.Stats(); s.ByClass["PUT upload"] != 4 || s.Faults != 1 {
		t.Errorf("PUT uploads via proxy = %d with %d faults, want 4 with 1; stats %+v", s.ByClass["PUT upload"], s.Faults, s)
	}
}
