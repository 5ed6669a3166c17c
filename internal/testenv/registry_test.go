package testenv

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/regtest"
)

func TestRegistries(t *testing.T) {
	t.Parallel()
	backends := []struct {
		name  string
		start func(t *testing.T) string
	}{
		{"in-process", func(t *testing.T) string { return InProcessRegistry(t) }},
		{"distribution", func(t *testing.T) string { return StartDistribution(t, "dist").Host }},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			exerciseRegistry(t, b.start(t))
		})
	}
}

// exerciseRegistry seeds host through every push mode and checks what the
// registry then serves.
func exerciseRegistry(t *testing.T, host string) {
	repo := host + "/team/app"

	tagged := PushImage(t, repo+":v1", 1)
	big := PushImageWith(t, repo+":big", ImageSpec{Seed: 2, Layers: 3, LayerSize: 64 << 10, SharedBase: true})
	idx, children := PushIndex(t, repo+":multi", 3)
	untagged := PushImage(t, repo, 4)
	want := digestOf(t, BuildImage(t, ImageSpec{Seed: 5}))
	if got := PushImage(t, repo+"@"+want.String(), 5); got != want {
		t.Errorf("push by digest returned %s, want %s", got, want)
	}

	if diff := cmp.Diff(map[string]v1.Hash{"v1": tagged, "big": big, "multi": idx}, Digests(t, repo)); diff != "" {
		t.Errorf("Digests(%s) (-want +got):\n%s", repo, diff)
	}
	if got := Digests(t, host+"/never/pushed"); len(got) != 0 {
		t.Errorf("Digests of an unknown repository = %v, want empty", got)
	}

	present := append([]v1.Hash{untagged, want}, children...)
	for _, h := range present {
		if !HasManifest(t, repo+"@"+h.String()) {
			t.Errorf("HasManifest(%s) = false, want true", h)
		}
	}
	for _, ref := range []string{repo + ":nope", host + "/never/pushed:v1", repo + "@" + digestOf(t, BuildImage(t, ImageSpec{Seed: 99})).String()} {
		if HasManifest(t, ref) {
			t.Errorf("HasManifest(%s) = true, want false", ref)
		}
	}

	// The registry must serve the index byte for byte as built.
	desc, err := remote.Get(mustRef(t, repo+":multi"), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := BuildIndex(t, 3).RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(desc.Manifest, raw) {
		t.Errorf("served index differs from the built one:\n%s\n%s", desc.Manifest, raw)
	}
	img, err := remote.Image(mustRef(t, repo+":big"), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(layerDigests(t, BuildImage(t, ImageSpec{Seed: 2, Layers: 3, LayerSize: 64 << 10, SharedBase: true})), layerDigests(t, img)); diff != "" {
		t.Errorf("served layers (-want +got):\n%s", diff)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDistributionBinary(t *testing.T) {
	t.Parallel()
	if p := DistributionBinary(t); !isPinnedDistribution(p) && p != os.Getenv(RegistryBinEnv) {
		t.Errorf("DistributionBinary() = %s, which is not %s@%s", p, DistributionPackage, DistributionVersion)
	}
}

func TestLaunchDistributionPortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	d, retry, err := launchDistribution(t, DistributionBinary(t), "taken", dir, regtest.Config{StorageDir: dir, LogLevel: "info", Secret: "s"}, l.Addr().(*net.TCPAddr).Port)
	if err == nil || !retry {
		t.Fatalf("launch on a taken port = %v, retry %v, %v; want a retryable error", d, retry, err)
	}
}

func TestDistributionStop(t *testing.T) {
	t.Parallel()
	d := StartDistribution(t, "stopping")
	if d.Name != "stopping" {
		t.Errorf("Name = %q", d.Name)
	}
	if d.Logs() == "" {
		t.Error("Logs() is empty after start; want the registry's startup lines")
	}
	d.Stop()
	d.Stop() // idempotent
	resp, err := http.Get("http://" + d.Host + "/v2/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET /v2/ after Stop answered %s", resp.Status)
	}
}
