package plan

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/imagegraph"
)

// ImageSummary describes, for reviewers, one image (source digest) that the
// plan does something with or refuses.
type ImageSummary struct {
	Project      string   `json:"project,omitempty"`
	Image        string   `json:"image"`
	Source       string   `json:"source"`
	Digest       string   `json:"digest"`
	Tags         []string `json:"tags"`
	Destinations []string `json:"destinations"`
	// Counts are the image's edges per class.
	Counts Counts `json:"counts"`
	// MediaType, Platforms and Size are read from the source: the size is
	// the sum of config and layer sizes (of every platform, for an index).
	MediaType string   `json:"mediaType,omitempty"`
	Platforms []string `json:"platforms,omitempty"`
	Size      int64    `json:"size,omitempty"`
	// Error says why the details could not be read.
	Error string `json:"error,omitempty"`
}

// DescribeReader is what Describe reads from the source registry.
type DescribeReader interface {
	FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error)
	FetchBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor) (io.ReadCloser, error)
}

// Summaries groups actions by image, refused ones first, then by project,
// image and digest.
func Summaries(actions []Action) []ImageSummary {
	type key struct{ source, digest string }
	byKey := map[key]*ImageSummary{}
	tags := map[key]map[string]bool{}
	dests := map[key]map[string]bool{}
	for _, a := range actions {
		k := key{a.Source, a.Digest}
		s := byKey[k]
		if s == nil {
			s = &ImageSummary{Project: a.Project, Image: a.Image, Source: a.Source, Digest: a.Digest, Counts: Counts{}, Tags: []string{}}
			byKey[k] = s
			tags[k], dests[k] = map[string]bool{}, map[string]bool{}
		}
		s.Counts[a.Class]++
		if a.Tag != "" {
			tags[k][a.Tag] = true
		}
		dests[k][a.Destination] = true
	}
	out := make([]ImageSummary, 0, len(byKey))
	for k, s := range byKey {
		s.Tags = append(s.Tags, slices.Sorted(maps.Keys(tags[k]))...)
		s.Destinations = slices.Sorted(maps.Keys(dests[k]))
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ImageSummary) int {
		return cmp.Or(cmp.Compare(refusedCount(b), refusedCount(a)), cmp.Compare(a.Project, b.Project), cmp.Compare(a.Image, b.Image), cmp.Compare(a.Digest, b.Digest))
	})
	return out
}

func refusedCount(s ImageSummary) int {
	n := 0
	for c, v := range s.Counts {
		if c.Refused() {
			n += v
		}
	}
	return n
}

// Describe fills p.Images with a summary per image and, for at most limit
// images, reads their size and platforms from the source (the source
// manifests read while planning are reused). Images missing from the source
// are not read.
func Describe(ctx context.Context, r DescribeReader, p *Plan, limit int) error {
	p.Images = Summaries(p.Actions())
	known := map[string]*Record{}
	for _, r := range p.Records {
		if r.Manifest != nil {
			known[r.Group.Digest.String()] = r
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range p.Images {
		s := &p.Images[i]
		if i >= limit || s.Counts[MissingSource] > 0 {
			continue
		}
		g.Go(func() error {
			repo, err := name.NewRepository(s.Source, name.StrictValidation)
			if err != nil {
				s.Error = err.Error()
				return nil
			}
			var raw []byte
			var mt types.MediaType
			if it, ok := known[s.Digest]; ok {
				raw, mt = it.Manifest, it.MediaType
			} else {
				var desc v1.Descriptor
				if raw, desc, err = r.FetchManifest(gctx, repo.Digest(s.Digest)); err != nil {
					s.Error = "reading the source: " + err.Error()
					return nil
				}
				mt = desc.MediaType
			}
			if err := describe(gctx, r, repo, raw, mt, s); err != nil {
				s.Error = err.Error()
			}
			return nil
		})
	}
	_ = g.Wait()
	return ctx.Err()
}

func describe(ctx context.Context, r DescribeReader, repo name.Repository, raw []byte, mt types.MediaType, s *ImageSummary) error {
	fetch := func(ctx context.Context, d v1.Descriptor) ([]byte, types.MediaType, error) {
		raw, desc, err := r.FetchManifest(ctx, repo.Digest(d.Digest.String()))
		return raw, desc.MediaType, err
	}
	s.MediaType = string(mt)
	var root *imagegraph.Node
	err := imagegraph.Walk(ctx, v1.Hash{}, raw, mt, fetch, func(n *imagegraph.Node) error {
		s.Size += n.Size()
		root = n // the root is visited last
		return nil
	})
	if err != nil {
		return err
	}
	if root.Kind == imagegraph.Index {
		for _, d := range root.Index.Manifests {
			if d.Platform != nil {
				s.Platforms = append(s.Platforms, platformString(d.Platform))
			}
		}
		slices.Sort(s.Platforms)
		s.Platforms = slices.Compact(s.Platforms)
		return nil
	}
	cfg := root.Image.Config
	if cfg.Size > 1<<20 {
		return nil // not an image config: no platform
	}
	rc, err := r.FetchBlob(ctx, repo, cfg)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	defer rc.Close()
	var cf v1.ConfigFile
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&cf); err == nil && cf.OS != "" {
		s.Platforms = []string{platformString(&v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant})}
	}
	return nil
}

func platformString(p *v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
