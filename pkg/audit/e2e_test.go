package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/regtest"
	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/audit"
)

const testToken = "audit-e2e-token-0123456789"

// auditProc is a running `promoter audit serve`.
type auditProc struct {
	cmd  *exec.Cmd
	out  *regtest.SyncBuffer
	addr string
	done chan struct{}
}

func startAudit(t *testing.T, addr string, args ...string) *auditProc {
	t.Helper()
	bin, err := testenv.PromoterBinary()
	if err != nil {
		t.Fatal(err)
	}
	out := &regtest.SyncBuffer{}
	cmd := exec.Command(bin, append([]string{"audit", "serve", "--listen", addr}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &auditProc{cmd: cmd, out: out, addr: addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + audit.RouteHealth)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("audit serve exited:\n%s", out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("audit serve did not answer on %s:\n%s", addr, out)
	return nil
}

// kill is kill -9.
func (p *auditProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// findingLines returns the JSON finding lines the server printed.
func (p *auditProc) findingLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(p.out.String(), "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("finding line %q: %v", l, err)
		}
		if m["msg"] == "finding" {
			out = append(out, m)
		}
	}
	return out
}

func getFindings(t *testing.T, addr, state string) []audit.Finding {
	t.Helper()
	resp, err := http.Get("http://" + addr + audit.RouteFindings + "?state=" + state)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Findings []audit.Finding }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Findings
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := regtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// startNotifyingDistribution starts a Distribution registry with deletes
// enabled and notifications sent to the audit server at auditAddr.
func startNotifyingDistribution(t *testing.T, auditAddr string) *regtest.Process {
	t.Helper()
	bin := testenv.DistributionBinary(t)
	dir := t.TempDir()
	host := freeAddr(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: audit-e2e
notifications:
  events:
    includereferences: true
  endpoints:
    - name: audit
      url: http://%s%s
      headers:
        Authorization: [Bearer %s]
      timeout: 2s
      threshold: 3
      backoff: 200ms
`, filepath.Join(dir, "storage"), host, auditAddr, audit.RouteDistribution, testToken)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	proc, err := regtest.Launch(t.Context(), bin, cfgPath, host, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Stop)
	return proc
}

func deleteManifest(t *testing.T, host, repo, ref string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+host+"/v2/"+repo+"/manifests/"+ref, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE %s:%s: %s", repo, ref, resp.Status)
	}
}

type kindSubject struct{ Kind, Subject string }

func subjects(fs []audit.Finding) []kindSubject {
	var out []kindSubject
	for _, f := range fs {
		s := f.Repository
		if f.Tag != "" {
			s += ":" + f.Tag
		} else {
			s += "@" + f.Digest
		}
		out = append(out, kindSubject{string(f.Kind), s})
	}
	slices.SortFunc(out, func(a, b kindSubject) int { return strings.Compare(a.Subject+a.Kind, b.Subject+b.Kind) })
	return out
}

func digestOf(t *testing.T, img interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestAuditAgainstDistribution runs audit serve next to a real Distribution
// registry that notifies it: an unreviewed tag and the delete of a promoted
// tag are findings, the push of a reviewed multi-platform image (children
// pushed first, by digest) is not; an event sent while the server is down
// arrives after its restart (Distribution retries); a replayed body is
// stored once.
func TestAuditAgainstDistribution(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	promoted := testenv.BuildImage(t, testenv.ImageSpec{Seed: 1})
	reviewed := testenv.BuildIndex(t, 2)
	reviewedDigest := digestOf(t, reviewed)
	testenv.PushIndex(t, staging+"/app", 2) // where the audit can read the reviewed index's children before prod has it

	auditAddr := freeAddr(t)
	reg := startNotifyingDistribution(t, auditAddr)
	prod := reg.Host
	dir := t.TempDir()
	manifestPath := filepath.Join(dir, "promoter-manifest.yaml")
	writeFile(t, manifestPath, fmt.Sprintf(`registries:
- name: %s
  src: true
- name: %s
images:
- name: app
  dmap:
    %q: ["1.0"]
    %q: ["2.0"]
`, staging, prod, digestOf(t, promoted), reviewedDigest))
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, "# rotated\nold-token-abcdefghijklmnop\n"+testToken+"\n")
	db := filepath.Join(dir, "audit.db")
	args := []string{"--log-level", "debug", "--registry", prod, "--db", db, "--token-file", tokens, "--settle", "0", "--reconcile", "0", manifestPath}

	srv := startAudit(t, auditAddr, args...)
	testenv.PushImage(t, prod+"/app:1.0", 1)    // promoted: expected
	testenv.PushImage(t, prod+"/app:evil", 666) // unreviewed tag
	deleteManifest(t, prod, "app", "1.0")       // delete of a promoted tag
	testenv.PushIndex(t, prod+"/app:2.0", 2)    // reviewed index: children first, then the tag

	want := []kindSubject{
		{"missing-tag", prod + "/app:1.0"},
		{"unexpected-tag", prod + "/app:evil"},
	}
	settled := func() bool {
		st := openStore(t, db)
		defer st.Close()
		evs, err := st.Events(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tagged := 0
		for _, e := range evs {
			if e.ProcessedAt == "" {
				return false
			}
			if e.Tag == "2.0" {
				tagged++
			}
		}
		return tagged > 0 // the last push has arrived and everything is judged
	}
	waitFor(t, "the events of the four changes to be judged", 60*time.Second, settled)
	if got := subjects(getFindings(t, auditAddr, "open")); !slices.Equal(got, want) {
		st := openStore(t, db)
		evs, _ := st.Events(t.Context())
		st.Close()
		var b strings.Builder
		for _, e := range evs {
			fmt.Fprintf(&b, "%+v\n", e)
		}
		t.Fatalf("open findings:\n got %v\nwant %v\nevents:\n%s\nserver output:\n%s", got, want, &b, srv.out)
	}
	if n := len(srv.findingLines(t)); n != 2 {
		t.Errorf("%d JSON finding lines, want 2:\n%s", n, srv.out)
	}

	// The server goes away; a push meanwhile is retried by the registry
	// until the restarted server has it.
	srv.kill()
	testenv.PushImage(t, prod+"/app:late", 777)
	time.Sleep(time.Second) // the registry tries and fails at least once
	srv = startAudit(t, auditAddr, args...)
	want = append(want, kindSubject{"unexpected-tag", prod + "/app:late"})
	slices.SortFunc(want, func(a, b kindSubject) int { return strings.Compare(a.Subject+a.Kind, b.Subject+b.Kind) })
	waitFor(t, "the retried event's finding", 60*time.Second, func() bool { return len(getFindings(t, auditAddr, "open")) == 3 })
	if got := subjects(getFindings(t, auditAddr, "open")); !slices.Equal(got, want) {
		t.Fatalf("open findings after restart:\n got %v\nwant %v", got, want)
	}

	// A replayed body is stored once.
	body := fmt.Sprintf(`{"events":[{"id":"replay-1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"repository":"app","url":"http://%s/v2/app/manifests/%s","tag":"1.0"}}]}`,
		digestOf(t, promoted), prod, digestOf(t, promoted))
	for range 3 {
		postEvents(t, auditAddr, audit.RouteDistribution, audit.DistributionMediaType, body, http.StatusAccepted)
	}
	st := openStore(t, db)
	evs, err := st.Events(t.Context())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.ID == "replay-1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("replayed event stored %d times, want 1", n)
	}
}

// TestAuditSurvivesKill9 stores events that are not judged yet (the
// settle delay holds them), kills the server with SIGKILL, restarts it,
// and checks that every stored event is then judged exactly once.
func TestAuditSurvivesKill9(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	listed := testenv.PushImage(t, prod+"/app:1.0", 1)
	testenv.PushImage(t, prod+"/app:x1", 11)
	testenv.PushImage(t, prod+"/app:x2", 12)
	dir := t.TempDir()
	manifestPath := filepath.Join(dir, "promoter-manifest.yaml")
	writeFile(t, manifestPath, fmt.Sprintf("registries:\n- name: %s\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n", staging, prod, listed))
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, testToken+"\n")
	db := filepath.Join(dir, "audit.db")
	addr := freeAddr(t)
	base := []string{"--registry", prod, "--db", db, "--token-file", tokens, "--reconcile", "0", manifestPath}

	srv := startAudit(t, addr, append(base, "--settle", "1h")...)
	body := `{"events":[
 {"id":"k1","action":"push","repository":"app","tag":"x1"},
 {"id":"k2","action":"push","repository":"app","tag":"x2"},
 {"id":"k3","action":"push","repository":"app","tag":"1.0"},
 {"id":"k4","action":"delete","repository":"app","tag":"1.0"}]}`
	postEvents(t, addr, audit.RouteGeneric, "application/json", body, http.StatusAccepted)
	st := openStore(t, db)
	pending, err := st.Pending(t.Context(), 0, "9999", 100)
	st.Close()
	if err != nil || len(pending) != 4 {
		t.Fatalf("pending before the kill: %d events, %v; want 4", len(pending), err)
	}
	srv.kill()

	srv = startAudit(t, addr, append(base, "--settle", "0")...)
	waitFor(t, "the stored events to be judged", 30*time.Second, func() bool {
		st := openStore(t, db)
		defer st.Close()
		p, err := st.Pending(t.Context(), 0, "9999", 100)
		return err == nil && len(p) == 0
	})
	// Once more, to be sure nothing is judged twice after a second start.
	srv.kill()
	srv = startAudit(t, addr, append(base, "--settle", "0")...)
	time.Sleep(500 * time.Millisecond)
	st = openStore(t, db)
	evs, err := st.Events(t.Context())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Processed != 1 {
			t.Errorf("event %s processed %d times, want exactly 1", e.ID, e.Processed)
		}
	}
	got := subjects(getFindings(t, addr, "open"))
	want := []kindSubject{{"missing-tag", prod + "/app:1.0"}, {"unexpected-tag", prod + "/app:x1"}, {"unexpected-tag", prod + "/app:x2"}}
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n got %v\nwant %v", got, want)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T, path string) *audit.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := audit.OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func postEvents(t *testing.T, addr, route, contentType, body string, want int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+route, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %s, want %d", route, resp.Status, want)
	}
}

