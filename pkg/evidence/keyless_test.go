package evidence_test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/evidence"
)

const (
	issuer  = "https://token.actions.githubusercontent.com"
	subject = "https://github.com/example/app/.github/workflows/release.yaml@refs/heads/main"
)

// keylessBundle signs an in-toto statement about digest (hex) with a
// short-lived certificate from the virtual Sigstore for identity, logged
// in its transparency log and timestamped, as a v0.3 bundle (JSON).
func keylessBundle(t *testing.T, vs *ca.VirtualSigstore, identity, predicateType, digestHex string) []byte {
	t.Helper()
	statement, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{"sha256": digestHex}}},
		"predicateType": predicateType,
		"predicate":     map[string]any{},
	})
	ent, err := vs.AttestAtTime(identity, issuer, statement, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := ent.VerificationContent()
	sc, _ := ent.SignatureContent()
	env := sc.EnvelopeContent().RawEnvelope()
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	tlogs, _ := ent.TlogEntries()
	var entries []*protorekor.TransparencyLogEntry
	for _, e := range tlogs {
		tle := e.TransparencyLogEntry()
		// The virtual log's entries are dsse 0.0.1 (see ca.GenerateTlogEntry).
		tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
		entries = append(entries, tle)
	}
	tss, _ := ent.Timestamps()
	var stamps []*protocommon.RFC3161SignedTimestamp
	for _, ts := range tss {
		stamps = append(stamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
	}
	b := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TlogEntries:               entries,
			TimestampVerificationData: &protobundle.TimestampVerificationData{Rfc3161Timestamps: stamps},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: env.PayloadType,
			Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	raw, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// trustedRootFile writes the virtual Sigstore's trust root as a
// trusted_root.json, the file a manifest repository keeps. It lists no
// certificate transparency log: the virtual CA issues certificates without
// SCTs (with CT logs listed, an SCT is required).
func trustedRootFile(t *testing.T, vs *ca.VirtualSigstore) string {
	t.Helper()
	// The virtual Sigstore's log IDs are hex text; a trusted_root.json
	// carries the raw key IDs.
	rawIDs := func(logs map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
		out := map[string]*root.TransparencyLog{}
		for k, l := range logs {
			c := *l
			id, err := hex.DecodeString(string(l.ID))
			if err != nil {
				t.Fatal(err)
			}
			c.ID = id
			out[k] = &c
		}
		return out
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil, vs.TimestampingAuthorities(), rawIDs(vs.RekorLogs()))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "trusted_root.json", raw)
}

func TestKeylessBundleAgainstTrustRootFile(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	host := testenv.InProcessReferrersRegistry(t, true)
	repo, d, _ := image(t, host, 1)
	pushArtifact(t, repo, d, "application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.dev.sigstore.bundle.v0.3+json",
		keylessBundle(t, vs, subject, evidence.CosignSignPredicate, d.Hex), nil)

	tr, err := root.NewTrustedRootFromPath(trustedRootFile(t, vs))
	if err != nil {
		t.Fatal(err)
	}
	otherVS, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	otherRoot, err := root.NewTrustedRootFromPath(trustedRootFile(t, otherVS))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		k      evidence.Keyless
		tm     root.TrustedMaterial
		signed bool
	}{
		{"exact", evidence.Keyless{Issuer: issuer, Subject: subject}, tr, true},
		{"regexp", evidence.Keyless{Issuer: issuer, SubjectRegexp: `https://github\.com/example/app/\.github/workflows/.*@refs/heads/main`}, tr, true},
		{"regexp is anchored", evidence.Keyless{Issuer: issuer, SubjectRegexp: `https://github\.com/example/ap`}, tr, false},
		{"other subject", evidence.Keyless{Issuer: issuer, Subject: "https://github.com/evil/app/.github/workflows/release.yaml@refs/heads/main"}, tr, false},
		{"other issuer", evidence.Keyless{Issuer: "https://accounts.example", Subject: subject}, tr, false},
		{"other trust root", evidence.Keyless{Issuer: issuer, Subject: subject}, otherRoot, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := evidence.KeylessIdentity(tc.k, tc.tm)
			if err != nil {
				t.Fatal(err)
			}
			ev := collect(t, repo, d, id)
			if got := len(ev.Signatures) == 1; got != tc.signed {
				t.Fatalf("signed = %v, want %v; failures %+v", got, tc.signed, ev.Failures)
			}
			if tc.signed && ev.Signatures[0].Identity != id.ID {
				t.Errorf("signed by %q, want %q", ev.Signatures[0].Identity, id.ID)
			}
		})
	}
}
