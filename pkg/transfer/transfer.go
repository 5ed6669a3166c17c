// Package transfer copies images between registries as one planned,
// run-wide transfer: every source manifest is read once, every unique blob is
// read from the source at most once and streamed to every destination
// registry that lacks it, each blob is uploaded at most once per destination
// registry (other repositories there get it by cross-repository mount from a
// repository known to hold it), and manifests and tags are written only once
// everything beneath them is complete in that repository.
package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/imagegraph"
	spilldir "github.com/imgpromoter/promoter/pkg/spill"
)

// Manifests reads and writes manifests.
type Manifests interface {
	// Resolve describes the manifest at ref; one that does not exist is an
	// error matching regerr.ErrNotFound.
	Resolve(ctx context.Context, ref name.Reference) (v1.Descriptor, error)
	// FetchManifest reads a manifest's exact bytes.
	FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error)
	// PutManifest writes a manifest; subject is the registry's OCI-Subject
	// answer (zero when it gave none).
	PutManifest(ctx context.Context, ref name.Reference, raw []byte, mt types.MediaType) (subject v1.Hash, err error)
}

// Blobs reads and writes blobs.
type Blobs interface {
	BlobExists(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error)
	FetchBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor) (io.ReadCloser, error)
	// PushBlob uploads a blob; content that can seek may be sent again
	// after a transient failure (the implementation decides: it is the one
	// layer that retries).
	PushBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor, content io.Reader) error
}

// Mounter links a blob from another repository of the same registry. It is
// optional: a Registry that does not implement it gets every blob uploaded.
type Mounter interface {
	// MountBlob reports whether the registry mounted the blob; when it
	// refuses, the implementation uploads it from getContent instead.
	MountBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor, from name.Repository, getContent func() (io.ReadCloser, error)) (mounted bool, err error)
}

// Reserver takes a registry host's limiter slot and rate tokens for a few
// requests ahead, so that they are sent back to back. It is optional: with
// it, a tag's re-check and its write have nothing queued between them.
type Reserver interface {
	// Reserve returns a context whose next n requests to repo's registry
	// wait for no limiter; done gives the slot back.
	Reserve(ctx context.Context, repo name.Repository, n int) (_ context.Context, done func(), _ error)
}

// Registry is everything the engine needs from registry access.
type Registry interface {
	Manifests
	Blobs
}

// Job is one image (by digest) for one destination repository.
type Job struct {
	Source name.Repository
	// Digest is the image's digest (a manifest or an index).
	Digest v1.Hash
	Dest   name.Repository
	// Copy is true when the image is absent from Dest.
	Copy bool
	// Tags to add once the image is complete in Dest.
	Tags []string
	// DestExisted says the repository held something before the run: only
	// then is it worth asking whether a blob or child manifest is there.
	DestExisted bool
	// Manifest and MediaType, when set, are the source manifest already
	// read (by the planner): it is not read again.
	Manifest  []byte
	MediaType types.MediaType
	// BeforeTags, when set, runs once the image is complete in Dest by
	// digest and before any tag is written (the promoter writes the
	// image's signatures and attestations there, so that a reader who sees
	// a tag can already verify it). Its error keeps the tags out.
	BeforeTags func(ctx context.Context) error
}

// Result is what happened to one job.
type Result struct {
	// Copied is true when this run wrote the image into the destination.
	Copied bool
	// Image is the error that kept the image (and so all its tags) out.
	Image error
	// Tags holds an error per tag that could not be set.
	Tags map[string]error
}

// Stats counts the engine's work.
type Stats struct {
	ManifestsRead   int64 `json:"manifestsRead"`   // source manifests read
	SourceBlobReads int64 `json:"sourceBlobReads"` // blob reads from the source
	SourceBytes     int64 `json:"sourceBytes"`     // bytes of those reads
	Uploads         int64 `json:"uploads"`         // blobs uploaded
	Mounts          int64 `json:"mounts"`          // blobs mounted from another repository
	UploadRetries   int64 `json:"uploadRetries"`   // whole uploads started again
	ManifestsPut    int64 `json:"manifestsPut"`    // manifests written by digest
	TagsPut         int64 `json:"tagsPut"`         // tags written
}

// Option configures Run.
type Option func(*config)

type config struct {
	jobs       int
	memLimit   int64
	tempDir    string
	logger     *slog.Logger
	onProgress func(int, Result)
}

