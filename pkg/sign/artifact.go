package sign

import (
	"bytes"
	"encoding/json"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types and annotations of what cosign v3 attaches.
const (
	// BundleMediaType is the media type of a sigstore bundle v0.3, used as
	// the referrer's artifactType and its layer's media type.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// EmptyMediaType is the OCI empty descriptor's media type (config "{}").
	EmptyMediaType = "application/vnd.oci.empty.v1+json"
	// AnnotationPredicateType names the predicate type of the bundled statement.
	AnnotationPredicateType = "dev.sigstore.bundle.predicateType"
	// AnnotationBundleContent says what the bundle holds.
	AnnotationBundleContent = "dev.sigstore.bundle.content"
	// AnnotationCreated is the OCI creation time annotation.
	AnnotationCreated = "org.opencontainers.image.created"
)

// emptyConfig is the config blob of a referrer: the OCI empty JSON object.
var emptyConfig = []byte("{}")

// Blob is content a manifest references.
type Blob struct {
	MediaType types.MediaType
	Digest    v1.Hash
	Data      []byte
}

func newBlob(mt types.MediaType, data []byte) Blob {
	h, _, _ := v1.SHA256(bytes.NewReader(data))
	return Blob{MediaType: mt, Digest: h, Data: data}
}

// Referrer is an artifact manifest with a subject, ready to write to any
// repository that holds the subject: its bytes (and so its digest) do not
// depend on the repository.
type Referrer struct {
	Manifest     []byte
	Digest       v1.Hash
	ArtifactType string
	Annotations  map[string]string
	Subject      v1.Descriptor
	Blobs        []Blob // config first, then layers
}

// Descriptor describes the referrer as an entry of a referrers index.
func (r *Referrer) Descriptor() v1.Descriptor {
	return v1.Descriptor{
		MediaType:    types.OCIManifestSchema1,
		Size:         int64(len(r.Manifest)),
		Digest:       r.Digest,
		Annotations:  r.Annotations,
		ArtifactType: r.ArtifactType,
	}
}

// referrerManifest is v1.Manifest plus the OCI 1.1 artifactType, in the
// field order cosign writes.
type referrerManifest struct {
	v1.Manifest
	ArtifactType string `json:"artifactType,omitempty"`
}

// BundleReferrer is the referrer cosign v3 writes for a bundle: an OCI image
// manifest whose artifactType is the bundle media type, with the OCI empty
// config, the bundle as its one layer, the image as subject, and the
// predicate type, content kind and creation time as annotations. created is
// fixed once per run so the referrer is byte-identical on every mirror.
func BundleReferrer(subject v1.Descriptor, bundle []byte, predicateType string, created time.Time) (*Referrer, error) {
	cfg := newBlob(EmptyMediaType, emptyConfig)
	layer := newBlob(BundleMediaType, bundle)
	ann := map[string]string{
		AnnotationCreated:       created.UTC().Format(time.RFC3339),
		AnnotationBundleContent: "dsse-envelope",
		AnnotationPredicateType: predicateType,
	}
	m := referrerManifest{
		Manifest: v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			Config: v1.Descriptor{
				MediaType:    EmptyMediaType,
				ArtifactType: BundleMediaType,
				Digest:       cfg.Digest,
				Size:         int64(len(cfg.Data)),
			},
			Layers: []v1.Descriptor{{
				MediaType: BundleMediaType,
				Digest:    layer.Digest,
				Size:      int64(len(layer.Data)),
			}},
			Subject: &v1.Descriptor{
				MediaType: subject.MediaType,
				Digest:    subject.Digest,
				Size:      subject.Size,
			},
			Annotations: ann,
		},
		ArtifactType: BundleMediaType,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	return &Referrer{
		Manifest:     raw,
		Digest:       h,
		ArtifactType: BundleMediaType,
		Annotations:  ann,
		Subject:      *m.Subject,
		Blobs:        []Blob{cfg, layer},
	}, nil
}
