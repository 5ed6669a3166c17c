package cli_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/internal/cli"
	"github.com/imgpromoter/promoter/internal/testenv"
)

// promotionFixture is a staging registry with six images, a production
// registry, and a plain manifest promoting them all.
func promotionFixture(t *testing.T) (manifestPath, prod string) {
	t.Helper()
	staging := testenv.InProcessRegistry(t)
	prod = testenv.InProcessRegistry(t)
	var images strings.Builder
	for i := range 6 {
		d := testenv.PushImage(t, fmt.Sprintf("%s/img%d:1.0", staging, i), int64(100+i))
		fmt.Fprintf(&images, "- name: img%d\n  dmap:\n    %q: [\"1.0\"]\n", i, d)
	}
	manifestPath = filepath.Join(t.TempDir(), "promoter-manifest.yaml")
	yaml := fmt.Sprintf("registries:\n- name: %s\n  src: true\n- name: %s\nimages:\n%s", staging, prod, images.String())
	if err := os.WriteFile(manifestPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return manifestPath, prod
}

// TestRunShardsPushMetrics: two shards of one run push their metrics to a
// real Pushgateway under one job; both groups are there afterwards and
// their promoted edges add up to the whole promotion.
func TestRunShardsPushMetrics(t *testing.T) {
	path, prod := promotionFixture(t)
	gw := testenv.StartPushgateway(t)
	for i := range 2 {
		code, _, errb := run(t, "run", "--confirm", "--quiet", "--shard-count", "2", "--shard-index", fmt.Sprint(i),
			"--metrics-push", gw, "--metrics-job", "promote-prod", path)
		if code != cli.ExitOK {
			t.Fatalf("shard %d: exit %d\n%s", i, code, errb)
		}
		if strings.Contains(errb, "] ") && strings.Contains(errb, " ok") {
			t.Errorf("shard %d: --quiet printed progress:\n%s", i, errb)
		}
	}
	resp, err := http.Get(gw + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	re := regexp.MustCompile(`promoter_edges_total\{command="run",destination="` + regexp.QuoteMeta(prod) + `",instance="",job="promote-prod",result="promoted",shard="(\d)"\} (\d+)`)
	total := 0
	shards := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		shards[m[1]] = true
		var n int
		fmt.Sscan(m[2], &n)
		total += n
	}
	if len(shards) != 2 || total != 6 {
		t.Errorf("pushgateway: shards %v with %d promoted edges in all, want shards 0 and 1 with 6:\n%s", shards, total, grepLines(string(body), "promoter_edges_total"))
	}
	for _, s := range []string{"0", "1"} {
		if !strings.Contains(string(body), `promoter_run_success{command="run",instance="",job="promote-prod",shard="`+s+`"} 1`) {
			t.Errorf("no success recorded for shard %s", s)
		}
	}
	if !regexp.MustCompile(`promoter_registry_requests_total\{code="201",command="run",instance="",job="promote-prod",method="PUT",registry="` + regexp.QuoteMeta(prod) + `",shard="0"\} [1-9]`).Match(body) {
		t.Errorf("no PUT 201 requests to production recorded:\n%s", grepLines(string(body), "promoter_registry_requests_total"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRunProgressOnTerminal: run --confirm -o json with standard error on a
// real pseudo-terminal: the progress is drawn in place there, and standard
// output is the JSON report alone.
func TestRunProgressOnTerminal(t *testing.T) {
	path, _ := promotionFixture(t)
	code, out, term := onTerminal(t, "run", "--confirm", "-o", "json", path)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, term)
	}
	var rep struct{ Totals struct{ Promoted int } }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Totals.Promoted != 6 {
		t.Errorf("standard output: %v, %+v\n%q", err, rep, out)
	}
	if !strings.Contains(term, "\r\x1b[Krun: 6/6 images (100%)") {
		t.Errorf("no in-place progress on the terminal:\n%q", term)
	}
	if strings.Contains(term, "] ") && strings.Contains(term, " ok\r\n") {
		t.Errorf("per-image lines on a terminal (only failures belong there):\n%q", term)
	}
}
