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
		if err := e.writeTree(ctx, j.Dest, tree); err != nil {
			res.Image = err
			return
		}
		res.Copied = true
		raw, mt = tree.raw, tree.mt
	}
	if len(j.Tags) == 0 {
		return
	}
	dst := j.Dest.Digest(j.Source.DigestStr())
	if raw == nil {
		// Tag only: the image is complete in the destination; tag it from
		// there (the source need not be read at all).
		var err error
		raw, mt, _, err = e.reg.GetManifest(ctx, dst)
		if err != nil {
			res.Image = &Error{Side: SideDestination, Ref: dst.String(), Err: err}
			return
		}
	}
	want, err := v1.NewHash(j.Source.DigestStr())
	if err != nil {
		res.Image = err
		return
	}
	for _, tag := range j.Tags {
		ref := j.Dest.Tag(tag)
		// Re-check right before writing: a tag set by someone else since
		// planning is never overwritten.
		cur, err := e.reg.Head(ctx, ref)
		if err != nil {
			res.Tags[tag] = &Error{Side: SideDestination, Ref: ref.String(), Err: err}
			continue
		}
		if cur != nil {
			if cur.Digest != want {
				res.Tags[tag] = &Error{Side: SideDestination, Ref: ref.String(), Err: fmt.Errorf("%w (it points at %s)", ErrTagMoved, cur.Digest)}
			}
			continue
		}
		if err := e.reg.PutManifest(ctx, ref, raw, mt); err != nil {
			res.Tags[tag] = &Error{Side: SideDestination, Ref: ref.String(), Err: err}
			continue
		}
		atomic.AddInt64(&e.stats.TagsPut, 1)
	}
}

// writeTree writes every manifest of the tree into repo by digest, children
// before parents, each only when all its blobs are there.
func (e *engine) writeTree(ctx context.Context, repo name.Repository, n *node) error {
	for _, c := range n.children {
		if err := e.writeTree(ctx, repo, c); err != nil {
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
	once := e.putOnce[k]
	if once == nil {
		once = &onceErr{}
		e.putOnce[k] = once
	}
	e.mu.Unlock()
	once.once.Do(func() {
		ref := repo.Digest(n.digest.String())
		if err := e.reg.PutManifest(ctx, ref, n.raw, n.mt); err != nil {
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
