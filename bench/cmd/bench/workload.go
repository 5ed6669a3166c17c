package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/internal/regtest"
)

const (
	// mib is the layer payload size of the W1 and W2 workloads.
	mib = 1 << 20
	// stagingPrefix and prodPrefix are the path prefixes of the registry
	// names: images live at staging/<repo> and prod/<repo>.
	stagingPrefix = "staging"
	prodPrefix    = "prod"
)

// Image is one promotable image of a workload: a repository, a tag, and
// the digest of a single-platform manifest or of a multi-platform index.
type Image struct {
	Repo   string
	Tag    string
	Digest string
	// Index is true for a multi-platform OCI index.
	Index bool
	// Children are the digests of an index's platform manifests.
	Children []string
	// Blobs are the config and layer blobs of the image, or of all the
	// index's children, deduplicated.
	Blobs []Blob

	artifact partial.Describable // v1.Image or v1.ImageIndex, for pushing
}

// Blob is a blob digest with its size.
type Blob struct {
	Digest string
	Size   int64
}

// Workload is a deterministic set of images to promote.
type Workload struct {
	// Name is the short name used in flags and tables: "W1".
	Name string
	// Desc says in a few words what the workload is.
	Desc string
	// Base is what the cold and no-op scenarios promote.
	Base []*Image
	// Extra holds, per repetition, the images the incremental scenario adds
	// to what was promoted before. Fresh workloads use Extra[0] in every
	// repetition.
	Extra [][]*Image
	// Fresh is true when each repetition starts from empty destinations.
	// When false (W3) the cold scenario runs once, and repetition r's no-op
	// and incremental runs see the images of the increments before it.
	Fresh bool
}

// Listed returns what a job promotes: the base images, the first prior
// increments (already promoted by earlier incremental runs), and with
// add >= 0 the increment Extra[add].
func (w *Workload) Listed(prior, add int) []*Image {
	out := append([]*Image(nil), w.Base...)
	for i := 0; i < prior; i++ {
		out = append(out, w.Extra[i]...)
	}
	if add >= 0 {
		out = append(out, w.Extra[add]...)
	}
	return out
}

// All returns every image of the workload, all increments included: what
// is pushed to staging.
func (w *Workload) All() []*Image {
	out := append([]*Image(nil), w.Base...)
	for _, e := range w.Extra {
		out = append(out, e...)
	}
	return out
}

// Stats sums the workload's base images: count, indexes, distinct blobs
// and their bytes.
func (w *Workload) Stats() (images, indexes, blobs int, bytes int64) {
	seen := map[string]bool{}
	for _, img := range w.Base {
		images++
		if img.Index {
			indexes++
		}
		for _, b := range img.Blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				blobs++
				bytes += b.Size
			}
		}
	}
	return images, indexes, blobs, bytes
}

// layerCache builds each layer once per workload: shared layers are
// requested many times.
type layerCache struct {
	mu     sync.Mutex
	layers map[string]v1.Layer
}

// layer returns the layer for key with size payload bytes.
func (c *layerCache) layer(key string, size int) (v1.Layer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.layers[key]; ok {
		return l, nil
	}
	l, err := deterministicLayer(key, size)
	if err != nil {
		return nil, err
	}
	if c.layers == nil {
		c.layers = map[string]v1.Layer{}
	}
	c.layers[key] = l
	return l, nil
}

