// Package supplychain carries an image's supply-chain artifacts (signatures,
// attestations, SBOMs: everything package referrers finds) from staging to
// each destination, and decides with the policy (package policy, on
// evidence from package evidence) whether the image may enter it. The
// planner asks Inspect and PlanDestination; the transfer engine calls Write
// once the image is in the destination by digest, before its tags.
package supplychain

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/evidence"
	"github.com/imgpromoter/promoter/pkg/policy"
	"github.com/imgpromoter/promoter/pkg/referrers"
)

// Source is what is read in staging.
type Source interface {
	referrers.Source
	evidence.BlobReader
}

// Destination is what is written to: manifests (package referrers) and
// the artifacts' blobs.
type Destination interface {
	referrers.Destination
	BlobExists(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error)
	PushBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor, content io.Reader) error
}

// Filter says which artifacts to carry to a destination. The zero Filter
// carries everything.
type Filter struct {
	// Off carries nothing.
	Off bool
	// ArtifactTypes, when not empty, carries only artifacts of these types.
	// cosign's tags have the types "cosign/sig", "cosign/att" and
	// "cosign/sbom".
	ArtifactTypes []string
}

// Type is the artifact type a Filter matches: the artifact's
// artifactType, or "cosign/<suffix>" for cosign's tags.
func Type(a referrers.Artifact) string {
	if a.Via == referrers.ViaCosign {
		return "cosign/" + strings.TrimPrefix(a.Tag[strings.LastIndex(a.Tag, "."):], ".")
	}
	return a.Descriptor.ArtifactType
}

func (f Filter) keep(a referrers.Artifact) bool {
	if f.Off {
		return false
	}
	return len(f.ArtifactTypes) == 0 || slices.Contains(f.ArtifactTypes, Type(a))
}

// Option configures a Carrier.
type Option func(*options)

type options struct {
	policy *policy.Policy
	log    *slog.Logger
	now    func() time.Time
}

func defaults() options {
	return options{log: slog.New(slog.DiscardHandler), now: time.Now}
}

