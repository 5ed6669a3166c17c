package transfer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// ErrTagMoved is returned when a tag appeared, pointing at another digest,
// between planning and writing: it is left alone.
var ErrTagMoved = errors.New("tag points at another digest in the destination; a published tag never moves")

// finishJob writes the job's manifests (children first, each only once its
// blobs are in the repository) and then its tags.
func (e *engine) finishJob(ctx context.Context, j Job, tree *node, res *Result) {
	if res.Image != nil {
		return
	}
	raw, mt := []byte(nil), types.MediaType("")
	if j.Copy {
		// With tags, the image itself is written by its first tag (one
		// request instead of two): everything beneath it is complete by
		// then, so the tag never points at partial content. A job with
		// BeforeTags needs the image by digest first.
		byDigest := len(j.Tags) == 0 || j.BeforeTags != nil
		if err := e.writeTree(ctx, j.Dest, tree, byDigest); err != nil {
			res.Image = err
			return
		}
		res.Copied = byDigest
		raw, mt = tree.raw, tree.mt
	}
	if j.BeforeTags != nil {
		if err := j.BeforeTags(ctx); err != nil {
			res.Image = &Error{Side: SideDestination, Ref: j.Dest.Digest(j.Digest.String()).String(), Err: err}
			return
		}
	}
	if len(j.Tags) == 0 {
		return
	}
	dst := j.Dest.Digest(j.Digest.String())
	if raw == nil {
		// Tag only: the image is complete in the destination; tag it from
		// there (the source need not be read at all).
		var err error
		var desc v1.Descriptor
		raw, desc, err = e.reg.FetchManifest(ctx, dst)
		mt = desc.MediaType
		if err != nil {
			res.Image = &Error{Side: SideDestination, Ref: dst.String(), Err: err}
			return
		}
	}
	want := j.Digest
	for _, tag := range j.Tags {
		ref := j.Dest.Tag(tag)
		written, err := e.writeTag(ctx, ref, want, raw, mt)
		if err != nil {
			res.Tags[tag] = err
			continue
		}
		if !written {
			continue
		}
		atomic.AddInt64(&e.stats.TagsPut, 1)
		if j.Copy {
			res.Copied = true
			e.mu.Lock()
			e.present[repoBlob{j.Dest.Name(), want}] = true
			e.mu.Unlock()
		}
	}
	if j.Copy && !res.Copied {
		// No tag could be written (each was taken meanwhile): still land
		// the reviewed image by digest, so that a fix needs only a tag.
		if err := e.writeTree(ctx, j.Dest, tree, true); err == nil {
			res.Copied = true
		}
	}
}

// writeTree writes every manifest of the tree into repo by digest, children
// before parents, each only when all its blobs are there. The root itself is
// checked but written only when withRoot is set.
func (e *engine) writeTree(ctx context.Context, repo name.Repository, n *node, withRoot bool) error {
	for _, c := range n.children {
		if err := e.writeTree(ctx, repo, c, true); err != nil {
			return err
		}
	}
	k := repoBlob{repo.Name(), n.digest}
	e.mu.Lock()
	if e.present[k] {
		e.mu.Unlock()
		return nil
	}
	for _, b := range n.blobs {
		if err := e.blobErr[repoBlob{repo.Name(), b.Digest}]; err != nil {
			e.mu.Unlock()
			return err
		}
		if !e.present[repoBlob{repo.Name(), b.Digest}] {
			e.mu.Unlock()
			return &Error{Side: SideDestination, Ref: repo.Digest(b.Digest.String()).String(), Err: errors.New("blob missing after transfer")}
		}
	}
	if !withRoot {
		e.mu.Unlock()
		return nil
	}
	once := e.putOnce[k]
	if once == nil {
		once = &onceErr{}
		e.putOnce[k] = once
	}
	e.mu.Unlock()
	once.once.Do(func() {
		ref := repo.Digest(n.digest.String())
		if _, err := e.reg.PutManifest(ctx, ref, n.raw, n.mt); err != nil {
			once.err = &Error{Side: SideDestination, Ref: ref.String(), Err: err}
			return
		}
		atomic.AddInt64(&e.stats.ManifestsPut, 1)
		e.mu.Lock()
		e.present[k] = true
		e.mu.Unlock()
	})
	return once.err
}

func sortRepos(rs []name.Repository) {
	slices.SortFunc(rs, func(a, b name.Repository) int {
		switch {
		case a.Name() < b.Name():
			return -1
		case a.Name() > b.Name():
			return 1
		}
		return 0
	})
}

// writeTag checks the tag again and writes it when it is absent. A tag set
// by someone else since planning is never overwritten. With a Reserver,
// the host's limiter slot and rate tokens for both requests are taken
// first, so the write follows the check with nothing queued between them:
// the window in which another writer could set the tag is the check's
// answer and the write's request on the wire (docs/promotion.md).
func (e *engine) writeTag(ctx context.Context, ref name.Tag, want v1.Hash, raw []byte, mt types.MediaType) (written bool, err error) {
	if r, ok := e.reg.(Reserver); ok {
		rctx, done, err := r.Reserve(ctx, ref.Context(), 2)
		if err != nil {
			return false, &Error{Side: SideDestination, Ref: ref.String(), Err: err}
		}
		defer done()
		ctx = rctx
	}
	cur, err := e.reg.Resolve(ctx, ref)
	switch {
	case errors.Is(err, regerr.ErrNotFound):
	case err != nil:
		return false, &Error{Side: SideDestination, Ref: ref.String(), Err: err}
	case cur.Digest != want:
		return false, &Error{Side: SideDestination, Ref: ref.String(), Err: fmt.Errorf("%w (it points at %s)", ErrTagMoved, cur.Digest)}
	default:
		return false, nil // already there
	}
	if _, err := e.reg.PutManifest(ctx, ref, raw, mt); err != nil {
		return false, &Error{Side: SideDestination, Ref: ref.String(), Err: err}
	}
	return true, nil
}
