package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// standardSet pushes the usual mix to staging: single-arch images with
// tags, a multi-arch index, a digest-only image and a nested image name.
func standardSet(t *testing.T, src string) []promo {
	t.Helper()
	return []promo{
		pushImage(t, src, "app", 1, "1.0", "latest"),
		pushIndex(t, src, "multi", 100, "v2.0"),
		pushImage(t, src, "digestonly", 3),
		pushImage(t, src, "tools/cli", 4, "0.1"),
	}
}

// edgeCount is the number of edges the promotions make per destination.
func edgeCount(ps []promo) int {
	n := 0
	for _, p := range ps {
		n += max(1, len(p.tags))
	}
	return n
}

// TestPromoteAndRerun promotes single-arch, multi-arch and digest-only
// images to both mirrors, then shows that a second run has nothing to do
// and writes nothing.
func TestPromoteAndRerun(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := standardSet(t, regs.src())
	dir, _ := thinDir(t, "sample", regs.spec(), entries(ps...))

	r := promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 0)
	wantPromoted(t, regs.src(), regs.dests(), ps...)
	edges := 2 * edgeCount(ps)
	wantContains(t, "stdout", r.stdout, r, fmt.Sprintf("Run: %d edges promoted, 0 already there, 0 refused, 0 failed", edges))
	for _, p := range ps {
		for _, d := range regs.dests() {
			target := fmt.Sprintf("%s/%s@%s", d, p.image, p.digest)
			if len(p.tags) > 0 {
				target = fmt.Sprintf("%s/%s:%s", d, p.image, p.tags[0])
			}
			wantContains(t, "stdout", r.stdout, r, "promoted  "+regs.src()+"/"+p.image+"@"+p.digest.String()+" -> "+target)
		}
	}
	// Progress: one line per (digest, destination) copied.
	wantMatch(t, "stderr", r.stderr, r, fmt.Sprintf(`(?m)^\[%d/%d [^\]]*\] .* ok$`, 2*len(ps), 2*len(ps)))

	before := snapshot(t, regs.prodA.Host, regs.prodB.Host)

	t.Run("rerun has nothing to do", func(t *testing.T) {
		r := promoter(t, "run", "--confirm", dir)
		wantExit(t, r, 0)
		wantContains(t, "stdout", r.stdout, r, "Nothing to do: every edge is already promoted.",
			fmt.Sprintf("Run: 0 edges promoted, %d already there, 0 refused, 0 failed; 0 images copied, 0 blobs uploaded", edges))
	})
	t.Run("rerun as JSON writes nothing", func(t *testing.T) {
		r := promoter(t, "run", "--confirm", "-o", "json", dir)
		wantExit(t, r, 0)
		var rep reportJSON
		decodeJSON(t, r, &rep)
		if rep.Totals.Promoted != 0 || rep.Totals.Present != edges || rep.ImagesCopied != 0 || rep.BlobUploads != 0 || rep.BlobMounts != 0 || len(rep.Results) != 0 {
			t.Errorf("second run report: totals %+v, %d images copied, %d uploads, %d mounts, %d results; want all %d edges present and nothing done\n%s",
				rep.Totals, rep.ImagesCopied, rep.BlobUploads, rep.BlobMounts, len(rep.Results), edges, r)
		}
		for _, h := range rep.Hosts {
			if h.ManifestPuts != 0 || h.BlobUploads != 0 || h.BytesUploaded != 0 {
				t.Errorf("second run wrote to %s: %+v\n%s", h.Host, h, r)
			}
		}
	})
	t.Run("plan shows nothing to copy or tag", func(t *testing.T) {
		r := promoter(t, "plan", dir)
		wantExit(t, r, 0)
		wantMatch(t, "plan", r.stdout, r, `(?m)^  copy\s+0$`, `(?m)^  tag\s+0$`, fmt.Sprintf(`(?m)^  already promoted\s+%d$`, edges))
		wantContains(t, "plan", r.stdout, r, "Nothing to do: every edge is already promoted.")
	})
	if diff := cmp.Diff(before, snapshot(t, regs.prodA.Host, regs.prodB.Host)); diff != "" {
		t.Errorf("reruns changed the destinations (-before +after):\n%s", diff)
	}
	wantPromoted(t, regs.src(), regs.dests(), ps...)
}