// WithJobs bounds how many transfers (and manifest writes) run at once.
func WithJobs(n int) Option { return func(c *config) { c.jobs = max(1, n) } }

// WithMemoryBlobLimit sets the size up to which a blob is held in memory
// while it is sent to its destinations; larger blobs are streamed, with a
// copy spilled to a temporary file when more than one destination needs it
// (default 4 MiB).
func WithMemoryBlobLimit(n int64) Option { return func(c *config) { c.memLimit = n } }

// WithTempDir sets where large blobs are spilled (default os.TempDir()).
func WithTempDir(dir string) Option { return func(c *config) { c.tempDir = dir } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithProgress calls f with the index and result of each job as it
// finishes.
func WithProgress(f func(i int, r Result)) Option { return func(c *config) { c.onProgress = f } }

// node is a source manifest and what it references.
type node struct {
	digest   v1.Hash
	mt       types.MediaType
	raw      []byte
	children []*node
	blobs    []v1.Descriptor
}

// repoBlob identifies a blob (or manifest) in one repository.
type repoBlob struct {
	repo   string
	digest v1.Hash
}

type engine struct {
	reg   Registry
	cfg   config
	stats Stats
	// spills is the run's spill directory; nil when it could not be made
	// (then nothing is spilled).
	spills *spilldir.Dir

	mu    sync.Mutex
	trees map[repoBlob]*treeEntry // source repo + digest -> tree
	// present records blobs and manifests known to be in a repository
	// (found, uploaded, mounted or written in this run).
	present map[repoBlob]bool
	// blobErr records a blob that could not be brought into a repository.
	blobErr map[repoBlob]error
	// holder is, per registry host and blob, a repository known to hold it
	// (the mount source).
	holder map[string]map[v1.Hash]name.Repository
	// putOnce dedupes manifest writes shared by several jobs.
	putOnce map[repoBlob]*onceErr

	// pending counts, per job, the blobs it still waits for; dependents
	// lists the jobs waiting for each (repository, blob); ready receives
	// jobs whose blobs are all settled.
	pending    []int
	dependents map[repoBlob][]int
	ready      chan int
	finished   atomic.Int64
}

type treeEntry struct {
	once sync.Once
	n    *node
	err  error
}

type onceErr struct {
	once sync.Once
	err  error
}

// Run executes the jobs and returns one result per job, in order. Only
// context cancellation returns an error; everything else is in the results.
func Run(ctx context.Context, reg Registry, jobs []Job, opts ...Option) ([]Result, Stats, error) {
	cfg := config{jobs: 8, memLimit: 4 << 20, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	e := &engine{reg: reg, cfg: cfg, trees: map[repoBlob]*treeEntry{}, present: map[repoBlob]bool{},
		blobErr: map[repoBlob]error{}, holder: map[string]map[v1.Hash]name.Repository{}, putOnce: map[repoBlob]*onceErr{}}
	// The run's own spill directory, locked while it lives; the
	// directories of killed runs are reclaimed here.
	if sd, err := spilldir.Open(cfg.tempDir, cfg.logger); err != nil {
		cfg.logger.Warn("no spill directory: large blobs are read from the source once per destination", "error", err)
	} else {
		e.spills = sd
		defer sd.Close()
	}
	results := make([]Result, len(jobs))
	for i := range results {
		results[i].Tags = map[string]error{}
	}

	// 1. Metadata first: every source manifest (once per digest), then what
	// pre-existing destination repositories already hold.
	trees := make([]*node, len(jobs))
	if err := e.forEach(ctx, len(jobs), func(ctx context.Context, i int) {
		if jobs[i].Copy {
			trees[i], results[i].Image = e.tree(ctx, jobs[i].Source, jobs[i].Digest, jobs[i].Manifest, jobs[i].MediaType)
		}
	}); err != nil {
		return results, e.stats, err
	}
	if err := e.probeDestinations(ctx, jobs, trees); err != nil {
		return results, e.stats, err
	}

	// 2. Blobs: one task per unique blob, largest first. 3. At the same
	// time, each job's manifests (children first) and then its tags, as
	// soon as every blob it needs in its repository is settled.
	tasks := e.blobTasks(jobs, trees, results)
	blobsDone := make(chan error, 1)
	go func() {
		blobsDone <- e.forEach(ctx, len(tasks), func(ctx context.Context, i int) { e.runTask(ctx, tasks[i]) })
	}()
	err := e.runJobs(ctx, len(jobs), func(ctx context.Context, i int) {
		e.finishJob(ctx, jobs[i], trees[i], &results[i])
		if cfg.onProgress != nil {
			cfg.onProgress(i, results[i])
		}
	})
	if berr := <-blobsDone; err == nil {
		err = berr
	}
	return results, e.stats, err
}

// runJobs runs f for each job once it is ready (all its blobs settled), at
// most cfg.jobs at a time.
func (e *engine) runJobs(ctx context.Context, n int, f func(context.Context, int)) error {
	g, gctx := errgroup.WithContext(ctx)
	for range e.cfg.jobs {
		g.Go(func() error {
			for {
				select {
				case i, ok := <-e.ready:
					if !ok {
						return nil
					}
					f(gctx, i)
					if e.finished.Add(1) == int64(n) {
						close(e.ready)
					}
				case <-gctx.Done():
					return nil
				}
			}
		})
	}
	if n == 0 {
		return ctx.Err()
	}
	_ = g.Wait()
	return ctx.Err()
}

// forEach runs f for 0..n-1 with bounded concurrency; it stops early only
// when ctx is cancelled.
func (e *engine) forEach(ctx context.Context, n int, f func(context.Context, int)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.jobs)
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			f(gctx, i)
			return nil
		})
	}
	_ = g.Wait()
	return ctx.Err()
}

