package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/imgpromoter/promoter/internal/regtest"
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
	proc *regtest.Process // the last process started; Stop is idempotent
}

// StartRegistry starts the registry labelled name with its state in
// dir/name, and a counting proxy in front of it.
func StartRegistry(ctx context.Context, bin, dir, name string) (*Registry, error) {
	port, err := regtest.FreePort()
	if err != nil {
		return nil, err
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	r := &Registry{Name: name, bin: bin, dir: filepath.Join(dir, name), host: host}
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	p, err := StartCountingProxy(r.host, name == "staging")
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
	if r.proc != nil {
		r.proc.Stop()
	}
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
	if r.proc == nil {
		return ""
	}
	return r.proc.Logs()
}

// start launches the process on r.host and waits until it answers. The
// port was free when chosen; a restart reuses it right after the old
// process died, which Linux allows for listening sockets.
func (r *Registry) start(ctx context.Context) error {
	storage := filepath.Join(r.dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return err
	}
	cfgPath := filepath.Join(r.dir, "config.yml")
	// Warnings only in the log; redirects off so that every byte goes
	// through the counting proxy.
	cfg := regtest.Config{Host: r.host, StorageDir: storage, LogLevel: "warn", Secret: "promoter-bench", DisableRedirect: true}
	if err := os.WriteFile(cfgPath, []byte(cfg.Render()), 0o644); err != nil {
		return err
	}
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		proc, err := regtest.Launch(ctx, r.bin, cfgPath, r.host, registryReadyTimeout)
		if err == nil {
			r.mu.Lock()
			r.proc = proc
			r.mu.Unlock()
			return nil
		}
		lastErr = fmt.Errorf("%s: %w", r.Name, err)
		if !errors.Is(err, regtest.ErrAddrInUse) {
			break
		}
		// The old process's socket may linger a moment after a kill.
		time.Sleep(100 * time.Millisecond)
	}
	return lastErr
}
