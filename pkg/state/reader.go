package state

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// Registry is the registry access the planner needs (plan.Reader).
type Registry interface {
	WalkTags(ctx context.Context, repo name.Repository, fn func(tag string, digest v1.Hash) error) error
	Resolve(ctx context.Context, ref name.Reference) (v1.Descriptor, error)
	FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error)
}

// Reader is a Registry that answers from a store what was verified
// recently, and records what it verifies:
//
//   - WalkTags passes, after every listed tag with a fresh record, the
//     recorded digest for it (as registries that list digests do), so the
//     planner does not resolve that tag. A tag that is no longer listed is
//     never trusted; a digest the registry itself lists comes later and
//     wins.
//   - Resolve of an image by digest is answered from a fresh record of
//     that image in the repository.
//   - Every Resolve answered by the registry is recorded (or forgotten,
//     when the tag is absent).
//
// Source reads (FetchManifest) pass through.
type Reader struct {
	Registry
	store  *Store
	maxAge time.Duration
	now    func() time.Time

	trusted, verified atomic.Int64
}

// NewReader wraps next. now is the clock (time.Now in a run).
func NewReader(next Registry, store *Store, maxAge time.Duration, now func() time.Time) *Reader {
	return &Reader{Registry: next, store: store, maxAge: maxAge, now: now}
}

// Trusted is the number of edges answered from the store; Verified the
// number of manifests resolved by registries.
func (r *Reader) Trusted() int64  { return r.trusted.Load() }
func (r *Reader) Verified() int64 { return r.verified.Load() }

// WalkTags implements Registry.
func (r *Reader) WalkTags(ctx context.Context, repo name.Repository, fn func(tag string, digest v1.Hash) error) error {
	now := r.now()
	rn := repo.Name()
	return r.Registry.WalkTags(ctx, repo, func(tag string, dg v1.Hash) error {
		if err := fn(tag, dg); err != nil || dg != (v1.Hash{}) {
			return err
		}
		d, at, ok := r.store.Tag(rn, tag)
		if !ok || !Fresh(rn, tag, at, now, r.maxAge) {
			return nil
		}
		r.trusted.Add(1)
		return fn(tag, d)
	})
}

// Resolve implements Registry.
func (r *Reader) Resolve(ctx context.Context, ref name.Reference) (v1.Descriptor, error) {
	rn := ref.Context().Name()
	if dg, ok := ref.(name.Digest); ok {
		if h, err := v1.NewHash(dg.DigestStr()); err == nil {
			if at, ok := r.store.Image(rn, h); ok && Fresh(rn, "@"+h.String(), at, r.now(), r.maxAge) {
				r.trusted.Add(1)
				return v1.Descriptor{Digest: h}, nil
			}
		}
	}
	r.verified.Add(1)
	desc, err := r.Registry.Resolve(ctx, ref)
	tag := ""
	if t, ok := ref.(name.Tag); ok {
		tag = t.TagStr()
	}
	switch {
	case err == nil:
		r.store.Observe(rn, tag, desc.Digest, r.now())
	case errors.Is(err, regerr.ErrNotFound) && tag != "":
		r.store.Forget(rn, tag)
	}
	return desc, err
}
