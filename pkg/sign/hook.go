package sign

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/attest"
	"github.com/imgpromoter/promoter/pkg/promote"
)

// Describer reads a manifest: its descriptor and bytes.
type Describer interface {
	Describe(ctx context.Context, repo name.Repository, d v1.Hash) (v1.Descriptor, []byte, error)
}

// HookOptions configure the promotion hook.
type HookOptions struct {
	Jobs int
	// IndexChildren also signs each child manifest of an index.
	IndexChildren bool
	// Policy, when set, gives the policy decision for a digest (nil: none).
	Policy func(v1.Hash) *attest.PolicyResult
	Logger *slog.Logger
	// Actions, when set, receives everything published (sorted by caller).
	Actions func([]Action)
}

// Hook is the promotion step between content and tags: it publishes the
// signature and attestations of every complete digest; a digest whose
// signing fails gets no tag.
func (p *Publisher) Hook(desc Describer, o HookOptions) promote.BeforeTags {
	return func(ctx context.Context, images []promote.Complete) map[v1.Hash]error {
		var mu sync.Mutex
		failed := map[v1.Hash]error{}
		var all []Action
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(1, o.Jobs))
		for _, c := range images {
			g.Go(func() error {
				acts, err := p.publishComplete(gctx, desc, o, c)
				mu.Lock()
				defer mu.Unlock()
				all = append(all, acts...)
				if err != nil {
					failed[c.Digest] = err
					if o.Logger != nil {
						o.Logger.Warn("signing failed; the digest's tags are not written", "digest", c.Digest.String(), "error", err)
					}
				}
				return nil
			})
		}
		_ = g.Wait()
		if o.Actions != nil {
			o.Actions(all)
		}
		return failed
	}
}

func (p *Publisher) publishComplete(ctx context.Context, desc Describer, o HookOptions, c promote.Complete) ([]Action, error) {
	if len(c.Dests) == 0 {
		return nil, nil
	}
	subject := v1.Descriptor{MediaType: c.MediaType, Size: c.Size, Digest: c.Digest}
	manifest := c.Manifest
	if subject.MediaType == "" || subject.Size == 0 || manifest == nil {
		d, raw, err := desc.Describe(ctx, c.Dests[0], c.Digest)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", c.Dests[0].Digest(c.Digest.String()), err)
		}
		if d.Digest != c.Digest {
			return nil, fmt.Errorf("reading %s: registry served digest %s", c.Dests[0].Digest(c.Digest.String()), d.Digest)
		}
		subject, manifest = d, raw
	}
	img := Image{Subject: subject, Source: c.Source.Context()}
	for _, d := range c.Dests {
		img.Destinations = append(img.Destinations, Destination{Repo: d, Tags: c.Tags[d.Name()]})
	}
	if o.Policy != nil {
		img.Policy = o.Policy(c.Digest)
	}
	var actions []Action
	if o.IndexChildren && subject.MediaType.IsIndex() {
		children, err := indexChildren(manifest)
		if err != nil {
			return nil, fmt.Errorf("reading the children of index %s: %w", c.Digest, err)
		}
		for _, ch := range children {
			ci := Image{Subject: ch, Source: img.Source, Destinations: img.Destinations, SignatureOnly: true}
			a, err := p.Publish(ctx, ci)
			actions = append(actions, a...)
			if err != nil {
				return actions, err
			}
		}
	}
	a, err := p.Publish(ctx, img)
	return append(actions, a...), err
}

func indexChildren(raw []byte) ([]v1.Descriptor, error) {
	var im v1.IndexManifest
	if err := json.Unmarshal(raw, &im); err != nil {
		return nil, err
	}
	var out []v1.Descriptor
	for _, m := range im.Manifests {
		if m.MediaType.IsImage() || m.MediaType.IsIndex() {
			out = append(out, v1.Descriptor{MediaType: m.MediaType, Size: m.Size, Digest: m.Digest})
		}
	}
	return out, nil
}
