package testenv

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// InProcessRegistry starts go-containerregistry's in-memory registry on
// 127.0.0.1 and returns its host ("127.0.0.1:PORT"); the server is closed
// when the test ends.
func InProcessRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// InProcessReferrersRegistry is InProcessRegistry with the OCI 1.1 referrers
// API on or off (off is go-containerregistry's default, as for
// InProcessRegistry).
func InProcessReferrersRegistry(t testing.TB, referrersAPI bool) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrersAPI)))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
