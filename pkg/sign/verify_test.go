package sign_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/sigstoretest"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/attest"
	"github.com/imgpromoter/promoter/pkg/sign"
)

// tamperStore flips a byte of every bundle it reads.
type tamperStore struct{ sign.ReferrerStore }

func (s tamperStore) ReadReferrer(ctx context.Context, repo name.Repository, d v1.Hash) (*sign.Referrer, error) {
	r, err := s.ReferrerStore.ReadReferrer(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	for i, b := range r.Blobs {
		if b.MediaType == sign.BundleMediaType {
			// Rewrite the signed statement (its predicate), keeping the
			// signature: what an attacker editing the bundle would do.
			var m map[string]any
			if err := json.Unmarshal(b.Data, &m); err != nil {
				return nil, err
			}
			env := m["dsseEnvelope"].(map[string]any)
			payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
			payload = bytes.Replace(payload, []byte(`"predicateType":`), []byte(`"x":1,"predicateType":`), 1)
			env["payload"] = base64.StdEncoding.EncodeToString(payload)
			data, err := json.Marshal(m)
			if err != nil {
				return nil, err
			}
			r.Blobs[i].Data = data
		}
	}
	return r, nil
}

func TestVerifierCheck(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fake := sigstoretest.Start(t)
	store := sign.NewRemoteStore(nil, nil)
	want := []string{attest.CosignSign, attest.Promotion}

	keySigner, err := sign.New(sign.WithKey(sign.FromCryptoSigner(key)), sign.WithoutTransparencyLogUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	keyless := keylessSigner(t, fake, fake.Token(t, workflowIdentity))

	type check struct {
		name  string
		id    sign.Identity
		store sign.ReferrerStore
		found bool
	}
	tests := []struct {
		name   string
		signer *sign.Signer
		checks []check
	}{
		{"key", keySigner, []check{
			{"same key", sign.Identity{Key: key.Public()}, store, true},
			{"other key", sign.Identity{Key: otherKey.Public()}, store, false},
			{"tampered", sign.Identity{Key: key.Public()}, tamperStore{store}, false},
		}},
		{"keyless", keyless, []check{
			{"identity", sign.Identity{TrustedRoot: fake.TrustedRoot, Subject: workflowIdentity, Issuer: sigstoretest.Issuer}, store, true},
			{"identity regexp", sign.Identity{TrustedRoot: fake.TrustedRoot, SubjectRegexp: `^https://github\.com/example/`, Issuer: sigstoretest.Issuer}, store, true},
			{"other identity", sign.Identity{TrustedRoot: fake.TrustedRoot, Subject: "https://github.com/evil/x", Issuer: sigstoretest.Issuer}, store, false},
			{"other issuer", sign.Identity{TrustedRoot: fake.TrustedRoot, Subject: workflowIdentity, Issuer: "https://other.test"}, store, false},
			{"key instead", sign.Identity{Key: key.Public()}, store, false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testenv.InProcessReferrersRegistry(t, true) + "/prod/app"
			dig := testenv.PushImage(t, d+":v1", 5)
			img := sign.Image{Subject: subjectOf(t, d+"@"+dig.String()), Destinations: []sign.Destination{{Repo: mustRepo(t, d)}}}
			p := &sign.Publisher{Signer: tc.signer, Store: store, Created: time.Now(), BuilderID: "https://example.test/promoter@v0"}
			if _, err := p.Publish(t.Context(), img); err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				t.Run(c.name, func(t *testing.T) {
					v, err := sign.NewVerifier(c.id, c.store)
					if err != nil {
						t.Fatal(err)
					}
					found, err := v.Check(t.Context(), mustRepo(t, d), dig, want...)
					if err != nil {
						t.Fatal(err)
					}
					for _, w := range want {
						if found[w] != c.found {
							t.Errorf("%s found = %v, want %v", w, found[w], c.found)
						}
					}
				})
			}
		})
	}
}

func TestVerifierNeedsAnIdentity(t *testing.T) {
	for _, id := range []sign.Identity{
		{},
		{TrustedRoot: "x.json"},
		{TrustedRoot: "x.json", Subject: "a"},
	} {
		if _, err := sign.NewVerifier(id, nil); err == nil {
			t.Errorf("NewVerifier(%+v) accepted", id)
		}
	}
}
