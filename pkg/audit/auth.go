package audit

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Authenticator checks the credentials of a notification request.
type Authenticator interface {
	Authenticate(r *http.Request) error
}

// ErrUnauthorized marks a request whose credentials were missing or wrong.
var ErrUnauthorized = errors.New("unauthorized")

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// Tokens accepts any of several static bearer tokens (several, so a token
// can be rotated without a gap). Tokens are compared in constant time, by
// their SHA-256, so neither the content nor the length of a token leaks.
type Tokens struct {
	sums [][32]byte
}

// NewTokens returns an authenticator for the tokens; empty ones are refused.
func NewTokens(tokens ...string) (*Tokens, error) {
	t := &Tokens{}
	for i, tok := range tokens {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			return nil, fmt.Errorf("token %d is empty", i+1)
		}
		if len(tok) < 16 {
			return nil, fmt.Errorf("token %d is shorter than 16 characters", i+1)
		}
		t.sums = append(t.sums, sha256.Sum256([]byte(tok)))
	}
	if len(t.sums) == 0 {
		return nil, errors.New("no tokens")
	}
	return t, nil
}

// ReadTokenFile reads tokens, one per line; blank lines and lines starting
// with # are skipped.
func ReadTokenFile(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// Authenticate accepts a request with "Authorization: Bearer TOKEN" for a
// known token.
func (t *Tokens) Authenticate(r *http.Request) error {
	tok, ok := bearer(r)
	if !ok {
		return fmt.Errorf("%w: no bearer token", ErrUnauthorized)
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for _, s := range t.sums {
		// Every token is compared, so timing does not say which matched.
		match |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	if match != 1 {
		return fmt.Errorf("%w: unknown bearer token", ErrUnauthorized)
	}
	return nil
}

// OIDC checks the OpenID Connect ID token that Pub/Sub push subscriptions
// send (RS256-signed JWT): signature against the issuer's keys (JWKS), the
// issuer, the audience, the expiry, and that the token is for one of the
// expected service-account emails with a verified email. Every field is
// required: there is no "accept any identity" setting.
type OIDC struct {
	Issuer   string
	Audience string
	Emails   []string
	keys     KeySet
	// Now is the clock (tests move it); nil: time.Now.
	Now func() time.Time
}

// KeySet returns the public key with a key id.
type KeySet interface {
	Key(ctx context.Context, kid string) (*rsa.PublicKey, error)
}

// NewOIDC returns a verifier; issuer, audience, at least one email and a key
// set are required.
func NewOIDC(issuer, audience string, emails []string, keys KeySet) (*OIDC, error) {
	switch {
	case issuer == "":
		return nil, errors.New("OIDC: the issuer is required")
	case audience == "":
		return nil, errors.New("OIDC: the audience is required")
	case len(emails) == 0:
		return nil, errors.New("OIDC: at least one service-account email is required")
	case keys == nil:
		return nil, errors.New("OIDC: a key set (JWKS) is required")
	}
	return &OIDC{Issuer: issuer, Audience: audience, Emails: emails, keys: keys}, nil
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

type jwtClaims struct {
	Iss           string          `json:"iss"`
	Aud           json.RawMessage `json:"aud"`
	Exp           float64         `json:"exp"`
	Iat           float64         `json:"iat"`
	Nbf           float64         `json:"nbf"`
	Email         string          `json:"email"`
	EmailVerified any             `json:"email_verified"`
}

const clockSkew = time.Minute

// Authenticate verifies the bearer JWT of a request.
func (o *OIDC) Authenticate(r *http.Request) error {
	tok, ok := bearer(r)
	if !ok {
		return fmt.Errorf("%w: no bearer token", ErrUnauthorized)
	}
	if err := o.Verify(r.Context(), tok); err != nil {
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return nil
}

// Verify checks a compact-serialised JWT.
func (o *OIDC) Verify(ctx context.Context, tok string) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var h jwtHeader
	if err := decodeSegment(parts[0], &h); err != nil {
		return fmt.Errorf("JWT header: %w", err)
	}
	if h.Alg != "RS256" {
		return fmt.Errorf("JWT algorithm %q (want RS256)", h.Alg)
	}
	key, err := o.keys.Key(ctx, h.Kid)
	if err != nil {
		return err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("JWT signature: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		return errors.New("JWT signature does not verify")
	}
	var c jwtClaims
	if err := decodeSegment(parts[1], &c); err != nil {
		return fmt.Errorf("JWT claims: %w", err)
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	if c.Iss != o.Issuer {
		return fmt.Errorf("JWT issuer %q is not the expected issuer", c.Iss)
	}
	if !audienceHas(c.Aud, o.Audience) {
		return errors.New("JWT audience is not the expected audience")
	}
	if c.Exp == 0 || now.After(unix(c.Exp).Add(clockSkew)) {
		return errors.New("JWT expired (or has no expiry)")
	}
	if c.Nbf != 0 && now.Add(clockSkew).Before(unix(c.Nbf)) {
		return errors.New("JWT not valid yet")
	}
	if c.Iat != 0 && now.Add(clockSkew).Before(unix(c.Iat)) {
		return errors.New("JWT issued in the future")
	}
	if !slices.Contains(o.Emails, c.Email) {
		return fmt.Errorf("JWT email %q is not an expected service account", c.Email)
	}
	if v, ok := c.EmailVerified.(bool); !ok || !v {
		if s, ok := c.EmailVerified.(string); !ok || s != "true" {
			return errors.New("JWT email is not verified")
		}
	}
	return nil
}

func unix(f float64) time.Time { return time.Unix(int64(f), 0) }

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

func audienceHas(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return slices.Contains(many, want)
	}
	return false
}

// JWKS is a key set read from a JSON Web Key Set document: a file, or an
// http(s) URL re-read (at most once a minute) when a token names a key id it
// does not know, so the issuer's key rotation needs no restart.
type JWKS struct {
	src    string
	client *http.Client

	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	fetched time.Time
}

// NewJWKS returns a key set read from src (a file path or an http(s) URL).
func NewJWKS(src string) *JWKS {
	return &JWKS{src: src, client: &http.Client{Timeout: 10 * time.Second}}
}

// Key returns the RSA key with the key id.
func (j *JWKS) Key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if k, ok := j.keys[kid]; ok {
		return k, nil
	}
	if j.keys != nil && time.Since(j.fetched) < time.Minute {
		return nil, fmt.Errorf("no key %q in the key set", kid)
	}
	keys, err := j.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the key set: %w", err)
	}
	j.keys, j.fetched = keys, time.Now()
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("no key %q in the key set", kid)
}

func (j *JWKS) load(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	var raw []byte
	if strings.HasPrefix(j.src, "https://") || strings.HasPrefix(j.src, "http://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.src, nil)
		if err != nil {
			return nil, err
		}
		resp, err := j.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", j.src, resp.Status)
		}
		if raw, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20)); err != nil {
			return nil, err
		}
	} else {
		var err error
		if raw, err = os.ReadFile(j.src); err != nil {
			return nil, err
		}
	}
	return ParseJWKS(raw)
}

// ParseJWKS reads the RSA keys of a JWKS document by key id.
func ParseJWKS(raw []byte) (map[string]*rsa.PublicKey, error) {
	var doc struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	out := map[string]*rsa.PublicKey{}
	for _, k := range doc.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err := base64.RawURLEncoding.DecodeString(k.N)
		if err != nil {
			return nil, fmt.Errorf("key %q: n: %w", k.Kid, err)
		}
		e, err := base64.RawURLEncoding.DecodeString(k.E)
		if err != nil {
			return nil, fmt.Errorf("key %q: e: %w", k.Kid, err)
		}
		exp := new(big.Int).SetBytes(e)
		if !exp.IsInt64() || exp.Int64() < 3 || exp.Int64() > 1<<31 {
			return nil, fmt.Errorf("key %q: bad exponent", k.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("key %q: RSA key shorter than 2048 bits", k.Kid)
		}
		out[k.Kid] = pub
	}
	if len(out) == 0 {
		return nil, errors.New("no RSA keys")
	}
	return out, nil
}
