package regtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// ErrAddrInUse marks a Launch that failed because another process holds
// the registry's port; trying again, on another port or after a pause, may
// succeed.
var ErrAddrInUse = errors.New("registry address already in use")

// Config is the configuration of a plain-HTTP Distribution registry with
// filesystem storage, no auth, no deletes and no background upload purging.
type Config struct {
	// Host is the listen address, "127.0.0.1:PORT".
	Host string
	// StorageDir is the filesystem storage root directory.
	StorageDir string
	// LogLevel is the registry's log level, e.g. "info" or "warn"; the
	// separate access log is always off.
	LogLevel string
	// Secret is the HTTP secret the registry signs upload state with.
	Secret string
	// DisableRedirect turns storage redirects off explicitly.
	DisableRedirect bool
	// RedirectBaseURL, when set, adds Distribution's redirect storage
	// middleware: blob reads are answered with a 307 to this URL followed
	// by the blob's path in the storage directory, as registries keeping
	// blobs in object storage do.
	RedirectBaseURL string
	// HtpasswdPath, when set, turns on basic authentication against this
	// htpasswd file (bcrypt hashes).
	HtpasswdPath string
}

// Render returns the configuration as the registry's YAML file.
func (c Config) Render() string {
	redirect := ""
	if c.DisableRedirect {
		redirect = "  redirect:\n    disable: true\n"
	}
	extra := ""
	if c.RedirectBaseURL != "" {
		extra += fmt.Sprintf("middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: %q\n", c.RedirectBaseURL)
	}
	if c.HtpasswdPath != "" {
		extra += fmt.Sprintf("auth:\n  htpasswd:\n    realm: promoter-test\n    path: %q\n", c.HtpasswdPath)
	}
	return fmt.Sprintf(`version: 0.1
log:
  level: %s
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: false
%s  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: %s
%s`, c.LogLevel, c.StorageDir, redirect, c.Host, c.Secret, extra)
}

// Env is this process's environment without REGISTRY_* variables, which
// Distribution would read as configuration overrides, and with OpenTelemetry
// export off so the registry does not dial a collector.
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")
}

// FreePort returns a loopback TCP port that is free right now; another
// process may still bind it before the caller does.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a running Distribution registry child process. It is safe for
// concurrent use.
type Process struct {
	// Host is the registry address, "127.0.0.1:PORT".
	Host string

	logs     *SyncBuffer
	stopOnce sync.Once
	stop     func()
}

// Launch runs `bin serve configPath`, with Env as its environment, and
// waits until the registry at host answers GET /v2/ with 200, for at most
// readyTimeout. On failure the process is killed and the error carries its
// output; the error wraps ErrAddrInUse when the port was taken.
func Launch(ctx context.Context, bin, configPath, host string, readyTimeout time.Duration) (*Process, error) {
	logs := &SyncBuffer{}
	cmd := exec.Command(bin, "serve", configPath)
	cmd.Env = Env()
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // Killing is how it normally ends; the logs say the rest.
		close(exited)
	}()
	p := &Process{Host: host, logs: logs, stop: func() {
		_ = cmd.Process.Kill()
		<-exited
	}}
	if err := WaitReady(ctx, host, exited, readyTimeout); err != nil {
		p.Stop()
		out := logs.String()
		if strings.Contains(out, "address already in use") {
			err = fmt.Errorf("%w: %w", ErrAddrInUse, err)
		}
		return nil, fmt.Errorf("%w\nregistry output:\n%s", err, out)
	}
	return p, nil
}

// Logs returns everything the registry has written to stdout and stderr so
// far, for diagnosing failures.
func (p *Process) Logs() string {
	return p.logs.String()
}

// Stop kills the registry and waits for it to exit. It is safe to call more
// than once.
func (p *Process) Stop() {
	p.stopOnce.Do(p.stop)
}

// WaitReady polls GET http://host/v2/ until it answers 200 (or 401), exited is
// closed (the registry process ended), ctx is done, or timeout passes.
func WaitReady(ctx context.Context, host string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A poll must not outlive the process: if another program holds the
	// port, requests hang in its accept queue instead of failing.
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	// Never an environment proxy, and no connection kept to a registry
	// that may be killed and restarted on the same port.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			// 401: up, with authentication on.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		last = err
		select {
		case <-exited: // Checked first: exiting also cancels ctx.
			return errors.New("registry exited before answering")
		default:
		}
		select {
		case <-exited:
			return errors.New("registry exited before answering")
		case <-ctx.Done():
			return fmt.Errorf("registry not ready after %s: %v", timeout, last)
		case <-tick.C:
		}
	}
}

// SyncBuffer is a bytes.Buffer safe for the concurrent writes of a child
// process's output copier and reads from other goroutines.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns a copy of the contents.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
