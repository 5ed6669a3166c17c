package promoter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/policy"
	"github.com/imgpromoter/promoter/pkg/supplychain"
)

// PolicyError says the policy file could not be used: nothing is
// promoted (a policy that cannot be read must not let images through).
type PolicyError struct {
	Path string
	Err  error
}

func (e *PolicyError) Error() string { return e.Err.Error() }
func (e *PolicyError) Unwrap() error { return e.Err }

// policyFile is the policy in force and the root its files must stay in:
// the one given, else promotion-policy.yaml at the root of the manifest
// directory (a thin directory, or a plain manifest's directory).
func policyFile(in Inputs, given string) (path, root string, err error) {
	if given != "" {
		fi, err := os.Lstat(given)
		if err != nil {
			return "", "", err
		}
		if !fi.Mode().IsRegular() {
			return "", "", fmt.Errorf("policy %s is not a regular file", given)
		}
		return given, filepath.Dir(given), nil
	}
	var roots []string
	roots = append(roots, in.ThinDirs...)
	for _, f := range in.Files {
		roots = append(roots, filepath.Dir(f))
	}
	found := map[string]string{}
	var order []string
	for _, r := range roots {
		if p, ok := policy.Default(r); ok {
			abs, _ := filepath.Abs(p)
			if _, seen := found[abs]; !seen {
				found[abs] = r
				order = append(order, p)
			}
		}
	}
	switch len(order) {
	case 0:
		return "", "", nil
	case 1:
		return order[0], filepath.Dir(order[0]), nil
	default:
		return "", "", fmt.Errorf("several %s files (%v): name the one in force with --policy", policy.DefaultFile, order)
	}
}

// planSupplyChain finds each image's signatures, attestations and SBOMs in
// staging, verifies them when a policy is in force, plans what to carry to
// each destination, and refuses the edges of images the policy does not
// let in.
func planSupplyChain(ctx context.Context, in Inputs, set *manifest.Set, groups []*edge.Group, res *Result, o options) error {
	path, root, err := policyFile(in, o.policy)
	if err != nil {
		return &PolicyError{Path: o.policy, Err: err}
	}
	var pol *policy.Policy
	if path != "" {
		if pol, err = policy.Load(path, root); err != nil {
			return &PolicyError{Path: path, Err: err}
		}
	}
	if o.state != nil {
		// With a state file, edges a run verified are trusted without a
		// request: so are their images' artifacts. Only images with work
		// left are inspected.
		var busy []*edge.Group
		for _, g := range groups {
			for _, r := range res.Plan.Records {
				if r.Group == g && r.HasWork() {
					busy = append(busy, g)
					break
				}
			}
		}
		groups = busy
	}
	c := supplychain.New(o.client, o.client, supplychain.WithPolicy(pol), supplychain.WithLogger(o.logger))
	sc, err := c.PlanGroups(ctx, groups, supplychain.FiltersFrom(set), path, o.jobs)
	if err != nil {
		return err
	}
	for _, ip := range sc.Images {
		for _, dp := range ip.Destinations {
			if dp.Allowed() {
				continue
			}
			dst, err := name.NewRepository(dp.Repository)
			if err != nil {
				continue
			}
			d, _ := digestOf(ip.Digest)
			res.Plan.RefusePolicy(d, dst, "refused by the promotion policy: "+joinReasons(dp))
		}
	}
	res.Plan.SupplyChain, res.carrier = sc, c
	return nil
}

func joinReasons(dp *supplychain.DestinationPlan) string {
	s := ""
	for i, r := range dp.Decision.Reasons {
		if i > 0 {
			s += "; "
		}
		s += r
	}
	return s
}

// writeRemaining writes the artifacts planned for images that had nothing
// else to do in a destination (already promoted there), when the policy
// lets them in.
func writeRemaining(ctx context.Context, sc *supplychain.Plan, c *supplychain.Carrier, p *plan.Plan, o options) {
	for _, pair := range sc.Pending() {
		if !pair.Destination.Allowed() {
			continue
		}
		src, err1 := name.NewRepository(pair.Image.Source)
		dst, err2 := name.NewRepository(pair.Destination.Repository)
		d, err3 := digestOf(pair.Image.Digest)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if hasWork(p, d.String(), dst.Name()) {
			continue // its record's failure kept it out; already reported
		}
		if err := sc.Write(ctx, c, src, d, dst); err != nil {
			pair.Destination.Err = err.Error()
			o.logger.Warn("writing supply-chain artifacts failed", "image", src.String()+"@"+d.String(), "destination", dst.String(), "error", err)
		}
	}
}

func hasWork(p *plan.Plan, digest, dst string) bool {
	for _, r := range p.Records {
		if r.Group.Digest.String() == digest && r.Dest.Name() == dst && r.HasWork() {
			return true
		}
	}
	return false
}

func digestOf(s string) (v1.Hash, error) { return v1.NewHash(s) }