// tree reads a source manifest (unless raw is given) and, for an index, its
// children, once per (repository, digest) for the whole run.
func (e *engine) tree(ctx context.Context, repo name.Repository, h v1.Hash, raw []byte, mt types.MediaType) (*node, error) {
	key := repoBlob{repo.Name(), h}
	e.mu.Lock()
	te, ok := e.trees[key]
	if !ok {
		te = &treeEntry{}
		e.trees[key] = te
	}
	e.mu.Unlock()
	te.once.Do(func() { te.n, te.err = e.readTree(ctx, repo, h, raw, mt) })
	return te.n, te.err
}

func (e *engine) readTree(ctx context.Context, repo name.Repository, h v1.Hash, raw []byte, mt types.MediaType) (*node, error) {
	ref := repo.Digest(h.String()).String()
	if raw == nil {
		var desc v1.Descriptor
		var err error
		raw, desc, err = e.reg.FetchManifest(ctx, repo.Digest(h.String()))
		if err != nil {
			return nil, &Error{Side: SideSource, Ref: ref, Err: err}
		}
		mt = desc.MediaType
		atomic.AddInt64(&e.stats.ManifestsRead, 1)
	}
	m, err := imagegraph.Parse(raw, mt)
	if err != nil {
		return nil, &Error{Side: SideSource, Ref: ref, Err: err}
	}
	n := &node{digest: h, mt: m.MediaType, raw: raw, blobs: m.Blobs}
	for _, d := range m.Children {
		c, err := e.tree(ctx, repo, d.Digest, nil, "")
		if err != nil {
			return nil, err
		}
		n.children = append(n.children, c)
	}
	return n, nil
}

// walk visits manifests children first.
func (n *node) walk(f func(*node)) {
	for _, c := range n.children {
		c.walk(f)
	}
	f(n)
}

// probeDestinations asks repositories that existed before the run which of
// the needed child manifests and blobs they already hold (new repositories
// hold nothing: no requests are spent on them).
func (e *engine) probeDestinations(ctx context.Context, jobs []Job, trees []*node) error {
	type probe struct {
		repo     name.Repository
		digest   v1.Hash
		manifest bool
	}
	seen := map[repoBlob]bool{}
	var probes []probe
	for i, j := range jobs {
		if trees[i] == nil || !j.DestExisted {
			continue
		}
		trees[i].walk(func(n *node) {
			if n != trees[i] { // the root is known absent from planning
				if k := (repoBlob{j.Dest.Name(), n.digest}); !seen[k] {
					seen[k] = true
					probes = append(probes, probe{j.Dest, n.digest, true})
				}
			}
			for _, b := range n.blobs {
				if k := (repoBlob{j.Dest.Name(), b.Digest}); !seen[k] {
					seen[k] = true
					probes = append(probes, probe{j.Dest, b.Digest, false})
				}
			}
		})
	}
	return e.forEach(ctx, len(probes), func(ctx context.Context, i int) {
		p := probes[i]
		var ok bool
		var err error
		if p.manifest {
			_, err = e.reg.Resolve(ctx, p.repo.Digest(p.digest.String()))
			ok = err == nil
		} else {
			ok, err = e.reg.BlobExists(ctx, p.repo, p.digest)
		}
		if err != nil || !ok {
			return // unknown counts as absent: it will be sent
		}
		e.mu.Lock()
		e.present[repoBlob{p.repo.Name(), p.digest}] = true
		if !p.manifest {
			e.addHolder(p.repo, p.digest)
		}
		e.mu.Unlock()
	})
}

