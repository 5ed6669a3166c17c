// Package manifest reads promoter manifests in the formats of Kubernetes'
// kpromo (promo-tools), unchanged: plain manifest files (registries and images
// in one file) and thin manifest directories (manifests/<project>/
// promoter-manifest.yaml beside images/<project>/images.yaml).
//
// Parsing is strict and positional: every value keeps the file, line and
// column it was read from, and every structural problem (unknown key,
// duplicate key, wrong type, unreadable file) is reported as a diag.Problem
// instead of stopping the load, so that one bad entry never hides the others.
package manifest

import "github.com/imgpromoter/promoter/pkg/diag"

// Registry is one entry of a manifest's registries list.
type Registry struct {
	Name           string        `json:"name"`
	Src            bool          `json:"src,omitempty"`
	ServiceAccount string        `json:"serviceAccount,omitempty"`
	Pos            diag.Position `json:"position"`
	// Referrers restricts the supply-chain artifacts carried to this
	// destination (nil: all). A promoter field: kpromo rejects it.
	Referrers *Referrers `json:"referrers,omitempty"`
}

// Referrers says which supply-chain artifacts (signatures, attestations,
// SBOMs: OCI referrers and cosign's tags) are carried with the images. It
// is optional and promoter-only: kpromo's strict parser rejects a file that
// uses it, and accepts every file that does not (docs/kpromo.md).
type Referrers struct {
	// Carry is false to carry none (default true).
	Carry bool `json:"carry"`
	// ArtifactTypes, when not empty, carries only these artifact types
	// ("cosign/sig", "cosign/att", "cosign/sbom" for cosign's tags).
	ArtifactTypes []string      `json:"artifactTypes,omitempty"`
	Pos           diag.Position `json:"position"`
}

// Tag is one tag of a digest, exactly as written (1.20 stays "1.20").
type Tag struct {
	Name string        `json:"name"`
	Pos  diag.Position `json:"position"`
}

// DigestEntry is one key of an image's dmap with its tag list. An empty Tags
// list means "promote by digest only".
type DigestEntry struct {
	Digest string        `json:"digest"`
	Tags   []Tag         `json:"tags"`
	Pos    diag.Position `json:"position"`
}

// Image is one entry of an images list. The same name may appear in several
// entries of one file; they are kept separate here (each with its position)
// and merged by the stages that compute edges.
type Image struct {
	Name    string        `json:"name"`
	Digests []DigestEntry `json:"dmap"`
	Pos     diag.Position `json:"position"`
	// Referrers restricts the supply-chain artifacts carried with this
	// image (nil: all). A promoter field: kpromo rejects it.
	Referrers *Referrers `json:"referrers,omitempty"`
	// Broken is set when the entry had structural problems (already
	// reported); later stages exclude it.
	Broken bool `json:"-"`
}

// Manifest is one promotion unit: a set of registries (one source, the rest
// destinations) and the images to copy from the source to every destination.
type Manifest struct {
	// File is the file holding the registries (the plain manifest, or the
	// thin promoter-manifest.yaml).
	File string `json:"file"`
	// ImagesFile is where the images were read from (equal to File for plain
	// manifests).
	ImagesFile string `json:"imagesFile"`
	// Project is the thin-manifest project directory name; empty for plain
	// manifests.
	Project    string     `json:"project,omitempty"`
	Registries []Registry `json:"registries"`
	Images     []Image    `json:"images"`
	// Pos is the position of the registries key (or of the file).
	Pos diag.Position `json:"position"`
	// Broken is set when the registries could not be read; the manifest's
	// images are then excluded as a whole.
	Broken bool `json:"-"`
}

// Source returns the source registries of the manifest (valid manifests have
// exactly one).
func (m *Manifest) Source() []Registry {
	var out []Registry
	for _, r := range m.Registries {
		if r.Src {
			out = append(out, r)
		}
	}
	return out
}

// Destinations returns the non-source registries in manifest order.
func (m *Manifest) Destinations() []Registry {
	var out []Registry
	for _, r := range m.Registries {
		if !r.Src {
			out = append(out, r)
		}
	}
	return out
}

// Set is everything read from the inputs of one run.
type Set struct {
	Manifests []*Manifest `json:"manifests"`
	// Problems found while reading (structure and layout). Validation adds
	// the semantic ones.
	Problems []diag.Problem `json:"problems"`
}

// Unreadable reports whether some input could not be read at all (missing
// file, not YAML, too large). Commands exit 2 for that.
func (s *Set) Unreadable() bool {
	for _, p := range s.Problems {
		if p.Code == diag.CodeUnreadable {
			return true
		}
	}
	return false
}