// TestAuditPullsManifestsOnSIGHUP: the manifests live in a git clone; a
// reviewed change merged upstream is pulled on SIGHUP, and a later event
// about the newly listed tag resolves the finding it had opened.
func TestAuditPullsManifestsOnSIGHUP(t *testing.T) {
	staging := testenv.InProcessRegistry(t)
	prod := testenv.InProcessRegistry(t)
	listed := testenv.PushImage(t, prod+"/app:1.0", 1)
	newer := testenv.PushImage(t, prod+"/app:1.1", 2)
	root := t.TempDir()
	upstream, clone := filepath.Join(root, "upstream"), filepath.Join(root, "clone")
	if err := os.Mkdir(upstream, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, upstream, "init", "-q", "-b", "main")
	manifest := func(extra string) string {
		return fmt.Sprintf("registries:\n- name: %s\n  src: true\n- name: %s\nimages:\n- name: app\n  dmap:\n    %q: [\"1.0\"]\n%s", staging, prod, listed, extra)
	}
	writeFile(t, filepath.Join(upstream, "promoter-manifest.yaml"), manifest(""))
	testenv.Git(t, upstream, "add", ".")
	testenv.Git(t, upstream, "commit", "-q", "-m", "first")
	testenv.Git(t, root, "clone", "-q", upstream, clone)
	tokens := filepath.Join(root, "tokens")
	writeFile(t, tokens, testToken+"\n")
	addr := freeAddr(t)
	srv := startAudit(t, addr, "--registry", prod, "--db", filepath.Join(root, "a.db"), "--token-file", tokens, "--settle", "0",
		"--reconcile", "0", "--git-dir", clone, "--git-pull-interval", "1h", filepath.Join(clone, "promoter-manifest.yaml"))

	postEvents(t, addr, audit.RouteGeneric, "application/json", `{"events":[{"id":"h1","action":"push","repository":"app","tag":"1.1"}]}`, http.StatusAccepted)
	waitFor(t, "the unexpected tag's finding", 20*time.Second, func() bool { return len(getFindings(t, addr, "open")) == 1 })

	writeFile(t, filepath.Join(upstream, "promoter-manifest.yaml"), manifest(fmt.Sprintf("    %q: [\"1.1\"]\n", newer)))
	testenv.Git(t, upstream, "commit", "-q", "-am", "promote 1.1")
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the manifests to be re-read", 20*time.Second, func() bool { return strings.Contains(srv.out.String(), "manifests re-read") })
	postEvents(t, addr, audit.RouteGeneric, "application/json", `{"events":[{"id":"h2","action":"push","repository":"app","tag":"1.1"}]}`, http.StatusAccepted)
	waitFor(t, "the finding to be resolved", 20*time.Second, func() bool { return len(getFindings(t, addr, "open")) == 0 })
	if r := getFindings(t, addr, "resolved"); len(r) != 1 || r[0].Tag != "1.1" || r[0].ResolvedAt == "" {
		t.Errorf("resolved findings: %+v", r)
	}
}