// WithPolicy verifies images against p (nil: nothing is verified, and
// every Decision says so).
func WithPolicy(p *policy.Policy) Option { return func(o *options) { o.policy = p } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock sets the time scan ages are measured at (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Carrier holds one run's supply-chain state: what was found in staging
// (each image inspected once), whether each destination registry has the
// referrers API, the serialisation of fallback index updates. It is safe
// for concurrent use.
type Carrier struct {
	o      options
	src    Source
	dst    Destination
	finder *referrers.Finder
	writer *referrers.Writer

	mu     sync.Mutex
	images map[string]*imageOnce // source repo@digest
}

type imageOnce struct {
	once sync.Once
	img  *Image
}

// New returns a Carrier reading src and writing dst.
func New(src Source, dst Destination, opts ...Option) *Carrier {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	return &Carrier{
		o: o, src: src, dst: dst,
		finder: referrers.NewFinder(src, o.log),
		writer: referrers.NewWriter(dst, o.log),
		images: map[string]*imageOnce{},
	}
}

// Writer is the run's referrer writer (for callers that write referrers
// they made themselves).
func (c *Carrier) Writer() *referrers.Writer { return c.writer }

// Policy is the policy in force (nil: none).
func (c *Carrier) Policy() *policy.Policy { return c.o.policy }

// Image is what staging holds for one image: its artifacts (attached to
// the image, to each child of an index, and to the artifacts themselves)
// and the evidence they give.
type Image struct {
	Source   name.Repository
	Digest   v1.Hash
	Children []v1.Hash
	// Artifacts per subject: the image and each index child, parents first.
	Artifacts []referrers.Artifact
	Evidence  evidence.Evidence
	// Err is set when staging could not be read or verification failed to
	// run: the image is refused wherever a policy applies, and its
	// artifacts cannot be carried.
	Err error
}

// Inspect finds the artifacts of the image (digest in repo, with the
// index children given) and verifies them against the identities the
// policy names for dests. Each image is inspected once per run.
func (c *Carrier) Inspect(ctx context.Context, repo name.Repository, digest v1.Hash, children []v1.Hash, dests []name.Repository) *Image {
	key := repo.Name() + "@" + digest.String()
	c.mu.Lock()
	entry, ok := c.images[key]
	if !ok {
		entry = &imageOnce{}
		c.images[key] = entry
	}
	c.mu.Unlock()
	entry.once.Do(func() { entry.img = c.inspect(ctx, repo, digest, children, dests) })
	return entry.img
}

func (c *Carrier) inspect(ctx context.Context, repo name.Repository, digest v1.Hash, children []v1.Hash, dests []name.Repository) *Image {
	img := &Image{Source: repo, Digest: digest, Children: children, Evidence: evidence.Evidence{Digest: digest.String()}}
	for _, s := range append([]v1.Hash{digest}, children...) {
		arts, err := c.finder.Find(ctx, repo, s)
		if err != nil {
			img.Err = fmt.Errorf("finding the supply-chain artifacts of %s@%s: %w", repo, s, err)
			return img
		}
		img.Artifacts = append(img.Artifacts, arts...)
	}
	var ids []evidence.Identity
	if c.o.policy != nil {
		ids = c.o.policy.Identities(dests...)
	}
	ev, err := evidence.Collect(ctx, c.src, repo, digest, img.Artifacts, ids)
	if err != nil {
		img.Err = fmt.Errorf("verifying %s@%s: %w", repo, digest, err)
		return img
	}
	img.Evidence = ev
	return img
}

// Status of an artifact for one destination, as planned or done. Part of
// the JSON schema.
type Status string

// Artifact statuses.
const (
	Copy    Status = "copy"    // planned: to be written
	Copied  Status = "copied"  // written by this run
	Present Status = "present" // already there
	Refused Status = "refused" // not written: see Reason
	Skipped Status = "skipped" // not carried: the manifests' filter leaves it out
)

// ArtifactStatus is one artifact on one destination.
type ArtifactStatus struct {
	Digest       string `json:"digest"`
	Subject      string `json:"subject"`
	ArtifactType string `json:"artifactType"`
	Via          string `json:"via"`
	Tag          string `json:"tag,omitempty"`
	Status       Status `json:"status"`
	Reason       string `json:"reason,omitempty"`
}

// Destination is the supply-chain plan (or outcome) of one image on one
// destination repository.
type DestinationPlan struct {
	Repository string `json:"repository"`
	// Decision is the policy's; nil when there is no policy (nothing
	// verified).
	Decision  *policy.Decision `json:"policy,omitempty"`
	Artifacts []ArtifactStatus `json:"artifacts,omitempty"`
	// Err says why the destination's state could not be read.
	Err string `json:"error,omitempty"`

	carry []referrers.Artifact
}

// Allowed reports whether the image may enter the destination: no policy,
// or the policy allows it.
func (d *DestinationPlan) Allowed() bool { return d.Decision == nil || d.Decision.Allowed }

// Pending reports whether artifacts are to be written.
func (d *DestinationPlan) Pending() bool { return len(d.carry) > 0 }

// PlanDestination decides the image's fate on dst: the policy decision and
// which artifacts are present, to copy, or left out. destExists says the
// repository held something before the run (otherwise nothing is there
// and no request is made).
func (c *Carrier) PlanDestination(ctx context.Context, img *Image, dst name.Repository, f Filter, destExists bool) DestinationPlan {
	p := DestinationPlan{Repository: dst.String()}
	if c.o.policy != nil {
		if img.Err != nil {
			p.Decision = &policy.Decision{Reasons: []string{img.Err.Error()}}
		} else {
			d := c.o.policy.Evaluate(dst, img.Evidence, c.o.now())
			p.Decision = &d
		}
	}
	if img.Err != nil {
		p.Err = img.Err.Error()
		return p
	}
	var keep []referrers.Artifact
	kept := map[v1.Hash]bool{}
	for _, a := range img.Artifacts {
		// An artifact whose parent artifact is left out is left out too.
		parentOut := a.Subject != img.Digest && !slices.Contains(img.Children, a.Subject) && !kept[a.Subject]
		if !f.keep(a) || parentOut {
			p.Artifacts = append(p.Artifacts, status(a, Skipped, ""))
			continue
		}
		kept[a.Descriptor.Digest] = true
		keep = append(keep, a)
	}
	present := map[v1.Hash]bool{}
	if destExists && len(keep) > 0 {
		var err error
		present, err = c.writer.PresentIn(ctx, dst, keep)
		if err != nil {
			p.Err = fmt.Sprintf("reading the supply-chain artifacts in %s: %v", dst, err)
			return p
		}
	}
	for _, a := range keep {
		if present[a.Descriptor.Digest] {
			p.Artifacts = append(p.Artifacts, status(a, Present, ""))
			continue
		}
		p.Artifacts = append(p.Artifacts, status(a, Copy, ""))
		p.carry = append(p.carry, a)
	}
	return p
}

func status(a referrers.Artifact, s Status, reason string) ArtifactStatus {
	return ArtifactStatus{
		Digest: a.Descriptor.Digest.String(), Subject: a.Subject.String(), ArtifactType: Type(a),
		Via: string(a.Via), Tag: a.Tag, Status: s, Reason: reason,
	}
}

// Write writes the planned artifacts to dst, whose registry must already
// hold the image by digest: their blobs, then per subject the manifests,
// the fallback index where needed, and cosign's tags. It updates p's
// artifact statuses (copied, present, refused with the reason). A refusal
// is not an error; the error is for failures that kept artifacts out.
func (c *Carrier) Write(ctx context.Context, img *Image, dst name.Repository, p *DestinationPlan) error {
	if len(p.carry) == 0 {
		return nil
	}
	for _, a := range p.carry {
		for _, b := range a.Blobs() {
			if err := c.copyBlob(ctx, img.Source, dst, b); err != nil {
				return err
			}
		}
	}
	// Per subject, parents (the image, the index children) first: the
	// artifacts are in discovery order, which is that order.
	bySubject := map[v1.Hash][]referrers.Artifact{}
	var subjects []v1.Hash
	for _, a := range p.carry {
		if _, ok := bySubject[a.Subject]; !ok {
			subjects = append(subjects, a.Subject)
		}
		bySubject[a.Subject] = append(bySubject[a.Subject], a)
	}
	done := map[string]ArtifactStatus{}
	var errs []error
	for _, s := range subjects {
		outs, err := c.writer.Write(ctx, dst, s, bySubject[s], nil)
		for i, o := range outs {
			st := Status(o.Status)
			reason := ""
			if o.Err != nil {
				reason = o.Err.Error()
			}
			done[bySubject[s][i].Descriptor.Digest.String()] = status(bySubject[s][i], st, reason)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i, a := range p.Artifacts {
		if st, ok := done[a.Digest]; ok && a.Status == Copy {
			p.Artifacts[i] = st
		}
	}
	slices.SortStableFunc(p.Artifacts, func(a, b ArtifactStatus) int { return cmp.Compare(order(a.Status), order(b.Status)) })
	p.carry = nil
	return errors.Join(errs...)
}

func order(s Status) int {
	return slices.Index([]Status{Refused, Copy, Copied, Present, Skipped}, s)
}

// copyBlob copies one small blob (a signature, an attestation) unless the
// destination has it.
func (c *Carrier) copyBlob(ctx context.Context, src, dst name.Repository, b v1.Descriptor) error {
	ok, err := c.dst.BlobExists(ctx, dst, b.Digest)
	if err != nil {
		return fmt.Errorf("checking %s@%s: %w", dst, b.Digest, err)
	}
	if ok {
		return nil
	}
	rc, err := c.src.FetchBlob(ctx, src, b)
	if err != nil {
		return fmt.Errorf("reading %s@%s: %w", src, b.Digest, err)
	}
	defer rc.Close()
	if err := c.dst.PushBlob(ctx, dst, b, rc); err != nil {
		return fmt.Errorf("writing %s@%s: %w", dst, b.Digest, err)
	}
	return nil
}
