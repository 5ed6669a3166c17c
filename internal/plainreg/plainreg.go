// Package plainreg is a minimal client of the distribution API for tests:
// anonymous, plain HTTP to loopback registries, counting requests and
// writes. It satisfies the small interfaces of packages referrers and
// evidence, as the access client does in production.
package plainreg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/referrers"
)

// Client speaks the distribution API to anonymous loopback registries.
type Client struct {
	// Requests and Writes count the requests sent and the PUTs among them.
	Requests atomic.Int64
	Writes   atomic.Int64
}

func (p *Client) do(ctx context.Context, method, u string, body []byte, hdr map[string]string) (*http.Response, error) {
	p.Requests.Add(1)
	if method == http.MethodPut {
		p.Writes.Add(1)
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK, http.StatusCreated, http.StatusAccepted); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

func base(repo name.Repository) string {
	return "http://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr()
}

const accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// FetchManifest reads a manifest's bytes and descriptor.
func (p *Client) FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error) {
	resp, err := p.do(ctx, http.MethodGet, base(ref.Context())+"/manifests/"+ref.Identifier(), nil, map[string]string{"Accept": accept})
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	sum := sha256.Sum256(raw)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	return raw, v1.Descriptor{MediaType: types.MediaType(resp.Header.Get("Content-Type")), Size: int64(len(raw)), Digest: d}, nil
}

// PutManifest writes a manifest and returns the OCI-Subject answer header.
func (p *Client) PutManifest(ctx context.Context, ref name.Reference, raw []byte, mt types.MediaType) (v1.Hash, error) {
	resp, err := p.do(ctx, http.MethodPut, base(ref.Context())+"/manifests/"+ref.Identifier(), raw, map[string]string{"Content-Type": string(mt)})
	if err != nil {
		return v1.Hash{}, err
	}
	resp.Body.Close()
	h, _ := v1.NewHash(resp.Header.Get("OCI-Subject"))
	return h, nil
}

// Referrers lists the referrers API, following Link pagination.
func (p *Client) Referrers(ctx context.Context, repo name.Repository, d v1.Hash) (*v1.IndexManifest, error) {
	next := base(repo) + "/referrers/" + d.String()
	out := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for next != "" {
		resp, err := p.do(ctx, http.MethodGet, next, nil, nil)
		if err != nil {
			return nil, err
		}
		var idx v1.IndexManifest
		err = json.NewDecoder(resp.Body).Decode(&idx)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		out.Manifests = append(out.Manifests, idx.Manifests...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			s, e := strings.Index(l, "<"), strings.Index(l, ">")
			u, err := resp.Request.URL.Parse(l[s+1 : e])
			if err != nil {
				return nil, err
			}
			next = u.String()
		}
	}
	return out, nil
}

// ListTags lists a repository's tags (none when it does not exist).
func (p *Client) ListTags(ctx context.Context, repo name.Repository) ([]string, map[string]v1.Hash, error) {
	resp, err := p.do(ctx, http.MethodGet, base(repo)+"/tags/list", nil, nil)
	if err != nil {
		if referrers.IsNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	var page struct {
		Tags []string `json:"tags"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	return page.Tags, nil, err
}

// FetchBlob opens a blob.
func (p *Client) FetchBlob(ctx context.Context, repo name.Repository, d v1.Descriptor) (io.ReadCloser, error) {
	resp, err := p.do(ctx, http.MethodGet, base(repo)+"/blobs/"+d.Digest.String(), nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// BlobExists reports whether a blob is in the repository.
func (p *Client) BlobExists(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
	resp, err := p.do(ctx, http.MethodHead, base(repo)+"/blobs/"+d.String(), nil, nil)
	if referrers.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// PushBlob uploads a blob monolithically (POST, then PUT).
func (p *Client) PushBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor, content io.Reader) error {
	resp, err := p.do(ctx, http.MethodPost, base(repo)+"/blobs/uploads/", nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	q := loc.Query()
	q.Set("digest", desc.Digest.String())
	loc.RawQuery = q.Encode()
	raw, err := io.ReadAll(content)
	if err != nil {
		return err
	}
	resp, err = p.do(ctx, http.MethodPut, loc.String(), raw, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
