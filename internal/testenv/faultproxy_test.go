package testenv

import (
	"bytes"
	"crypto/tls"
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
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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

func TestFaultProxyEvery(t *testing.T) {
	t.Parallel()
	p := NewFaultProxy(t, InProcessRegistry(t), FaultRule{Path: `^/v2/$`, Last: math.MaxInt, Every: 10, Status: http.StatusTooManyRequests})
	var faulted []int
	for i := 1; i <= 30; i++ {
		resp, _, err := do(t, http.MethodGet, "http://"+p.Host()+"/v2/")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			faulted = append(faulted, i)
		}
	}
	if diff := cmp.Diff([]int{1, 11, 21}, faulted); diff != "" {
		t.Errorf("faulted requests (-want +got):\n%s", diff)
	}
}

func TestFaultProxyCorrupt(t *testing.T) {
	t.Parallel()
	upstream := InProcessRegistry(t)
	spec := ImageSpec{Seed: 2, LayerSize: 64 << 10}
	PushImageWith(t, upstream+"/app:v1", spec)
	layer := layerDigests(t, BuildImage(t, spec))[0]
	p := NewFaultProxy(t, upstream, FaultRule{Method: http.MethodGet, Path: PathBlob, Kind: FaultCorrupt, Offset: 40000})
	blobURL := "http://" + p.Host() + "/v2/app/blobs/" + layer.String()
	for i, wantOK := range []bool{false, true} {
		_, body, err := do(t, http.MethodGet, blobURL)
		if err != nil {
			t.Fatal(err)
		}
		got, _, _ := v1.SHA256(bytes.NewReader(body))
		if (got == layer) != wantOK {
			t.Errorf("read %d: digest %s, want layer digest: %v", i+1, got, wantOK)
		}
	}
}

func TestFaultProxyRedirect(t *testing.T) {
	t.Parallel()
	upstream := InProcessRegistry(t)
	spec := ImageSpec{Seed: 3}
	PushImageWith(t, upstream+"/app:v1", spec)
	layer := layerDigests(t, BuildImage(t, spec))[0]
	blobs := NewForwardingBlobHost(t, upstream)
	p := NewFaultProxyWith(t, upstream, ProxyConfig{BasicAuth: true, Rules: []FaultRule{
		{Method: http.MethodGet, Path: PathBlob, Last: math.MaxInt, Kind: FaultRedirect, RedirectTo: blobs.Host()},
	}})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.Host()+"/v2/app/blobs/"+layer.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(TestUsername, TestPassword)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if want := "http://" + blobs.Host() + "/v2/app/blobs/" + layer.String(); resp.StatusCode != http.StatusTemporaryRedirect || loc != want {
		t.Fatalf("blob GET: %s to %q, want 307 to %q", resp.Status, loc, want)
	}
	_, body, err := do(t, http.MethodGet, loc)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(body)); got != layer {
		t.Errorf("redirected read has digest %s, want %s", got, layer)
	}
	if s := blobs.Stats(); s.Requests != 1 || s.WithAuthorization != 0 {
		t.Errorf("blob host stats %+v, want one request without credentials", s)
	}
	if rec := p.Log(); len(rec) != 1 || rec[0].Status != http.StatusTemporaryRedirect || !rec[0].Authorized {
		t.Errorf("proxy log %+v, want one authorised request answered 307", rec)
	}
}

func TestFaultProxyBasicAuth(t *testing.T) {
	t.Parallel()
	p := NewFaultProxyWith(t, InProcessRegistry(t), ProxyConfig{BasicAuth: true})
	resp, _, err := do(t, http.MethodGet, "http://"+p.Host()+"/v2/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("without credentials: %s, challenge %q; want 401 with a Basic challenge", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.Host()+"/v2/", nil)
	req.SetBasicAuth(TestUsername, TestPassword)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with credentials: %s, want 200", resp.Status)
	}
	if s := p.Stats(); s.AuthChallenges != 1 || s.Requests != 2 {
		t.Errorf("stats %+v, want 2 requests, 1 challenged", s)
	}
}

