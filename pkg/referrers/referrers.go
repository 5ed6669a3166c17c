// Package referrers finds and writes the supply-chain artifacts attached to
// an image: OCI 1.1 referrers (manifests that name the image as their
// subject, listed by the referrers API or, on registries without it, by the
// fallback tag "sha256-<hex>") and cosign's tag scheme ("sha256-<hex>.sig",
// ".att", ".sbom"). A Finder discovers them in a source registry,
// recursively; a Writer writes them to a destination registry, merging (never
// overwriting) the fallback index.
package referrers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// Via says how an artifact was found.
type Via string

// The ways an artifact is found. They are part of the JSON schema.
const (
	ViaAPI      Via = "referrers-api" // listed by GET /v2/<name>/referrers/<digest>
	ViaFallback Via = "fallback-tag"  // listed in the index at tag sha256-<hex>
	ViaCosign   Via = "cosign-tag"    // the manifest at tag sha256-<hex>.sig/.att/.sbom
)

// CosignSuffixes are the tag suffixes of cosign's tag scheme, in the order
// they are written.
var CosignSuffixes = []string{".sig", ".att", ".sbom"}

// FallbackTag is the tag that lists the referrers of subject on registries
// without the referrers API ("sha256-<hex>").
func FallbackTag(subject v1.Hash) string { return subject.Algorithm + "-" + subject.Hex }

// CosignTag is cosign's tag for subject with one of CosignSuffixes.
func CosignTag(subject v1.Hash, suffix string) string { return FallbackTag(subject) + suffix }

// Artifact is one supply-chain manifest attached to a subject.
type Artifact struct {
	// Subject is the digest the artifact is attached to.
	Subject v1.Hash
	// Via is how it was found.
	Via Via
	// Tag is the cosign tag holding it (ViaCosign only).
	Tag string
	// Descriptor describes the manifest: digest, size, media type, its
	// artifactType (else its config media type) and its annotations, read
	// from the manifest itself.
	Descriptor v1.Descriptor
	// Manifest is the manifest's exact bytes.
	Manifest []byte
	// Children are the manifests an index-shaped artifact lists, to be
	// written before it.
	Children []Manifest
}

// Manifest is one manifest's bytes and descriptor.
type Manifest struct {
	Descriptor v1.Descriptor
	Raw        []byte
}

// Blobs returns the config and layers of the artifact's manifest and of
// its children (the blobs to copy before the manifests).
func (a Artifact) Blobs() []v1.Descriptor {
	var out []v1.Descriptor
	out = append(out, blobsOf(a.Manifest)...)
	for _, c := range a.Children {
		out = append(out, blobsOf(c.Raw)...)
	}
	return out
}