// addHolder records repo as a mount source for d (e.mu held).
func (e *engine) addHolder(repo name.Repository, d v1.Hash) {
	h := e.holder[repo.RegistryStr()]
	if h == nil {
		h = map[v1.Hash]name.Repository{}
		e.holder[repo.RegistryStr()] = h
	}
	if _, ok := h[d]; !ok {
		h[d] = repo
	}
}

// task is one unique blob and every repository that needs it.
type task struct {
	desc    v1.Descriptor
	source  name.Repository
	targets map[string][]name.Repository // registry host -> repositories, sorted
}

func (e *engine) blobTasks(jobs []Job, trees []*node, results []Result) []*task {
	byDigest := map[v1.Hash]*task{}
	need := map[repoBlob]bool{}
	e.pending = make([]int, len(jobs))
	e.dependents = map[repoBlob][]int{}
	e.ready = make(chan int, len(jobs))
	defer func() {
		for i, n := range e.pending {
			if n == 0 {
				e.ready <- i
			}
		}
	}()
	for i, j := range jobs {
		if trees[i] == nil || results[i].Image != nil {
			continue
		}
		waits := map[repoBlob]bool{}
		trees[i].walk(func(n *node) {
			if e.present[repoBlob{j.Dest.Name(), n.digest}] {
				return // manifest already there: so is everything beneath it
			}
			for _, b := range n.blobs {
				k := repoBlob{j.Dest.Name(), b.Digest}
				if e.present[k] {
					continue
				}
				if !waits[k] {
					waits[k] = true
					e.pending[i]++
					e.dependents[k] = append(e.dependents[k], i)
				}
				if need[k] {
					continue
				}
				need[k] = true
				t := byDigest[b.Digest]
				if t == nil {
					t = &task{desc: b, source: j.Source, targets: map[string][]name.Repository{}}
					byDigest[b.Digest] = t
				}
				host := j.Dest.RegistryStr()
				t.targets[host] = append(t.targets[host], j.Dest)
			}
		})
	}
	tasks := make([]*task, 0, len(byDigest))
	for _, t := range byDigest {
		for h := range t.targets {
			slices.SortFunc(t.targets[h], func(a, b name.Repository) int { return cmp.Compare(a.Name(), b.Name()) })
		}
		tasks = append(tasks, t)
	}
	// Large blobs first: they dominate the run time.
	slices.SortFunc(tasks, func(a, b *task) int {
		return cmp.Or(cmp.Compare(b.desc.Size, a.desc.Size), cmp.Compare(a.desc.Digest.String(), b.desc.Digest.String()))
	})
	return tasks
}

func (e *engine) setBlob(repo name.Repository, d v1.Hash, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := repoBlob{repo.Name(), d}
	if err != nil {
		e.blobErr[k] = err
	} else {
		e.present[k] = true
		delete(e.blobErr, k)
		e.addHolder(repo, d)
	}
	// The blob is settled in this repository: release the jobs waiting
	// for it (once).
	for _, i := range e.dependents[k] {
		e.pending[i]--
		if e.pending[i] == 0 {
			e.ready <- i
		}
	}
	delete(e.dependents, k)
}

func (e *engine) holderOf(host string, d v1.Hash) (name.Repository, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.holder[host][d]
	return r, ok
}

// Error is a failure of one transfer, saying which side failed.
type Error struct {
	Side Side
	Ref  string
	Err  error
}

// Side is the registry an error came from.
type Side string

// Sides.
const (
	SideSource      Side = "source"
	SideDestination Side = "destination"
)

func (e *Error) Error() string { return fmt.Sprintf("%s %s: %v", e.Side, e.Ref, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// tempFile creates a spill file in the run's spill directory.
func (e *engine) tempFile() (*os.File, error) {
	if e.spills == nil {
		return nil, errors.New("no spill directory")
	}
	return e.spills.CreateTemp()
}
