// Package drift compares what production registries hold with what the
// reviewed manifests say they should hold: missing digests and tags, tags
// that point elsewhere (moved), and tags, repositories and, where the
// registry lists untagged manifests, digests that no manifest lists
// (unexpected). The children of a listed index and the supply-chain
// referrers of a listed digest (OCI referrers with a subject, cosign's
// sha256-HEX.sig/.att/.sbom tags) are expected, not drift.
//
// It reads registries with the snapshot package (the same reader as
// `promoter snapshot`) and judges single tags and digests for the audit
// server with the same rules.
package drift

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/names"
	"github.com/imgpromoter/promoter/pkg/regerr"
)

// Kind is a kind of drift.
type Kind string

// Kinds of drift.
const (
	MissingTag           Kind = "missing-tag"           // a listed tag is not in the registry
	MissingDigest        Kind = "missing-digest"        // a listed digest is not in the registry
	MovedTag             Kind = "moved-tag"             // a listed tag points at another digest
	UnexpectedTag        Kind = "unexpected-tag"        // a tag no manifest lists
	UnexpectedDigest     Kind = "unexpected-digest"     // an untagged manifest no manifest lists
	UnexpectedRepository Kind = "unexpected-repository" // a repository no manifest lists
)

// Finding is one difference between a registry and the manifests.
type Finding struct {
	Kind Kind `json:"kind"`
	// Repository is the full repository name, HOST/PATH.
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	// Digest is what the registry holds (for a moved or unexpected tag:
	// the digest the tag points at), or the missing digest.
	Digest string `json:"digest,omitempty"`
	// Expected is the digest the manifests list for the tag.
	Expected string `json:"expected,omitempty"`
}

// RepoKey is how repositories are compared: as every stage compares them
// (names.RepositoryKey).
func RepoKey(r name.Repository) string { return names.RepositoryKey(r) }

// Expected is what the manifests say each destination repository holds.
type Expected struct {
	repos map[string]*Repo
}

// Repo is one destination repository's expected content.
type Repo struct {
	Ref name.Repository
	// Tags maps each listed tag to its digest.
	Tags map[string]v1.Hash
	// Sources maps each listed digest to the staging image it is promoted
	// from (where an index's children can be read when the destination
	// does not hold the index yet).
	Sources map[v1.Hash]name.Digest
}

// NewExpected builds the expected state from the valid groups.
func NewExpected(groups []*edge.Group) *Expected {
	e := &Expected{repos: map[string]*Repo{}}
	for _, g := range groups {
		for _, d := range g.Dests {
			k := RepoKey(d)
			r, ok := e.repos[k]
			if !ok {
				r = &Repo{Ref: d, Tags: map[string]v1.Hash{}, Sources: map[v1.Hash]name.Digest{}}
				e.repos[k] = r
			}
			r.Sources[g.Digest] = g.Source
			for _, t := range g.Tags {
				r.Tags[t.Name] = g.Digest
			}
		}
	}
	return e
}

// Repo returns the expected content of a repository (HOST/PATH, as RepoKey
// writes it), or nil when no manifest lists it.
func (e *Expected) Repo(key string) *Repo { return e.repos[key] }

// Repos returns the keys of every listed repository, sorted.
func (e *Expected) Repos() []string { return slices.Sorted(maps.Keys(e.repos)) }

// Listed reports whether the manifests list the digest in this repository.
func (r *Repo) Listed(d v1.Hash) bool {
	_, ok := r.Sources[d]
	return ok
}

// cosignTagRE is a cosign signature, attestation or SBOM tag of a digest.
var cosignTagRE = regexp.MustCompile(`^sha256-([a-f0-9]{64})\.(sig|att|sbom)$`)

// CosignSubject returns the digest a cosign tag (sha256-HEX.sig, .att,
// .sbom) is about.
func CosignSubject(tag string) (v1.Hash, bool) {
	m := cosignTagRE.FindStringSubmatch(tag)
	if m == nil {
		return v1.Hash{}, false
	}
	return v1.Hash{Algorithm: "sha256", Hex: m[1]}, true
}

// Reader reads manifests (an *access.Client).
type Reader interface {
	// Resolve returns a manifest's descriptor; one that does not exist is
	// an error matching regerr.ErrNotFound.
	Resolve(ctx context.Context, ref name.Reference) (v1.Descriptor, error)
	FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error)
}