func TestFaultProxyTLSAttempt(t *testing.T) {
	t.Parallel()
	p := NewFaultProxy(t, InProcessRegistry(t))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := client.Get("https://" + p.Host() + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatal("an HTTPS request to the plain-HTTP proxy succeeded")
	}
	if _, _, err := do(t, http.MethodGet, "http://"+p.Host()+"/v2/"); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.TLSAttempts != 1 || s.Requests != 1 {
		t.Errorf("stats %+v, want 1 TLS attempt and 1 request", s)
	}
}

func TestFaultProxyLinks(t *testing.T) {
	t.Parallel()
	upstream := InProcessRegistry(t)
	PushImage(t, upstream+"/app:v1", 1)
	for _, tc := range []struct {
		kind FaultKind
		want []string
	}{
		{FaultLinkLoop, []string{`</v2/app/tags/list?n=5>; rel="next"`, `</v2/app/tags/list?n=5>; rel="next"`}},
		{FaultLinkEndless, []string{`</v2/app/tags/list?n=1000&page=1>; rel="next"`, `</v2/app/tags/list?n=1000&page=2>; rel="next"`}},
	} {
		p := NewFaultProxy(t, upstream, FaultRule{Method: http.MethodGet, Path: PathTags, Last: math.MaxInt, Kind: tc.kind})
		var got []string
		for range 2 {
			resp, body, err := do(t, http.MethodGet, "http://"+p.Host()+"/v2/app/tags/list?n=5")
			if err != nil || !strings.Contains(string(body), `"v1"`) {
				t.Fatalf("tags/list: %v, %s", err, body)
			}
			got = append(got, resp.Header.Get("Link"))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("kind %d: Link headers (-want +got):\n%s", tc.kind, diff)
		}
	}
}

func TestFaultProxyRecordsUploads(t *testing.T) {
	t.Parallel()
	upstream := InProcessRegistry(t)
	p := NewFaultProxy(t, upstream)
	spec := ImageSpec{Seed: 4, LayerSize: 8 << 10}
	PushImageWith(t, p.Host()+"/app:v1", spec)
	ups := p.Uploads()
	sessions := map[string][]byte{}
	var finals int
	for _, u := range ups {
		if !u.Complete || u.Status >= 300 {
			t.Errorf("upload request %s %s: complete %v, status %d", u.Method, u.Session, u.Complete, u.Status)
		}
		sessions[u.Session] = append(sessions[u.Session], u.Body...)
		if u.Digest == "" {
			continue
		}
		finals++
		if got, _, _ := v1.SHA256(bytes.NewReader(sessions[u.Session])); got.String() != u.Digest {
			t.Errorf("upload of %s: session bytes have digest %s", u.Digest, got)
		}
	}
	// A layer and a config.
	if finals != 2 {
		t.Errorf("%d final upload requests, want 2: %+v", finals, ups)
	}
	for _, r := range p.Log() {
		if r.End.Before(r.Start) || r.Status == 0 {
			t.Errorf("log record %+v: want End after Start and a status", r)
		}
	}
}

// TestDistributionRedirectAndAuth checks the Distribution set-up that the
// redirect tests use: with htpasswd on, anonymous requests are refused, and
// blob reads are redirected to the blob host, which serves the blob.
func TestDistributionRedirectAndAuth(t *testing.T) {
	t.Parallel()
	d := StartDistributionWith(t, "redirecting", DistributionOptions{BlobRedirect: true, BasicAuth: true})
	resp, _, err := do(t, http.MethodGet, "http://"+d.Host+"/v2/")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous /v2/: %v, %v; want 401", resp, err)
	}
	spec := ImageSpec{Seed: 5, LayerSize: 16 << 10}
	img := BuildImage(t, spec)
	ref, err := name.ParseReference(d.Host + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuthFromKeychain(Keychain(d.Host))); err != nil {
		t.Fatalf("push with credentials: %v\n%s", err, d.Logs())
	}
	layer := layerDigests(t, img)[0]
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+d.Host+"/v2/app/blobs/"+layer.String(), nil)
	req.SetBasicAuth(TestUsername, TestPassword)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusTemporaryRedirect || loc == nil || loc.Host != d.Blobs.Host() {
		t.Fatalf("blob GET: %s to %q, want 307 to %s", resp.Status, resp.Header.Get("Location"), d.Blobs.Host())
	}
	_, body, err := do(t, http.MethodGet, loc.String())
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(body)); got != layer {
		t.Errorf("blob host served digest %s, want %s", got, layer)
	}
}
