// Package e2e tests the built promoter binary end to end against real CNCF
// Distribution registries: each test starts its own staging and production
// registries, writes manifests, runs the binary as a CI job would and then
// reads back what ended up in the registries.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// promoterBin is the binary built once by TestMain; tests only read it.
var promoterBin string

// runTimeout bounds one execution of the binary; a hung promoter fails the
// test with its output instead of hanging the suite.
const runTimeout = 2 * time.Minute

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test skips itself; there is nothing to build.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "promoter-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	bin, err := buildPromoter(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building cmd/promoter:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	promoterBin = bin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildPromoter builds cmd/promoter into dir with the go command of the
// toolchain on PATH (resolved through `go env GOROOT`, so a toolchain switch
// by GOTOOLCHAIN is honoured).
func buildPromoter(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, goCmd, "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	if root := strings.TrimSpace(string(out)); root != "" {
		if p := filepath.Join(root, "bin", "go"); isFile(p) {
			goCmd = p
		}
	}
	bin := filepath.Join(dir, "promoter")
	cmd := exec.CommandContext(ctx, goCmd, "build", "-o", bin, "github.com/imgpromoter/promoter/cmd/promoter")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, b)
	}
	return bin, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// e2e marks a test as end-to-end: parallel, and skipped with -short.
func e2e(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	t.Parallel()
}

// ---------------------------------------------------------------------------
// Running the binary.

// result is one finished execution of the binary.
type result struct {
	args   []string
	code   int
	stdout string
	stderr string
}

// String renders everything about the run for failure messages.
func (r result) String() string {
	return fmt.Sprintf("promoter %s\nexit status %d\n--- stdout ---\n%s--- stderr ---\n%s--------------",
		strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// output is stdout and stderr together, for "is it said anywhere" checks.
func (r result) output() string { return r.stdout + r.stderr }

// promoterCmd prepares the binary with a hermetic environment: no docker
// credentials of the machine, and CI set so progress is printed as lines.
func promoterCmd(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, promoterBin, args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "CI=true")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// promoter runs the binary to completion and returns what it did.
func promoter(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := promoterCmd(ctx, t, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), code: -1}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("promoter did not finish within %s:\n%s", runTimeout, r)
	}
	if err != nil && r.code <= 0 {
		t.Fatalf("running promoter: %v\n%s", err, r)
	}
	return r
}

// wantExit fails the test unless the run exited with code.
func wantExit(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\n%s", r.code, code, r)
	}
}

// wantContains fails the test unless s contains every one of subs.
func wantContains(t *testing.T, what, s string, r result, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q\n%s", what, sub, r)
		}
	}
}

// wantMatch fails the test unless s matches every one of the patterns.
func wantMatch(t *testing.T, what, s string, r result, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(s) {
			t.Errorf("%s does not match %s\n%s", what, p, r)
		}
	}
}

// ---------------------------------------------------------------------------
// Registries.

// Path prefixes of the three registries as the manifests name them: the
// staging registry, prod-a, and prod-b (a mirror with a deeper prefix).
const (
	stagingPrefix = "staging"
	prodAPrefix   = "promoted"
	prodBPrefix   = "mirror/promoted"
)

// registries are one test's own staging and production registries.
type registries struct {
	staging, prodA, prodB *testenv.Distribution
}

// startRegistries starts the three Distribution registries of a test.
func startRegistries(t *testing.T) registries {
	t.Helper()
	r := registries{
		staging: testenv.StartDistribution(t, "staging"),
		prodA:   testenv.StartDistribution(t, "prod-a"),
		prodB:   testenv.StartDistribution(t, "prod-b"),
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range []*testenv.Distribution{r.staging, r.prodA, r.prodB} {
				t.Logf("registry %s (%s) log tail:\n%s", d.Name, d.Host, tail(d.Logs(), 15))
			}
		}
	})
	return r
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// src is the staging registry name as the manifests write it.
func (r registries) src() string { return r.staging.Host + "/" + stagingPrefix }