// Head returns the descriptor of the manifest at ref, or nil when there is
// none.
func Head(ctx context.Context, r Reader, ref name.Reference) (*v1.Descriptor, error) {
	d, err := r.Resolve(ctx, ref)
	if errors.Is(err, regerr.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// manifestLinks is the part of a manifest that names other manifests.
type manifestLinks struct {
	MediaType types.MediaType `json:"mediaType"`
	Manifests []v1.Descriptor `json:"manifests"`
	Subject   *v1.Descriptor  `json:"subject"`
}

// Relations decides whether a digest that no manifest lists is still
// expected: a child of a listed index (at any depth), or a referrer of a
// listed (or expected) digest. Manifests are content-addressed, so what it
// reads is cached for its lifetime.
type Relations struct {
	r Reader

	mu    sync.Mutex
	links map[v1.Hash]*manifestLinks // nil value: not found
}

// NewRelations returns an empty cache over a reader.
func NewRelations(r Reader) *Relations {
	return &Relations{r: r, links: map[v1.Hash]*manifestLinks{}}
}

// read returns a manifest's links, reading it from the first repository that
// has it.
func (rl *Relations) read(ctx context.Context, d v1.Hash, from ...name.Repository) (*manifestLinks, error) {
	rl.mu.Lock()
	l, ok := rl.links[d]
	rl.mu.Unlock()
	if ok {
		return l, nil
	}
	var found *manifestLinks
	for _, repo := range from {
		desc, err := Head(ctx, rl.r, repo.Digest(d.String()))
		if err != nil {
			return nil, err
		}
		if desc == nil {
			continue
		}
		raw, _, err := rl.r.FetchManifest(ctx, repo.Digest(d.String()))
		if err != nil {
			return nil, err
		}
		var m manifestLinks
		if json.Unmarshal(raw, &m) == nil {
			found = &m
		} else {
			found = &manifestLinks{}
		}
		break
	}
	if found == nil {
		return nil, nil // not cached: it may be pushed later
	}
	rl.mu.Lock()
	rl.links[d] = found
	rl.mu.Unlock()
	return found, nil
}

// childrenOf returns every manifest an index names, at any depth, reading
// each from the destination or, when the destination lacks it, from the
// staging image the manifests promote it from.
func (rl *Relations) childrenOf(ctx context.Context, r *Repo, d v1.Hash, into map[v1.Hash]bool) error {
	from := []name.Repository{r.Ref}
	if src, ok := r.Sources[d]; ok {
		from = append(from, src.Context())
	}
	l, err := rl.read(ctx, d, from...)
	if err != nil || l == nil {
		return err
	}
	for _, c := range l.Manifests {
		if into[c.Digest] {
			continue
		}
		into[c.Digest] = true
		if c.MediaType == types.OCIImageIndex || c.MediaType == types.DockerManifestList || c.MediaType == "" {
			if err := rl.childrenOf(ctx, r, c.Digest, into); err != nil {
				return err
			}
		}
	}
	return nil
}

// Expected reports whether digest d in repository r is expected although it
// may not be listed: it is listed, a child of a listed index, or a referrer
// (a manifest with a subject) of an expected digest.
func (rl *Relations) Expected(ctx context.Context, r *Repo, d v1.Hash) (bool, error) {
	if r == nil {
		return false, nil
	}
	return rl.expected(ctx, r, d, 0)
}

func (rl *Relations) expected(ctx context.Context, r *Repo, d v1.Hash, depth int) (bool, error) {
	if r.Listed(d) {
		return true, nil
	}
	if depth > 4 {
		return false, nil
	}
	children := map[v1.Hash]bool{}
	for _, listed := range slices.SortedFunc(maps.Keys(r.Sources), func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) }) {
		if err := rl.childrenOf(ctx, r, listed, children); err != nil {
			return false, err
		}
		if children[d] {
			return true, nil
		}
	}
	l, err := rl.read(ctx, d, r.Ref)
	if err != nil || l == nil || l.Subject == nil {
		return false, err
	}
	return rl.expected(ctx, r, l.Subject.Digest, depth+1)
}
