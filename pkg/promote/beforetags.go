package promote

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/transfer"
)

// Complete is one digest whose content is complete in the listed
// destinations, with the tags each of them is about to get.
type Complete struct {
	Source    name.Digest
	Digest    v1.Hash
	MediaType types.MediaType
	Size      int64
	Manifest  []byte // the image's manifest (or index) as written
	Dests     []name.Repository
	Tags      map[string][]string // destination name -> tags
}

// BeforeTags runs once every image's content is written and before any tag
// is (signing, for example): a digest it returns an error for gets no tag,
// and its edges fail with that error.
type BeforeTags func(ctx context.Context, images []Complete) map[v1.Hash]error

// WithBeforeTags runs the work in two passes, content then tags, with hook
// between them. No destination serves a tag before hook accepted its digest.
func WithBeforeTags(hook BeforeTags) Option { return func(c *config) { c.beforeTags = hook } }

// HookError is the error BeforeTags gave for a digest, as it fails edges.
type HookError struct {
	Digest v1.Hash
	Err    error
}

func (e *HookError) Error() string { return fmt.Sprintf("before tagging %s: %v", e.Digest, e.Err) }
func (e *HookError) Unwrap() error { return e.Err }

// runTwoPass writes content (pass 1: no tags), calls the hook with what is
// complete, then writes the tags of accepted digests (pass 2: tag only).
func runTwoPass(ctx context.Context, reg Registry, jobs []transfer.Job, hook BeforeTags, opts ...transfer.Option) ([]transfer.Result, transfer.Stats, error) {
	content := make([]transfer.Job, 0, len(jobs))
	contentIdx := make([]int, 0, len(jobs))
	for i, j := range jobs {
		if j.Copy {
			c := j
			c.Tags = nil
			content = append(content, c)
			contentIdx = append(contentIdx, i)
		}
	}
	results := make([]transfer.Result, len(jobs))
	for i := range results {
		results[i].Tags = map[string]error{}
	}
	var stats transfer.Stats
	if len(content) > 0 {
		r1, s1, err := transfer.Run(ctx, reg, content, opts...)
		stats = s1
		for k, i := range contentIdx {
			if k < len(r1) {
				results[i].Copied, results[i].Image = r1[k].Copied, r1[k].Image
			}
		}
		if err != nil {
			return results, stats, err
		}
	}
	// What is complete, per digest, in source order of first appearance.
	byDigest := map[v1.Hash]*Complete{}
	var order []v1.Hash
	for i, j := range jobs {
		if results[i].Image != nil {
			continue
		}
		d := j.Digest
		c := byDigest[d]
		if c == nil {
			c = &Complete{Source: j.Source.Digest(d.String()), Digest: d, MediaType: j.MediaType, Size: int64(len(j.Manifest)), Manifest: j.Manifest, Tags: map[string][]string{}}
			byDigest[d] = c
			order = append(order, d)
		}
		if c.Manifest == nil && j.Manifest != nil {
			c.Manifest, c.MediaType, c.Size = j.Manifest, j.MediaType, int64(len(j.Manifest))
		}
		c.Dests = append(c.Dests, j.Dest)
		c.Tags[j.Dest.Name()] = append(c.Tags[j.Dest.Name()], j.Tags...)
	}
	images := make([]Complete, 0, len(order))
	for _, d := range order {
		c := byDigest[d]
		slices.SortFunc(c.Dests, func(a, b name.Repository) int { return cmpString(a.Name(), b.Name()) })
		images = append(images, *c)
	}
	refused := hook(ctx, images)
	var tagJobs []transfer.Job
	var tagIdx []int
	for i, j := range jobs {
		if results[i].Image != nil || len(j.Tags) == 0 {
			continue
		}
		d := j.Digest
		if err := refused[d]; err != nil {
			results[i].Image = &HookError{Digest: d, Err: err}
			continue
		}
		t := j
		t.Copy = false
		tagJobs = append(tagJobs, t)
		tagIdx = append(tagIdx, i)
	}
	if err := ctx.Err(); err != nil {
		return results, stats, err
	}
	if len(tagJobs) > 0 {
		r2, s2, err := transfer.Run(ctx, reg, tagJobs, opts...)
		addStats(&stats, s2)
		for k, i := range tagIdx {
			if k < len(r2) {
				if r2[k].Image != nil {
					results[i].Image = r2[k].Image
				}
				for t, e := range r2[k].Tags {
					results[i].Tags[t] = e
				}
				if jobs[i].Copy && r2[k].Image == nil {
					results[i].Copied = true
				}
			}
		}
		if err != nil {
			return results, stats, err
		}
	}
	return results, stats, nil
}

func addStats(s *transfer.Stats, o transfer.Stats) {
	s.ManifestsRead += o.ManifestsRead
	s.SourceBlobReads += o.SourceBlobReads
	s.SourceBytes += o.SourceBytes
	s.Uploads += o.Uploads
	s.Mounts += o.Mounts
	s.UploadRetries += o.UploadRetries
	s.ManifestsPut += o.ManifestsPut
	s.TagsPut += o.TagsPut
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
