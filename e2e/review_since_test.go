package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// TestReviewWorkflow runs the review workflow of a pull request as CI would,
// on real registries: the guard and the pull-request plan on the change,
// promotion of what it adds, then a change that removes a digest and is
// refused until the removal is named.
func TestReviewWorkflow(t *testing.T) {
	e2e(t)
	regs := startRegistries(t)
	old := pushImage(t, regs.src(), "app", 1, "1.0")
	added := pushImage(t, regs.src(), "app", 2, "2.0")

	// The base: app:1.0, in a sub-folder of the repository; staging only.
	repo := t.TempDir()
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	dir := filepath.Join(repo, "deploy", "promotion")
	images := filepath.Join(dir, "images", "app", "images.yaml")
	writeFile(t, filepath.Join(dir, "manifests", "app", "promoter-manifest.yaml"), registriesYAML(regs.spec()))
	writeFile(t, images, imagesYAML(entries(old)))
	testenv.Git(t, repo, "add", "-A")
	testenv.Git(t, repo, "commit", "-q", "-m", "base")
	base := testenv.Git(t, repo, "rev-parse", "HEAD")

	// The pull request: app:2.0 under an unquoted key, the old entry
	// reformatted.
	writeFile(t, images, "- name: app\n  dmap:\n    "+added.digest.String()+": ['2.0']\n    '"+old.digest.String()+"':\n    - \"1.0\"\n")
	r := promoter(t, "check", "--base", base, dir)
	wantExit(t, r, 0)
	wantContains(t, "check", r.stdout, r, "the change adds 2 edges; 0 removals or moves", ": accepted")
	r = promoter(t, "plan", "--since", base, dir)
	wantExit(t, r, 0)
	wantContains(t, "plan --since", r.output(), r, "change adds 2 edges", "Plan: 2 edges")
	if strings.Contains(r.stdout, old.digest.String()) {
		t.Errorf("plan --since plans the old entry:\n%s", r)
	}

	// Merged: the postsubmit promotes only what the change added.
	testenv.Git(t, repo, "add", "-A")
	testenv.Git(t, repo, "commit", "-q", "-m", "add app 2.0")
	r = promoter(t, "run", "--confirm", "--since", "HEAD^", dir)
	wantExit(t, r, 0)
	for _, d := range regs.dests() {
		wantTags(t, d+"/app", map[string]v1.Hash{"2.0": added.digest})
	}

	// A change removing the old digest is refused, with its place at the
	// base, until the removal is named.
	writeFile(t, images, imagesYAML(entries(added)))
	key := regs.src() + "/app@" + old.digest.String()
	r = promoter(t, "check", "--base", "HEAD", dir)
	wantExit(t, r, 1)
	wantContains(t, "check", r.stdout, r, images+":4:5 at HEAD: digest-removed: "+key, "to allow it: --allow-removal "+key, ": rejected")
	r = promoter(t, "check", "--base", "HEAD", "--allow-removal", key, dir)
	wantExit(t, r, 0)
}
