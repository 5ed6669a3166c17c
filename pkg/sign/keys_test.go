package sign_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/imgpromoter/promoter/pkg/sign"
)

func TestLoadPrivateKey(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// cosign's format: go-securesystemslib's encrypted document in a PEM block.
	enc, err := encrypted.Encrypt(der, []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKCS8PrivateKey(p384)
	sec1, _ := x509.MarshalECPrivateKey(key)

	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	tests := []struct {
		name     string
		pem      []byte
		password string
		wantErr  error // nil: must load the key
		anyErr   bool
	}{
		{name: "encrypted sigstore", pem: block(sign.PEMEncryptedSigstore, enc), password: "hunter2"},
		{name: "encrypted cosign (old name)", pem: block(sign.PEMEncryptedCosign, enc), password: "hunter2"},
		{name: "wrong password", pem: block(sign.PEMEncryptedSigstore, enc), password: "nope", wantErr: sign.ErrWrongPassword},
		{name: "plain PKCS#8", pem: block(sign.PEMPKCS8, der)},
		{name: "SEC 1", pem: block(sign.PEMECPrivateKey, sec1)},
		{name: "P-384 refused", pem: block(sign.PEMPKCS8, der384), anyErr: true},
		{name: "not PEM", pem: []byte("hello"), anyErr: true},
		{name: "unknown block", pem: block("RSA PRIVATE KEY", der), anyErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sign.LoadPrivateKey(tc.pem, []byte(tc.password))
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case tc.anyErr:
				var ke *sign.KeyError
				if !errors.As(err, &ke) {
					t.Fatalf("err = %v, want a KeyError", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if !got.Equal(key) {
					t.Fatal("loaded a different key")
				}
			}
		})
	}
}
