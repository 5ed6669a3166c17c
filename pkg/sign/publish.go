package sign

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/attest"
)

// Destination is one repository a digest was promoted to, with the tags it
// gets there.
type Destination struct {
	Repo name.Repository
	Tags []string
}

// Image is one promoted digest and every destination holding it.
type Image struct {
	Subject      v1.Descriptor // the digest, its media type and size
	Source       name.Repository
	Destinations []Destination
	// Policy, when the promotion policy was applied, is what it decided;
	// a verification summary is attested then.
	Policy *attest.PolicyResult
	// SignatureOnly: sign, but attest nothing (children of an index).
	SignatureOnly bool
}

// Action is what publishing did on one destination.
type Action struct {
	Repo           string `json:"repository"`
	Digest         string `json:"digest"`
	Kind           string `json:"kind"` // signature, promotion, verification-summary, legacy-signature
	Written        bool   `json:"written"`
	ArtifactDigest string `json:"artifactDigest,omitempty"`
}

// Publisher signs promoted digests and attaches signatures and attestations
// to every destination.
type Publisher struct {
	Signer    *Signer
	Store     ReferrerStore
	Legacy    LegacyStore // nil: no `.sig` tags
	Created   time.Time   // fixed once per run: every mirror gets the same bytes
	BuilderID string      // promoter identity, e.g. "https://github.com/imgpromoter/promoter@v1.2.3"
}

// PublishError says which destination failed and at what.
type PublishError struct {
	Repo string
	Kind string
	Err  error
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Kind, e.Repo, e.Err)
}
func (e *PublishError) Unwrap() error { return e.Err }

