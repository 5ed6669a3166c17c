package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/referrers"
)

// ReferrerStore reads and writes the referrers of images in a repository.
// WriteReferrer writes the blobs, then the manifest by digest, then (on a
// registry without the referrers API) merges it into the fallback index.
type ReferrerStore interface {
	Referrers(ctx context.Context, repo name.Repository, subject v1.Hash) ([]v1.Descriptor, error)
	ReadReferrer(ctx context.Context, repo name.Repository, d v1.Hash) (*Referrer, error)
	WriteReferrer(ctx context.Context, repo name.Repository, r *Referrer) error
}

// LegacyStore appends signatures to cosign's `.sig` image of a digest.
type LegacyStore interface {
	// LegacySignatures reads the layers of the `.sig` image (none when absent).
	LegacySignatures(ctx context.Context, repo name.Repository, subject v1.Hash) ([]LegacySignature, error)
	// AppendLegacy adds one layer, keeping every existing one.
	AppendLegacy(ctx context.Context, repo name.Repository, subject v1.Hash, sig *LegacySignature) error
}

// maxArtifactBytes bounds what is read of a referrer's manifest or layer.
const maxArtifactBytes = 4 << 20

// RemoteStore implements ReferrerStore and LegacyStore over
// go-containerregistry's remote package, whose manifest writes maintain the
// referrers fallback index (merge, sorted, no rewrite when present).
type RemoteStore struct {
	opts     []remote.Option
	insecure map[string]bool
	writer   *referrers.Writer
}

// NewRemoteStore returns a store using the keychain for credentials (per
// registry) and the transport for requests (nil: the default).
func NewRemoteStore(kc authn.Keychain, tr http.RoundTripper) *RemoteStore {
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithAuthFromKeychain(kc)}
	if tr != nil {
		opts = append(opts, remote.WithTransport(tr))
	}
	s := &RemoteStore{opts: opts, insecure: map[string]bool{}}
	base := tr
	if base == nil {
		base = remote.DefaultTransport
	}
	s.writer = referrers.NewWriter(&regDest{kc: kc, base: base, store: s, trs: map[string]http.RoundTripper{}}, nil)
	return s
}

func (s *RemoteStore) nameOpts(r name.Repository) []name.Option {
	if s.insecure[r.RegistryStr()] {
		return []name.Option{name.Insecure}
	}
	return nil
}

// WithInsecure names registry hosts reached over plain HTTP (loopback
// hosts always are).
func (s *RemoteStore) WithInsecure(hosts ...string) *RemoteStore {
	for _, h := range hosts {
		s.insecure[h] = true
	}
	return s
}

// repo applies the plain-HTTP setting of the repository's registry.
func (s *RemoteStore) repo(r name.Repository) name.Repository {
	if !s.insecure[r.RegistryStr()] {
		return r
	}
	if ir, err := name.NewRepository(r.Name(), name.Insecure); err == nil {
		return ir
	}
	return r
}

// Describe reads a manifest: its descriptor and bytes.
func (s *RemoteStore) Describe(ctx context.Context, repo name.Repository, d v1.Hash) (v1.Descriptor, []byte, error) {
	desc, err := remote.Get(s.repo(repo).Digest(d.String()), s.o(ctx)...)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	return v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}, desc.Manifest, nil
}

// Present reports whether the manifest digest is in repo.
func (s *RemoteStore) Present(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
	_, err := remote.Head(s.repo(repo).Digest(d.String()), s.o(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func (s *RemoteStore) o(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx)}, s.opts...)
}

