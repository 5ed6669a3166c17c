package sign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
)

// InTotoPayloadType is the DSSE payload type of an in-toto statement.
const InTotoPayloadType = "application/vnd.in-toto+json"

// KeySigner is a signing key held somewhere: a key file, a KMS key, an HSM.
// SignDigest signs a SHA-256 digest and returns the signature in the key's
// standard encoding (ASN.1 DER for ECDSA). Plug other key stores in by
// implementing it.
type KeySigner interface {
	Public() crypto.PublicKey
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
}

// cryptoKey adapts a crypto.Signer (an in-memory key) to KeySigner.
type cryptoKey struct{ s crypto.Signer }

// FromCryptoSigner makes a KeySigner of an in-memory key such as the one
// LoadPrivateKey returns.
func FromCryptoSigner(s crypto.Signer) KeySigner { return cryptoKey{s} }

func (k cryptoKey) Public() crypto.PublicKey { return k.s.Public() }

func (k cryptoKey) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	return k.s.Sign(rand.Reader, digest, crypto.SHA256)
}

// keypair adapts a KeySigner to sigstore-go's Keypair.
type keypair struct {
	k    KeySigner
	hint []byte
}

func newKeypair(k KeySigner) (*keypair, error) {
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, &KeyError{Reason: fmt.Sprintf("public key type %T is not supported (ECDSA P-256 only)", k.Public())}
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, &KeyError{Reason: "encoding public key", Err: err}
	}
	sum := sha256.Sum256(der)
	return &keypair{k: k, hint: []byte(base64.StdEncoding.EncodeToString(sum[:]))}, nil
}

func (p *keypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}

func (p *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}

func (p *keypair) GetHint() []byte                { return p.hint }
func (p *keypair) GetKeyAlgorithm() string        { return "ECDSA" }
func (p *keypair) GetPublicKey() crypto.PublicKey { return p.k.Public() }

func (p *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(p.k.Public())
	return string(b), err
}

func (p *keypair) SignData(ctx context.Context, data []byte) ([]byte, []byte, error) {
	sum := sha256.Sum256(data)
	sig, err := p.k.SignDigest(ctx, sum[:])
	if err != nil {
		return nil, nil, err
	}
	return sig, sum[:], nil
}

// TokenSource gives the OIDC identity token for keyless signing. It is
// asked again whenever a new certificate is needed, so a token file that is
// rotated (a projected service account token) is read fresh.
type TokenSource func(ctx context.Context) (string, error)

// TokenFromFile reads the token from a file each time.
func TokenFromFile(path string) TokenSource {
	return func(context.Context) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("identity token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}

// TokenFromEnv reads the token from an environment variable each time.
func TokenFromEnv(name string) TokenSource {
	return func(context.Context) (string, error) {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			return "", fmt.Errorf("identity token: environment variable %s is empty", name)
		}
		return v, nil
	}
}

// options holds every setting of a Signer; defaults live in defaults().
type options struct {
	key        KeySigner
	token      TokenSource
	fulcioURL  string
	rekorURL   string
	noTlog     bool
	timeout    time.Duration
	certMargin time.Duration
	now        func() time.Time
}

func defaults() options {
	return options{
		timeout: 30 * time.Second,
		// A keyless certificate lives ten minutes; get a new one when less
		// than this is left, so that every signature is made (and logged)
		// well inside its certificate's validity.
		certMargin: 4 * time.Minute,
		now:        time.Now,
	}
}

// Option configures a Signer.
type Option func(*options)

// WithKey signs with a key (key-based signing).
func WithKey(k KeySigner) Option { return func(o *options) { o.key = k } }

// WithKeyless signs keyless: the identity token is exchanged with the
// Fulcio instance at fulcioURL for a short-lived certificate.
func WithKeyless(token TokenSource, fulcioURL string) Option {
	return func(o *options) { o.token, o.fulcioURL = token, fulcioURL }
}

// WithRekor logs every signature in the Rekor instance at url.
func WithRekor(url string) Option { return func(o *options) { o.rekorURL = url } }

// WithoutTransparencyLogUnsafe signs without logging in a transparency log
// (`--tlog=false`). Only allowed for key-based signing: a keyless
// certificate is only trustworthy with its log entry.
func WithoutTransparencyLogUnsafe() Option { return func(o *options) { o.noTlog = true } }

// WithTimeout bounds each request to Fulcio and Rekor.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// ConfigError is an invalid signer configuration.
type ConfigError struct{ Reason string }

func (e *ConfigError) Error() string { return "signing configuration: " + e.Reason }

// Signer produces sigstore bundles and legacy signatures with one identity.
// It is safe for concurrent use.
type Signer struct {
	o      options
	rekor  sgsign.Transparency
	fulcio *sgsign.Fulcio

	mu       sync.Mutex
	kp       sgsign.Keypair
	cert     []byte // DER, keyless only
	certTill time.Time
}

// New checks the options and returns a Signer.
func New(opts ...Option) (*Signer, error) {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.key != nil && o.token != nil:
		return nil, &ConfigError{Reason: "both a key and a keyless identity token given; choose one"}
	case o.key == nil && o.token == nil:
		return nil, &ConfigError{Reason: "no signing key and no identity token given"}
	case o.token != nil && o.fulcioURL == "":
		return nil, &ConfigError{Reason: "keyless signing needs a Fulcio URL"}
	case o.token != nil && o.noTlog:
		return nil, &ConfigError{Reason: "keyless signing needs the transparency log (--tlog=false is for key-based signing only)"}
	case !o.noTlog && o.rekorURL == "":
		return nil, &ConfigError{Reason: "no Rekor URL given (or turn the transparency log off for key-based signing)"}
	}
	s := &Signer{o: o}
	if !o.noTlog {
		s.rekor = sgsign.NewRekor(&sgsign.RekorOptions{BaseURL: strings.TrimRight(o.rekorURL, "/"), Timeout: o.timeout, Retries: 1})
	}
	if o.key != nil {
		kp, err := newKeypair(o.key)
		if err != nil {
			return nil, err
		}
		s.kp = kp
	} else {
		s.fulcio = sgsign.NewFulcio(&sgsign.FulcioOptions{BaseURL: strings.TrimRight(o.fulcioURL, "/"), Timeout: o.timeout, Retries: 1})
	}
	return s, nil
}

