package reliability

import (
	"testing"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// Issue 8 point 7: loopback registries are spoken to over plain HTTP
// only, as the documentation says: not a single TLS handshake is tried
// against them, also when they ask for credentials (the authentication
// handshake once tried HTTPS first).
func TestLoopbackNeverSeesTLS(t *testing.T) {
	src, dst := testenv.InProcessRegistry(t), testenv.InProcessRegistry(t)
	dig := testenv.PushImageWith(t, src+"/s/app", testenv.ImageSpec{Seed: 7, LayerSize: 5 << 20})
	staging := testenv.NewFaultProxyWith(t, src, testenv.ProxyConfig{BasicAuth: true})
	dest := testenv.NewFaultProxyWith(t, dst, testenv.ProxyConfig{BasicAuth: true})
	writeDockerConfig(t, testenv.TestUsername, testenv.TestPassword, staging.Host(), dest.Host())
	m := writeManifest(t, staging.Host()+"/s", []string{dest.Host() + "/p"}, image{name: "app", digest: dig, tags: []string{"1.0"}})
	run(t.Context(), t, "--log-level", "debug", m).mustSucceed(t, 1)
	if got := testenv.Digests(t, dst+"/p/app")["1.0"]; got != dig {
		t.Errorf("app:1.0 = %s, want %s", got, dig)
	}
	for _, p := range []*testenv.FaultProxy{staging, dest} {
		if s := p.Stats(); s.TLSAttempts != 0 {
			t.Errorf("%s (loopback) saw %d TLS handshakes", p.Host(), s.TLSAttempts)
		}
		if p.Stats().AuthChallenges == 0 {
			t.Errorf("%s never asked for credentials: the test does not test authentication", p.Host())
		}
	}
}