// findMine returns the first referrer of subject in repo that is a bundle of
// predicateType signed by this signer.
func (p *Publisher) findMine(ctx context.Context, repo name.Repository, subject v1.Hash, predicateType string) (*Referrer, error) {
	descs, err := p.Store.Referrers(ctx, repo, subject)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(descs, func(a, b v1.Descriptor) int { return cmpStr(a.Digest.String(), b.Digest.String()) })
	for _, d := range descs {
		// The index entry is only a hint (some registries report the
		// config media type as artifactType): the manifest is read.
		if pt, ok := d.Annotations[AnnotationPredicateType]; ok && pt != predicateType {
			continue
		}
		r, err := p.Store.ReadReferrer(ctx, repo, d.Digest)
		if err != nil {
			return nil, err
		}
		for _, b := range r.Blobs {
			if b.MediaType != BundleMediaType {
				continue
			}
			ok, err := p.Signer.BundleIsMine(ctx, b.Data, predicateType, subject)
			if err != nil {
				return nil, err
			}
			if ok {
				return r, nil
			}
		}
	}
	return nil, nil
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Publish makes every destination of img carry: the image signature (one
// bundle, signed once, byte-identical everywhere; an existing one of this
// signer is reused), the promotion attestation of that destination, the
// verification summary when a policy was applied, and the legacy `.sig`
// signature when enabled. What is already there is not written again, so a
// rerun finishes what a failed run missed.
func (p *Publisher) Publish(ctx context.Context, img Image) ([]Action, error) {
	d := img.Subject.Digest
	var actions []Action
	// The signature: find an existing one anywhere, else sign once.
	have := make([]bool, len(img.Destinations))
	var sig *Referrer
	for i, dst := range img.Destinations {
		r, err := p.findMine(ctx, dst.Repo, d, attest.CosignSign)
		if err != nil {
			return actions, &PublishError{Repo: dst.Repo.Name(), Kind: "signature", Err: err}
		}
		if r != nil {
			have[i] = true
			if sig == nil {
				sig = r
			}
		}
	}
	if sig == nil && len(img.Destinations) > 0 {
		st, err := attest.Sign(d).Marshal()
		if err != nil {
			return actions, err
		}
		r, err := p.signReferrer(ctx, img.Subject, st, attest.CosignSign)
		if err != nil {
			return actions, &PublishError{Repo: img.Destinations[0].Repo.Name(), Kind: "signature", Err: err}
		}
		sig = r
	}
	for i, dst := range img.Destinations {
		a := Action{Repo: dst.Repo.Name(), Digest: d.String(), Kind: "signature", ArtifactDigest: sig.Digest.String()}
		if !have[i] {
			if err := p.Store.WriteReferrer(ctx, dst.Repo, sig); err != nil {
				return actions, &PublishError{Repo: dst.Repo.Name(), Kind: "signature", Err: err}
			}
			a.Written = true
		}
		actions = append(actions, a)
	}
	for _, dst := range img.Destinations {
		if img.SignatureOnly {
			break
		}
		a, err := p.attestPromotion(ctx, img, dst)
		if err != nil {
			return actions, &PublishError{Repo: dst.Repo.Name(), Kind: "promotion", Err: err}
		}
		actions = append(actions, a)
		if img.Policy != nil {
			a, err := p.attestSummary(ctx, img, dst)
			if err != nil {
				return actions, &PublishError{Repo: dst.Repo.Name(), Kind: "verification-summary", Err: err}
			}
			actions = append(actions, a)
		}
		if p.Legacy != nil {
			a, err := p.legacy(ctx, img, dst)
			if err != nil {
				return actions, &PublishError{Repo: dst.Repo.Name(), Kind: "legacy-signature", Err: err}
			}
			actions = append(actions, a)
		}
	}
	return actions, nil
}

func (p *Publisher) signReferrer(ctx context.Context, subject v1.Descriptor, statement []byte, predicateType string) (*Referrer, error) {
	b, err := p.Signer.SignStatement(ctx, statement)
	if err != nil {
		return nil, err
	}
	return BundleReferrer(subject, b, predicateType, p.Created)
}

func (p *Publisher) attestPromotion(ctx context.Context, img Image, dst Destination) (Action, error) {
	d := img.Subject.Digest
	a := Action{Repo: dst.Repo.Name(), Digest: d.String(), Kind: "promotion"}
	r, err := p.findMine(ctx, dst.Repo, d, attest.Promotion)
	if err != nil || r != nil {
		if r != nil {
			a.ArtifactDigest = r.Digest.String()
		}
		return a, err
	}
	in := attest.PromotionInput{Destination: dst.Repo.Name(), Digest: d, Tags: dst.Tags, Time: p.Created, BuilderID: p.BuilderID}
	if img.Source.RepositoryStr() != "" {
		in.Source = img.Source.Name()
	}
	st, err := attest.PromotionStatement(in)
	if err != nil {
		return a, err
	}
	raw, err := st.Marshal()
	if err != nil {
		return a, err
	}
	if r, err = p.signReferrer(ctx, img.Subject, raw, attest.Promotion); err != nil {
		return a, err
	}
	if err := p.Store.WriteReferrer(ctx, dst.Repo, r); err != nil {
		return a, err
	}
	a.Written, a.ArtifactDigest = true, r.Digest.String()
	return a, nil
}

func (p *Publisher) attestSummary(ctx context.Context, img Image, dst Destination) (Action, error) {
	d := img.Subject.Digest
	a := Action{Repo: dst.Repo.Name(), Digest: d.String(), Kind: "verification-summary"}
	r, err := p.findMine(ctx, dst.Repo, d, attest.VerificationSummary)
	if err != nil || r != nil {
		if r != nil {
			a.ArtifactDigest = r.Digest.String()
		}
		return a, err
	}
	st, err := attest.VerificationSummaryStatement(attest.SummaryInput{
		Destination: dst.Repo.Name(), Digest: d, Time: p.Created, VerifierID: p.BuilderID, Result: *img.Policy,
	})
	if err != nil {
		return a, err
	}
	raw, err := st.Marshal()
	if err != nil {
		return a, err
	}
	if r, err = p.signReferrer(ctx, img.Subject, raw, attest.VerificationSummary); err != nil {
		return a, err
	}
	if err := p.Store.WriteReferrer(ctx, dst.Repo, r); err != nil {
		return a, err
	}
	a.Written, a.ArtifactDigest = true, r.Digest.String()
	return a, nil
}

func (p *Publisher) legacy(ctx context.Context, img Image, dst Destination) (Action, error) {
	d := img.Subject.Digest
	a := Action{Repo: dst.Repo.Name(), Digest: d.String(), Kind: "legacy-signature"}
	payload, err := SimpleSigningPayload(dst.Repo, d)
	if err != nil {
		return a, err
	}
	existing, err := p.Legacy.LegacySignatures(ctx, dst.Repo, d)
	if err != nil {
		return a, err
	}
	for _, l := range existing {
		ok, err := p.Signer.LegacyIsMine(ctx, l, payload)
		if err != nil {
			return a, err
		}
		if ok {
			return a, nil
		}
	}
	sig, err := p.Signer.SignLegacy(ctx, payload)
	if err != nil {
		return a, err
	}
	if err := p.Legacy.AppendLegacy(ctx, dst.Repo, d, sig); err != nil {
		return a, err
	}
	a.Written = true
	return a, nil
}