// Referrers lists the referrers of subject (referrers API, else fallback tag).
func (s *RemoteStore) Referrers(ctx context.Context, repo name.Repository, subject v1.Hash) ([]v1.Descriptor, error) {
	repo = s.repo(repo)
	idx, err := remote.Referrers(repo.Digest(subject.String()), s.o(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	return im.Manifests, nil
}

// ReadReferrer reads a referrer's manifest and blobs.
func (s *RemoteStore) ReadReferrer(ctx context.Context, repo name.Repository, d v1.Hash) (*Referrer, error) {
	repo = s.repo(repo)
	desc, err := remote.Get(repo.Digest(d.String()), s.o(ctx)...)
	if err != nil {
		return nil, err
	}
	if len(desc.Manifest) > maxArtifactBytes {
		return nil, fmt.Errorf("referrer %s: manifest too large", d)
	}
	var m referrerManifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("referrer %s: %w", d, err)
	}
	r := &Referrer{Manifest: desc.Manifest, Digest: desc.Digest, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	if m.Subject != nil {
		r.Subject = *m.Subject
	}
	for _, l := range m.Layers {
		if l.Size > maxArtifactBytes {
			return nil, fmt.Errorf("referrer %s: layer too large", d)
		}
		data, err := s.blob(ctx, repo, l.Digest)
		if err != nil {
			return nil, err
		}
		r.Blobs = append(r.Blobs, Blob{MediaType: l.MediaType, Digest: l.Digest, Data: data})
	}
	return r, nil
}

func (s *RemoteStore) blob(ctx context.Context, repo name.Repository, d v1.Hash) ([]byte, error) {
	l, err := remote.Layer(repo.Digest(d.String()), s.o(ctx)...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxArtifactBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxArtifactBytes {
		return nil, fmt.Errorf("blob %s too large", d)
	}
	if h, _, _ := v1.SHA256(bytes.NewReader(data)); h != d {
		return nil, fmt.Errorf("blob %s: content has digest %s", d, h)
	}
	return data, nil
}

// WriteReferrer writes blobs, then the manifest and, on a registry without
// the referrers API, its fallback index entry with Supply chain I's writer
// (merged, never overwritten; a fallback tag holding something else than an
// index is refused, not clobbered).
func (s *RemoteStore) WriteReferrer(ctx context.Context, repo name.Repository, r *Referrer) error {
	repo = s.repo(repo)
	for _, b := range r.Blobs {
		if err := remote.WriteLayer(repo, static.NewLayer(b.Data, b.MediaType), s.o(ctx)...); err != nil {
			return fmt.Errorf("writing blob %s to %s: %w", b.Digest, repo, err)
		}
	}
	art, err := referrers.NewArtifact(r.Manifest)
	if err != nil {
		return err
	}
	outs, err := s.writer.Write(ctx, repo, r.Subject.Digest, []referrers.Artifact{art}, nil)
	if err != nil {
		return fmt.Errorf("writing referrer %s to %s: %w", r.Digest, repo, err)
	}
	for _, o := range outs {
		if o.Status == referrers.Refused {
			return fmt.Errorf("writing referrer %s to %s: %w", r.Digest, repo, o.Err)
		}
	}
	return nil
}

// LegacySignatures reads the layers of the `.sig` image.
func (s *RemoteStore) LegacySignatures(ctx context.Context, repo name.Repository, subject v1.Hash) ([]LegacySignature, error) {
	repo = s.repo(repo)
	img, err := remote.Image(repo.Tag(LegacyTag(subject)), s.o(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var out []LegacySignature
	for _, l := range m.Layers {
		if l.Size > maxArtifactBytes {
			return nil, fmt.Errorf("%s: signature layer too large", repo.Tag(LegacyTag(subject)))
		}
		data, err := s.blob(ctx, repo, l.Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, LegacySignature{Payload: data, Annotations: l.Annotations})
	}
	return out, nil
}

// AppendLegacy adds a layer to the `.sig` image, keeping the existing ones.
func (s *RemoteStore) AppendLegacy(ctx context.Context, repo name.Repository, subject v1.Hash, sig *LegacySignature) error {
	repo = s.repo(repo)
	tag := repo.Tag(LegacyTag(subject))
	base, err := remote.Image(tag, s.o(ctx)...)
	if err != nil {
		if !isNotFound(err) {
			return err
		}
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(sig.Payload, SimpleSigningMediaType),
		Annotations: sig.Annotations,
	})
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img, s.o(ctx)...); err != nil {
		return fmt.Errorf("writing %s: %w", tag, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}
