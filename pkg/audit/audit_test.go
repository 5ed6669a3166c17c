package audit_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/audit"
	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/snapshot"
)

const dgst = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func TestParsers(t *testing.T) {
	pubsubData := base64.StdEncoding.EncodeToString([]byte(`{"action":"INSERT","digest":"gcr.example/proj/app@` + dgst + `","tag":"gcr.example/proj/app:1.0"}`))
	harborData := `{"resources":[{"digest":"` + dgst + `","tag":"1.0","resource_url":"harbor.example/lib/app:1.0"}],"repository":{"name":"app","namespace":"lib","repo_full_name":"lib/app","repo_type":"private"}}`
	tests := []struct {
		name   string
		parse  func() ([]audit.Event, error)
		want   []audit.Event
		badErr bool
	}{
		{"distribution push of a manifest", func() ([]audit.Event, error) {
			return audit.ParseDistribution([]byte(`{"events":[{"id":"e1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + dgst + `","repository":"team/app","url":"http://r/v2/team/app/manifests/` + dgst + `","tag":"1.0"}}]}`))
		}, []audit.Event{{Source: audit.SourceDistribution, ID: "e1", Action: audit.ActionPush, Repository: "team/app", Tag: "1.0", Digest: dgst}}, false},
		{"distribution blob push and manifest delete", func() ([]audit.Event, error) {
			return audit.ParseDistribution([]byte(`{"events":[{"id":"b","action":"push","target":{"mediaType":"application/octet-stream","digest":"` + dgst + `","repository":"app","url":"http://r/v2/app/blobs/` + dgst + `"}},{"id":"d","action":"delete","target":{"digest":"` + dgst + `","repository":"app"}}]}`))
		}, []audit.Event{
			{Source: audit.SourceDistribution, ID: "b", Action: audit.ActionPush, Repository: "app", Digest: dgst, Blob: true},
			{Source: audit.SourceDistribution, ID: "d", Action: audit.ActionDelete, Repository: "app", Digest: dgst},
		}, false},
		{"distribution event without id", func() ([]audit.Event, error) {
			return audit.ParseDistribution([]byte(`{"events":[{"action":"push","target":{"repository":"app"}}]}`))
		}, nil, true},
		{"pubsub insert", func() ([]audit.Event, error) {
			return audit.ParsePubSub([]byte(`{"message":{"data":"` + pubsubData + `","messageId":"m1"},"subscription":"s"}`))
		}, []audit.Event{{Source: audit.SourcePubSub, ID: "m1", Action: audit.ActionPush, Repository: "gcr.example/proj/app", Tag: "1.0", Digest: dgst}}, false},
		{"pubsub delete by digest, old id spelling", func() ([]audit.Event, error) {
			d := base64.StdEncoding.EncodeToString([]byte(`{"action":"DELETE","digest":"gcr.example/proj/app@` + dgst + `"}`))
			return audit.ParsePubSub([]byte(`{"message":{"data":"` + d + `","message_id":"m2"}}`))
		}, []audit.Event{{Source: audit.SourcePubSub, ID: "m2", Action: audit.ActionDelete, Repository: "gcr.example/proj/app", Digest: dgst}}, false},
		{"pubsub data not base64", func() ([]audit.Event, error) {
			return audit.ParsePubSub([]byte(`{"message":{"data":"%%%","messageId":"m3"}}`))
		}, nil, true},
		{"harbor default", func() ([]audit.Event, error) {
			return audit.ParseHarbor(http.Header{}, []byte(`{"type":"DELETE_ARTIFACT","occur_at":1,"operator":"admin","event_data":`+harborData+`}`))
		}, []audit.Event{{Source: audit.SourceHarbor, ID: "", Action: audit.ActionDelete, Repository: "lib/app", Tag: "1.0", Digest: dgst}}, false},
		{"harbor cloudevents binary", func() ([]audit.Event, error) {
			h := http.Header{}
			h.Set("ce-id", "c1")
			h.Set("ce-type", "harbor.artifact.pushed")
			return audit.ParseHarbor(h, []byte(harborData))
		}, []audit.Event{{Source: audit.SourceHarbor, ID: "c1", Action: audit.ActionPush, Repository: "lib/app", Tag: "1.0", Digest: dgst}}, false},
		{"harbor cloudevents structured", func() ([]audit.Event, error) {
			return audit.ParseHarbor(http.Header{}, []byte(`{"specversion":"1.0","id":"c2","type":"harbor.artifact.deleted","source":"/x","data":`+harborData+`}`))
		}, []audit.Event{{Source: audit.SourceHarbor, ID: "c2", Action: audit.ActionDelete, Repository: "lib/app", Tag: "1.0", Digest: dgst}}, false},
		{"generic", func() ([]audit.Event, error) {
			return audit.ParseGeneric([]byte(`{"events":[{"id":"g1","action":"delete","repository":"prod.example/app","digest":"` + dgst + `"}]}`))
		}, []audit.Event{{Source: audit.SourceGeneric, ID: "g1", Action: audit.ActionDelete, Repository: "prod.example/app", Digest: dgst}}, false},
		{"generic unknown field", func() ([]audit.Event, error) {
			return audit.ParseGeneric([]byte(`{"events":[{"id":"g1","action":"push","repository":"app","tag":"1","extra":1}]}`))
		}, nil, true},
		{"generic unknown action", func() ([]audit.Event, error) {
			return audit.ParseGeneric([]byte(`{"events":[{"id":"g1","action":"pull","repository":"app","tag":"1"}]}`))
		}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse()
			if tt.badErr {
				if !errors.Is(err, audit.ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if strings.HasPrefix(got[i].ID, "sha256:") {
					got[i].ID = "" // a body digest: checked below
				}
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	// The default Harbor format has no id: a replayed body gets the same one.
	body := []byte(`{"type":"PUSH_ARTIFACT","occur_at":1,"event_data":` + harborData + `}`)
	a, _ := audit.ParseHarbor(http.Header{}, body)
	b, _ := audit.ParseHarbor(http.Header{}, body)
	if a[0].ID == "" || a[0].ID != b[0].ID {
		t.Errorf("harbor default ids %q and %q: want equal and set", a[0].ID, b[0].ID)
	}
}

func TestTokens(t *testing.T) {
	a, err := audit.NewTokens("first-token-0123456789", "second-token-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header string
		ok     bool
	}{
		{"Bearer first-token-0123456789", true},
		{"bearer second-token-0123456789", true},
		{"Bearer first-token-012345678", false},
		{"Bearer ", false},
		{"Basic Zmlyc3Q=", false},
		{"", false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if err := a.Authenticate(r); (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok=%v", tc.header, err, tc.ok)
		}
	}
	if _, err := audit.NewTokens("short"); err == nil {
		t.Error("a short token was accepted")
	}
}

// signer makes RS256 JWTs with a key published in a local JWKS file.
type signer struct {
	key *rsa.PrivateKey
	kid string
}

func newSigner(t *testing.T, kid string) *signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{key: k, kid: kid}
}

func (s *signer) jwk() map[string]string {
	return map[string]string{"kty": "RSA", "kid": s.kid, "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(s.key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(s.key.E)).Bytes())}
}

func (s *signer) sign(t *testing.T, alg string, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": alg, "kid": s.kid, "typ": "JWT"})
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestOIDC(t *testing.T) {
	good := newSigner(t, "k1")
	other := newSigner(t, "k2") // not in the key set
	jwks, _ := json.Marshal(map[string]any{"keys": []any{good.jwk()}})
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	const iss, aud, email = "https://issuer.example", "https://audit.example/v1/events/pubsub", "pusher@proj.iam.example"
	o, err := audit.NewOIDC(iss, aud, []string{email}, audit.NewJWKS(path))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	base := func() map[string]any {
		return map[string]any{"iss": iss, "aud": aud, "email": email, "email_verified": true, "iat": now, "exp": now + 3600}
	}
	with := func(k string, v any) map[string]any { c := base(); c[k] = v; return c }
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"valid", good.sign(t, "RS256", base()), true},
		{"audience in a list", good.sign(t, "RS256", with("aud", []string{"x", aud})), true},
		{"wrong audience", good.sign(t, "RS256", with("aud", "https://other")), false},
		{"wrong issuer", good.sign(t, "RS256", with("iss", "https://evil")), false},
		{"wrong email", good.sign(t, "RS256", with("email", "someone@else")), false},
		{"unverified email", good.sign(t, "RS256", with("email_verified", false)), false},
		{"expired", good.sign(t, "RS256", with("exp", now-7200)), false},
		{"no expiry", good.sign(t, "RS256", with("exp", 0)), false},
		{"unknown key", other.sign(t, "RS256", base()), false},
		{"alg none", strings.Join(strings.Split(good.sign(t, "none", base()), ".")[:2], ".") + ".", false},
		{"tampered claims", tamper(good.sign(t, "RS256", base())), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.Header.Set("Authorization", "Bearer "+tt.tok)
			err := o.Authenticate(r)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, audit.ErrUnauthorized) {
				t.Errorf("err %v is not ErrUnauthorized", err)
			}
		})
	}
	if _, err := audit.NewOIDC(iss, aud, nil, audit.NewJWKS(path)); err == nil {
		t.Error("a verifier without an expected email was built")
	}
}

func tamper(tok string) string {
	p := strings.Split(tok, ".")
	c, _ := base64.RawURLEncoding.DecodeString(p[1])
	c = []byte(strings.Replace(string(c), "pusher@", "pwner@@", 1))
	p[1] = base64.RawURLEncoding.EncodeToString(c)
	return strings.Join(p, ".")
}

// TestServerRoutes drives the server in process against an in-process
// registry: Pub/Sub push with OIDC, refusals, malformed bodies kept and
// acknowledged, and 503 only when the store fails.
func TestServerRoutes(t *testing.T) {
	prod := testenv.InProcessRegistry(t)
	testenv.PushImage(t, prod+"/proj/app:evil", 9)
	s := newSigner(t, "k1")
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{s.jwk()}})
	}))
	defer jwks.Close()
	oidc, err := audit.NewOIDC("https://issuer.example", "aud-1", []string{"pusher@example"}, audit.NewJWKS(jwks.URL))
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := audit.NewTokens("route-token-0123456789")
	st, err := audit.OpenStore(t.Context(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	prefix, _ := snapshot.ParsePrefix(prod + "/proj")
	srv, err := audit.New(st, client, []snapshot.Prefix{prefix}, drift.NewExpected(nil),
		audit.WithAuth(audit.SourcePubSub, oidc), audit.WithAuth(audit.SourceDistribution, toks),
		audit.WithAuth(audit.SourceHarbor, toks), audit.WithAuth(audit.SourceGeneric, toks), audit.WithSettle(0))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	ctx, cancel := contextWithCancel(t)
	defer cancel()
	go srv.Run(ctx)

	data := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"action":"INSERT","tag":"%s/proj/app:evil"}`, prod)))
	push := `{"message":{"data":"` + data + `","messageId":"42"},"subscription":"projects/p/subscriptions/s"}`
	now := time.Now().Unix()
	good := s.sign(t, "RS256", map[string]any{"iss": "https://issuer.example", "aud": "aud-1", "email": "pusher@example", "email_verified": true, "exp": now + 600})
	post := func(route, auth, body string) int {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+route, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(audit.RoutePubSub, "route-token-0123456789", push); c != http.StatusUnauthorized {
		t.Errorf("pub/sub with a static token instead of OIDC: %d, want 401", c)
	}
	if c := post(audit.RoutePubSub, good, push); c != http.StatusAccepted {
		t.Errorf("pub/sub with a valid token: %d, want 202", c)
	}
	if c := post(audit.RoutePubSub, good, push); c != http.StatusAccepted {
		t.Errorf("pub/sub redelivery: %d, want 202", c)
	}
	if c := post(audit.RouteGeneric, "route-token-0123456789", `{"not":"events"}`); c != http.StatusAccepted {
		t.Errorf("malformed generic body: %d, want 202 (kept, not retried forever)", c)
	}
	waitFor(t, "the pub/sub event's finding", 10*time.Second, func() bool { return len(getFindings(t, strings.TrimPrefix(hs.URL, "http://"), "open")) == 1 })
	f := getFindings(t, strings.TrimPrefix(hs.URL, "http://"), "open")[0]
	if f.Kind != drift.UnexpectedTag || f.Repository != prod+"/proj/app" || f.Tag != "evil" || f.Origin != "event pubsub/42" {
		t.Errorf("finding %+v", f)
	}
	evs, _ := st.Events(t.Context())
	if len(evs) != 1 {
		t.Errorf("%d events stored, want 1 (the redelivery is a duplicate)", len(evs))
	}
	resp, err := http.Get(hs.URL + audit.RouteMetrics)
	if err != nil {
		t.Fatal(err)
	}
	var mb strings.Builder
	_, _ = readBody(&mb, resp)
	for _, want := range []string{
		`promoter_audit_events_total{action="push",source="pubsub"} 2`,
		`promoter_audit_duplicate_events_total{source="pubsub"} 1`,
		`promoter_audit_unauthorized_total{source="pubsub"} 1`,
		`promoter_audit_malformed_total{source="generic"} 1`,
		`promoter_audit_findings_open{kind="unexpected-tag"} 1`,
	} {
		if !strings.Contains(mb.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Storing fails: the sender must retry.
	st.Close()
	if c := post(audit.RouteDistribution, "route-token-0123456789", `{"events":[{"id":"z","action":"push","target":{"repository":"proj/app","tag":"x"}}]}`); c != http.StatusServiceUnavailable {
		t.Errorf("store closed: %d, want 503", c)
	}
}

// TestReconcile: the periodic drift check opens what it sees and resolves
// the open findings it no longer sees.
func TestReconcile(t *testing.T) {
	prod := testenv.InProcessRegistry(t)
	one := testenv.PushImage(t, prod+"/app:1.0", 1)
	extra := testenv.PushImage(t, prod+"/app:extra", 2)
	st, err := audit.OpenStore(t.Context(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	client, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	prefix, _ := snapshot.ParsePrefix(prod)
	expect := func(tags map[string]string) *drift.Expected {
		var yaml strings.Builder
		fmt.Fprintf(&yaml, "registries:\n- name: staging.example\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n", prod)
		for d, tag := range tags {
			fmt.Fprintf(&yaml, "    %q: [%q]\n", d, tag)
		}
		path := filepath.Join(t.TempDir(), "m.yaml")
		if err := os.WriteFile(path, []byte(yaml.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return loadExpected(t, path)
	}
	var srv *audit.Server
	srv, err = audit.New(st, client, []snapshot.Prefix{prefix}, expect(map[string]string{one.String(): "1.0"}),
		audit.WithUnauthenticatedRoutesUnsafe(),
		audit.WithReconcile(time.Hour, func(ctx context.Context) (*drift.Report, error) {
			return drift.Check(ctx, client, srv.Expected(), []snapshot.Prefix{prefix})
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	open, _ := st.Findings(t.Context(), true)
	if len(open) != 1 || open[0].Kind != drift.UnexpectedTag || open[0].Tag != "extra" || open[0].Origin != "reconcile" {
		t.Fatalf("after the first reconcile: %+v", open)
	}
	// The tag is reviewed after the fact: the next reconcile resolves it.
	srv.SetExpected(expect(map[string]string{one.String(): "1.0", extra.String(): "extra"}))
	if err := srv.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if open, _ := st.Findings(t.Context(), true); len(open) != 0 {
		t.Errorf("still open: %+v", open)
	}
	if all, _ := st.Findings(t.Context(), false); len(all) != 1 || all[0].ResolvedAt == "" {
		t.Errorf("all findings: %+v", all)
	}
}

// TestUntaggedDigestEvents: a manifest pushed by digest that no manifest
// lists is a finding; its delete resolves it; a reconcile (which cannot see
// untagged manifests on a plain OCI registry) leaves it alone meanwhile.
func TestUntaggedDigestEvents(t *testing.T) {
	prod := testenv.InProcessRegistry(t)
	listed := testenv.PushImage(t, prod+"/app:1.0", 1)
	stray := testenv.PushImage(t, prod+"/app", 66)
	st, err := audit.OpenStore(t.Context(), filepath.Join(t.TempDir(), "u.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	client, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	prefix, _ := snapshot.ParsePrefix(prod)
	path := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("registries:\n- name: staging.example\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n", prod, listed)), 0o600); err != nil {
		t.Fatal(err)
	}
	exp := loadExpected(t, path)
	srv, err := audit.New(st, client, []snapshot.Prefix{prefix}, exp, audit.WithUnauthenticatedRoutesUnsafe(), audit.WithSettle(0), audit.WithPoll(50*time.Millisecond),
		audit.WithReconcile(time.Hour, func(ctx context.Context) (*drift.Report, error) {
			return drift.Check(ctx, client, exp, []snapshot.Prefix{prefix})
		}))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	ctx, cancel := contextWithCancel(t)
	defer cancel()
	go srv.Run(ctx)
	addr := strings.TrimPrefix(hs.URL, "http://")
	send := func(id, action string) {
		body := fmt.Sprintf(`{"events":[{"id":%q,"action":%q,"repository":"app","digest":%q}]}`, id, action, stray)
		resp, err := http.Post(hs.URL+audit.RouteGeneric, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send("u1", "push")
	waitFor(t, "the unexpected digest", 10*time.Second, func() bool { return len(getFindings(t, addr, "open")) == 1 })
	if f := getFindings(t, addr, "open")[0]; f.Kind != drift.UnexpectedDigest || f.Digest != stray.String() {
		t.Fatalf("finding %+v", f)
	}
	if err := srv.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(getFindings(t, addr, "open")); n != 1 {
		t.Fatalf("a reconcile that cannot list untagged manifests changed the open findings to %d", n)
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+prod+"/v2/app/manifests/"+stray.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	send("u2", "delete")
	waitFor(t, "the finding to be resolved by the delete", 10*time.Second, func() bool { return len(getFindings(t, addr, "open")) == 0 })
}
