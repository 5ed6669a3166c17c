package testenv

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Credentials of the registries started with authentication on
// (DistributionOptions.BasicAuth, ProxyConfig.BasicAuth).
const (
	// TestUsername is the user name they accept.
	TestUsername = "promoter"
	// TestPassword is the password they accept. Tests check that it never
	// reaches another host and never appears in output.
	TestPassword = "promoter-test-password"
	// testPasswordBcrypt is TestPassword's bcrypt hash for htpasswd.
	testPasswordBcrypt = "$2a$04$XETjfDCkOCAeKpWf.rTsF.6YVqnLUIitFKzfikUCIXBWrAb/GZmbW"
)

// Keychain returns a keychain that gives TestUsername and TestPassword to
// the registries at hosts and nothing (anonymous) to every other host.
func Keychain(hosts ...string) authn.Keychain {
	return keychain(hosts)
}

type keychain []string

// Resolve implements authn.Keychain.
func (k keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	for _, h := range k {
		if r.RegistryStr() == h {
			return authn.FromConfig(authn.AuthConfig{Username: TestUsername, Password: TestPassword}), nil
		}
	}
	return authn.Anonymous, nil
}

var _ authn.Keychain = keychain(nil)

// checkBasicAuth reports whether r carries the test credentials.
func checkBasicAuth(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	return ok && u == TestUsername && p == TestPassword
}

// BlobHostStats counts what a BlobHost received.
type BlobHostStats struct {
	// Requests counts every request.
	Requests int
	// WithAuthorization counts requests that carried an Authorization
	// header: credentials of the registry that redirected there, which
	// must never happen.
	WithAuthorization int
	// Authorizations lists the Authorization headers received, for the
	// failure message.
	Authorizations []string
}

// BlobHost is a second server on 127.0.0.1 that redirected blob reads land
// on (object storage, a CDN): another port, hence another host to a
// client. It records whether the registry's credentials reached it.
type BlobHost struct {
	host string

	mu    sync.Mutex
	stats BlobHostStats
}

// NewBlobHost serves h on a new port of 127.0.0.1 and records what it
// receives. It is closed when the test ends.
func NewBlobHost(t testing.TB, h http.Handler) *BlobHost {
	t.Helper()
	b := &BlobHost{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.stats.Requests++
		if a := r.Header.Get("Authorization"); a != "" {
			b.stats.WithAuthorization++
			b.stats.Authorizations = append(b.stats.Authorizations, a)
		}
		b.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	b.host = srv.Listener.Addr().String()
	return b
}

// Host returns the server's address, "127.0.0.1:PORT".
func (b *BlobHost) Host() string { return b.host }

// Stats returns a snapshot of the counters.
func (b *BlobHost) Stats() BlobHostStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	s.Authorizations = append([]string(nil), s.Authorizations...)
	return s
}

// NewForwardingBlobHost is a BlobHost that forwards every request to the
// registry at upstreamHost without credentials: where a FaultRedirect
// rule in front of that registry sends blob reads.
func NewForwardingBlobHost(t testing.TB, upstreamHost string) *BlobHost {
	t.Helper()
	u, err := url.Parse("http://" + upstreamHost)
	if err != nil {
		t.Fatal(err)
	}
	return NewBlobHost(t, &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Header.Del("Authorization")
	}})
}