// layeredWorkload builds W1 (indexEvery 0) and W2 (every indexEvery-th
// version of each repository is a linux/amd64 + linux/arm64 index).
//
// Repository r has versions 0..versions-1 in Base; version v has three
// layers: the base layer shared by every repository, then chain(r, v) and
// chain(r, v+1), so version v shares its middle layer with version v-1's
// top layer. The increment is version `versions` of the first 5
// repositories, which again shares a layer with the version before it.
func layeredWorkload(wname string, repos, versions, indexEvery, layerSize int) (*Workload, error) {
	w := &Workload{Name: wname, Fresh: true}
	if indexEvery > 0 {
		w.Desc = fmt.Sprintf("%d repos x %d versions x 3 layers of %s, every %s version a 2-platform index", repos, versions, sizeName(layerSize), ordinal(indexEvery))
	} else {
		w.Desc = fmt.Sprintf("%d repos x %d versions x 3 layers of %s, layers shared", repos, versions, sizeName(layerSize))
	}
	cache := &layerCache{}
	build := func(r, v int) (*Image, error) {
		repo := fmt.Sprintf("app-%02d", r)
		tag := fmt.Sprintf("v1.0.%d", v)
		platforms := []string{"linux/amd64"}
		if indexEvery > 0 && (v+1)%indexEvery == 0 {
			platforms = append(platforms, "linux/arm64")
		}
		var imgs []v1.Image
		for _, p := range platforms {
			keys := []string{
				"base/" + p,
				fmt.Sprintf("chain/%s/%s/%d", repo, p, v),
				fmt.Sprintf("chain/%s/%s/%d", repo, p, v+1),
			}
			img, err := buildImage(cache, fmt.Sprintf("%s/%s:%s", wname, repo, tag), p, keys, layerSize)
			if err != nil {
				return nil, err
			}
			imgs = append(imgs, img)
		}
		return newImage(repo, tag, imgs)
	}
	for r := 0; r < repos; r++ {
		for v := 0; v < versions; v++ {
			img, err := build(r, v)
			if err != nil {
				return nil, err
			}
			w.Base = append(w.Base, img)
		}
	}
	var extra []*Image
	for r := 0; r < 5 && r < repos; r++ {
		img, err := build(r, versions)
		if err != nil {
			return nil, err
		}
		extra = append(extra, img)
	}
	w.Extra = [][]*Image{extra}
	return w, nil
}

// smallWorkload builds W3: count one-layer images of layerSize bytes
// spread over repos repositories, and per repetition an increment of 5
// more images.
func smallWorkload(wname string, count, repos, layerSize, reps int) (*Workload, error) {
	w := &Workload{
		Name: wname,
		Desc: fmt.Sprintf("%d small images (1 layer of %s each) in %d repos", count, sizeName(layerSize), repos),
	}
	cache := &layerCache{}
	build := func(i int) (*Image, error) {
		repo := fmt.Sprintf("small-%02d", i%repos)
		tag := fmt.Sprintf("v0.%d.0", i/repos)
		key := fmt.Sprintf("small/%d", i)
		img, err := buildImage(cache, fmt.Sprintf("%s/%s:%s", wname, repo, tag), "linux/amd64", []string{key}, layerSize)
		if err != nil {
			return nil, err
		}
		return newImage(repo, tag, []v1.Image{img})
	}
	for i := 0; i < count; i++ {
		img, err := build(i)
		if err != nil {
			return nil, err
		}
		w.Base = append(w.Base, img)
	}
	for rep := 0; rep < reps; rep++ {
		var extra []*Image
		for j := 0; j < 5; j++ {
			// Round count up to whole rows so that each increment adds
			// one tag to each of the first five repositories.
			row := (count+repos-1)/repos + rep
			img, err := build(row*repos + j%repos)
			if err != nil {
				return nil, err
			}
			extra = append(extra, img)
		}
		w.Extra = append(w.Extra, extra)
	}
	return w, nil
}

