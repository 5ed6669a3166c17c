package promoter_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promoter"
)

// TestRunSince is pull-request mode from Go: a manifest committed with one
// image, then a second image added in the work tree; Run with WithSince
// promotes only the added one and says what it compared with.
func TestRunSince(t *testing.T) {
	staging, prod := testenv.InProcessRegistry(t), testenv.InProcessRegistry(t)
	d1 := testenv.PushImage(t, staging+"/s/app", 1)
	d2 := testenv.PushImage(t, staging+"/s/app", 2)
	repo := t.TempDir()
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	path := filepath.Join(repo, "promoter-manifest.yaml")
	write := func(entries string) {
		t.Helper()
		yaml := fmt.Sprintf("registries:\n- name: %s/s\n  src: true\n- name: %s/p\nimages:\n- name: app\n  dmap:\n%s", staging, prod, entries)
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("    %q: [\"1.0\"]\n", d1))
	testenv.Git(t, repo, "add", "-A")
	testenv.Git(t, repo, "commit", "-q", "-m", "base")
	write(fmt.Sprintf("    %q: [\"1.0\"]\n    %q: [\"2.0\"]\n", d1, d2))
	in := promoter.Inputs{Files: []string{path}}

	res, err := promoter.Run(t.Context(), in, promoter.WithSince("HEAD"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() || res.Report.Totals.Promoted != 1 || res.Since == nil || res.Since.Added != 1 || res.Since.Valid != 2 {
		t.Fatalf("failed %v, totals %+v, since %+v", res.Failed(), res.Report.Totals, res.Since)
	}
	if got := testenv.Digests(t, prod+"/p/app"); got["2.0"] != d2 || len(got) != 1 {
		t.Errorf("production tags %v, want only 2.0 at %s", got, d2)
	}
	if len(res.Report.Hosts) == 0 {
		t.Error("the report has no traffic counts")
	}

	// The whole manifest, without WithSince: 1.0 is still to copy.
	p, err := promoter.Plan(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Plan.Counts(); c[plan.Copy] != 1 || c[plan.Promoted] != 1 {
		t.Errorf("plan of everything: %v", c)
	}

	// A revision that is not in the clone is the caller's error, typed.
	_, err = promoter.Plan(t.Context(), in, promoter.WithSince("no-such-branch"))
	var re *promoter.RevisionError
	if !errors.As(err, &re) || re.Rev != "no-such-branch" {
		t.Errorf("err = %v, want a *promoter.RevisionError", err)
	}
}

// TestOptionsAreChecked: options that cannot work are errors before any
// registry is asked.
func TestOptionsAreChecked(t *testing.T) {
	client, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	in := promoter.Inputs{Files: []string{filepath.Join(t.TempDir(), "none.yaml")}}
	for name, opts := range map[string][]promoter.Option{
		"no jobs":                      {promoter.WithJobs(0)},
		"client options with a client": {promoter.WithClient(client), promoter.WithHostLimits(access.HostLimits{Concurrency: 2})},
		"bad host limits":              {promoter.WithHostLimits(access.HostLimits{Concurrency: 0})},
		"bad insecure registry":        {promoter.WithInsecureRegistries("not a host")},
	} {
		if _, err := promoter.Plan(t.Context(), in, opts...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
