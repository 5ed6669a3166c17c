package transfer_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/transfer"
)

// image is one staging image and the tag it gets.
type image struct {
	repo   string
	tag    string
	digest v1.Hash
}

// blobsOf lists every blob (config and layers, of every child) of an image
// in a registry.
func blobsOf(t *testing.T, ref string) map[v1.Hash]bool {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	out := map[v1.Hash]bool{}
	addImage := func(img v1.Image) {
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		out[m.Config.Digest] = true
		for _, l := range m.Layers {
			out[l.Digest] = true
		}
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range im.Manifests {
			img, err := idx.Image(c.Digest)
			if err != nil {
				t.Fatal(err)
			}
			addImage(img)
		}
		return out
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	addImage(img)
	return out
}

// TestFanOutWithAFailingMirror promotes to three repository sets: two in
// one registry (the second must get every blob by mount) and one behind a
// proxy that cuts uploads, answers 500 and 429 with Retry-After. Every image
// must end up everywhere, each source blob read exactly once.
func TestFanOutWithAFailingMirror(t *testing.T) {
	staging := testenv.StartDistribution(t, "staging")
	prodA := testenv.StartDistribution(t, "prod-a")
	prodBUp := testenv.StartDistribution(t, "prod-b")
	src := testenv.NewFaultProxy(t, staging.Host)
	countA := testenv.NewFaultProxy(t, prodA.Host)
	prodB := testenv.NewFaultProxy(t, prodBUp.Host,
		testenv.FaultRule{Method: http.MethodPut, Path: testenv.PathUpload, First: 1, Kind: testenv.FaultDrop},
		testenv.FaultRule{Method: http.MethodPut, Path: testenv.PathUpload, First: 4, Kind: testenv.FaultStatus, Status: http.StatusInternalServerError},
		testenv.FaultRule{Method: http.MethodPost, Path: testenv.PathUpload, First: 2, Kind: testenv.FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: time.Second},
		testenv.FaultRule{Method: http.MethodPut, Path: testenv.PathManifest, First: 2, Kind: testenv.FaultStatus, Status: http.StatusServiceUnavailable},
	)

	// Shared base layers across repositories and versions, one layer large
	// enough (6 MiB) to be streamed rather than held in memory, and a
	// multi-arch index.
	var images []image
	for i, repo := range []string{"app", "app", "tool", "big"} {
		spec := testenv.ImageSpec{Seed: int64(i + 1), Layers: 3, LayerSize: 64 << 10, SharedBase: true}
		if repo == "big" {
			spec.LayerSize = 6 << 20
		}
		d := testenv.PushImageWith(t, staging.Host+"/s/"+repo, spec)
		images = append(images, image{repo: repo, tag: fmt.Sprintf("v%d", i), digest: d})
	}
	idx, _ := testenv.PushIndex(t, staging.Host+"/s/multi", 9)
	images = append(images, image{repo: "multi", tag: "v9", digest: idx})

	unique := map[v1.Hash]bool{}
	for _, im := range images {
		for b := range blobsOf(t, staging.Host+"/s/"+im.repo+"@"+im.digest.String()) {
			unique[b] = true
		}
	}

	dests := []string{countA.Host() + "/p", countA.Host() + "/mirror/p", prodB.Host() + "/p"}
	var jobs []transfer.Job
	for _, im := range images {
		for _, d := range dests {
			source, err := name.NewDigest(src.Host() + "/s/" + im.repo + "@" + im.digest.String())
			if err != nil {
				t.Fatal(err)
			}
			dest, err := name.NewRepository(d + "/" + im.repo)
			if err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, transfer.Job{Source: source.Context(), Digest: im.digest, Dest: dest, Copy: true, Tags: []string{im.tag}})
		}
	}
	client, err := access.New(access.WithRetryBackoff(remote.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 4}))
	if err != nil {
		t.Fatal(err)
	}
	results, stats, err := transfer.Run(context.Background(), client, jobs, transfer.WithJobs(4), transfer.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.Image != nil || len(r.Tags) > 0 || !r.Copied {
			t.Errorf("job %s -> %s: copied %v, image error %v, tag errors %v", jobs[i].Source, jobs[i].Dest, r.Copied, r.Image, r.Tags)
		}
	}

	// Every destination holds every image, by tag and by digest, complete.
	for _, d := range []string{prodA.Host + "/p", prodA.Host + "/mirror/p", prodBUp.Host + "/p"} {
		for _, im := range images {
			got := testenv.Digests(t, d+"/"+im.repo)[im.tag]
			if got != im.digest {
				t.Errorf("%s/%s:%s = %s, want %s", d, im.repo, im.tag, got, im.digest)
			}
			if diff := cmp.Diff(blobsOf(t, staging.Host+"/s/"+im.repo+"@"+im.digest.String()), blobsOf(t, d+"/"+im.repo+"@"+im.digest.String())); diff != "" {
				t.Errorf("%s/%s blobs differ (-source +dest):\n%s", d, im.repo, diff)
			}
		}
	}

	// Each unique source blob was read once, whatever the failures.
	sst := src.Stats()
	for b := range unique {
		if n := sst.BlobGETsByDigest[b]; n != 1 {
			t.Errorf("source blob %s read %d times, want 1", b, n)
		}
	}
	if sst.BlobGETs != len(unique) || stats.SourceBlobReads != int64(len(unique)) {
		t.Errorf("source blob reads: proxy %d, engine %d; want %d (unique blobs)", sst.BlobGETs, stats.SourceBlobReads, len(unique))
	}
	// prod-a: one upload per unique blob; the second repository set mounts.
	ast := countA.Stats()
	if ast.ByClass["PUT upload"] != len(unique) {
		t.Errorf("prod-a upload PUTs = %d, want %d (one per unique blob)", ast.ByClass["PUT upload"], len(unique))
	}
	if f := prodB.Stats().Faults; f < 4 {
		t.Errorf("only %d faults fired on prod-b; the test did not exercise the failures", f)
	}
	t.Logf("engine stats %+v; prod-a %v; prod-b %v", stats, ast.ByClass, prodB.Stats().ByClass)
}

