package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/cli"
)

// image is one entry of a test manifest: a digest and its tags.
type image struct {
	name   string
	digest v1.Hash
	tags   []string
}

// writeManifest writes a plain promoter manifest promoting images from
// source (a "host/prefix" registry name) to every destination, and returns
// its path.
func writeManifest(t testing.TB, source string, dests []string, images ...image) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "registries:\n- name: %s\n  src: true\n", source)
	for _, d := range dests {
		fmt.Fprintf(&b, "- name: %s\n", d)
	}
	b.WriteString("images:\n")
	byName := map[string][]image{}
	var order []string
	for _, im := range images {
		if _, ok := byName[im.name]; !ok {
			order = append(order, im.name)
		}
		byName[im.name] = append(byName[im.name], im)
	}
	for _, n := range order {
		fmt.Fprintf(&b, "- name: %s\n  dmap:\n", n)
		for _, im := range byName[n] {
			tags, _ := json.Marshal(im.tags)
			if im.tags == nil {
				tags = []byte("[]")
			}
			fmt.Fprintf(&b, "    %q: %s\n", im.digest.String(), tags)
		}
	}
	path := filepath.Join(t.TempDir(), "promoter-manifest.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runReport is the part of the run report (-o json) the scenarios read.
type runReport struct {
	Totals struct {
		Promoted int `json:"promoted"`
		Present  int `json:"present"`
		Refused  int `json:"refused"`
		Failed   int `json:"failed"`
	} `json:"totals"`
	Results []struct {
		Class       string `json:"class"`
		Destination string `json:"destination"`
		Digest      string `json:"digest"`
		Tag         string `json:"tag"`
		Status      string `json:"status"`
		Error       string `json:"error"`
		Reason      string `json:"reason"`
	} `json:"results"`
}

// runResult is one in-process run of the command line.
type runResult struct {
	code           int
	stdout, stderr string
	report         runReport
}

// run executes `promoter run --confirm -o json ARGS...` in-process and
// decodes the report (an empty report when stdout is not one).
func run(ctx context.Context, t testing.TB, args ...string) runResult {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"run", "--confirm", "-o", "json"}, args...)
	code := cli.Execute(ctx, full, &out, &errb)
	r := runResult{code: code, stdout: out.String(), stderr: errb.String()}
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &r.report); err != nil {
			t.Fatalf("run %v: report is not JSON: %v\n%s\nstderr:\n%s", full, err, out.String(), errb.String())
		}
	}
	return r
}

// failures lists the failed and refused results, for messages.
func (r runResult) failures() string {
	var b strings.Builder
	for _, res := range r.report.Results {
		if res.Status == "failed" || res.Status == "refused" {
			fmt.Fprintf(&b, "  %s %s:%s: %s%s\n", res.Status, res.Destination, res.Tag, res.Error, res.Reason)
		}
	}
	return b.String()
}

// mustSucceed fails the test unless the run promoted exactly promoted edges
// and nothing failed or was refused.
func (r runResult) mustSucceed(t testing.TB, promoted int) {
	t.Helper()
	if r.code != 0 || r.report.Totals.Failed != 0 || r.report.Totals.Refused != 0 || r.report.Totals.Promoted != promoted {
		t.Fatalf("run: exit %d, totals %+v, want exit 0 with %d promoted\n%s\nstderr (tail):\n%s",
			r.code, r.report.Totals, promoted, r.failures(), tail(r.stderr, 40))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeDockerConfig writes a docker config.json giving the test
// credentials to each host, points DOCKER_CONFIG at it for the rest of the
// test, and returns it. Tests calling it cannot run in parallel.
func writeDockerConfig(t testing.TB, user, password string, hosts ...string) {
	t.Helper()
	dir := t.TempDir()
	auths := map[string]map[string]string{}
	for _, h := range hosts {
		auths[h] = map[string]string{"username": user, "password": password}
	}
	raw, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}