// TestDryRun shows that plan, and run without --confirm, change nothing and
// say what would be done, in every output format.
func TestDryRun(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := standardSet(t, regs.src())
	dir, _ := thinDir(t, "sample", regs.spec(), entries(ps...))
	perDest := edgeCount(ps)

	copyLines := func(t *testing.T, r result) {
		t.Helper()
		for _, p := range ps {
			for _, d := range regs.dests() {
				targets := []string{fmt.Sprintf("%s/%s@%s", d, p.image, p.digest)}
				if len(p.tags) > 0 {
					targets = targets[:0]
					for _, tag := range p.tags {
						targets = append(targets, fmt.Sprintf("%s/%s:%s", d, p.image, tag))
					}
				}
				for _, tg := range targets {
					wantMatch(t, "plan", r.stdout, r, `(?m)^  COPY\s+`+regexp.QuoteMeta(regs.src()+"/"+p.image+"@"+p.digest.String()+" -> "+tg)+`$`)
				}
			}
		}
	}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, r result)
	}{
		{"plan", []string{"plan", dir}, func(t *testing.T, r result) {
			wantMatch(t, "plan", r.stdout, r, fmt.Sprintf(`(?m)^  copy\s+%d$`, 2*perDest), `(?m)^  tag\s+0$`)
			copyLines(t, r)
		}},
		{"run without confirm", []string{"run", dir}, func(t *testing.T, r result) {
			wantMatch(t, "plan", r.stdout, r, fmt.Sprintf(`(?m)^  copy\s+%d$`, 2*perDest))
			copyLines(t, r)
		}},
		{"plan json", []string{"plan", "-o", "json", dir}, func(t *testing.T, r result) {
			var p planJSON
			decodeJSON(t, r, &p)
			if p.SchemaVersion != 1 {
				t.Errorf("schemaVersion %d, want 1", p.SchemaVersion)
			}
			if diff := cmp.Diff(map[string]int{"copy": 2 * perDest}, p.Counts); diff != "" {
				t.Errorf("counts (-want +got):\n%s\n%s", diff, r)
			}
			got := map[string]map[string]int{}
			for _, d := range p.Destinations {
				got[d.Registry] = d.Counts
			}
			want := map[string]map[string]int{regs.destA(): {"copy": perDest}, regs.destB(): {"copy": perDest}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("per-destination counts (-want +got):\n%s", diff)
			}
			if len(p.Actions) != 2*perDest {
				t.Errorf("%d actions, want %d", len(p.Actions), 2*perDest)
			}
			for _, a := range p.Actions {
				if a.Class != "copy" || !strings.HasPrefix(a.Source, regs.src()+"/") || a.Position.Line == 0 {
					t.Errorf("action %+v: want a copy from staging with a position", a)
				}
			}
		}},
		{"plan markdown", []string{"plan", "-o", "markdown", dir}, func(t *testing.T, r result) {
			wantContains(t, "markdown", r.stdout, r,
				fmt.Sprintf("Promotion plan: %d to copy, 0 to tag, 0 already promoted, 0 refused", 2*perDest),
				"| destination registry | copy | tag | promoted | refused | error |\n|---|---:|---:|---:|---:|---:|\n",
				fmt.Sprintf("| `%s` | %d | 0 | 0 | 0 | 0 |\n", regs.destA(), perDest),
				fmt.Sprintf("| `%s` | %d | 0 | 0 | 0 | 0 |\n", regs.destB(), perDest),
				fmt.Sprintf("<details><summary>%d actions</summary>", 2*perDest))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := promoter(t, tc.args...)
			wantExit(t, r, 0)
			tc.check(t, r)
		})
	}
	for _, h := range []string{regs.prodA.Host, regs.prodB.Host} {
		if repos := catalog(t, h); len(repos) != 0 {
			t.Errorf("a dry run wrote to %s: repositories %v", h, repos)
		}
	}
}

