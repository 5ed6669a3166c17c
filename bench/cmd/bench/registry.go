package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// registryReadyTimeout bounds how long a started registry may take to answer.
const registryReadyTimeout = 30 * time.Second

// Registry is a CNCF Distribution registry child process on a fixed
// loopback port with filesystem storage, behind a counting proxy. Wipe
// restarts it on the same port with empty storage, so that the proxy, and
// the addresses the tools are given, stay the same.
type Registry struct {
	// Name labels the registry in messages: "staging", "prod1", "prod2".
	Name string

	bin   string
	dir   string
	host  string // the registry's own "127.0.0.1:PORT"
	Proxy *CountingProxy

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *lockedBuffer
}

// StartRegistry starts the registry labelled name with its state in
// dir/name, and a counting proxy in front of it.
func StartRegistry(ctx context.Context, bin, dir, name string) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &Registry{Name: name, bin: bin, dir: filepath.Join(dir, name), host: port}
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	p, err := StartCountingProxy(r.host)
	if err != nil {
		r.Stop()
		return nil, err
	}
	r.Proxy = p
	return r, nil
}

// Host is the address the tools use: the counting proxy's.
func (r *Registry) Host() string { return r.Proxy.Host() }

// DirectHost is the registry's own address, for seeding and verifying
// without touching the counters.
func (r *Registry) DirectHost() string { return r.host }

// Wipe stops the registry, deletes its storage and starts it again, empty.
func (r *Registry) Wipe(ctx context.Context) error {
	r.Stop()
	if err := os.RemoveAll(r.dir); err != nil {
		return fmt.Errorf("%s: wiping storage: %w", r.Name, err)
	}
	if err := r.start(ctx); err != nil {
		return err
	}
	r.Proxy.ResetConnections()
	return nil
}

// Stop kills the registry process, if running.
func (r *Registry) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// Close stops the registry and its proxy.
func (r *Registry) Close() {
	r.Stop()
	if r.Proxy != nil {
		_ = r.Proxy.Close()
	}
}

// Logs returns the registry's output since it was last started.
func (r *Registry) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logs == nil {
		return ""
	}
	return r.logs.String()
}

// start launches the process on r.host and waits until it answers. The
// port was free when chosen; a restart reuses it right after the old
// process died, which Linux allows for listening sockets.
func (r *Registry) start(ctx context.Context) error {
	storage := filepath.Join(r.dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(r.dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(distributionConfig(r.host, storage)), 0o644); err != nil {
		return err
	}
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		logs := &lockedBuffer{}
		cmd := exec.Command(r.bin, "serve", cfg)
		cmd.Env = distributionEnv()
		cmd.Stdout = logs
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("%s: starting %s: %w", r.Name, r.bin, err)
		}
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait() // Killing is how it normally ends.
			close(done)
		}()
		err := waitReady(ctx, r.host, done)
		if err == nil {
			r.mu.Lock()
			r.cmd, r.done, r.logs = cmd, done, logs
			r.mu.Unlock()
			return nil
		}
		_ = cmd.Process.Kill()
		<-done
		lastErr = fmt.Errorf("%s: %w\nregistry output:\n%s", r.Name, err, logs.String())
		if !strings.Contains(logs.String(), "address already in use") {
			break
		}
		// The old process's socket may linger a moment after a kill.
		time.Sleep(100 * time.Millisecond)
	}
	return lastErr
}

// distributionConfig renders the registry configuration: no auth, no
// deletes, no upload purging, no redirects, warnings only in the log.
func distributionConfig(host, storage string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: false
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: promoter-bench
`, storage, host)
}

// distributionEnv is this process's environment without REGISTRY_*
// variables, which Distribution reads as configuration overrides, and with
// OpenTelemetry export off so the registry does not dial a collector.
func distributionEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")
}

// waitReady polls GET /v2/ until it answers 200, the process exits, or
// registryReadyTimeout passes.
func waitReady(ctx context.Context, host string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, registryReadyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		last = err
		select {
		case <-exited:
			return errors.New("registry exited before answering")
		case <-ctx.Done():
			return fmt.Errorf("registry not ready after %s: %v", registryReadyTimeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePort returns a loopback "127.0.0.1:PORT" that is free right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns a copy of the contents.
func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