// destA and destB are the destination registry names, read directly.
func (r registries) destA() string { return r.prodA.Host + "/" + prodAPrefix }
func (r registries) destB() string { return r.prodB.Host + "/" + prodBPrefix }

// spec is the usual manifest registries: staging to both mirrors.
func (r registries) spec() registrySpec {
	return registrySpec{src: r.src(), dests: []string{r.destA(), r.destB()}}
}

// dests are the destination registry names to read back from.
func (r registries) dests() []string { return []string{r.destA(), r.destB()} }

// ---------------------------------------------------------------------------
// Images and manifests.

// promo is one image digest in staging and the tags a manifest asks for.
type promo struct {
	image    string
	digest   v1.Hash
	tags     []string
	children []v1.Hash // for an index: its child manifests
}

// pushImage pushes a small single-platform image (untagged, by digest) to
// staging and returns the promotion asking for tags.
func pushImage(t *testing.T, srcReg, image string, seed int64, tags ...string) promo {
	t.Helper()
	d := testenv.PushImageWith(t, srcReg+"/"+image, testenv.ImageSpec{Seed: seed, Layers: 2, LayerSize: 2048})
	return promo{image: image, digest: d, tags: tags}
}

// pushIndex pushes a two-platform index (untagged, by digest) to staging.
func pushIndex(t *testing.T, srcReg, image string, seed int64, tags ...string) promo {
	t.Helper()
	d, children := testenv.PushIndex(t, srcReg+"/"+image, seed)
	return promo{image: image, digest: d, tags: tags, children: children}
}

// imageDigest is the digest of the image pushImage would push for seed,
// without pushing it.
func imageDigest(t *testing.T, seed int64) v1.Hash {
	t.Helper()
	d, err := testenv.BuildImage(t, testenv.ImageSpec{Seed: seed, Layers: 2, LayerSize: 2048}).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// registrySpec is the registries list of a manifest: names as written.
type registrySpec struct {
	src   string
	dests []string
}

// imageEntry is one entry of an images list, written as is (digests and
// tags may be invalid on purpose).
type imageEntry struct {
	name string
	dmap []dmapEntry
}

type dmapEntry struct {
	digest string
	tags   []string
}

// entries turns promotions into image entries, one entry per image name in
// order of first appearance.
func entries(ps ...promo) []imageEntry {
	var out []imageEntry
	idx := map[string]int{}
	for _, p := range ps {
		i, ok := idx[p.image]
		if !ok {
			i = len(out)
			idx[p.image] = i
			out = append(out, imageEntry{name: p.image})
		}
		out[i].dmap = append(out[i].dmap, dmapEntry{digest: p.digest.String(), tags: p.tags})
	}
	return out
}

func registriesYAML(rs registrySpec) string {
	var b strings.Builder
	b.WriteString("registries:\n")
	fmt.Fprintf(&b, "- name: %s\n  src: true\n", rs.src)
	for _, d := range rs.dests {
		fmt.Fprintf(&b, "- name: %s\n", d)
	}
	return b.String()
}

// imagesYAML renders an images list (the thin images.yaml form; a plain
// manifest has the same under its images key).
func imagesYAML(imgs []imageEntry) string {
	var b strings.Builder
	for _, im := range imgs {
		fmt.Fprintf(&b, "- name: %s\n  dmap:\n", im.name)
		for _, d := range im.dmap {
			quoted := make([]string, len(d.tags))
			for i, tag := range d.tags {
				quoted[i] = fmt.Sprintf("%q", tag)
			}
			fmt.Fprintf(&b, "    %q: [%s]\n", d.digest, strings.Join(quoted, ", "))
		}
	}
	return b.String()
}

// thinDir writes a thin manifest directory with one project and returns
// the directory and the images file path.
func thinDir(t *testing.T, project string, rs registrySpec, imgs []imageEntry) (dir, imagesFile string) {
	t.Helper()
	dir = t.TempDir()
	manifestFile := filepath.Join(dir, "manifests", project, "promoter-manifest.yaml")
	imagesFile = filepath.Join(dir, "images", project, "images.yaml")
	writeFile(t, manifestFile, "# written by the e2e tests\n"+registriesYAML(rs))
	writeFile(t, imagesFile, imagesYAML(imgs))
	return dir, imagesFile
}

// plainManifest writes a plain manifest file (registries and images).
func plainManifest(t *testing.T, rs registrySpec, imgs []imageEntry) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "promoter-manifest.yaml")
	writeFile(t, path, registriesYAML(rs)+"images:\n"+imagesYAML(imgs))
	return path
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// lineOf returns the 1-based line of file holding sub.
func lineOf(t *testing.T, file, sub string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line containing %q", file, sub)
	return 0
}

