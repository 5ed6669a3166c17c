package sign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// PEM block types of the private keys LoadPrivateKey reads.
const (
	// PEMEncryptedSigstore is what `cosign generate-key-pair` writes today.
	PEMEncryptedSigstore = "ENCRYPTED SIGSTORE PRIVATE KEY"
	// PEMEncryptedCosign is what older cosign versions wrote.
	PEMEncryptedCosign = "ENCRYPTED COSIGN PRIVATE KEY"
	// PEMPKCS8 is a plain (unencrypted) PKCS#8 private key.
	PEMPKCS8 = "PRIVATE KEY"
	// PEMECPrivateKey is a plain SEC 1 EC private key.
	PEMECPrivateKey = "EC PRIVATE KEY"
)

// KeyError says why a key file could not be used. It never carries the
// password or key material.
type KeyError struct {
	Reason string
	Err    error
}

func (e *KeyError) Error() string {
	if e.Err != nil {
		return "signing key: " + e.Reason + ": " + e.Err.Error()
	}
	return "signing key: " + e.Reason
}

func (e *KeyError) Unwrap() error { return e.Err }

// ErrWrongPassword is returned (wrapped in a KeyError) when an encrypted key
// does not decrypt with the given password.
var ErrWrongPassword = errors.New("wrong password (decryption failed)")

// encryptedKey is cosign's encrypted private key: the JSON document
// go-securesystemslib's encrypted package writes (scrypt key derivation,
// NaCl secretbox encryption of the PKCS#8 DER key).
type encryptedKey struct {
	KDF struct {
		Name   string `json:"name"`
		Params struct {
			N int `json:"N"`
			R int `json:"r"`
			P int `json:"p"`
		} `json:"params"`
		Salt []byte `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

// scryptAllowed are the parameter sets cosign writes (legacy, standard,
// OWASP); anything else is refused rather than spending unbounded memory.
var scryptAllowed = map[[3]int]bool{
	{32768, 8, 1}:  true,
	{65536, 8, 1}:  true,
	{131072, 8, 1}: true,
}

// LoadPrivateKey reads a PEM private key: cosign's encrypted format (with
// password) or a plain PKCS#8 / SEC 1 ECDSA key (password ignored). Only
// ECDSA P-256 keys are accepted, the algorithm cosign uses by default.
func LoadPrivateKey(pemBytes, password []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, &KeyError{Reason: "no PEM block found"}
	}
	if b, _ := pem.Decode(rest); b != nil {
		return nil, &KeyError{Reason: "more than one PEM block"}
	}
	var der []byte
	switch block.Type {
	case PEMEncryptedSigstore, PEMEncryptedCosign:
		d, err := decryptCosignKey(block.Bytes, password)
		if err != nil {
			return nil, err
		}
		der = d
	case PEMPKCS8:
		der = block.Bytes
	case PEMECPrivateKey:
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, &KeyError{Reason: "parsing EC private key", Err: err}
		}
		return checkP256(k)
	default:
		return nil, &KeyError{Reason: fmt.Sprintf("unsupported PEM block %q", block.Type)}
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, &KeyError{Reason: "parsing PKCS#8 private key", Err: err}
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, &KeyError{Reason: fmt.Sprintf("key type %T is not supported (ECDSA P-256 only)", k)}
	}
	return checkP256(ec)
}

func checkP256(k *ecdsa.PrivateKey) (*ecdsa.PrivateKey, error) {
	if k.Curve != elliptic.P256() {
		return nil, &KeyError{Reason: "curve " + k.Curve.Params().Name + " is not supported (P-256 only)"}
	}
	return k, nil
}

func decryptCosignKey(doc, password []byte) ([]byte, error) {
	var ek encryptedKey
	if err := json.Unmarshal(doc, &ek); err != nil {
		return nil, &KeyError{Reason: "reading encrypted key", Err: err}
	}
	if ek.KDF.Name != "scrypt" {
		return nil, &KeyError{Reason: fmt.Sprintf("unsupported key derivation %q", ek.KDF.Name)}
	}
	if !scryptAllowed[[3]int{ek.KDF.Params.N, ek.KDF.Params.R, ek.KDF.Params.P}] {
		return nil, &KeyError{Reason: "unsupported scrypt parameters"}
	}
	if ek.Cipher.Name != "nacl/secretbox" {
		return nil, &KeyError{Reason: fmt.Sprintf("unsupported cipher %q", ek.Cipher.Name)}
	}
	if len(ek.Cipher.Nonce) != 24 {
		return nil, &KeyError{Reason: "bad nonce size"}
	}
	key, err := scrypt.Key(password, ek.KDF.Salt, ek.KDF.Params.N, ek.KDF.Params.R, ek.KDF.Params.P, 32)
	if err != nil {
		return nil, &KeyError{Reason: "deriving key", Err: err}
	}
	var k [32]byte
	var nonce [24]byte
	copy(k[:], key)
	copy(nonce[:], ek.Cipher.Nonce)
	der, ok := secretbox.Open(nil, ek.Ciphertext, &nonce, &k)
	if !ok {
		return nil, &KeyError{Reason: "decrypting", Err: ErrWrongPassword}
	}
	return der, nil
}

// LoadPublicKey reads a PEM public key (what `cosign generate-key-pair`
// writes as cosign.pub).
func LoadPublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, &KeyError{Reason: "no PUBLIC KEY PEM block found"}
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, &KeyError{Reason: "parsing public key", Err: err}
	}
	return k, nil
}
