package metrics_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/metrics"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sampleRun(edges int, ok bool) *metrics.Run {
	r := metrics.NewRun("run")
	r.Edges("promoted", "prod.example", edges)
	r.Edges("failed", "mirror.example", 1)
	r.Bytes("read", "staging.example", 1000)
	r.Bytes("write", "prod.example", 1000)
	r.Request("prod.example", "PUT", 201, 20*time.Millisecond)
	r.Request("prod.example", "HEAD", 429, 5*time.Millisecond)
	r.Retry("prod.example")
	r.Finish(ok, 3*time.Second)
	return r
}

// TestPushgatewayShardsCoexist pushes two shards' runs of one job to a real
// Pushgateway: both groups are there afterwards, each with its own figures,
// and a failed later run of one shard keeps that shard's last success.
func TestPushgatewayShardsCoexist(t *testing.T) {
	gw := testenv.StartPushgateway(t)
	ctx := t.Context()
	if err := sampleRun(3, true).Push(ctx, gw, "promoter-run", "0"); err != nil {
		t.Fatal(err)
	}
	if err := sampleRun(5, true).Push(ctx, gw, "promoter-run", "1"); err != nil {
		t.Fatal(err)
	}
	got := scrape(t, gw)
	for _, want := range []string{
		`promoter_edges_total{command="run",destination="prod.example",instance="",job="promoter-run",result="promoted",shard="0"} 3`,
		`promoter_edges_total{command="run",destination="prod.example",instance="",job="promoter-run",result="promoted",shard="1"} 5`,
		`promoter_registry_rate_limited_total{command="run",instance="",job="promoter-run",registry="prod.example",shard="1"} 1`,
		`promoter_registry_requests_total{code="201",command="run",instance="",job="promoter-run",method="PUT",registry="prod.example",shard="0"} 1`,
		`promoter_bytes_total{command="run",direction="write",instance="",job="promoter-run",registry="prod.example",shard="0"} 1000`,
		`promoter_run_success{command="run",instance="",job="promoter-run",shard="1"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("pushgateway lacks\n  %s", want)
		}
	}
	before := lastSuccess(t, got, "1")
	if before == "" {
		t.Fatalf("no last success for shard 1:\n%s", got)
	}
	// Shard 1 runs again and fails: its success timestamp stays.
	if err := sampleRun(1, false).Push(ctx, gw, "promoter-run", "1"); err != nil {
		t.Fatal(err)
	}
	got = scrape(t, gw)
	if after := lastSuccess(t, got, "1"); after != before {
		t.Errorf("last success of shard 1 went from %q to %q after a failed run", before, after)
	}
	if !strings.Contains(got, `promoter_run_success{command="run",instance="",job="promoter-run",shard="1"} 0`) {
		t.Error("the failed run is not recorded as such")
	}
	if !strings.Contains(got, `promoter_edges_total{command="run",destination="prod.example",instance="",job="promoter-run",result="promoted",shard="0"} 3`) {
		t.Error("shard 0's metrics were overwritten by shard 1's push")
	}
}

func lastSuccess(t *testing.T, exposition, shard string) string {
	t.Helper()
	prefix := fmt.Sprintf(`promoter_last_success_timestamp_seconds{command="run",instance="",job="promoter-run",shard=%q} `, shard)
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return ""
}

func TestTextfileIsWrittenWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "promoter.prom")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sampleRun(2, true).WriteTextfile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"# TYPE promoter_edges_total counter",
		`promoter_edges_total{command="run",destination="prod.example",result="promoted"} 2`,
		`promoter_registry_request_duration_seconds_count{command="run",method="HEAD",registry="prod.example"} 1`,
		`promoter_run_duration_seconds{command="run"} 3`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("textfile lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "old") {
		t.Error("the old content survived")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in the directory, want 1 (no temporary file left)", len(entries))
	}
}
