// Package attest builds the in-toto statements the promoter signs: cosign's
// signature statement, the promotion record kpromo writes
// (https://k8s.io/promo-tools/promotion/v1) and a SLSA verification summary
// of the promotion policy. Statements are plain JSON with a fixed field
// order, so the same input gives the same bytes.
package attest

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Predicate types written by the promoter.
const (
	// CosignSign is the predicate of the statement `cosign sign` v3 signs.
	CosignSign = "https://sigstore.dev/cosign/sign/v1"
	// Promotion is kpromo's promotion record.
	Promotion = "https://k8s.io/promo-tools/promotion/v1"
	// VerificationSummary is SLSA's verification summary attestation.
	VerificationSummary = "https://slsa.dev/verification_summary/v1"
)

// StatementType is the in-toto statement type (v1).
const StatementType = "https://in-toto.io/Statement/v1"

// ResourceDescriptor is the part of in-toto's ResourceDescriptor used here.
type ResourceDescriptor struct {
	Name   string            `json:"name,omitempty"`
	URI    string            `json:"uri,omitempty"`
	Digest map[string]string `json:"digest,omitempty"`
}

// Statement is an in-toto statement v1.
type Statement struct {
	Type          string               `json:"_type"`
	Subject       []ResourceDescriptor `json:"subject"`
	PredicateType string               `json:"predicateType"`
	Predicate     any                  `json:"predicate"`
}

func digestMap(d v1.Hash) map[string]string { return map[string]string{d.Algorithm: d.Hex} }

// Marshal encodes a statement.
func (s Statement) Marshal() ([]byte, error) { return json.Marshal(s) }

// Sign is the statement `cosign sign` v3 signs for an image: the digest as
// its only subject (no name: one signature serves every repository holding
// the digest) and an empty predicate.
func Sign(digest v1.Hash) Statement {
	return Statement{
		Type:          StatementType,
		Subject:       []ResourceDescriptor{{Digest: digestMap(digest)}},
		PredicateType: CosignSign,
		Predicate:     struct{}{},
	}
}

// PromotionRecord is kpromo's promotion predicate: where the digest came
// from, where it was promoted to, when and by what.
type PromotionRecord struct {
	SrcRef      string              `json:"srcRef,omitempty"`
	DstRef      string              `json:"dstRef"`
	Digest      string              `json:"digest"`
	Timestamp   string              `json:"timestamp"`
	BuilderID   string              `json:"builderId"`
	Tags        []string            `json:"tags,omitempty"`
	Source      *ResourceDescriptor `json:"source,omitempty"`
	Destination *ResourceDescriptor `json:"destination,omitempty"`
}

// Promotion describes one promotion edge: the source and destination
// repositories, the digest, the tags it carries there, the run's time and the
// promoter's identity.
type PromotionInput struct {
	Source      string // staging repository, e.g. "staging.example/team/app"
	Destination string // production repository
	Digest      v1.Hash
	Tags        []string
	Time        time.Time
	BuilderID   string
}

// PromotionStatement is the promotion record of one destination, with the
// destination reference as its subject (as kpromo writes it).
func PromotionStatement(in PromotionInput) (Statement, error) {
	if in.Destination == "" || in.Digest.Hex == "" || in.BuilderID == "" {
		return Statement{}, fmt.Errorf("attest: promotion record needs a destination, digest and builder id")
	}
	tags := slices.Clone(in.Tags)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	rec := PromotionRecord{
		DstRef:      in.Destination,
		Digest:      in.Digest.String(),
		Timestamp:   in.Time.UTC().Format(time.RFC3339),
		BuilderID:   in.BuilderID,
		Tags:        tags,
		Destination: &ResourceDescriptor{Name: in.Destination, Digest: digestMap(in.Digest)},
	}
	if in.Source != "" {
		rec.SrcRef = in.Source + "@" + in.Digest.String()
		rec.Source = &ResourceDescriptor{Name: in.Source, Digest: digestMap(in.Digest)}
	}
	return Statement{
		Type:          StatementType,
		Subject:       []ResourceDescriptor{{Name: in.Destination, Digest: digestMap(in.Digest)}},
		PredicateType: Promotion,
		Predicate:     rec,
	}, nil
}

// VerificationResult values of a SLSA verification summary.
const (
	Passed = "PASSED"
	Failed = "FAILED"
)

// VSA is SLSA's verification summary predicate (v1).
type VSA struct {
	Verifier           VSAVerifier          `json:"verifier"`
	TimeVerified       string               `json:"timeVerified"`
	ResourceURI        string               `json:"resourceUri"`
	Policy             ResourceDescriptor   `json:"policy"`
	InputAttestations  []ResourceDescriptor `json:"inputAttestations,omitempty"`
	VerificationResult string               `json:"verificationResult"`
	VerifiedLevels     []string             `json:"verifiedLevels"`
	SlsaVersion        string               `json:"slsaVersion,omitempty"`
}

// VSAVerifier names the verifier.
type VSAVerifier struct {
	ID string `json:"id"`
}

// PolicyResult is what the promotion policy (Supply chain I) decided for one
// image: the policy file's digest and the requirements the image satisfied,
// as the policy names them (for example "signedBy:keys/release.pub"), and
// the attestations that satisfied them.
type PolicyResult struct {
	PolicyPath   string
	PolicyDigest v1.Hash
	Satisfied    []string
	Inputs       []ResourceDescriptor
	Passed       bool
}

// SummaryInput is one destination's verification summary.
type SummaryInput struct {
	Destination string
	Digest      v1.Hash
	Time        time.Time
	VerifierID  string
	Result      PolicyResult
}

// VerificationSummaryStatement records that the image at the destination
// was checked against the policy before promotion, and which requirements
// it satisfied (as verifiedLevels, the field SLSA leaves open for
// policy-specific properties).
func VerificationSummaryStatement(in SummaryInput) (Statement, error) {
	if in.Destination == "" || in.Digest.Hex == "" || in.VerifierID == "" || in.Result.PolicyDigest.Hex == "" {
		return Statement{}, fmt.Errorf("attest: verification summary needs a destination, digest, verifier id and policy digest")
	}
	levels := slices.Clone(in.Result.Satisfied)
	slices.Sort(levels)
	levels = slices.Compact(levels)
	if levels == nil {
		levels = []string{}
	}
	inputs := slices.Clone(in.Result.Inputs)
	slices.SortFunc(inputs, func(a, b ResourceDescriptor) int {
		return cmpString(a.URI+a.Name, b.URI+b.Name)
	})
	res := Failed
	if in.Result.Passed {
		res = Passed
	}
	return Statement{
		Type:          StatementType,
		Subject:       []ResourceDescriptor{{Name: in.Destination, Digest: digestMap(in.Digest)}},
		PredicateType: VerificationSummary,
		Predicate: VSA{
			Verifier:           VSAVerifier{ID: in.VerifierID},
			TimeVerified:       in.Time.UTC().Format(time.RFC3339),
			ResourceURI:        in.Destination + "@" + in.Digest.String(),
			Policy:             ResourceDescriptor{URI: in.Result.PolicyPath, Digest: digestMap(in.Result.PolicyDigest)},
			InputAttestations:  inputs,
			VerificationResult: res,
			VerifiedLevels:     levels,
		},
	}, nil
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
