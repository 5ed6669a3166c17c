package testenv

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/regtest"
)

const (
	// DistributionVersion is the pinned CNCF Distribution release the
	// end-to-end tests run against.
	DistributionVersion = "v3.0.0"

	// DistributionPackage is the Go package of the Distribution registry
	// binary, installed with `go install DistributionPackage@DistributionVersion`.
	DistributionPackage = "github.com/distribution/distribution/v3/cmd/registry"

	// RegistryBinEnv names the environment variable that, when set, points at
	// the registry binary to use instead of locating or installing one.
	RegistryBinEnv = "PROMOTER_REGISTRY_BIN"
)

const (
	distributionModule = "github.com/distribution/distribution/v3"
	// installTimeout bounds `go install`, which builds ~75 MB of registry
	// from source on a cold module cache.
	installTimeout = 15 * time.Minute
	// readyTimeout bounds how long a started registry may take to answer.
	readyTimeout = 30 * time.Second
	// startAttempts is how many free ports StartDistribution tries before
	// giving up; the port is free when chosen but another process may bind
	// it before the registry does.
	startAttempts = 5
)

// distributionBinary memoises the lookup for the whole test process so that
// parallel tests install at most once. It is the package's only
// package-level state: a once-computed value, never reassigned.
var distributionBinary = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	return locateDistribution(ctx)
})

// DistributionBinary returns the path of a CNCF Distribution registry binary
// at DistributionVersion. It uses $PROMOTER_REGISTRY_BIN when set, else a
// matching binary in $(go env GOBIN) or $(go env GOPATH)/bin, else one in the
// user cache directory, installing it there with `go install` if needed.
func DistributionBinary(t testing.TB) string {
	t.Helper()
	path, err := distributionBinary()
	if err != nil {
		t.Fatalf("testenv: Distribution registry binary: %v", err)
	}
	return path
}

// locateDistribution implements DistributionBinary's search order.
func locateDistribution(ctx context.Context) (string, error) {
	if p := os.Getenv(RegistryBinEnv); p != "" {
		// An explicit override is trusted as is: it may be a local build.
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			return "", fmt.Errorf("$%s=%q is not a file: %v", RegistryBinEnv, p, err)
		}
		return p, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no registry binary and no go command to install one: %w", err)
	}
	env, err := goEnv(ctx, goBin)
	if err != nil {
		return "", err
	}
	exe := "registry"
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	var candidates []string
	if env.GOBIN != "" {
		candidates = append(candidates, filepath.Join(env.GOBIN, exe))
	}
	if gp := filepath.SplitList(env.GOPATH); len(gp) > 0 && gp[0] != "" {
		candidates = append(candidates, filepath.Join(gp[0], "bin", exe))
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the user cache directory: %w", err)
	}
	cacheBin := filepath.Join(cache, "promoter-test", "bin")
	cached := filepath.Join(cacheBin, exe)
	candidates = append(candidates, cached)
	for _, c := range candidates {
		// A binary of another version (or another program called
		// "registry") must not be picked up silently.
		if isPinnedDistribution(c) {
			return c, nil
		}
	}
	if err := installDistribution(ctx, goBin, cacheBin, exe); err != nil {
		return "", err
	}
	if !isPinnedDistribution(cached) {
		return "", fmt.Errorf("installed %s but it does not report %s@%s", cached, distributionModule, DistributionVersion)
	}
	return cached, nil
}

// goEnvVars holds the `go env` values the binary search needs.
type goEnvVars struct {
	GOBIN  string
	GOPATH string
}

// goEnv asks the go command, so settings made with `go env -w` count too.
func goEnv(ctx context.Context, goBin string) (goEnvVars, error) {
	var v goEnvVars
	out, err := exec.CommandContext(ctx, goBin, "env", "-json", "GOBIN", "GOPATH").Output()
	if err != nil {
		return v, fmt.Errorf("go env: %w", err)
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return v, fmt.Errorf("go env: decoding output: %w", err)
	}
	return v, nil
}

// isPinnedDistribution reports whether path is a Go binary built from the
// Distribution module at DistributionVersion.
func isPinnedDistribution(path string) bool {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return false
	}
	return info.Path == DistributionPackage && info.Main.Path == distributionModule && info.Main.Version == DistributionVersion
}