// TestConflictingTagRefused shows that a destination tag pointing at another
// digest is refused and left alone, while everything else is promoted.
func TestConflictingTagRefused(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	app := pushImage(t, regs.src(), "app", 1, "1.0", "latest")
	other := pushIndex(t, regs.src(), "multi", 100, "v2.0")
	old := testenv.PushImage(t, regs.destA()+"/app:1.0", 99)
	dir, imagesFile := thinDir(t, "sample", regs.spec(), entries(app, other))

	for _, cmd := range []string{"plan", "run"} {
		r := promoter(t, cmd, dir)
		wantExit(t, r, 1)
		wantContains(t, cmd+" output", r.stdout, r, old.String(), app.digest.String())
	}

	r := promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 1)
	wantMatch(t, "stdout", r.stdout, r,
		`(?m)^refused\s+`+regexp.QuoteMeta(regs.src()+"/app@"+app.digest.String()+" -> "+regs.destA()+"/app:1.0: ")+
			`.*`+regexp.QuoteMeta(old.String())+`.*`+regexp.QuoteMeta(fmt.Sprintf("(%s:%d:", imagesFile, lineOf(t, imagesFile, app.digest.String()))))
	// Mirrors must agree: prod-b is refused app:1.0 too, naming prod-a.
	wantMatch(t, "stdout", r.stdout, r,
		`(?m)^refused\s+`+regexp.QuoteMeta(regs.src()+"/app@"+app.digest.String()+" -> "+regs.destB()+"/app:1.0: ")+
			`.*mirror `+regexp.QuoteMeta(regs.destA()+"/app"))
	wantContains(t, "stdout", r.stdout, r, "Run: 4 edges promoted, 0 already there, 2 refused, 0 failed")

	// prod-a: the image is copied and its other tag set, 1.0 never moved;
	// prod-b: the image and its other tag, and no 1.0 on another digest.
	for _, d := range regs.dests() {
		sameImage(t, parseRepo(t, regs.src()+"/app"), parseRepo(t, d+"/app"), app.digest)
	}
	wantTags(t, regs.destA()+"/app", map[string]v1.Hash{"1.0": old, "latest": app.digest})
	wantTags(t, regs.destB()+"/app", map[string]v1.Hash{"latest": app.digest})
	wantPromoted(t, regs.src(), regs.dests(), other)

	// A rerun refuses again and still moves nothing.
	r = promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 1)
	wantContains(t, "stdout", r.stdout, r, "Run: 0 edges promoted, 4 already there, 2 refused, 0 failed")
	wantTags(t, regs.destA()+"/app", map[string]v1.Hash{"1.0": old, "latest": app.digest})
	wantTags(t, regs.destB()+"/app", map[string]v1.Hash{"latest": app.digest})
}

// TestMissingSource shows that a digest absent from staging is refused and
// reported while the other entries are promoted.
func TestMissingSource(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	good := []promo{pushImage(t, regs.src(), "app", 1, "1.0"), pushIndex(t, regs.src(), "multi", 100, "v2.0")}
	missing := promo{image: "app", digest: imageDigest(t, 7), tags: []string{"2.0"}}
	ghost := promo{image: "ghost", digest: imageDigest(t, 8)} // digest only
	dir, _ := thinDir(t, "sample", regs.spec(), entries(append(good, missing, ghost)...))

	r := promoter(t, "plan", "-o", "json", dir)
	wantExit(t, r, 1)
	var p planJSON
	decodeJSON(t, r, &p)
	if diff := cmp.Diff(map[string]int{"copy": 4, "missing-source": 4}, p.Counts); diff != "" {
		t.Errorf("plan counts (-want +got):\n%s\n%s", diff, r)
	}

	r = promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 1)
	for _, d := range regs.dests() {
		wantMatch(t, "stdout", r.stdout, r,
			`(?m)^refused\s+`+regexp.QuoteMeta(regs.src()+"/app@"+missing.digest.String()+" -> "+d+"/app:2.0: ")+`.*not in the source registry`,
			`(?m)^refused\s+`+regexp.QuoteMeta(regs.src()+"/ghost@"+ghost.digest.String()+" -> "+d+"/ghost@"+ghost.digest.String()+": ")+`.*not in the source registry`)
	}
	wantContains(t, "stdout", r.stdout, r, "Run: 4 edges promoted, 0 already there, 4 refused, 0 failed")
	wantPromoted(t, regs.src(), regs.dests(), good...)
	for _, d := range regs.dests() {
		for _, ref := range []string{d + "/app@" + missing.digest.String(), d + "/ghost@" + ghost.digest.String()} {
			if testenv.HasManifest(t, ref) {
				t.Errorf("%s exists although it is not in staging", ref)
			}
		}
	}
}

