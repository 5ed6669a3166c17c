package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// TestTransientFaults shows that retryable registry errors do not fail the
// run: on prod-b 500s on blob uploads and a 429 with Retry-After on a
// manifest PUT; on staging a 503 on a manifest GET and blob downloads cut
// off mid-body.
func TestTransientFaults(t *testing.T) {
	e2e(t)
	tests := []struct {
		name string
		// side is the registry behind the proxy: "staging" or "prod-b".
		side   string
		rules  []testenv.FaultRule
		faults int
	}{
		{"prod-b 500 on uploads and 429 on a manifest PUT", "prod-b", []testenv.FaultRule{
			{Path: testenv.PathUpload, First: 1, Last: 2, Status: http.StatusInternalServerError},
			{Method: http.MethodPut, Path: testenv.PathManifest, Status: http.StatusTooManyRequests, RetryAfter: time.Second},
		}, 3},
		{"staging 503 on a manifest GET and truncated blobs", "staging", []testenv.FaultRule{
			{Method: http.MethodGet, Path: testenv.PathManifest, Status: http.StatusServiceUnavailable},
			{Method: http.MethodGet, Path: testenv.PathBlob, First: 1, Last: 2, Kind: testenv.FaultTruncate, TruncateAfter: 100},
		}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			regs := startRegistries(t)
			ps := standardSet(t, regs.src())
			rs := regs.spec()
			var proxy *testenv.FaultProxy
			switch tc.side {
			case "prod-b":
				proxy = testenv.NewFaultProxy(t, regs.prodB.Host, tc.rules...)
				rs.dests[1] = proxy.Host() + "/" + prodBPrefix
			case "staging":
				proxy = testenv.NewFaultProxy(t, regs.staging.Host, tc.rules...)
				rs.src = proxy.Host() + "/" + stagingPrefix
			}
			dir, _ := thinDir(t, "sample", rs, entries(ps...))

			r := promoter(t, "run", "--confirm", dir)
			wantExit(t, r, 0)
			if s := proxy.Stats(); s.Faults != tc.faults {
				t.Errorf("the proxy injected %d faults, want %d; stats %+v", s.Faults, tc.faults, s)
			}
			wantContains(t, "stdout", r.stdout, r, fmt.Sprintf("Run: %d edges promoted, 0 already there, 0 refused, 0 failed", 2*edgeCount(ps)))
			// Read back from the registries themselves, not through the proxy.
			wantPromoted(t, regs.src(), regs.dests(), ps...)
		})
	}
}

// TestDestinationDown shows that a destination dropping every connection
// fails only its own edges; a rerun once it is back finishes the job.
func TestDestinationDown(t *testing.T) {
	e2e(t)
	tests := []struct {
		name  string
		rules []testenv.FaultRule
	}{
		{"all requests dropped", []testenv.FaultRule{{Kind: testenv.FaultDrop, Last: math.MaxInt}}},
		{"writes dropped", []testenv.FaultRule{
			{Method: http.MethodPost, Path: testenv.PathUpload, Kind: testenv.FaultDrop, Last: math.MaxInt},
			{Method: http.MethodPut, Kind: testenv.FaultDrop, Last: math.MaxInt},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			regs := startRegistries(t)
			ps := standardSet(t, regs.src())
			faulty := testenv.NewFaultProxy(t, regs.prodB.Host, tc.rules...)
			g := newGate(t, faulty.Host())
			gateDest := g.host + "/" + prodBPrefix
			rs := registrySpec{src: regs.src(), dests: []string{regs.destA(), gateDest}}
			dir, _ := thinDir(t, "sample", rs, entries(ps...))
			perDest := edgeCount(ps)

			r := promoter(t, "run", "--confirm", dir)
			wantExit(t, r, 1)
			if faulty.Stats().Faults == 0 {
				t.Fatalf("no request reached the faulty proxy\n%s", r)
			}
			wantContains(t, "stdout", r.stdout, r, fmt.Sprintf("Run: %d edges promoted, 0 already there, 0 refused, %d failed", perDest, perDest))
			for _, p := range ps {
				wantMatch(t, "stdout", r.stdout, r, `(?m)^failed\s+`+regexp.QuoteMeta(regs.src()+"/"+p.image+"@"+p.digest.String()+" -> "+gateDest+"/"+p.image))
			}
			wantPromoted(t, regs.src(), []string{regs.destA()}, ps...)
			noPartialTags(t, regs.prodB.Host)

			// The outage ends: the same registry name reaches prod-b directly.
			g.setUpstream(regs.prodB.Host)
			r = promoter(t, "run", "--confirm", dir)
			wantExit(t, r, 0)
			wantContains(t, "stdout", r.stdout, r, fmt.Sprintf("Run: %d edges promoted, %d already there, 0 refused, 0 failed", perDest, perDest))
			wantPromoted(t, regs.src(), regs.dests(), ps...)
		})
	}
}

// noPartialTags checks that every tag in the registry resolves to a
// complete image (every child manifest and blob present), and so does
// every manifest the catalog leads to.
func noPartialTags(t *testing.T, host string) {
	t.Helper()
	for _, repo := range catalog(t, host) {
		r := parseRepo(t, host+"/"+repo)
		tags, dangling := resolvedTags(t, r.String())
		for tag := range tags {
			complete(t, r.Tag(tag))
		}
		if len(dangling) > 0 {
			t.Logf("%s: tags listed but not resolving: %v", r, dangling)
		}
	}
}