func blobsOf(raw []byte) []v1.Descriptor {
	var m struct {
		Config *v1.Descriptor  `json:"config"`
		Layers []v1.Descriptor `json:"layers"`
		Blobs  []v1.Descriptor `json:"blobs"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var out []v1.Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	out = append(out, m.Layers...)
	return append(out, m.Blobs...)
}

// manifestFields are the parts of an image manifest or index the package
// reads.
type manifestFields struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *v1.Descriptor    `json:"config"`
	Manifests     []v1.Descriptor   `json:"manifests"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// describe builds the descriptor of a manifest from its own content: the
// artifactType, else the config media type, and the annotations.
func describe(raw []byte, served types.MediaType, d v1.Hash) (v1.Descriptor, manifestFields, error) {
	var m manifestFields
	if err := json.Unmarshal(raw, &m); err != nil {
		return v1.Descriptor{}, m, fmt.Errorf("manifest %s: %w", d, err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = served
	}
	desc := v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: d, Annotations: m.Annotations}
	desc.ArtifactType = m.ArtifactType
	if desc.ArtifactType == "" && m.Config != nil {
		desc.ArtifactType = string(m.Config.MediaType)
	}
	return desc, m, nil
}

// isIndex reports whether a media type is an image index (OCI or Docker).
func isIndex(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

// ManifestReader reads a manifest's exact bytes and its descriptor by tag
// or digest. Absent manifests are reported with an error for which
// IsNotFound is true. (*access.Client satisfies it.)
type ManifestReader interface {
	FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error)
}

// ReferrersLister calls the OCI 1.1 referrers API, following pagination, and
// returns the index listed. A registry without the API gives an error for
// which IsUnsupported is true. (*access.Client satisfies it.)
type ReferrersLister interface {
	Referrers(ctx context.Context, repo name.Repository, subject v1.Hash) (*v1.IndexManifest, error)
}

// TagLister lists the tags of a repository (none when it does not exist),
// and their digests when the registry says them (nil otherwise).
// (*access.Client satisfies it.)
type TagLister interface {
	ListTags(ctx context.Context, repo name.Repository) ([]string, map[string]v1.Hash, error)
}

// getManifest reads a manifest: bytes, media type, digest.
func getManifest(ctx context.Context, r ManifestReader, ref name.Reference) ([]byte, types.MediaType, v1.Hash, error) {
	raw, desc, err := r.FetchManifest(ctx, ref)
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	return raw, desc.MediaType, desc.Digest, nil
}

// referrersOf lists the referrers API as descriptors.
func referrersOf(ctx context.Context, r ReferrersLister, repo name.Repository, subject v1.Hash) ([]v1.Descriptor, error) {
	idx, err := r.Referrers(ctx, repo, subject)
	if err != nil || idx == nil {
		return nil, err
	}
	return idx.Manifests, nil
}

// errUnsupported marks an answer that says the registry has no referrers API.
var errUnsupported = errors.New("registry has no referrers API")

// ErrUnsupported is matched (errors.Is) by the errors of ReferrersLister
// implementations when the registry has no referrers API.
var ErrUnsupported = errUnsupported

// ErrNotFound is matched (errors.Is) by errors that say a manifest,
// repository or tag does not exist.
var ErrNotFound = errors.New("not found")

// IsNotFound reports whether err says that something does not exist: it
// matches ErrNotFound, or is a registry answer 404 or a *_UNKNOWN code.
func IsNotFound(err error) bool {
	if errors.Is(err, ErrNotFound) || errors.Is(err, regerr.ErrNotFound) {
		return true
	}
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.NameUnknownErrorCode, transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode:
			return true
		}
	}
	return false
}

// IsUnsupported reports whether err says the registry has no referrers API:
// it matches ErrUnsupported, or is a 404, 405 or 501 answer (a registry
// with the API never answers 404 for it, OCI distribution spec 1.1), or a
// 400 (what registries that do not route the path answer; the digests sent
// are always valid, so 400 cannot mean a bad digest).
func IsUnsupported(err error) bool {
	if errors.Is(err, ErrUnsupported) || errors.Is(err, regerr.ErrUnsupported) {
		return true
	}
	switch regerr.Status(err) {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented, http.StatusBadRequest:
		return true
	}
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	switch te.StatusCode {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented, http.StatusBadRequest:
		return true
	}
	return false
}

// hasCosignSuffix reports whether a tag is one of cosign's.
func cosignSuffix(tag string) (string, bool) {
	for _, s := range CosignSuffixes {
		if strings.HasSuffix(tag, s) {
			return s, true
		}
	}
	return "", false
}

// NewArtifact describes a referrer manifest a caller made (a signature or
// attestation it signed): raw must carry subject as its subject. The
// result is ready for Writer.Write.
func NewArtifact(raw []byte) (Artifact, error) {
	sum := sha256.Sum256(raw)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	desc, m, err := describe(raw, "", d)
	if err != nil {
		return Artifact{}, err
	}
	if m.Subject == nil {
		return Artifact{}, fmt.Errorf("manifest %s has no subject: it is not a referrer", d)
	}
	if desc.MediaType == "" {
		return Artifact{}, fmt.Errorf("manifest %s has no mediaType", d)
	}
	return Artifact{Subject: m.Subject.Digest, Via: ViaAPI, Descriptor: desc, Manifest: raw}, nil
}