// panicky is registry access whose blob reads panic for one blob.
type panicky struct {
	*access.Client
	blob v1.Hash
}

func (p panicky) FetchBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor) (io.ReadCloser, error) {
	if desc.Digest == p.blob {
		panic("injected failure")
	}
	return p.Client.FetchBlob(ctx, repo, desc)
}

// TestAFailedBlobTaskReleasesItsJobs makes the transfer of one blob fail in
// the worst way (a panic in the registry access): the job that waits for
// that blob must fail with it rather than wait forever, and the other job
// must be promoted.
func TestAFailedBlobTaskReleasesItsJobs(t *testing.T) {
	staging, prod := testenv.InProcessRegistry(t), testenv.InProcessRegistry(t)
	bad := testenv.PushImage(t, staging+"/s/bad:v1", 1)
	good := testenv.PushImage(t, staging+"/s/good:v1", 2)
	badBlobs := blobsOf(t, staging+"/s/bad@"+bad.String())
	var victim v1.Hash
	for b := range badBlobs {
		if !blobsOf(t, staging+"/s/good@"+good.String())[b] {
			victim = b
			break
		}
	}
	var jobs []transfer.Job
	for _, im := range []struct {
		repo string
		d    v1.Hash
	}{{"bad", bad}, {"good", good}} {
		src, err := name.NewDigest(staging + "/s/" + im.repo + "@" + im.d.String())
		if err != nil {
			t.Fatal(err)
		}
		dst, err := name.NewRepository(prod + "/p/" + im.repo)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, transfer.Job{Source: src.Context(), Digest: im.d, Dest: dst, Copy: true, Tags: []string{"v1"}})
	}
	client, err := access.New(testenv.FastRetries())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, _, err := transfer.Run(ctx, panicky{client, victim}, jobs)
	if err != nil {
		t.Fatalf("Run: %v (a job waited for a blob that was never settled)", err)
	}
	if r := results[0]; r.Image == nil || !strings.Contains(r.Image.Error(), "injected failure") || r.Copied {
		t.Errorf("bad image: copied %v, error %v; want the injected failure", r.Copied, r.Image)
	}
	if r := results[1]; r.Image != nil || len(r.Tags) > 0 || !r.Copied {
		t.Errorf("good image: copied %v, error %v, tag errors %v", r.Copied, r.Image, r.Tags)
	}
	if got := testenv.Digests(t, prod+"/p/good")["v1"]; got != good {
		t.Errorf("good:v1 = %s, want %s", got, good)
	}
	if testenv.HasManifest(t, prod+"/p/bad@"+bad.String()) {
		t.Error("the image with the failed blob was written")
	}
}
