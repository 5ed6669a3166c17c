package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Job is one promotion for a tool to carry out: copy each image, by
// digest, from staging to every destination and give it its tag there.
type Job struct {
	// Dir is a scratch directory for the tool's inputs and logs.
	Dir string
	// Staging is the staging registry's (proxy) host.
	Staging string
	// Dests are the destination registries' (proxy) hosts.
	Dests []string
	// Images are what to promote.
	Images []*Image
	// New are the images of Images the destinations lack (nil: all of
	// them). Only the ideal client (floor) is told.
	New []*Image
	// Jobs is the parallelism every tool is given.
	Jobs int
	// Env is the environment of the tool's processes.
	Env []string
}

// src returns the staging repository of img.
func (j Job) src(img *Image) string {
	return fmt.Sprintf("%s/%s/%s", j.Staging, stagingPrefix, img.Repo)
}

// dst returns img's repository in destination host.
func dst(host string, img *Image) string {
	return fmt.Sprintf("%s/%s/%s", host, prodPrefix, img.Repo)
}

// Tool is a promotion tool under test.
type Tool interface {
	// Name is the tool's short name in tables: "ours", "crane", "regsync".
	Name() string
	// Run carries out job and returns an error if the tool failed.
	Run(ctx context.Context, job Job) error
}

// promoterTool drives `promoter run --confirm -o json` on a thin manifest
// directory listing every image digest and tag, with -j set to the
// harness's parallelism, or with the promoter's own defaults (defaults).
type promoterTool struct {
	bin      string
	defaults bool
	// state, when set, is the --state file the tool keeps across its runs.
	state string
}

// Name implements Tool.
func (t promoterTool) Name() string {
	switch {
	case t.defaults:
		return "ours-default"
	case t.state != "":
		return "ours-state"
	}
	return "ours"
}

