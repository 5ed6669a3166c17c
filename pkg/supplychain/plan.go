package supplychain

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/evidence"
)

// Plan is the supply-chain part of a promotion: per image, the evidence
// found in staging and, per destination, the policy's decision and the
// artifacts to copy, present, skipped or refused. After Write it records
// what was done. Part of the JSON schema of plans and run reports.
type Plan struct {
	// Policy is the policy file in force; empty when there is none, and
	// then nothing was verified.
	Policy string       `json:"policy,omitempty"`
	Images []*ImagePlan `json:"images"`

	mu    sync.Mutex
	byKey map[string]*DestinationPlan // digest|destination
	imgs  map[string]*ImagePlan       // digest|source
}

// ImagePlan is one source image.
type ImagePlan struct {
	Project  string             `json:"project,omitempty"`
	Image    string             `json:"image"`
	Source   string             `json:"source"`
	Digest   string             `json:"digest"`
	Evidence *evidence.Evidence `json:"evidence,omitempty"`
	// Error says why staging could not be read or verified (the image is
	// then refused wherever a policy applies).
	Error        string             `json:"error,omitempty"`
	Destinations []*DestinationPlan `json:"destinations"`

	img *Image
}

func key(d v1.Hash, repo name.Repository) string { return d.String() + "|" + repo.Name() }

// For returns the plan of an image digest in a destination (nil: none).
func (p *Plan) For(digest v1.Hash, dst name.Repository) *DestinationPlan {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byKey[key(digest, dst)]
}

// MarshalJSON keeps the JSON free of the lookup state.
func (p *Plan) MarshalJSON() ([]byte, error) {
	type doc struct {
		Policy string       `json:"policy,omitempty"`
		Images []*ImagePlan `json:"images"`
	}
	imgs := p.Images
	if imgs == nil {
		imgs = []*ImagePlan{}
	}
	return json.Marshal(doc{Policy: p.Policy, Images: imgs})
}

// PlanGroups inspects every group's image in staging (at most jobs at
// once) and plans each of its destinations. policyFile names the policy
// for the record. Registry errors never stop planning: they are recorded
// on the image or destination they touch.
func (c *Carrier) PlanGroups(ctx context.Context, groups []*edge.Group, filters Filters, policyFile string, jobs int) (*Plan, error) {
	p := &Plan{Policy: policyFile, byKey: map[string]*DestinationPlan{}, imgs: map[string]*ImagePlan{}}
	if c.o.policy == nil {
		p.Policy = ""
	}
	// One ImagePlan per (source, digest): groups of one image with other
	// destination sets share it.
	type unit struct {
		ip    *ImagePlan
		src   name.Repository
		dests []name.Repository
	}
	var units []*unit
	byImage := map[string]*unit{}
	for _, g := range groups {
		k := g.Source.Context().Name() + "@" + g.Digest.String()
		u, ok := byImage[k]
		if !ok {
			u = &unit{ip: &ImagePlan{Project: g.Project, Image: g.Image, Source: g.Source.Context().Name(), Digest: g.Digest.String()}, src: g.Source.Context()}
			byImage[k] = u
			units = append(units, u)
		}
		for _, d := range g.Dests {
			if !slices.ContainsFunc(u.dests, func(x name.Repository) bool { return x.Name() == d.Name() }) {
				u.dests = append(u.dests, d)
			}
		}
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(max(1, jobs))
	for _, u := range units {
		eg.Go(func() error {
			digest, err := v1.NewHash(u.ip.Digest)
			if err != nil {
				return err
			}
			children, err := c.children(ectx, u.src, digest)
			var img *Image
			if err != nil {
				img = &Image{Source: u.src, Digest: digest, Err: fmt.Errorf("reading %s@%s: %w", u.src, digest, err)}
			} else {
				img = c.Inspect(ectx, u.src, digest, children, u.dests)
			}
			u.ip.img = img
			if img.Err != nil {
				u.ip.Error = img.Err.Error()
			} else {
				ev := img.Evidence
				u.ip.Evidence = &ev
			}
			slices.SortFunc(u.dests, func(a, b name.Repository) int { return cmp.Compare(a.Name(), b.Name()) })
			for _, d := range u.dests {
				dp := c.PlanDestination(ectx, img, d, filters.For(d), true)
				u.ip.Destinations = append(u.ip.Destinations, &dp)
			}
			return ectx.Err()
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	slices.SortFunc(units, func(a, b *unit) int {
		return cmp.Or(cmp.Compare(a.ip.Source, b.ip.Source), cmp.Compare(a.ip.Digest, b.ip.Digest))
	})
	for _, u := range units {
		p.Images = append(p.Images, u.ip)
		p.imgs[u.ip.Digest+"|"+u.ip.Source] = u.ip
		digest, _ := v1.NewHash(u.ip.Digest)
		for i, d := range u.dests {
			p.byKey[key(digest, d)] = u.ip.Destinations[i]
		}
	}
	return p, nil
}

// children lists the child manifests of an index (none for an image).
func (c *Carrier) children(ctx context.Context, repo name.Repository, d v1.Hash) ([]v1.Hash, error) {
	raw, desc, err := c.src.FetchManifest(ctx, repo.Digest(d.String()))
	if err != nil {
		return nil, err
	}
	var m struct {
		MediaType string          `json:"mediaType"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	_ = desc
	var out []v1.Hash
	for _, c := range m.Manifests {
		out = append(out, c.Digest)
	}
	return out, nil
}

// Write writes the artifacts planned for the image digest (from source)
// in dst, whose registry holds the image by digest already. Nothing
// planned: nothing done.
func (p *Plan) Write(ctx context.Context, c *Carrier, source name.Repository, digest v1.Hash, dst name.Repository) error {
	dp := p.For(digest, dst)
	if dp == nil || !dp.Pending() {
		return nil
	}
	p.mu.Lock()
	ip := p.imgs[digest.String()+"|"+source.Name()]
	p.mu.Unlock()
	if ip == nil || ip.img == nil {
		return fmt.Errorf("no supply-chain inspection of %s@%s", source, digest)
	}
	return c.Write(ctx, ip.img, dst, dp)
}

// Pending lists the (image, destination) pairs with artifacts still to
// write, in plan order.
func (p *Plan) Pending() []Pair {
	var out []Pair
	if p == nil {
		return out
	}
	for _, ip := range p.Images {
		for _, dp := range ip.Destinations {
			if dp.Pending() {
				out = append(out, Pair{Image: ip, Destination: dp})
			}
		}
	}
	return out
}

// Pair is one image and one of its destinations.
type Pair struct {
	Image       *ImagePlan
	Destination *DestinationPlan
}

// Failed reports whether an artifact was refused or a destination's
// artifacts could not be read or written: the run must say so (the images
// themselves are still promoted).
func (p *Plan) Failed() bool {
	if p == nil {
		return false
	}
	for _, ip := range p.Images {
		for _, dp := range ip.Destinations {
			if dp.Err != "" && dp.Allowed() {
				return true
			}
			for _, a := range dp.Artifacts {
				if a.Status == Refused {
					return true
				}
			}
		}
	}
	return false
}