// TestInvalidEntriesExcluded shows that invalid entries are reported with
// file:line and excluded, and the rest is promoted.
func TestInvalidEntriesExcluded(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	app := pushImage(t, regs.src(), "app", 1, "1.0")
	tool := pushImage(t, regs.src(), "tool", 2, "ok", "bad/tag")
	alsoBad := pushImage(t, regs.src(), "tool", 5, "also bad")
	multi := pushIndex(t, regs.src(), "multi", 100, "v2.0")
	imgs := entries(app, tool, alsoBad, multi)
	imgs[0].dmap = append(imgs[0].dmap, dmapEntry{digest: "sha256:1234", tags: []string{"2.0"}})
	dir, imagesFile := thinDir(t, "sample", regs.spec(), imgs)
	badDigestLine := lineOf(t, imagesFile, "sha256:1234")
	badTagLine := lineOf(t, imagesFile, "bad/tag")
	alsoBadLine := lineOf(t, imagesFile, "also bad")

	r := promoter(t, "validate", dir)
	wantExit(t, r, 1)
	wantMatch(t, "validate", r.stdout, r,
		fmt.Sprintf(`(?m)^%s:%d:\d+: .*invalid digest "sha256:1234"`, regexp.QuoteMeta(imagesFile), badDigestLine),
		fmt.Sprintf(`(?m)^%s:%d:\d+: .*invalid tag "bad/tag"`, regexp.QuoteMeta(imagesFile), badTagLine),
		fmt.Sprintf(`(?m)^%s:%d:\d+: .*invalid tag "also bad"`, regexp.QuoteMeta(imagesFile), alsoBadLine))

	r = promoter(t, "run", "--confirm", dir)
	wantExit(t, r, 1)
	wantMatch(t, "output", r.output(), r,
		fmt.Sprintf(`%s:%d:\d+: .*invalid digest`, regexp.QuoteMeta(imagesFile), badDigestLine),
		fmt.Sprintf(`%s:%d:\d+: .*invalid tag "bad/tag"`, regexp.QuoteMeta(imagesFile), badTagLine))

	tool.tags = []string{"ok"}
	wantPromoted(t, regs.src(), regs.dests(), app, tool, multi)
	// A digest whose every tag is invalid is not promoted by digest alone.
	for _, d := range regs.dests() {
		if ref := d + "/tool@" + alsoBad.digest.String(); testenv.HasManifest(t, ref) {
			t.Errorf("%s was promoted although its only tag is invalid", ref)
		}
	}
}

// TestInvalidEntriesInRunReport: a run with excluded entries exits 1, so
// its report must say why, in every output format (in text the plan on
// stderr says it too, but -o json and -o markdown print no plan).
func TestInvalidEntriesInRunReport(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	app := pushImage(t, regs.src(), "app", 1, "1.0")
	imgs := entries(app)
	imgs[0].dmap = append(imgs[0].dmap, dmapEntry{digest: "sha256:1234", tags: []string{"2.0"}})
	dir, imagesFile := thinDir(t, "sample", regs.spec(), imgs)
	line := lineOf(t, imagesFile, "sha256:1234")
	pos := regexp.QuoteMeta(fmt.Sprintf("%s:%d:", imagesFile, line))

	tests := []struct {
		format string
		check  func(t *testing.T, r result)
	}{
		{"text", func(t *testing.T, r result) {
			wantMatch(t, "stdout", r.stdout, r, `(?m)^excluded\s+`+pos+`.*invalid digest "sha256:1234"`)
		}},
		{"json", func(t *testing.T, r result) {
			var rep reportJSON
			decodeJSON(t, r, &rep)
			for _, p := range rep.Problems {
				if p.Position.File == imagesFile && p.Position.Line == line && p.Code == "digest" && p.Severity == "error" {
					return
				}
			}
			t.Errorf("the JSON report has no digest error at %s:%d among its problems %+v\n%s", imagesFile, line, rep.Problems, r)
		}},
		{"markdown", func(t *testing.T, r result) {
			wantMatch(t, "stdout", r.stdout, r, pos+`.*invalid digest`)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			r := promoter(t, "run", "--confirm", "-o", tc.format, dir)
			wantExit(t, r, 1)
			tc.check(t, r)
		})
	}
	wantPromoted(t, regs.src(), regs.dests(), app)
}