// Run implements Tool.
func (t promoterTool) Run(ctx context.Context, job Job) error {
	dir := filepath.Join(job.Dir, "thin")
	if err := writeThinManifests(dir, job); err != nil {
		return err
	}
	args := []string{"run", "--confirm", "-o", "json"}
	if !t.defaults {
		args = append(args, "-j", fmt.Sprint(job.Jobs))
	}
	if t.state != "" {
		args = append(args, "--state", t.state)
	}
	out, err := runLogged(ctx, job, "promoter", t.bin, append(args, dir)...)
	if err != nil {
		return err
	}
	var report struct {
		Totals struct {
			Promoted, Present, Refused, Failed int
		} `json:"totals"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		return fmt.Errorf("promoter: reading the JSON report: %w", err)
	}
	if report.Totals.Refused+report.Totals.Failed != 0 {
		return fmt.Errorf("promoter: report says %d refused, %d failed", report.Totals.Refused, report.Totals.Failed)
	}
	return nil
}

// writeThinManifests writes the thin manifest directory of job: one
// project "bench" whose images are grouped by repository.
func writeThinManifests(dir string, job Job) error {
	var m strings.Builder
	fmt.Fprintf(&m, "registries:\n  - name: %s/%s\n    src: true\n", job.Staging, stagingPrefix)
	for _, d := range job.Dests {
		fmt.Fprintf(&m, "  - name: %s/%s\n", d, prodPrefix)
	}
	repos, byRepo := byRepository(job.Images)
	var imgs strings.Builder
	for _, r := range repos {
		fmt.Fprintf(&imgs, "- name: %s\n  dmap:\n", r)
		for _, img := range byRepo[r] {
			fmt.Fprintf(&imgs, "    %q: [%q]\n", img.Digest, img.Tag)
		}
	}
	files := map[string]string{
		filepath.Join(dir, "manifests", "bench", "promoter-manifest.yaml"): m.String(),
		filepath.Join(dir, "images", "bench", "images.yaml"):               imgs.String(),
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// craneTool drives one `crane copy SRC@DIGEST DST:TAG` process per image
// and destination. The copies into one repository run one after the
// other, job.Jobs repositories at a time: concurrent copies of images that
// share a layer into the same repository fail on Distribution (see
// byRepository).
type craneTool struct{ bin string }

// Name implements Tool.
func (craneTool) Name() string { return "crane" }

// Run implements Tool.
func (t craneTool) Run(ctx context.Context, job Job) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(job.Jobs)
	var mu sync.Mutex
	var logs bytes.Buffer
	repos, byRepo := byRepository(job.Images)
	for _, d := range job.Dests {
		for _, repo := range repos {
			g.Go(func() error {
				for _, img := range byRepo[repo] {
					src := job.src(img) + "@" + img.Digest
					target := dst(d, img) + ":" + img.Tag
					cmd := exec.CommandContext(ctx, t.bin, "copy", src, target)
					cmd.Env = job.Env
					out, err := cmd.CombinedOutput()
					mu.Lock()
					fmt.Fprintf(&logs, "$ crane copy %s %s\n%s", src, target, out)
					mu.Unlock()
					if err != nil {
						return fmt.Errorf("crane copy %s %s: %w\n%s", src, target, err, tail(out))
					}
				}
				return nil
			})
		}
	}
	err := g.Wait()
	_ = os.WriteFile(filepath.Join(job.Dir, "crane.log"), logs.Bytes(), 0o644)
	return err
}

// byRepository groups images by repository, in the order given, and
// returns the repositories sorted.
//
// Peer tools are driven one repository at a time per destination because
// Distribution's filesystem storage writes a repository's blob link files
// in place (truncate, then write): when two copies upload the same layer
// into one repository at once, a manifest PUT or blob HEAD can read a link
// while it is being rewritten and fail with DIGEST_INVALID or
// MANIFEST_BLOB_UNKNOWN. Neither crane nor regsync coordinates copies that
// share a layer, so the harness does not give them the chance.
func byRepository(images []*Image) ([]string, map[string][]*Image) {
	byRepo := map[string][]*Image{}
	var repos []string
	for _, img := range images {
		if byRepo[img.Repo] == nil {
			repos = append(repos, img.Repo)
		}
		byRepo[img.Repo] = append(byRepo[img.Repo], img)
	}
	sort.Strings(repos)
	return repos, byRepo
}

// regsyncTool drives `regsync once` with one sync entry of type repository
// per repository and destination, whose tag filter allows exactly the
// job's tags, and parallel = job.Jobs. regsync copies the tags of one
// entry one after the other and runs entries in parallel; see byRepository
// for why entries of type image (one per tag) are not used.
type regsyncTool struct{ bin string }

// Name implements Tool.
func (regsyncTool) Name() string { return "regsync" }

// Run implements Tool.
func (t regsyncTool) Run(ctx context.Context, job Job) error {
	cfg := filepath.Join(job.Dir, "regsync.yml")
	if err := os.WriteFile(cfg, []byte(regsyncConfig(job)), 0o644); err != nil {
		return err
	}
	_, err := runLogged(ctx, job, "regsync", t.bin, "once", "-c", cfg)
	return err
}

// regsyncConfig renders the regsync configuration of job. The hosts are
// plain HTTP (tls: disabled) and the docker config is not read.
func regsyncConfig(job Job) string {
	var b strings.Builder
	b.WriteString("version: 1\ncreds:\n")
	for _, h := range append([]string{job.Staging}, job.Dests...) {
		fmt.Fprintf(&b, "  - registry: %s\n    tls: disabled\n", h)
	}
	fmt.Fprintf(&b, "defaults:\n  parallel: %d\n  skipDockerConfig: true\nsync:\n", job.Jobs)
	repos, byRepo := byRepository(job.Images)
	for _, d := range job.Dests {
		for _, repo := range repos {
			imgs := byRepo[repo]
			fmt.Fprintf(&b, "  - source: %s\n    target: %s\n    type: repository\n    tags:\n      allow:\n", job.src(imgs[0]), dst(d, imgs[0]))
			for _, img := range imgs {
				fmt.Fprintf(&b, "        - %q\n", regexp.QuoteMeta(img.Tag))
			}
		}
	}
	return b.String()
}

// runLogged runs one tool process with job's environment, saves its
// standard output and error in job.Dir, and returns its standard output.
func runLogged(ctx context.Context, job Job, label, bin string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = job.Env
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	_ = os.WriteFile(filepath.Join(job.Dir, label+".stdout"), stdout.Bytes(), 0o644)
	_ = os.WriteFile(filepath.Join(job.Dir, label+".stderr"), stderr.Bytes(), 0o644)
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s", label, strings.Join(args, " "), err, tail(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// tail returns the last lines of a tool's output for an error message.
func tail(out []byte) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > 15 {
		lines = append([]string{"..."}, lines[len(lines)-15:]...)
	}
	return strings.Join(lines, "\n")
}

// timed runs f and returns how long it took.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// moduleVersion returns "module@version" from a Go binary's build
// information: the pinned version it was installed at.
func moduleVersion(bin string) string {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return info.Main.Path + "@" + info.Main.Version + " (" + info.GoVersion + ")"
}
