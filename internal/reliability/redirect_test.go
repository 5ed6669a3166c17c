package reliability

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 1: registries keeping blobs in object storage answer blob
// reads with a redirect to another host. The promoter follows it, and the
// registry's credentials never reach that other host.

// TestBlobRedirectFollowedWithoutCredentials puts a staging registry that
// demands credentials and redirects every blob read to another port (so
// another host) behind the fault proxy; one blob is small (held in memory)
// and one large (streamed).
func TestBlobRedirectFollowedWithoutCredentials(t *testing.T) {
	upstream := testenv.InProcessRegistry(t)
	small := testenv.PushImageWith(t, upstream+"/s/small", testenv.ImageSpec{Seed: 1})
	large := testenv.PushImageWith(t, upstream+"/s/large", testenv.ImageSpec{Seed: 2, LayerSize: 6 << 20})
	blobs := testenv.NewForwardingBlobHost(t, upstream)
	staging := testenv.NewFaultProxyWith(t, upstream, testenv.ProxyConfig{BasicAuth: true, Rules: []testenv.FaultRule{
		{Method: http.MethodGet, Path: testenv.PathBlob, Last: math.MaxInt, Kind: testenv.FaultRedirect, RedirectTo: blobs.Host()},
	}})
	dest := testenv.InProcessRegistry(t)
	writeDockerConfig(t, testenv.TestUsername, testenv.TestPassword, staging.Host())
	m := writeManifest(t, staging.Host()+"/s", []string{dest + "/p"},
		image{name: "small", digest: small, tags: []string{"1.0"}},
		image{name: "large", digest: large, tags: []string{"1.0"}})

	r := run(t.Context(), t, "--log-level", "debug", m)
	r.mustSucceed(t, 2)
	if got := testenv.Digests(t, dest+"/p/large")["1.0"]; got != large {
		t.Errorf("large:1.0 = %s, want %s", got, large)
	}
	s := blobs.Stats()
	if s.Requests == 0 {
		t.Error("no blob read reached the host the registry redirected to")
	}
	if s.WithAuthorization != 0 {
		t.Errorf("%d of %d redirected blob reads carried the registry's credentials", s.WithAuthorization, s.Requests)
	}
	if strings.Contains(r.stderr+r.stdout, testenv.TestPassword) {
		t.Error("the password appears in the output")
	}
}

// TestBlobRedirectDistribution uses Distribution's own redirect storage
// middleware (baseurl: a second server on 127.0.0.1 serving the storage
// directory), with and without htpasswd authentication.
func TestBlobRedirectDistribution(t *testing.T) {
	for _, auth := range []bool{false, true} {
		t.Run(map[bool]string{false: "anonymous", true: "htpasswd"}[auth], func(t *testing.T) {
			d := testenv.StartDistributionWith(t, "staging", testenv.DistributionOptions{BlobRedirect: true, BasicAuth: auth})
			var opts []remote.Option
			if auth {
				opts = append(opts, remote.WithAuthFromKeychain(testenv.Keychain(d.Host)))
				writeDockerConfig(t, testenv.TestUsername, testenv.TestPassword, d.Host)
			} else {
				writeDockerConfig(t, "", "")
			}
			img := testenv.BuildImage(t, testenv.ImageSpec{Seed: 3, Layers: 2, LayerSize: 5 << 20})
			dig, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(d.Host + "/s/app:src")
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(ref, img, opts...); err != nil {
				t.Fatalf("seeding: %v\n%s", err, d.Logs())
			}
			dest := testenv.InProcessRegistry(t)
			m := writeManifest(t, d.Host+"/s", []string{dest + "/p"}, image{name: "app", digest: dig, tags: []string{"1.0"}})
			r := run(t.Context(), t, m)
			r.mustSucceed(t, 1)
			if got := testenv.Digests(t, dest+"/p/app")["1.0"]; got != dig {
				t.Errorf("app:1.0 = %s, want %s", got, dig)
			}
			s := d.Blobs.Stats()
			if s.Requests == 0 {
				t.Error("no blob was read through the redirect")
			}
			if s.WithAuthorization != 0 {
				t.Errorf("%d redirected blob reads carried credentials: %v", s.WithAuthorization, s.Authorizations)
			}
		})
	}
}

// TestBlobRedirectLoopIsBounded: a redirect that leads to a redirect
// forever fails the edge after a bounded number of hops, instead of
// looping or failing at the first redirect.
func TestBlobRedirectLoopIsBounded(t *testing.T) {
	t.Parallel()
	upstream := testenv.InProcessRegistry(t)
	dig := testenv.PushImageWith(t, upstream+"/s/app", testenv.ImageSpec{Seed: 4})
	var loop *testenv.BlobHost
	loop = testenv.NewBlobHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+loop.Host()+r.URL.Path+"x", http.StatusFound)
	}))
	staging := testenv.NewFaultProxy(t, upstream, testenv.FaultRule{
		Method: http.MethodGet, Path: testenv.PathBlob, Last: math.MaxInt, Kind: testenv.FaultRedirect, RedirectTo: loop.Host(),
	})
	dest := testenv.InProcessRegistry(t)
	m := writeManifest(t, staging.Host()+"/s", []string{dest + "/p"}, image{name: "app", digest: dig, tags: []string{"1.0"}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r := run(ctx, t, m)
	if r.report.Totals.Failed != 1 || !strings.Contains(strings.ToLower(r.failures()), "redirect") {
		t.Errorf("totals %+v, want the edge failed for too many redirects:\n%s", r.report.Totals, r.failures())
	}
	// Each blob read follows at most a handful of hops, and is retried at
	// most a handful of times.
	if n := loop.Stats().Requests; n == 0 || n > 200 {
		t.Errorf("the redirecting host got %d requests, want some but a bounded number", n)
	}
	if len(testenv.Digests(t, dest+"/p/app")) != 0 {
		t.Error("a tag was written although the image's blobs could not be read")
	}
}