// newImage wraps one image, or several platform images in an index.
func newImage(repo, tag string, imgs []v1.Image) (*Image, error) {
	out := &Image{Repo: repo, Tag: tag}
	seen := map[string]bool{}
	addBlobs := func(img v1.Image) error {
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			if !seen[d.Digest.String()] {
				seen[d.Digest.String()] = true
				out.Blobs = append(out.Blobs, Blob{Digest: d.Digest.String(), Size: d.Size})
			}
		}
		return nil
	}
	for _, img := range imgs {
		if err := addBlobs(img); err != nil {
			return nil, err
		}
	}
	if len(imgs) == 1 {
		d, err := imgs[0].Digest()
		if err != nil {
			return nil, err
		}
		out.Digest = d.String()
		out.artifact = imgs[0]
		return out, nil
	}
	idx, err := buildIndex(imgs)
	if err != nil {
		return nil, err
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	out.Digest = d.String()
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out.Index = true
	for _, m := range im.Manifests {
		out.Children = append(out.Children, m.Digest.String())
	}
	out.artifact = idx
	return out, nil
}

// buildImage assembles an OCI image whose every byte follows from its
// arguments: label names the image in its config, layers are keyed.
func buildImage(cache *layerCache, label, platform string, layerKeys []string, layerSize int) (v1.Image, error) {
	plat, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	layers := make([]regtest.ImageLayer, len(layerKeys))
	for i, key := range layerKeys {
		l, err := cache.layer(key, layerSize)
		if err != nil {
			return nil, err
		}
		layers[i] = regtest.ImageLayer{Layer: l, CreatedBy: "bench layer " + key}
	}
	// NewImage computes the digest now: it is needed before pushing, and
	// lazy computation inside concurrent pushes would race on the layer
	// cache.
	return regtest.NewImage(plat, map[string]string{"org.imgpromoter.bench.image": label}, layers)
}

// deterministicLayer returns a gzipped tar layer holding one file of size
// pseudo-random bytes: a ChaCha8 stream seeded with SHA-256(key), whose
// output the Go project guarantees never to change.
func deterministicLayer(key string, size int) (v1.Layer, error) {
	return regtest.NewLayer("bench/payload.bin", rand.NewChaCha8(sha256.Sum256([]byte(key))), int64(size))
}

// buildIndex assembles an OCI index of imgs, each listed under the OS and
// architecture of its config.
func buildIndex(imgs []v1.Image) (v1.ImageIndex, error) {
	children := make([]regtest.IndexChild, len(imgs))
	for i, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		children[i] = regtest.IndexChild{Image: img, Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}}
	}
	return regtest.NewIndex(children)
}

// seed pushes every image of w, increments included, to the staging
// registry host (direct, not through the proxy), by tag.
func seed(ctx context.Context, host string, w *Workload, jobs int) error {
	all := w.All()
	// Push each repository's images in order, repositories in parallel:
	// layers shared within a repository are then uploaded once.
	byRepo := map[string][]*Image{}
	for _, img := range all {
		byRepo[img.Repo] = append(byRepo[img.Repo], img)
	}
	repos := make([]string, 0, len(byRepo))
	for r := range byRepo {
		repos = append(repos, r)
	}
	sort.Strings(repos)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, repo := range repos {
		g.Go(func() error {
			for _, img := range byRepo[repo] {
				ref, err := name.NewTag(fmt.Sprintf("%s/%s/%s:%s", host, stagingPrefix, img.Repo, img.Tag), name.Insecure)
				if err != nil {
					return err
				}
				switch a := img.artifact.(type) {
				case v1.ImageIndex:
					err = remote.WriteIndex(ref, a, remote.WithContext(ctx))
				case v1.Image:
					err = remote.Write(ref, a, remote.WithContext(ctx))
				}
				if err != nil {
					return fmt.Errorf("seeding %s: %w", ref, err)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// sizeName renders a layer size for descriptions: "1 MiB", "512 B".
func sizeName(n int) string {
	switch {
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= 1024 && n%1024 == 0:
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// ordinal renders 5 as "5th".
func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return fmt.Sprintf("%dth", n)
	case n%10 == 1:
		return fmt.Sprintf("%dst", n)
	case n%10 == 2:
		return fmt.Sprintf("%dnd", n)
	case n%10 == 3:
		return fmt.Sprintf("%drd", n)
	}
	return fmt.Sprintf("%dth", n)
}