// TestTagOnly shows that an image already in a destination is only tagged
// there: nothing is uploaded to that registry.
func TestTagOnly(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	app := pushImage(t, regs.src(), "app", 1, "1.0", "stable")
	multi := pushIndex(t, regs.src(), "multi", 100, "v2.0")
	// prod-a already holds both by digest, untagged (e.g. an earlier
	// digest-only promotion); prod-b holds nothing.
	testenv.PushImageWith(t, regs.destA()+"/app@"+app.digest.String(), testenv.ImageSpec{Seed: 1, Layers: 2, LayerSize: 2048})
	testenv.PushIndex(t, regs.destA()+"/multi@"+multi.digest.String(), 100)
	dir, _ := thinDir(t, "sample", regs.spec(), entries(app, multi))

	r := promoter(t, "plan", "-o", "json", dir)
	wantExit(t, r, 0)
	var p planJSON
	decodeJSON(t, r, &p)
	got := map[string]map[string]int{}
	for _, d := range p.Destinations {
		got[d.Registry] = d.Counts
	}
	if diff := cmp.Diff(map[string]map[string]int{regs.destA(): {"tag": 3}, regs.destB(): {"copy": 3}}, got); diff != "" {
		t.Errorf("per-destination plan (-want +got):\n%s\n%s", diff, r)
	}

	r = promoter(t, "run", "--confirm", "-o", "json", dir)
	wantExit(t, r, 0)
	var rep reportJSON
	decodeJSON(t, r, &rep)
	a, b := rep.host(regs.prodA.Host), rep.host(regs.prodB.Host)
	if a.BlobUploads != 0 || a.BlobMounts != 0 || a.BytesUploaded != 0 || a.ManifestPuts != 3 {
		t.Errorf("prod-a traffic %+v: want 0 blob uploads or mounts and 3 manifest PUTs (tags only)\n%s", a, r)
	}
	if b.BlobUploads == 0 {
		t.Errorf("prod-b traffic %+v: want blob uploads (it had nothing)\n%s", b, r)
	}
	if rep.ImagesCopied != 2 || rep.Totals.Promoted != 6 {
		t.Errorf("report: %d images copied, totals %+v; want 2 copied (prod-b) and 6 edges promoted\n%s", rep.ImagesCopied, rep.Totals, r)
	}
	for _, res := range rep.Results {
		wantClass := "copy"
		if strings.HasPrefix(res.Destination, regs.destA()) {
			wantClass = "tag"
		}
		if res.Class != wantClass || res.Status != "promoted" {
			t.Errorf("result %s:%s is %s/%s, want %s/promoted", res.Destination, res.Tag, res.Class, res.Status, wantClass)
		}
	}
	wantPromoted(t, regs.src(), regs.dests(), app, multi)
}

// TestSameRegistryMounts promotes between repositories of one registry:
// blobs are mounted, not uploaded again.
func TestSameRegistryMounts(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	ps := []promo{pushImage(t, regs.src(), "app", 1, "1.0"), pushIndex(t, regs.src(), "multi", 100, "v2.0")}
	sameHostDest := regs.staging.Host + "/" + prodAPrefix
	rs := registrySpec{src: regs.src(), dests: []string{sameHostDest, regs.destB()}}
	dir, _ := thinDir(t, "sample", rs, entries(ps...))

	r := promoter(t, "run", "--confirm", "-o", "json", dir)
	wantExit(t, r, 0)
	var rep reportJSON
	decodeJSON(t, r, &rep)
	same, other := rep.host(regs.staging.Host), rep.host(regs.prodB.Host)
	// app: config + 2 layers; multi: 2 children with config + 1 layer each.
	const blobs = 3 + 2*2
	if same.BlobUploads != 0 || same.BytesUploaded != 0 || same.BlobMounts != blobs {
		t.Errorf("same-registry traffic %+v: want %d blobs mounted, none uploaded\n%s", same, blobs, r)
	}
	if rep.BlobMounts != blobs {
		t.Errorf("report blobMounts %d, want %d\n%s", rep.BlobMounts, blobs, r)
	}
	if other.BlobUploads != blobs {
		t.Errorf("prod-b traffic %+v: want %d blob uploads\n%s", other, blobs, r)
	}
	wantPromoted(t, regs.src(), []string{sameHostDest, regs.destB()}, ps...)
}