// TestInterrupt sends SIGINT to a run in progress: the process stops
// promptly, leaves no tag on an incomplete image, and a rerun finishes.
func TestInterrupt(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	var ps []promo
	for i := range 20 {
		ps = append(ps, pushImage(t, regs.src(), fmt.Sprintf("img%02d", i), int64(1000+i), "1.0", "latest"))
	}
	ps = append(ps, pushIndex(t, regs.src(), "multi", 200, "v1"), pushIndex(t, regs.src(), "multi2", 201, "v1"))
	// Slow destinations: every request waits, so the run takes seconds.
	ga, gb := newGate(t, regs.prodA.Host), newGate(t, regs.prodB.Host)
	ga.setDelay(100 * time.Millisecond)
	gb.setDelay(100 * time.Millisecond)
	rs := registrySpec{src: regs.src(), dests: []string{ga.host + "/" + prodAPrefix, gb.host + "/" + prodBPrefix}}
	dir, _ := thinDir(t, "sample", rs, entries(ps...))
	items := 2 * len(ps)

	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	args := []string{"run", "--confirm", dir}
	cmd := promoterCmd(ctx, t, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := newLineWatcher(`^\[\d+/\d+ `)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	consumed := make(chan struct{})
	go func() {
		stderr.consume(stderrPipe)
		close(consumed)
	}()
	current := func(code int) result {
		return result{args: args, code: code, stdout: stdout.String(), stderr: stderr.String()}
	}

	select {
	case line := <-stderr.found:
		t.Logf("first progress line: %s", line)
	case <-consumed:
		_ = cmd.Wait()
		t.Fatalf("the run ended before any progress line\n%s", current(cmd.ProcessState.ExitCode()))
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-consumed
		_ = cmd.Wait()
		t.Fatalf("no progress line within a minute\n%s", current(-1))
	}
	sent := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("sending SIGINT: %v", err)
	}
	waited := make(chan error, 1)
	go func() {
		<-consumed
		waited <- cmd.Wait()
	}()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-waited
		t.Fatalf("still running 30s after SIGINT\n%s", current(-1))
	}
	elapsed := time.Since(sent)
	r := current(cmd.ProcessState.ExitCode())
	t.Logf("exited %d, %s after SIGINT", r.code, elapsed.Round(time.Millisecond))
	if r.code == 0 {
		t.Fatalf("the interrupted run exited 0; want non-zero (was the workload too small to interrupt?)\n%s", r)
	}
	done := len(regexp.MustCompile(`(?m)^\[\d+/\d+ `).FindAllString(r.stderr, -1))
	if done >= items {
		t.Errorf("all %d items finished before the interrupt took effect; the test did not interrupt anything\n%s", items, r)
	}
	wantContains(t, "stderr", r.stderr, r, "interrupted")

	// Nothing half-done is visible: every tag resolves to the digest asked
	// for and to a complete image; every digest present is complete.
	want := map[string]v1.Hash{}
	for _, p := range ps {
		for _, tag := range p.tags {
			want[p.image+":"+tag] = p.digest
		}
	}
	present := 0
	for _, host := range []string{regs.prodA.Host, regs.prodB.Host} {
		for _, repo := range catalog(t, host) {
			image := strings.TrimPrefix(repo, repoPrefix(host, regs))
			tags, dangling := resolvedTags(t, host+"/"+repo)
			if len(dangling) > 0 {
				// Not an incomplete image: no manifest at all. The rerun
				// below must repair them (wantPromoted resolves every tag).
				t.Logf("%s/%s: tags listed but not resolving after the interrupt: %v", host, repo, dangling)
			}
			for tag, d := range tags {
				if want[image+":"+tag] != d {
					t.Errorf("%s/%s:%s points at %s, want %s", host, repo, tag, d, want[image+":"+tag])
				}
				complete(t, parseRepo(t, host+"/"+repo).Tag(tag))
				present++
			}
		}
		for _, p := range ps {
			ref := parseRepo(t, host+"/"+repoPrefix(host, regs)+p.image).Digest(p.digest.String())
			if testenv.HasManifest(t, ref.String()) {
				complete(t, ref)
			}
		}
	}
	t.Logf("%d of %d items reported done, %d tags present after the interrupt", done, items, present)

	ga.setDelay(0)
	gb.setDelay(0)
	r = promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 0)
	wantPromoted(t, regs.src(), regs.dests(), ps...)
}

// repoPrefix is the destination path prefix of a production host.
func repoPrefix(host string, regs registries) string {
	if host == regs.prodA.Host {
		return prodAPrefix + "/"
	}
	return prodBPrefix + "/"
}

// TestInterruptWhileRetrying sends SIGINT while the promoter is retrying a
// destination that drops every connection: the retry backoff must not keep
// the process alive.
func TestInterruptWhileRetrying(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := []promo{pushImage(t, regs.src(), "app", 1, "1.0")}
	down := testenv.NewFaultProxy(t, regs.prodB.Host, testenv.FaultRule{Kind: testenv.FaultDrop, Last: math.MaxInt})
	rs := registrySpec{src: regs.src(), dests: []string{regs.destA(), down.Host() + "/" + prodBPrefix}}
	dir, _ := thinDir(t, "sample", rs, entries(ps...))

	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	args := []string{"run", "--confirm", dir}
	cmd := promoterCmd(ctx, t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the promoter is into its retries (the third attempt has
	// been dropped, so it is sleeping before the fourth).
	deadline := time.Now().Add(30 * time.Second)
	for down.Stats().Faults < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	sent := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	elapsed := time.Since(sent)
	r := result{args: args, code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("exited %d, %s after SIGINT (%d dropped requests)", r.code, elapsed.Round(time.Millisecond), down.Stats().Faults)
	if r.code == 0 {
		t.Errorf("interrupted run exited 0\n%s", r)
	}
	if elapsed > 2*time.Second {
		t.Errorf("the process took %s to exit after SIGINT while retrying; want it to stop waiting at once\n%s", elapsed.Round(time.Millisecond), r)
	}
}
