package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/imagegraph"
	"github.com/imgpromoter/promoter/pkg/regerr"
)

// Lister lists a registry's repositories and a repository's tags.
type Lister interface {
	// Catalog lists the registry's repositories (pageSize 0: the default).
	Catalog(ctx context.Context, reg name.Registry, pageSize int) ([]string, error)
	// ListTags lists a repository's tags and, when the registry says so in
	// the same answer (Google's registries do), each tag's digest.
	ListTags(ctx context.Context, repo name.Repository) ([]string, map[string]v1.Hash, error)
}

// Reader reads manifests.
type Reader interface {
	// Resolve returns a manifest's descriptor; one that does not exist is
	// an error matching regerr.ErrNotFound.
	Resolve(ctx context.Context, ref name.Reference) (v1.Descriptor, error)
	FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error)
}

// Registry is the registry access Take needs (an *access.Client).
type Registry interface {
	Lister
	Reader
}

// ErrNoCatalog says the registry does not list its repositories to this
// client (no catalog endpoint, or not for these credentials): the
// repositories have to be named (WithRepos).
var ErrNoCatalog = errors.New("the registry does not list its repositories")

// Take reads what the registry holds under the prefix: the repositories of
// its catalog under the prefix (or those named with WithRepos), each
// repository's tags and the digest of each, and, unless WithMinimal or
// WithTag, the children of every tagged index, without tags of their own.
// A repository without tags is left out: the OCI API cannot list its
// untagged manifests.
//
// Requests: the catalog, one tag listing per repository, one HEAD per tag
// (none when the registry gives tag digests with the listing; with WithTag,
// only that tag is resolved), and one GET per distinct index (per distinct
// digest when the listing gave the digests, since it gives no media types).
// The children of an index are listed as the index names them, without
// checking that the registry holds each.
// Any registry error stops the snapshot: a partial snapshot would read as
// a registry missing images.
func Take(ctx context.Context, r Registry, p Prefix, opts ...Option) (*Snapshot, error) {
	c, err := makeConfig(opts)
	if err != nil {
		return nil, err
	}
	repos, err := repositories(ctx, r, p, c)
	if err != nil {
		return nil, err
	}
	t := &taker{r: r, c: c, repos: map[string]name.Repository{}, b: builder{}, toRead: map[manifestKey]bool{}}
	for _, rp := range repos {
		t.repos[rp.rel] = rp.ref
	}
	if err := t.listTags(ctx, repos); err != nil {
		return nil, err
	}
	for _, rp := range repos {
		if len(rp.tags) == 0 {
			// A named repository may be a typo; a listed one is only empty.
			level := slog.LevelDebug
			if len(c.repos) > 0 {
				level = slog.LevelWarn
			}
			c.logger.Log(ctx, level, "repository left out: it has no tags (or does not exist)", "repository", rp.ref.String())
		}
	}
	if err := t.resolveTags(ctx, repos); err != nil {
		return nil, err
	}
	if !c.minimal && c.tag == "" {
		if err := t.expandIndexes(ctx); err != nil {
			return nil, err
		}
	}
	return t.b.snapshot(c), nil
}

// repo is one repository to snapshot.
type repo struct {
	rel     string // name relative to the prefix
	ref     name.Repository
	tags    []string
	digests map[string]v1.Hash // from the tag listing, when the registry gives them
}

// repositories lists the repositories under the prefix.
func repositories(ctx context.Context, r Lister, p Prefix, c config) ([]*repo, error) {
	var out []*repo
	if len(c.repos) > 0 {
		for _, rel := range c.repos {
			ref, err := p.Repo(rel)
			if err != nil {
				return nil, err
			}
			out = append(out, &repo{rel: rel, ref: ref})
		}
		return out, nil
	}
	names, err := r.Catalog(ctx, p.Registry, 0)
	if err != nil {
		if errors.Is(err, regerr.ErrUnsupported) {
			return nil, fmt.Errorf("%w: %w", ErrNoCatalog, err) // err names the registry
		}
		return nil, err
	}
	seen := map[string]bool{}
	for _, n := range names {
		rel, ok := p.Rel(n)
		if !ok || seen[rel] {
			continue
		}
		seen[rel] = true
		if rel == "" {
			c.logger.Warn("repository left out: it is the prefix itself, so it has no image name under the prefix (snapshot a shorter prefix to include it)", "repository", p.String())
			continue
		}
		ref, err := p.Repo(rel)
		if err != nil {
			c.logger.Warn("repository left out: the catalog lists a name that is not a valid repository", "repository", n, "error", err)
			continue
		}
		out = append(out, &repo{rel: rel, ref: ref})
	}
	c.logger.Debug("catalog read", "registry", p.Registry.RegistryStr(), "repositories", len(names), "under prefix", len(out))
	return out, nil
}

