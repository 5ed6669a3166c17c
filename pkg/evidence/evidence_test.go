package evidence_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/imgpromoter/promoter/internal/cosigntest"
	"github.com/imgpromoter/promoter/internal/plainreg"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/evidence"
	"github.com/imgpromoter/promoter/pkg/referrers"
)

func image(t *testing.T, host string, seed int64) (name.Repository, v1.Hash, string) {
	t.Helper()
	repo, err := name.NewRepository(host+"/team/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d := testenv.PushImage(t, repo.Tag("v1").String(), seed)
	return repo, d, repo.Digest(d.String()).String()
}

func collect(t *testing.T, repo name.Repository, d v1.Hash, ids ...evidence.Identity) evidence.Evidence {
	t.Helper()
	c := &plainreg.Client{}
	arts, err := referrers.NewFinder(c, nil).Find(t.Context(), repo, d)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.Collect(t.Context(), c, repo, d, arts, ids)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func keyID(t *testing.T, id string, pem []byte) evidence.Identity {
	t.Helper()
	k, err := evidence.KeyIdentity(id, pem)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var vulnPredicate = []byte(`{"invocation":{"uri":"","event_id":"","builder.id":""},
 "scanner":{"uri":"pkg:github/aquasecurity/trivy","version":"0.58.0","db":{"uri":"","version":"2026-11-28T00:00:00Z"},
  "result":{"Results":[{"Vulnerabilities":[{"VulnerabilityID":"CVE-1","Severity":"HIGH"},{"VulnerabilityID":"CVE-2","Severity":"LOW"},{"VulnerabilityID":"CVE-3","Severity":"LOW"}]}]}},
 "metadata":{"scanStartedOn":"2026-11-28T10:00:00Z","scanFinishedOn":"2026-11-28T10:01:00Z"}}`)

var testPredicate = []byte(`{"result":"PASSED","configuration":[],"url":"https://ci.example/run/1","passedTests":["unit","e2e"],"warnedTests":[],"failedTests":[]}`)

type summary struct {
	Signatures   []string // identity/form
	Attestations []string // predicate type/identity
	Failures     int
}

func summarise(ev evidence.Evidence) summary {
	var s summary
	for _, sig := range ev.Signatures {
		s.Signatures = append(s.Signatures, sig.Identity+"/"+string(sig.Form))
	}
	for _, a := range ev.Attestations {
		s.Attestations = append(s.Attestations, a.PredicateType+"/"+a.Identity)
	}
	s.Failures = len(ev.Failures)
	return s
}

func TestCosignSignedAndAttested(t *testing.T) {
	for _, tc := range []struct {
		major int
		form  evidence.Form
	}{
		{3, evidence.FormBundle},
		{2, evidence.FormLegacy},
	} {
		t.Run("cosign-v"+string(rune('0'+tc.major)), func(t *testing.T) {
			cs := cosigntest.New(t, tc.major)
			repo, d, ref := image(t, testenv.InProcessReferrersRegistry(t, true), 1)
			cs.Sign(t, ref)
			cs.Attest(t, ref, evidence.CosignVulnPredicate, vulnPredicate)
			cs.Attest(t, ref, evidence.TestResultPredicate, testPredicate)
			release := keyID(t, "release.pub", cs.PublicKeyPEM(t))

			ev := collect(t, repo, d, release)
			want := summary{
				Signatures:   []string{"key:release.pub/" + string(tc.form)},
				Attestations: []string{evidence.CosignVulnPredicate + "/key:release.pub", evidence.TestResultPredicate + "/key:release.pub"},
			}
			got := summarise(ev)
			sortStrings(got.Attestations)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("evidence (-want +got):\n%s\nfailures: %+v", diff, ev.Failures)
			}
			if ev.Vulns == nil || ev.Vulns.Counts["high"] != 1 || ev.Vulns.Counts["low"] != 2 || ev.Vulns.Highest() != "high" {
				t.Errorf("vulnerability summary %+v", ev.Vulns)
			}
			if ev.Vulns != nil && !ev.Vulns.ScanFinished.Equal(time.Date(2026, 11, 28, 10, 1, 0, 0, time.UTC)) {
				t.Errorf("scan finished %v", ev.Vulns.ScanFinished)
			}
			if ev.Tests == nil || ev.Tests.Result != "PASSED" || ev.Tests.Passed != 2 {
				t.Errorf("test summary %+v", ev.Tests)
			}

			// Another key verifies nothing, and no content is shown.
			other := cosigntest.New(t, tc.major)
			ev = collect(t, repo, d, keyID(t, "other.pub", other.PublicKeyPEM(t)))
			if len(ev.Signatures) != 0 || ev.Vulns != nil || ev.Tests != nil || len(ev.Failures) != 3 {
				t.Errorf("with another key: %+v", summarise(ev))
			}
			for _, a := range ev.Attestations {
				if a.Verified() || a.Predicate != nil {
					t.Errorf("unverified attestation shows content: %+v", a)
				}
			}
			// Without identities (no policy) nothing verifies either.
			if ev := collect(t, repo, d); len(ev.Signatures) != 0 || ev.Vulns != nil {
				t.Errorf("without identities: %+v", summarise(ev))
			}
		})
	}
}

// push pushes an artifact manifest with one layer and a subject.
func pushArtifact(t *testing.T, repo name.Repository, subject v1.Hash, layerType, artifactType string, layer []byte, annotations map[string]string) {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/vnd.oci.empty.v1+json")
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(layer, types.MediaType(layerType))})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := remote.Get(repo.Digest(subject.String()))
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Annotations(img, annotations).(v1.Image)
	img = mutate.Subject(img, v1.Descriptor{MediaType: raw.MediaType, Digest: raw.Digest, Size: raw.Size}).(v1.Image)
	// artifactType makes it a bundle referrer.
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if err := remote.WriteLayer(repo, mustLayer(t, img, l.Digest)); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.WriteLayer(repo, static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")); err != nil {
		t.Fatal(err)
	}
	rawM, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	var mm map[string]any
	_ = json.Unmarshal(rawM, &mm)
	mm["artifactType"] = artifactType
	rawM, _ = json.Marshal(mm)
	h, _, _ := v1.SHA256(strings.NewReader(string(rawM)))
	if _, err := (&plainreg.Client{}).PutManifest(t.Context(), repo.Digest(h.String()), rawM, types.OCIManifestSchema1); err != nil {
		t.Fatal(err)
	}
}

