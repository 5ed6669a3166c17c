package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
)

// CrashTrialsEnv overrides the number of kill -9 trials of TestCrashRecovery.
const CrashTrialsEnv = "PROMOTER_CRASH_TRIALS"

// TestCrashRecovery kills the built binary with SIGKILL at random moments
// of a promotion into two Distribution registries, then checks that no tag
// points at an incomplete image (every child manifest and blob beneath it
// is there), that the spill files the killed run left are reclaimed by the
// next run, and that a rerun completes everything. The figures it logs
// are the ones in docs/reliability.md:
//
//	go test ./internal/reliability -run TestCrashRecovery -v
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash trials: not in -short")
	}
	trials := 20
	if s := os.Getenv(CrashTrialsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("$%s=%q: want a positive number", CrashTrialsEnv, s)
		}
		trials = n
	}
	bin, err := testenv.PromoterBinary()
	if err != nil {
		t.Fatal(err)
	}
	staging := testenv.StartDistribution(t, "staging")
	mirrors := []*testenv.Distribution{testenv.StartDistribution(t, "mirror-a"), testenv.StartDistribution(t, "mirror-b")}
	var images []image
	for i := range 6 {
		ref := fmt.Sprintf("%s/s/img%d", staging.Host, i)
		var d v1.Hash
		if i%3 == 0 {
			d, _ = testenv.PushIndex(t, ref, int64(200+i))
		} else {
			d = testenv.PushImageWith(t, ref, testenv.ImageSpec{Seed: int64(200 + i), Layers: 3, LayerSize: (1 + i) << 20, SharedBase: true})
		}
		images = append(images, image{name: fmt.Sprintf("img%d", i), digest: d, tags: []string{"1.0", "latest"}})
	}
	tmp := t.TempDir()
	promote := func(ctx context.Context, prefix string) *exec.Cmd {
		var dests []string
		for _, m := range mirrors {
			dests = append(dests, m.Host+"/"+prefix)
		}
		m := writeManifest(t, staging.Host+"/s", dests, images...)
		cmd := exec.CommandContext(ctx, bin, "run", "--confirm", "-o", "json", "--jobs", "4", m)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "DOCKER_CONFIG="+t.TempDir())
		return cmd
	}

	// Calibrate: how long a whole run takes here. The first run uploads
	// every blob; the trials, like the second calibration run, can mount
	// them from the repositories of earlier runs.
	var full time.Duration
	for _, prefix := range []string{"warm", "calibrate"} {
		start := time.Now()
		if out, err := promote(t.Context(), prefix).CombinedOutput(); err != nil {
			t.Fatalf("calibration run: %v\n%s", err, tail(string(out), 30))
		}
		full = time.Since(start)
	}

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 8))
	var partial, recovered, killedMidway, staleSpills int
	var problems []string
	for trial := range trials {
		prefix := fmt.Sprintf("t%02d", trial)
		delay := time.Duration(rng.Int64N(int64(full)))
		cmd := promote(t.Context(), prefix)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		if err := cmd.Wait(); err != nil {
			killedMidway++ // otherwise it finished before the kill
		}
		for _, m := range mirrors {
			for _, im := range images {
				for tag, dig := range testenv.Digests(t, m.Host+"/"+prefix+"/"+im.name) {
					if err := complete(t.Context(), m.Host, prefix+"/"+im.name, dig); err != nil {
						partial++
						problems = append(problems, fmt.Sprintf("trial %d (kill at %v): %s/%s/%s:%s -> %s: %v", trial, delay, m.Host, prefix, im.name, tag, dig, err))
					}
				}
			}
		}
		if stale, _ := filepath.Glob(filepath.Join(tmp, "promoter-spill-*")); len(stale) > 0 {
			staleSpills += len(stale)
		}
		out, err := promote(t.Context(), prefix).Output()
		var rep runReport
		if jerr := json.Unmarshal(out, &rep); err == nil && jerr == nil && rep.Totals.Failed == 0 && rep.Totals.Refused == 0 {
			recovered++
		} else {
			problems = append(problems, fmt.Sprintf("trial %d (kill at %v): rerun: %v, totals %+v", trial, delay, err, rep.Totals))
		}
		for _, m := range mirrors {
			for _, im := range images {
				got := testenv.Digests(t, m.Host+"/"+prefix+"/"+im.name)
				for _, tag := range im.tags {
					if got[tag] != im.digest {
						problems = append(problems, fmt.Sprintf("trial %d: after the rerun %s/%s/%s:%s = %s, want %s", trial, m.Host, prefix, im.name, tag, got[tag], im.digest))
					}
				}
			}
		}
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "promoter-*"))
	t.Logf("crash trials: %d (seed %d, kills uniformly within a %v run, %d killed before the end); tags on incomplete images: %d; reruns completing everything: %d/%d; spill directories left by killed runs: %d, left after the last rerun: %d",
		trials, seed, full.Round(time.Millisecond), killedMidway, partial, recovered, trials, staleSpills, len(left))
	for _, p := range problems {
		t.Error(p)
	}
	if len(left) != 0 {
		t.Errorf("spill files left behind: %v", left)
	}
}

// complete checks that the manifest dig is in repo on host with every
// child manifest and blob beneath it.
func complete(ctx context.Context, host, repo string, dig v1.Hash) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/"+dig.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", strings.Join([]string{
		"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
	}, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("manifest %s: %s", dig, resp.Status)
	}
	var m struct {
		Manifests []v1.Descriptor `json:"manifests"`
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return err
	}
	for _, c := range m.Manifests {
		if err := complete(ctx, host, repo, c.Digest); err != nil {
			return err
		}
	}
	blobs := m.Layers
	if m.Config != nil {
		blobs = append(blobs, *m.Config)
	}
	for _, b := range blobs {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+host+"/v2/"+repo+"/blobs/"+b.Digest.String(), nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("blob %s: %s", b.Digest, resp.Status)
		}
	}
	return nil
}