// Keyless reports whether the signer signs with certificates from Fulcio.
func (s *Signer) Keyless() bool { return s.o.token != nil }

// Tlog reports whether signatures are logged in Rekor.
func (s *Signer) Tlog() bool { return !s.o.noTlog }

// PublicKey is the signing key's public key (key-based signing only).
func (s *Signer) PublicKey() crypto.PublicKey {
	if s.o.key == nil {
		return nil
	}
	return s.o.key.Public()
}

// staticCert hands sigstore-go the certificate already obtained.
type staticCert []byte

func (c staticCert) GetCertificate(context.Context, sgsign.Keypair, *sgsign.CertificateProviderOptions) ([]byte, error) {
	return c, nil
}

// material returns the keypair to sign with and, keyless, its certificate,
// getting a fresh ephemeral key and certificate when needed.
func (s *Signer) material(ctx context.Context) (sgsign.Keypair, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o.token == nil {
		return s.kp, nil, nil
	}
	if s.cert != nil && s.o.now().Add(s.o.certMargin).Before(s.certTill) {
		return s.kp, s.cert, nil
	}
	kp, err := sgsign.NewEphemeralKeypair(nil)
	if err != nil {
		return nil, nil, err
	}
	tok, err := s.o.token(ctx)
	if err != nil {
		return nil, nil, err
	}
	der, err := s.fulcio.GetCertificate(ctx, kp, &sgsign.CertificateProviderOptions{IDToken: tok})
	if err != nil {
		return nil, nil, &ServiceError{Service: "Fulcio", Err: err}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, &ServiceError{Service: "Fulcio", Err: fmt.Errorf("unreadable certificate: %w", err)}
	}
	s.kp, s.cert, s.certTill = kp, der, c.NotAfter
	return kp, der, nil
}

// ServiceError is a failure of Fulcio or Rekor.
type ServiceError struct {
	Service string
	Err     error
}

func (e *ServiceError) Error() string { return e.Service + ": " + e.Err.Error() }
func (e *ServiceError) Unwrap() error { return e.Err }

func (s *Signer) bundle(ctx context.Context, content sgsign.Content) (*protobundle.Bundle, error) {
	kp, cert, err := s.material(ctx)
	if err != nil {
		return nil, err
	}
	opts := sgsign.BundleOptions{Context: ctx}
	if cert != nil {
		opts.CertificateProvider = staticCert(cert)
	}
	if s.rekor != nil {
		opts.TransparencyLogs = []sgsign.Transparency{serviceTlog{s.rekor}}
	}
	return sgsign.Bundle(content, kp, opts)
}

// serviceTlog marks Rekor failures as ServiceErrors.
type serviceTlog struct{ t sgsign.Transparency }

func (t serviceTlog) GetTransparencyLogEntry(ctx context.Context, pem []byte, b *protobundle.Bundle) error {
	if err := t.t.GetTransparencyLogEntry(ctx, pem, b); err != nil {
		return &ServiceError{Service: "Rekor", Err: err}
	}
	return nil
}

// SignStatement signs an in-toto statement into a sigstore bundle v0.3 and
// returns the bundle's JSON. Sign once and write the same bytes everywhere:
// signatures are randomised, so signing twice gives two different bundles.
func (s *Signer) SignStatement(ctx context.Context, statement []byte) ([]byte, error) {
	if len(statement) == 0 {
		return nil, errors.New("sign: empty statement")
	}
	b, err := s.bundle(ctx, &sgsign.DSSEData{Data: statement, PayloadType: InTotoPayloadType})
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(b)
}