func mustLayer(t *testing.T, img v1.Image, d v1.Hash) v1.Layer {
	t.Helper()
	l, err := img.LayerByDigest(d)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A signature whose bytes were changed, and a valid signature of another
// image attached to this one, both fail: nothing is signed.
func TestTamperedSignaturesDoNotVerify(t *testing.T) {
	cs := cosigntest.New(t, 3)
	host := testenv.InProcessReferrersRegistry(t, true)
	repo, d, ref := image(t, host, 1)
	_, d2, _ := image(t, host, 2)
	cs.Sign(t, ref)
	c := &plainreg.Client{}
	arts, err := referrers.NewFinder(c, nil).Find(t.Context(), repo, d)
	if err != nil || len(arts) != 1 {
		t.Fatalf("found %d artifacts, err %v", len(arts), err)
	}
	var l struct {
		Layers []v1.Descriptor `json:"layers"`
	}
	_ = json.Unmarshal(arts[0].Manifest, &l)
	rc, err := c.FetchBlob(t.Context(), repo, l.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	bundleJSON, _ := io.ReadAll(rc)
	rc.Close()
	release := keyID(t, "release.pub", cs.PublicKeyPEM(t))

	// The genuine signature moved to another image.
	pushArtifact(t, repo, d2, string(l.Layers[0].MediaType), arts[0].Descriptor.ArtifactType, bundleJSON, arts[0].Descriptor.Annotations)
	if ev := collect(t, repo, d2, release); len(ev.Signatures) != 0 || len(ev.Failures) != 1 {
		t.Errorf("signature of another image: %+v", summarise(ev))
	}

	// A signature with a byte changed.
	var b map[string]any
	if err := json.Unmarshal(bundleJSON, &b); err != nil {
		t.Fatal(err)
	}
	env := b["dsseEnvelope"].(map[string]any)
	sig := env["signatures"].([]any)[0].(map[string]any)
	s := []byte(sig["sig"].(string))
	s[10] ^= 1
	if s[10] == '+' || s[10] == '/' || s[10] == '=' {
		s[10] = 'A'
	}
	sig["sig"] = string(s)
	tampered, _ := json.Marshal(b)
	_, d3, _ := image(t, host, 3)
	pushArtifact(t, repo, d3, string(l.Layers[0].MediaType), arts[0].Descriptor.ArtifactType, tampered, arts[0].Descriptor.Annotations)
	if ev := collect(t, repo, d3, release); len(ev.Signatures) != 0 || len(ev.Failures) != 1 {
		t.Errorf("tampered signature: %+v", summarise(ev))
	}
	// The genuine one still verifies.
	if ev := collect(t, repo, d, release); len(ev.Signatures) != 1 {
		t.Errorf("genuine signature: %+v %+v", summarise(ev), ev.Failures)
	}
}

func sortStrings(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

func writeFile(t *testing.T, name string, raw []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var _ = root.TrustedRootMediaType01