// ---------------------------------------------------------------------------
// Reading back.

func parseRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s, name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tagsOf is testenv.Digests with a readable signature.
func tagsOf(t *testing.T, repo string) map[string]v1.Hash {
	t.Helper()
	return testenv.Digests(t, repo)
}

// wantTags checks the exact tag set of a repository.
func wantTags(t *testing.T, repo string, want map[string]v1.Hash) {
	t.Helper()
	if want == nil {
		want = map[string]v1.Hash{}
	}
	if diff := cmp.Diff(want, tagsOf(t, repo)); diff != "" {
		t.Errorf("tags of %s (-want +got):\n%s", repo, diff)
	}
}

// wantPromoted checks that every promotion is in every destination: the
// manifest by digest byte-identical to staging's, every child manifest and
// blob present, every tag pointing at the digest; and that each destination
// repository has exactly the tags asked for.
func wantPromoted(t *testing.T, srcReg string, dests []string, ps ...promo) {
	t.Helper()
	for _, dest := range dests {
		wantTagsByImage := map[string]map[string]v1.Hash{}
		for _, p := range ps {
			src := parseRepo(t, srcReg+"/"+p.image)
			dst := parseRepo(t, dest+"/"+p.image)
			sameImage(t, src, dst, p.digest)
			if p.children != nil {
				for _, c := range p.children {
					if !testenv.HasManifest(t, dst.Digest(c.String()).String()) {
						t.Errorf("%s: child manifest %s of index %s missing", dst, c, p.digest)
					}
				}
			}
			if wantTagsByImage[p.image] == nil {
				wantTagsByImage[p.image] = map[string]v1.Hash{}
			}
			for _, tag := range p.tags {
				wantTagsByImage[p.image][tag] = p.digest
			}
		}
		for image, want := range wantTagsByImage {
			wantTags(t, dest+"/"+image, want)
		}
	}
}

// sameImage checks that dst serves the manifest src serves for dig, byte
// for byte, with everything beneath it.
func sameImage(t *testing.T, src, dst name.Repository, dig v1.Hash) {
	t.Helper()
	ctx := t.Context()
	sd, err := remote.Get(src.Digest(dig.String()), remote.WithContext(ctx))
	if err != nil {
		t.Errorf("reading source %s@%s: %v", src, dig, err)
		return
	}
	dd, err := remote.Get(dst.Digest(dig.String()), remote.WithContext(ctx))
	if err != nil {
		t.Errorf("destination %s@%s: %v", dst, dig, err)
		return
	}
	if dd.Digest != dig || !bytes.Equal(sd.Manifest, dd.Manifest) || sd.MediaType != dd.MediaType {
		t.Errorf("%s@%s differs from the source: digest %s, media type %s vs %s, manifests equal: %v",
			dst, dig, dd.Digest, dd.MediaType, sd.MediaType, bytes.Equal(sd.Manifest, dd.Manifest))
		return
	}
	if sd.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(sd.Manifest))
		if err != nil {
			t.Errorf("%s@%s: %v", src, dig, err)
			return
		}
		for _, c := range im.Manifests {
			sameImage(t, src, dst, c.Digest)
		}
		return
	}
	blobsPresent(t, dst, dd.Manifest)
}

