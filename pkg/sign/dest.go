package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// regDest gives Supply chain I's referrers.Writer what it needs (manifest
// reads, PUTs that report the OCI-Subject header, the referrers API) over
// go-containerregistry's authenticating transport: credentials come from the
// keychain per registry and are only sent there.
type regDest struct {
	kc    authn.Keychain
	base  http.RoundTripper
	store *RemoteStore

	mu  sync.Mutex
	trs map[string]http.RoundTripper // repository + scope -> transport
}

func (d *regDest) transport(ctx context.Context, repo name.Repository, push bool) (http.RoundTripper, error) {
	scope := repo.Scope(transport.PullScope)
	if push {
		scope = repo.Scope(transport.PushScope)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.trs[scope]; ok {
		return t, nil
	}
	auth, err := d.kc.Resolve(repo.Registry)
	if err != nil {
		return nil, err
	}
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, d.base, []string{scope})
	if err != nil {
		return nil, err
	}
	d.trs[scope] = t
	return t, nil
}

func (d *regDest) url(repo name.Repository, rest string) string {
	return (&url.URL{Scheme: repo.Registry.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + rest}).String()
}

// FetchManifest reads a manifest's bytes and descriptor.
func (d *regDest) FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error) {
	r, err := name.ParseReference(ref.String(), d.store.nameOpts(ref.Context())...)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	desc, err := remote.Get(r, d.store.o(ctx)...)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	return desc.Manifest, v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}, nil
}

// PutManifest writes a manifest and returns the OCI-Subject answer header.
func (d *regDest) PutManifest(ctx context.Context, ref name.Reference, raw []byte, mt types.MediaType) (v1.Hash, error) {
	repo := d.store.repo(ref.Context())
	t, err := d.transport(ctx, repo, true)
	if err != nil {
		return v1.Hash{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, d.url(repo, "/manifests/"+ref.Identifier()), bytes.NewReader(raw))
	if err != nil {
		return v1.Hash{}, err
	}
	req.Header.Set("Content-Type", string(mt))
	resp, err := t.RoundTrip(req)
	if err != nil {
		return v1.Hash{}, err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK, http.StatusCreated, http.StatusAccepted); err != nil {
		return v1.Hash{}, err
	}
	if s := resp.Header.Get("OCI-Subject"); s != "" {
		if h, err := v1.NewHash(s); err == nil {
			return h, nil
		}
	}
	return v1.Hash{}, nil
}

// Referrers calls the referrers API (following Link pagination); a
// registry without it answers with an error referrers.IsUnsupported sees.
func (d *regDest) Referrers(ctx context.Context, repo name.Repository, subject v1.Hash) (*v1.IndexManifest, error) {
	repo = d.store.repo(repo)
	t, err := d.transport(ctx, repo, false)
	if err != nil {
		return nil, err
	}
	out := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	next := d.url(repo, "/referrers/"+subject.String())
	for pages := 0; next != ""; pages++ {
		if pages > 100 {
			return nil, fmt.Errorf("%s: referrers of %s: too many pages", repo, subject)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", string(types.OCIImageIndex))
		resp, err := t.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		if err := transport.CheckError(resp, http.StatusOK); err != nil {
			resp.Body.Close()
			return nil, err
		}
		var idx v1.IndexManifest
		err = json.NewDecoder(io.LimitReader(resp.Body, maxArtifactBytes)).Decode(&idx)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		out.Manifests = append(out.Manifests, idx.Manifests...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			s, e := strings.Index(l, "<"), strings.Index(l, ">")
			if s < 0 || e < s {
				return nil, fmt.Errorf("%s: bad Link header %q", repo, l)
			}
			u, err := resp.Request.URL.Parse(l[s+1 : e])
			if err != nil {
				return nil, err
			}
			if u.Host != req.URL.Host {
				return nil, fmt.Errorf("%s: Link header points at another host", repo)
			}
			next = u.String()
		}
	}
	return out, nil
}
