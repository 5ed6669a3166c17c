package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// TestValidateAndParseOnly checks the offline commands' exit codes: the
// manifests name registries nothing listens on, so any network access
// would fail the run.
func TestValidateAndParseOnly(t *testing.T) {
	e2e(t)
	down := freeHost(t)
	rs := registrySpec{src: down + "/" + stagingPrefix, dests: []string{down + "/" + prodAPrefix, freeHost(t) + "/" + prodBPrefix}}
	clean := entries(
		promo{image: "app", digest: imageDigest(t, 1), tags: []string{"1.0"}},
		promo{image: "digestonly", digest: imageDigest(t, 2)},
	)
	cleanDir, _ := thinDir(t, "clean", rs, clean)
	cleanFile := plainManifest(t, rs, clean)
	bad := entries(promo{image: "app", digest: imageDigest(t, 1), tags: []string{"1.0", "bad tag"}})
	badDir, badImages := thinDir(t, "bad", rs, bad)
	badLine := lineOf(t, badImages, "bad tag")
	missing := filepath.Join(t.TempDir(), "does-not-exist")

	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of stdout+stderr
	}{
		{"validate clean dir", []string{"validate", cleanDir}, 0, []string{"1 manifest, 2 images, 2 digests, 1 tag, 4 edges (4 valid); 0 problems"}},
		{"validate clean dir flag", []string{"validate", "--thin-manifest-dir", cleanDir}, 0, []string{"0 problems"}},
		{"validate plain manifest", []string{"validate", "--manifest", cleanFile}, 0, []string{"0 problems"}},
		{"validate problems", []string{"validate", badDir}, 1, []string{fmt.Sprintf("%s:%d:", badImages, badLine), `invalid tag "bad tag"`, "1 problem (1 error, 0 warnings)"}},
		{"validate missing path", []string{"validate", missing}, 2, []string{missing}},
		{"validate missing thin dir", []string{"validate", "--thin-manifest-dir", missing}, 2, []string{missing}},
		{"validate missing manifest", []string{"validate", "--manifest", missing}, 2, []string{missing}},
		{"validate nothing", []string{"validate"}, 2, []string{"no manifests given"}},
		{"cip parse-only clean dir", []string{"cip", "--thin-manifest-dir", cleanDir, "--parse-only"}, 0, []string{"0 problems"}},
		{"cip parse-only plain manifest", []string{"cip", "--manifest", cleanFile, "--parse-only"}, 0, []string{"0 problems"}},
		{"cip parse-only problems", []string{"cip", "--thin-manifest-dir", badDir, "--parse-only"}, 1, []string{fmt.Sprintf("%s:%d:", badImages, badLine)}},
		{"cip parse-only missing", []string{"cip", "--thin-manifest-dir", missing, "--parse-only"}, 2, []string{missing}},
		{"cip parse-only GCP flag", []string{"cip", "--thin-manifest-dir", cleanDir, "--parse-only", "--use-service-account"}, 0, []string{"notice: --use-service-account"}},
		{"cip unsupported flag", []string{"cip", "--thin-manifest-dir", cleanDir, "--snapshot", "gcr.io/foo"}, 2, []string{"--snapshot"}},
		{"unknown flag", []string{"validate", "--no-such-flag", cleanDir}, 2, []string{"--no-such-flag"}},
		{"bad output format", []string{"run", "-o", "yaml", cleanDir}, 2, []string{"yaml"}},
		{"bad jobs", []string{"plan", "--jobs", "0", cleanDir}, 2, []string{"--jobs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := promoter(t, tc.args...)
			wantExit(t, r, tc.code)
			wantContains(t, "output", r.output(), r, tc.want...)
		})
	}
}

// TestCip runs the kpromo-compatible entry point: without --confirm a dry
// run, with it the same promotion as run --confirm, GCP flags ignored.
func TestCip(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := standardSet(t, regs.src())
	dir, _ := thinDir(t, "sample", regs.spec(), entries(ps...))
	edges := 2 * edgeCount(ps)

	r := promoter(t, "cip", "--thin-manifest-dir", dir)
	wantExit(t, r, 0)
	wantMatch(t, "dry run", r.stdout, r, fmt.Sprintf(`(?m)^  copy\s+%d$`, edges))
	for _, h := range []string{regs.prodA.Host, regs.prodB.Host} {
		if repos := catalog(t, h); len(repos) != 0 {
			t.Fatalf("cip without --confirm wrote to %s: %v", h, repos)
		}
	}

	r = promoter(t, "cip", "--thin-manifest-dir", dir, "--confirm", "--use-service-account", "--key-files", "/nonexistent/key.json")
	wantExit(t, r, 0)
	wantContains(t, "stderr", r.stderr, r, "notice: --use-service-account is a Google Cloud option", "notice: --key-files is a Google Cloud option")
	wantContains(t, "stdout", r.stdout, r, fmt.Sprintf("Run: %d edges promoted, 0 already there, 0 refused, 0 failed", edges))
	wantPromoted(t, regs.src(), regs.dests(), ps...)

	// run --confirm agrees that cip did exactly its job.
	r = promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 0)
	wantContains(t, "stdout", r.stdout, r, fmt.Sprintf("Run: 0 edges promoted, %d already there", edges))
}

// TestPlainManifest promotes from a plain manifest file with --manifest,
// and checks cip on the same file agrees.
func TestPlainManifest(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := standardSet(t, regs.src())
	file := plainManifest(t, regs.spec(), entries(ps...))

	r := promoter(t, "run", "--confirm", "--manifest", file)
	wantExit(t, r, 0)
	wantPromoted(t, regs.src(), regs.dests(), ps...)

	// A new digest added to the file is all a second run promotes.
	more := pushImage(t, regs.src(), "app", 6, "1.1")
	ps = append(ps, more)
	writeFile(t, file, registriesYAML(regs.spec())+"images:\n"+imagesYAML(entries(ps...)))
	r = promoter(t, "cip", "--manifest", file, "--confirm")
	wantExit(t, r, 0)
	wantContains(t, "stdout", r.stdout, r, fmt.Sprintf("Run: 2 edges promoted, %d already there", 2*edgeCount(ps)-2))
	wantPromoted(t, regs.src(), regs.dests(), ps...)
	if !testenv.HasManifest(t, regs.destB()+"/app:1.1") {
		t.Errorf("app:1.1 missing in prod-b")
	}
}

// TestCleanRunLogsNoWarnings: a run where nothing goes wrong prints no
// warnings. CI logs are searched for WARN lines, so a warning on every run
// (for example about the HTTPS probe go-containerregistry makes before
// falling back to plain HTTP on a loopback registry) hides the real ones.
func TestCleanRunLogsNoWarnings(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := []promo{pushImage(t, regs.src(), "app", 1, "1.0")}
	dir, _ := thinDir(t, "sample", regs.spec(), entries(ps...))
	for _, args := range [][]string{{"plan", dir}, {"run", "--confirm", dir}} {
		r := promoter(t, args...)
		wantExit(t, r, 0)
		if strings.Contains(r.stderr, "level=WARN") || strings.Contains(r.stderr, "level=ERROR") {
			t.Errorf("%s on healthy registries logged warnings:\n%s", args[0], r)
		}
	}
	wantPromoted(t, regs.src(), regs.dests(), ps...)
}