// complete checks that the manifest ref resolves to is whole in its
// repository: every child manifest and every blob is served.
func complete(t *testing.T, ref name.Reference) {
	t.Helper()
	d, err := remote.Get(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Errorf("%s does not resolve: %v", ref, err)
		return
	}
	if d.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(d.Manifest))
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			return
		}
		for _, c := range im.Manifests {
			complete(t, ref.Context().Digest(c.Digest.String()))
		}
		return
	}
	blobsPresent(t, ref.Context(), d.Manifest)
}

// blobsPresent HEADs the config and every layer of an image manifest.
func blobsPresent(t *testing.T, repo name.Repository, raw []byte) {
	t.Helper()
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		t.Errorf("%s: parsing image manifest: %v", repo, err)
		return
	}
	for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		u := fmt.Sprintf("http://%s/v2/%s/blobs/%s", repo.RegistryStr(), repo.RepositoryStr(), b.Digest)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("HEAD %s: %v", u, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != b.Size {
			t.Errorf("HEAD %s: %s with %d bytes, want 200 with %d", u, resp.Status, resp.ContentLength, b.Size)
		}
	}
}

// catalog lists the repositories of a registry host.
func catalog(t *testing.T, host string) []string {
	t.Helper()
	reg, err := name.NewRegistry(host, name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(t.Context(), reg)
	if err != nil {
		t.Fatalf("catalog of %s: %v", host, err)
	}
	slices.Sort(repos)
	return repos
}

// resolvedTags lists a repository's tags and resolves each, tolerating
// tags that are listed but do not resolve: Distribution can leave one behind
// when a tagging PUT is cancelled mid-request (it creates the tag's
// directory before its link). Those are returned in dangling, sorted.
func resolvedTags(t *testing.T, repo string) (tags map[string]v1.Hash, dangling []string) {
	t.Helper()
	r := parseRepo(t, repo)
	ctx := t.Context()
	list, err := remote.List(r, remote.WithContext(ctx))
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
			return map[string]v1.Hash{}, nil
		}
		t.Fatalf("listing tags of %s: %v", r, err)
	}
	tags = map[string]v1.Hash{}
	for _, tag := range list {
		d, err := remote.Head(r.Tag(tag), remote.WithContext(ctx))
		var terr *transport.Error
		switch {
		case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
			dangling = append(dangling, tag)
		case err != nil:
			t.Fatalf("resolving %s:%s: %v", r, tag, err)
		default:
			tags[tag] = d.Digest
		}
	}
	slices.Sort(dangling)
	return tags, dangling
}

