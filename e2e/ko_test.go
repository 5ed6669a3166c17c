package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/internal/testenv"
)

const (
	// koBinEnv names the ko binary to use instead of the one on PATH.
	koBinEnv = "PROMOTER_KO_BIN"
	// caBundle is the machine's CA bundle, copied into the test base image.
	caBundle = "/etc/ssl/certs/ca-certificates.crt"
	// baseUser is the non-root user of the base image (distroless "nonroot").
	baseUser = "65532:65532"
)

// TestKoImage builds the promoter's container image with ko, as .ko.yaml
// configures it, onto a base image assembled here (the machine's CA bundle
// and a non-root user: what the default distroless base holds) and pushed
// to a Distribution registry on 127.0.0.1, then checks what ko pushed: both
// platforms, the entrypoint and user, the files, a static binary, and that
// the amd64 binary taken out of the image runs `version`.
func TestKoImage(t *testing.T) {
	e2e(t)
	ko := koBinary(t)
	reg := testenv.StartDistribution(t, "images")
	base := pushBaseImage(t, reg.Host+"/base/static")

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// ko compiles for two platforms: bound it by the test's deadline so a
	// slow build fails with ko's output rather than a timeout panic.
	deadline := time.Now().Add(15 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, ko, "build", "--bare", "--tags", "e2e", "./cmd/promoter")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"KO_DOCKER_REPO="+reg.Host+"/promoter",
		"KO_DEFAULTBASEIMAGE="+base.String(),
		"DOCKER_CONFIG="+t.TempDir(), // no credentials of the machine
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ko build: %v (%v)\n%s", err, ctx.Err(), stderr.String())
	}
	built, err := name.NewDigest(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ko build printed %q, want the image reference with its digest: %v\n%s", out, err, stderr.String())
	}
	if want := reg.Host + "/promoter"; built.Context().String() != want {
		t.Errorf("ko pushed to %s, want %s", built.Context(), want)
	}

	idx, err := remote.Index(built)
	if err != nil {
		t.Fatalf("reading the image index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	images := map[string]v1.Image{}
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Errorf("index entry %s has no platform", d.Digest)
			continue
		}
		p := d.Platform.OS + "/" + d.Platform.Architecture
		platforms = append(platforms, p)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		images[p] = img
	}
	slices.Sort(platforms)
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, platforms); diff != "" {
		t.Fatalf("platforms (-want +got):\n%s", diff)
	}

	var compressed int64
	for _, p := range platforms {
		img := images[p]
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatalf("%s: config: %v", p, err)
		}
		if got := cf.OS + "/" + cf.Architecture; got != p {
			t.Errorf("%s: config says %s", p, got)
		}
		if diff := cmp.Diff([]string{"/ko-app/promoter"}, cf.Config.Entrypoint); diff != "" {
			t.Errorf("%s: entrypoint (-want +got):\n%s", p, diff)
		}
		if cf.Config.User != baseUser {
			t.Errorf("%s: user %q, want %q (non-root)", p, cf.Config.User, baseUser)
		}
		files := imageFiles(t, img)
		if ca, err := os.ReadFile(caBundle); err != nil || !bytes.Equal(files["etc/ssl/certs/ca-certificates.crt"], ca) {
			t.Errorf("%s: the CA bundle is not in the image (%v)", p, err)
		}
		if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") {
			t.Errorf("%s: /etc/passwd has no user 65532:\n%s", p, files["etc/passwd"])
		}
		bin := files["ko-app/promoter"]
		wantMachine := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}[p]
		checkStaticELF(t, p, bin, wantMachine)
		if p == "linux/amd64" {
			runImageBinary(t, bin, root)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		var size int64
		for _, l := range layers {
			n, err := l.Size()
			if err != nil {
				t.Fatal(err)
			}
			size += n
		}
		t.Logf("%s: %d layers, %.1f MiB compressed", p, len(layers), float64(size)/(1<<20))
		compressed = max(compressed, size)
	}
	// Small: the binary and a few files. A bigger image means something
	// (a shell, a package database) came in with the base.
	if compressed > 20<<20 {
		t.Errorf("the image is %.1f MiB compressed; want under 20 MiB", float64(compressed)/(1<<20))
	}
}

