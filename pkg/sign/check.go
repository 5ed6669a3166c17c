package sign

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/attest"
)

// Target is a promoted digest in one destination repository.
type Target struct {
	Repo   name.Repository
	Digest v1.Hash
}

// Problem is something a destination lacks (or could not be checked).
type Problem struct {
	Repo   string `json:"repository"`
	Digest string `json:"digest"`
	// Missing is "image", "signature" or "promotion attestation"; empty
	// when Error is set.
	Missing string `json:"missing,omitempty"`
	Error   string `json:"error,omitempty"`
}

// PresenceChecker says whether a manifest digest is in a repository.
type PresenceChecker interface {
	Present(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error)
}

// CheckPromoted checks every target: the digest is present, signed by the
// verifier's identity, and carries its promotion attestation by that
// identity. It returns the problems sorted by repository and digest; an
// error reading one target is a problem of that target (fail closed).
func CheckPromoted(ctx context.Context, v *Verifier, reg PresenceChecker, targets []Target, jobs int) []Problem {
	out := make([][]Problem, len(targets))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, jobs))
	for i, t := range targets {
		g.Go(func() error {
			p := func(missing string, err error) Problem {
				pr := Problem{Repo: t.Repo.Name(), Digest: t.Digest.String(), Missing: missing}
				if err != nil {
					pr.Missing, pr.Error = "", err.Error()
				}
				return pr
			}
			ok, err := reg.Present(gctx, t.Repo, t.Digest)
			if err != nil || !ok {
				out[i] = []Problem{p("image", err)}
				return nil
			}
			found, err := v.Check(gctx, t.Repo, t.Digest, attest.CosignSign, attest.Promotion)
			if err != nil {
				out[i] = []Problem{p("", fmt.Errorf("reading referrers: %w", err))}
				return nil
			}
			if !found[attest.CosignSign] {
				out[i] = append(out[i], p("signature", nil))
			}
			if !found[attest.Promotion] {
				out[i] = append(out[i], p("promotion attestation", nil))
			}
			return nil
		})
	}
	_ = g.Wait()
	var all []Problem
	for _, ps := range out {
		all = append(all, ps...)
	}
	if err := ctx.Err(); err != nil {
		all = append(all, Problem{Error: err.Error()})
	}
	slices.SortFunc(all, func(a, b Problem) int {
		if c := cmpStr(a.Repo, b.Repo); c != 0 {
			return c
		}
		if c := cmpStr(a.Digest, b.Digest); c != 0 {
			return c
		}
		return cmpStr(a.Missing, b.Missing)
	})
	return all
}