// snapshot is every tag of every repository of some registries, to show
// that a run wrote nothing.
func snapshot(t *testing.T, hosts ...string) map[string]map[string]v1.Hash {
	t.Helper()
	out := map[string]map[string]v1.Hash{}
	for _, h := range hosts {
		for _, repo := range catalog(t, h) {
			out[h+"/"+repo] = tagsOf(t, h+"/"+repo)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// JSON outputs (docs: the JSON schema of plan and run report).

type position struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
}

type actionJSON struct {
	Class       string   `json:"class"`
	Image       string   `json:"image"`
	Source      string   `json:"source"`
	Destination string   `json:"destination"`
	Digest      string   `json:"digest"`
	Tag         string   `json:"tag"`
	Existing    string   `json:"existing"`
	Reason      string   `json:"reason"`
	Position    position `json:"position"`
}

type problemJSON struct {
	Position position `json:"position"`
	Severity string   `json:"severity"`
	Code     string   `json:"code"`
	Entry    string   `json:"entry"`
	Message  string   `json:"message"`
}

type planJSON struct {
	SchemaVersion int            `json:"schemaVersion"`
	Counts        map[string]int `json:"counts"`
	Destinations  []struct {
		Registry string         `json:"registry"`
		Counts   map[string]int `json:"counts"`
	} `json:"destinations"`
	Actions  []actionJSON  `json:"actions"`
	Problems []problemJSON `json:"problems"`
}

type hostJSON struct {
	Host          string `json:"host"`
	Requests      int64  `json:"requests"`
	BlobReads     int64  `json:"blobReads"`
	BlobUploads   int64  `json:"blobUploads"`
	BlobMounts    int64  `json:"blobMounts"`
	BytesUploaded int64  `json:"bytesUploaded"`
	ManifestPuts  int64  `json:"manifestPuts"`
}

type reportJSON struct {
	SchemaVersion int `json:"schemaVersion"`
	Totals        struct {
		Promoted int `json:"promoted"`
		Present  int `json:"present"`
		Refused  int `json:"refused"`
		Failed   int `json:"failed"`
	} `json:"totals"`
	ImagesCopied  int        `json:"imagesCopied"`
	BytesUploaded int64      `json:"bytesUploaded"`
	BlobUploads   int64      `json:"blobUploads"`
	BlobMounts    int64      `json:"blobMounts"`
	Hosts         []hostJSON `json:"hosts"`
	Results       []struct {
		actionJSON
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"results"`
	Problems []problemJSON `json:"problems"`
}

// host returns the stats of one host (zero if it was not contacted).
func (r reportJSON) host(h string) hostJSON {
	for _, s := range r.Hosts {
		if s.Host == h {
			return s
		}
	}
	return hostJSON{Host: h}
}

// decodeJSON parses the binary's stdout as JSON into v.
func decodeJSON(t *testing.T, r result, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not the JSON expected: %v\n%s", err, r)
	}
	if dec.More() {
		t.Fatalf("stdout has more than one JSON value\n%s", r)
	}
}

// ---------------------------------------------------------------------------
// gate: a reverse proxy whose upstream can be switched and which can slow
// every request down, for outages that end and for long runs.

type gate struct {
	host     string
	upstream atomic.Pointer[url.URL]
	delay    atomic.Int64 // nanoseconds added before each request
	proxy    *httputil.ReverseProxy
}

// newGate starts a gate forwarding to upstreamHost ("host:port").
func newGate(t *testing.T, upstreamHost string) *gate {
	t.Helper()
	g := &gate{}
	g.setUpstream(upstreamHost)
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(g.upstream.Load()) },
		// Distribution answers uploads with absolute Location URLs naming
		// the upstream; point them back here so uploads stay on the gate.
		ModifyResponse: func(resp *http.Response) error {
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err == nil && loc.Host != "" && loc.Host == resp.Request.URL.Host {
				loc.Host = g.host
				resp.Header.Set("Location", loc.String())
			}
			return nil
		},
		FlushInterval: -1,
		// The upstream dropped the connection (a fault proxy behind the
		// gate): drop the client's too, so the promoter sees what a
		// crashed registry looks like rather than a 502 from the gate.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
				return
			}
			panic(http.ErrAbortHandler)
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	srv := httptest.NewUnstartedServer(g)
	g.host = srv.Listener.Addr().String()
	srv.Start()
	t.Cleanup(srv.Close)
	return g
}

func (g *gate) setUpstream(host string) { g.upstream.Store(&url.URL{Scheme: "http", Host: host}) }

func (g *gate) setDelay(d time.Duration) { g.delay.Store(int64(d)) }

// ServeHTTP delays, then forwards.
func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d := time.Duration(g.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	g.proxy.ServeHTTP(w, r)
}

// ---------------------------------------------------------------------------
// Streaming a run, for interrupting it.

// lineWatcher collects a stream and reports the first line matching re.
type lineWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	re    *regexp.Regexp
	found chan string
	once  sync.Once
}

func newLineWatcher(pattern string) *lineWatcher {
	return &lineWatcher{re: regexp.MustCompile(pattern), found: make(chan string, 1)}
}

// consume reads r to the end.
func (w *lineWatcher) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		w.mu.Lock()
		w.buf.WriteString(line + "\n")
		w.mu.Unlock()
		if w.re.MatchString(line) {
			w.once.Do(func() { w.found <- line })
		}
	}
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// freeHost returns a 127.0.0.1 address nothing listens on.
func freeHost(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