// installDistribution runs `go install` into a private temporary GOBIN and
// renames the result into dir. Test packages run as parallel processes, so
// a lock file lets one of them build while the others wait for its result,
// and the atomic rename means no process ever executes a half-written
// binary (the go command does not promise that when it copies into a shared
// GOBIN itself).
func installDistribution(ctx context.Context, goBin, dir, exe string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	target := filepath.Join(dir, exe)
	unlock, err := lockInstall(ctx, filepath.Join(dir, ".install.lock"), target)
	if err != nil {
		return err
	}
	defer unlock()
	if isPinnedDistribution(target) {
		return nil // Installed by another process while we waited.
	}
	tmp, err := os.MkdirTemp(dir, ".install-")
	if err != nil {
		return fmt.Errorf("creating install directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, goBin, "install", DistributionPackage+"@"+DistributionVersion)
	// Run outside any module or workspace so the caller's go.mod and
	// go.work cannot influence the build.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s@%s: %w\n%s", DistributionPackage, DistributionVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, exe), target); err != nil {
		return fmt.Errorf("moving installed registry into place: %w", err)
	}
	return nil
}

// lockInstall takes the install lock at path by creating it exclusively,
// waiting while another process holds it unless target becomes usable
// meanwhile. A lock older than installTimeout is taken to be left by a
// killed process and broken.
func lockInstall(ctx context.Context, path, target string) (unlock func(), err error) {
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("taking install lock: %w", err)
		}
		if isPinnedDistribution(target) {
			return func() {}, nil
		}
		if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) > installTimeout {
			os.Remove(path)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for another process to install the registry: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Distribution is a running CNCF Distribution registry serving plain HTTP on
// 127.0.0.1 with filesystem storage in a test temporary directory.
type Distribution struct {
	// Host is the registry address, "127.0.0.1:PORT".
	Host string
	// Name labels the registry in failure messages, e.g. "staging".
	Name string
	// Blobs is the host blob reads are redirected to, when started with
	// BlobRedirect; nil otherwise.
	Blobs *BlobHost

	proc *regtest.Process
}

// DistributionOptions configures StartDistributionWith.
type DistributionOptions struct {
	// BlobRedirect adds Distribution's redirect storage middleware: every
	// blob GET is answered with a 307 to a BlobHost, a second server on
	// 127.0.0.1 (another port, so another host) serving the storage
	// directory, as registries keeping blobs in object storage do.
	BlobRedirect bool
	// BasicAuth turns on htpasswd authentication: every request needs
	// TestUsername and TestPassword.
	BasicAuth bool
}

// StartDistribution starts a Distribution registry labelled name and waits
// until GET /v2/ answers 200. The registry is killed when the test ends.
func StartDistribution(t testing.TB, name string) *Distribution {
	t.Helper()
	return StartDistributionWith(t, name, DistributionOptions{})
}

// StartDistributionWith starts a Distribution registry labelled name with
// opts and waits until it answers. The registry is killed when the test
// ends.
func StartDistributionWith(t testing.TB, name string, opts DistributionOptions) *Distribution {
	t.Helper()
	bin := DistributionBinary(t)
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	if err := os.Mkdir(storage, 0o755); err != nil {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	cfg := regtest.Config{StorageDir: storage, LogLevel: "info", Secret: "promoter-testenv"}
	var blobs *BlobHost
	if opts.BlobRedirect {
		blobs = NewBlobHost(t, http.FileServer(http.Dir(storage)))
		cfg.RedirectBaseURL = "http://" + blobs.Host() + "/"
	}
	if opts.BasicAuth {
		cfg.HtpasswdPath = filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(cfg.HtpasswdPath, []byte(TestUsername+":"+testPasswordBcrypt+"\n"), 0o600); err != nil {
			t.Fatalf("testenv: %s: %v", name, err)
		}
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := regtest.FreePort()
		if err != nil {
			t.Fatalf("testenv: %s: %v", name, err)
		}
		d, retry, err := launchDistribution(t, bin, name, dir, cfg, port)
		if err == nil {
			d.Blobs = blobs
			return d
		}
		lastErr = err
		if !retry {
			break
		}
		t.Logf("testenv: %s: attempt %d: %v; retrying on another port", name, attempt, err)
	}
	t.Fatalf("testenv: starting Distribution registry %q: %v", name, lastErr)
	return nil
}

// launchDistribution makes one attempt on port. retry reports whether the
// failure was finding the port taken by another process.
// Request logging at info level is kept in memory and shown only on
// failure.
func launchDistribution(t testing.TB, bin, name, dir string, cfg regtest.Config, port int) (d *Distribution, retry bool, err error) {
	t.Helper()
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfgPath := filepath.Join(dir, "config.yml")
	cfg.Host = host
	if err := os.WriteFile(cfgPath, []byte(cfg.Render()), 0o644); err != nil {
		return nil, false, err
	}
	proc, err := regtest.Launch(t.Context(), bin, cfgPath, host, readyTimeout)
	if err != nil {
		return nil, errors.Is(err, regtest.ErrAddrInUse), err
	}
	d = &Distribution{Host: host, Name: name, proc: proc}
	t.Cleanup(d.Stop)
	return d, false, nil
}

// Logs returns everything the registry has written to stdout and stderr so
// far, for debugging failed tests.
func (d *Distribution) Logs() string {
	return d.proc.Logs()
}

// Stop kills the registry, e.g. to test a destination going away mid-run.
// It is safe to call more than once; the test's cleanup calls it too.
func (d *Distribution) Stop() {
	d.proc.Stop()
}