// manifestKey is a manifest of one repository.
type manifestKey struct {
	rel    string
	digest v1.Hash
}

type taker struct {
	r     Registry
	c     config
	repos map[string]name.Repository // by relative name

	mu sync.Mutex
	b  builder
	// toRead are the manifests that are, or may be, indexes: those whose
	// media type says so and those whose media type is not known.
	toRead map[manifestKey]bool
}

func (t *taker) group(ctx context.Context) (*errgroup.Group, context.Context) {
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(t.c.jobs)
	return eg, gctx
}

func (t *taker) listTags(ctx context.Context, repos []*repo) error {
	eg, gctx := t.group(ctx)
	for _, rp := range repos {
		eg.Go(func() error {
			tags, digests, err := t.r.ListTags(gctx, rp.ref)
			if err != nil {
				return fmt.Errorf("listing the tags of %s: %w", rp.ref, err)
			}
			rp.tags, rp.digests = tags, digests
			return nil
		})
	}
	return eg.Wait()
}

// record adds a tagged manifest; mt is its media type, "" when not known.
func (t *taker) record(rel string, d v1.Hash, tag string, mt types.MediaType) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.add(rel, d, tag)
	if mt == "" || imagegraph.KindOf(mt) == imagegraph.Index {
		t.toRead[manifestKey{rel, d}] = true
	}
}

// resolveTags finds the digest of every tag (only of the filter tag, when
// there is one).
func (t *taker) resolveTags(ctx context.Context, repos []*repo) error {
	eg, gctx := t.group(ctx)
	for _, rp := range repos {
		for _, tag := range rp.tags {
			if t.c.tag != "" && tag != t.c.tag {
				continue
			}
			if d, ok := rp.digests[tag]; ok {
				t.record(rp.rel, d, tag, "")
				continue
			}
			eg.Go(func() error {
				ref := rp.ref.Tag(tag)
				desc, err := t.r.Resolve(gctx, ref)
				if errors.Is(err, regerr.ErrNotFound) {
					t.c.logger.Debug("tag gone since it was listed", "tag", ref.String())
					return nil
				}
				if err != nil {
					return fmt.Errorf("resolving %s: %w", ref, err)
				}
				t.record(rp.rel, desc.Digest, tag, desc.MediaType)
				return nil
			})
		}
	}
	return eg.Wait()
}

// expandIndexes reads every manifest that is or may be an index and adds
// the manifests each index names, level by level, so that indexes of
// indexes are followed too. Each manifest is read once.
func (t *taker) expandIndexes(ctx context.Context) error {
	read := map[manifestKey]bool{}
	for {
		var todo []manifestKey
		for k := range t.toRead {
			if !read[k] {
				todo = append(todo, k)
				read[k] = true
			}
		}
		if len(todo) == 0 {
			return nil
		}
		t.c.logger.Debug("reading manifests for index children", "manifests", len(todo))
		eg, gctx := t.group(ctx)
		for _, k := range todo {
			eg.Go(func() error { return t.expand(gctx, k) })
		}
		if err := eg.Wait(); err != nil {
			return err
		}
	}
}

// expand reads one manifest and, if it is an index, records its children.
func (t *taker) expand(ctx context.Context, k manifestKey) error {
	ref := t.repos[k.rel].Digest(k.digest.String())
	raw, desc, err := t.r.FetchManifest(ctx, ref)
	mt := desc.MediaType
	if err != nil {
		return fmt.Errorf("reading %s: %w", ref, err)
	}
	if k := imagegraph.KindOf(mt); k == imagegraph.Image || k == imagegraph.Schema1 {
		return nil // served as a manifest that lists no other manifest
	}
	// An index, or a manifest served without a manifest type: its own
	// mediaType (or shape) tells.
	m, err := imagegraph.Parse(raw, mt)
	if errors.Is(err, imagegraph.ErrSchema1) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", ref, err)
	}
	if m.Kind != imagegraph.Index {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, child := range m.Index.Manifests {
		t.b.add(k.rel, child.Digest, "")
		if child.MediaType == "" || imagegraph.KindOf(child.MediaType) == imagegraph.Index {
			t.toRead[manifestKey{k.rel, child.Digest}] = true
		}
	}
	return nil
}