// koBinary returns ko from $PROMOTER_KO_BIN or PATH. In CI a missing ko
// fails the test.
func koBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(koBinEnv); p != "" {
		return p
	}
	p, err := exec.LookPath("ko")
	if err == nil {
		return p
	}
	const how = "install it with `go install github.com/google/ko@v0.19.1` (or set " + koBinEnv + ")"
	if os.Getenv("CI") != "" {
		t.Fatalf("ko is not on PATH: %s", how)
	}
	t.Skipf("ko is not on PATH: %s", how)
	return ""
}

// pushBaseImage builds a two-platform static base image (the machine's CA
// bundle, /etc/passwd and /etc/group with root and nonroot 65532, a home
// folder and /tmp, user 65532) and pushes it to repo; it returns its digest.
func pushBaseImage(t *testing.T, repo string) name.Digest {
	t.Helper()
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the CA bundle %s is needed for the base image: %v", caBundle, err)
		}
		t.Skipf("no CA bundle at %s (apt-get install ca-certificates): %v", caBundle, err)
	}
	layer, err := tarLayer([]tarEntry{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, body: "root:x:0:\nnonroot:x:65532:\n"},
		{name: "etc/passwd", mode: 0o644, body: "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		{name: "etc/ssl/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: string(ca)},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/nonroot/", dir: true, mode: 0o700, uid: 65532},
		{name: "tmp/", dir: true, mode: 0o1777},
	})
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		cf.Config.User = baseUser
		cf.Config.WorkingDir = "/home/nonroot"
		cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	tag, err := name.NewTag(repo + ":nonroot")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatalf("pushing the base image: %v", err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(d.String())
}

// tarEntry is one file or folder of a layer.
type tarEntry struct {
	name string
	dir  bool
	mode int64
	uid  int
	body string
}

// tarLayer returns an uncompressed-tar layer of entries (gzip is applied by
// go-containerregistry).
func tarLayer(entries []tarEntry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, Typeflag: tar.TypeReg, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// imageFiles returns the regular files of img's flattened file system.
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("reading the image's files: %v", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "/")] = b
	}
}

// checkStaticELF checks that bin is a statically linked executable for
// machine: no program interpreter, no shared libraries.
func checkStaticELF(t *testing.T, platform string, bin []byte, machine elf.Machine) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Errorf("%s: /ko-app/promoter is not an ELF binary: %v", platform, err)
		return
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: binary for %v, want %v", platform, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: the binary needs a dynamic loader: not static", platform)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s: the binary links %v: not static", platform, libs)
	}
}

// runImageBinary runs the amd64 binary taken out of the image with
// `version -o json` (where the tests run on amd64) and checks what it says.
func runImageBinary(t *testing.T, bin []byte, root string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "promoter")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS+"/"+runtime.GOARCH != "linux/amd64" {
		t.Logf("not running the linux/amd64 binary on %s/%s", runtime.GOOS, runtime.GOARCH)
		return
	}
	out, err := exec.Command(path, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("the image's binary: promoter version: %v", err)
	}
	var info struct {
		Version, Commit, GoVersion, Platform string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("promoter version -o json: %v\n%s", err, out)
	}
	if info.Platform != "linux/amd64" || !strings.HasPrefix(info.GoVersion, "go1.") {
		t.Errorf("the image's binary says %+v", info)
	}
	// ko builds with -buildvcs=true: in a git clone the commit is stamped.
	// (A git worktree or a source tarball has none: "unknown".)
	want := "unknown"
	if fi, err := os.Stat(filepath.Join(root, ".git")); err == nil && fi.IsDir() {
		head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatalf("git rev-parse HEAD: %v", err)
		}
		want = strings.TrimSpace(string(head))
	}
	if info.Commit != want {
		t.Errorf("the image's binary reports commit %q, want %q", info.Commit, want)
	}
	t.Logf("the image's binary: %s", fmt.Sprint(info))
}
