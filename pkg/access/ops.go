package access

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The operations below speak the OCI distribution API directly (auth comes
// from go-containerregistry's transport): the promoter decides exactly which
// requests are sent, which is what its request budget is about.

// ManifestAccept lists the manifest media types the promoter reads.
var ManifestAccept = strings.Join([]string{
	string(types.OCIImageIndex), string(types.OCIManifestSchema1), string(types.DockerManifestList),
	string(types.DockerManifestSchema2), string(types.DockerManifestSchema1), string(types.DockerManifestSchema1Signed),
}, ", ")

// metadataTimeout bounds every request that is not a blob transfer.
const metadataTimeout = 2 * time.Minute

type authKind int

const (
	authUnknown   authKind = iota
	authNone               // the registry answered /v2/ with 200
	authChallenge          // it asked for credentials (Basic or Bearer)
)

type regState struct {
	once sync.Once
	kind authKind
	err  error
}

// registryAuth pings each registry once per run. A registry that needs no
// credentials is then used without any further handshake; one that does gets
// go-containerregistry's authenticating transport per repository scope.
func (c *Client) registryAuth(ctx context.Context, reg name.Registry) (authKind, error) {
	v, _ := c.regs.LoadOrStore(reg.RegistryStr(), &regState{})
	st := v.(*regState)
	st.once.Do(func() {
		u := c.scheme(reg) + "://" + reg.RegistryStr() + "/v2/"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			st.err = err
			return
		}
		resp, err := c.chain.RoundTrip(req)
		if err != nil {
			st.err = fmt.Errorf("reaching %s: %w", reg.RegistryStr(), err)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			st.kind = authNone
		case http.StatusUnauthorized:
			st.kind = authChallenge
		default:
			st.err = fmt.Errorf("registry %s answered /v2/ with %s", reg.RegistryStr(), resp.Status)
		}
	})
	return st.kind, st.err
}

// transportFor returns a RoundTripper authorised for the scopes on the
// repository's registry.
func (c *Client) transportFor(ctx context.Context, repo name.Repository, scopes ...string) (http.RoundTripper, error) {
	kind, err := c.registryAuth(ctx, repo.Registry)
	if err != nil {
		return nil, err
	}
	if kind == authNone {
		return c.chain, nil
	}
	key := repo.RegistryStr() + "|" + strings.Join(scopes, " ")
	if t, ok := c.auths.Load(key); ok {
		return t.(http.RoundTripper), nil
	}
	auth, err := authn.Resolve(ctx, c.o.keychain, repo.Registry)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	// The handshake must outlive this request's context.
	t, err := transport.NewWithContext(context.WithoutCancel(ctx), repo.Registry, auth, c.chain, scopes)
	if err != nil {
		return nil, err
	}
	actual, _ := c.auths.LoadOrStore(key, t)
	return actual.(http.RoundTripper), nil
}

func pull(r name.Repository) string { return r.Scope(transport.PullScope) }
func push(r name.Repository) string { return r.Scope(transport.PushScope) }

// scheme is "http" only for registries the client may reach in plain HTTP:
// loopback hosts and those named with WithInsecureRegistries. Everything
// else is HTTPS with no fallback (go-containerregistry would also fall back
// to plain HTTP for private addresses; the promoter does not, unasked).
func (c *Client) scheme(reg name.Registry) string {
	host := strings.ToLower(reg.RegistryStr())
	if IsLoopback(host) || slices.Contains(c.o.insecure, host) {
		return "http"
	}
	return "https"
}

func (c *Client) repoURL(r name.Repository, rest string) string {
	return c.scheme(r.Registry) + "://" + r.RegistryStr() + "/v2/" + r.RepositoryStr() + rest
}

// do sends one request with the repository's credentials.
func (c *Client) do(ctx context.Context, repo name.Repository, scopes []string, req *http.Request) (*http.Response, error) {
	t, err := c.transportFor(ctx, repo, scopes...)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", UserAgent)
	return t.RoundTrip(req)
}

func check(resp *http.Response, codes ...int) error {
	if err := transport.CheckError(resp, codes...); err != nil {
		resp.Body.Close()
		return err
	}
	return nil
}

// tagsPage is a tags/list answer, with the digest map that Google's
// registries add (used when present: it saves a HEAD per tag).
type tagsPage struct {
	Tags     []string `json:"tags"`
	Manifest map[string]struct {
		Tag       []string `json:"tag"`
		MediaType string   `json:"mediaType"`
	} `json:"manifest"`
}

// ListTags returns every tag of a repository, following pagination, and,
// when the registry lists digests with its tags, the digest of each tag (nil
// otherwise). A repository that does not exist has no tags.
func (c *Client) ListTags(ctx context.Context, repo name.Repository) ([]string, map[string]v1.Hash, error) {
	repo = c.Repo(repo)
	next := c.repoURL(repo, "/tags/list?n=1000")
	var tags []string
	var digests map[string]v1.Hash
	for next != "" {
		page, link, err := c.tagsPage(ctx, repo, next)
		if IsNotFound(err) && tags == nil {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		tags = append(tags, page.Tags...)
		for d, m := range page.Manifest {
			h, err := v1.NewHash(d)
			if err != nil {
				continue
			}
			if digests == nil {
				digests = map[string]v1.Hash{}
			}
			for _, t := range m.Tag {
				digests[t] = h
			}
		}
		next = link
	}
	if digests != nil {
		// Trust the digest map only if it covers every tag.
		for _, t := range tags {
			if _, ok := digests[t]; !ok {
				digests = nil
				break
			}
		}
	}
	return tags, digests, nil
}

func (c *Client) tagsPage(ctx context.Context, repo name.Repository, u string) (*tagsPage, string, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := c.do(ctx, repo, []string{pull(repo)}, req)
	if err != nil {
		return nil, "", err
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var page tagsPage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&page); err != nil {
		return nil, "", fmt.Errorf("tags of %s: %w", repo, err)
	}
	next, err := nextLink(resp, req.URL)
	return &page, next, err
}

// nextLink resolves an RFC 5988 Link rel="next" header against the request
// URL, refusing links to another host (credentials stay with their registry).
func nextLink(resp *http.Response, base *url.URL) (string, error) {
	h := resp.Header.Get("Link")
	if h == "" {
		return "", nil
	}
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if !strings.Contains(part, `rel="next"`) && !strings.Contains(part, "rel=next") {
			continue
		}
		start, end := strings.Index(part, "<"), strings.Index(part, ">")
		if start < 0 || end < start {
			return "", fmt.Errorf("malformed Link header %q", h)
		}
		u, err := base.Parse(part[start+1 : end])
		if err != nil {
			return "", err
		}
		if u.Host != base.Host {
			return "", fmt.Errorf("pagination link to another host %q refused", u.Host)
		}
		return u.String(), nil
	}
	return "", nil
}

func (c *Client) manifestURL(ref name.Reference) string {
	return c.repoURL(ref.Context(), "/manifests/"+ref.Identifier())
}

// Head returns the descriptor of a manifest, or nil when it does not exist.
func (c *Client) Head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error) {
	ref = c.ref(ref)
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.manifestURL(ref), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", ManifestAccept)
	resp, err := c.do(ctx, ref.Context(), []string{pull(ref.Context())}, req)
	if err != nil {
		return nil, err
	}
	if err := check(resp, http.StatusOK); err != nil {
		if IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	resp.Body.Close()
	h, err := v1.NewHash(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		// Some registries omit the digest on HEAD: read the manifest.
		raw, mt, d, gerr := c.GetManifest(ctx, ref)
		if gerr != nil {
			return nil, gerr
		}
		return &v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: d}, nil
	}
	size, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	return &v1.Descriptor{MediaType: types.MediaType(resp.Header.Get("Content-Type")), Size: size, Digest: h}, nil
}

// GetManifest reads a manifest's exact bytes. For a digest reference the
// bytes are verified against it.
func (c *Client) GetManifest(ctx context.Context, ref name.Reference) ([]byte, types.MediaType, v1.Hash, error) {
	ref = c.ref(ref)
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.manifestURL(ref), nil)
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	req.Header.Set("Accept", ManifestAccept)
	resp, err := c.do(ctx, ref.Context(), []string{pull(ref.Context())}, req)
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, "", v1.Hash{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	sum := sha256.Sum256(raw)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if want, ok := ref.(name.Digest); ok && want.DigestStr() != d.String() {
		return nil, "", v1.Hash{}, fmt.Errorf("%s: registry served a manifest with digest %s", ref, d)
	}
	return raw, types.MediaType(resp.Header.Get("Content-Type")), d, nil
}

// PutManifest writes a manifest at ref (a digest or a tag).
func (c *Client) PutManifest(ctx context.Context, ref name.Reference, raw []byte, mt types.MediaType) error {
	ref = c.ref(ref)
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.manifestURL(ref), bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", string(mt))
	resp, err := c.do(ctx, ref.Context(), []string{push(ref.Context())}, req)
	if err != nil {
		return err
	}
	if err := check(resp, http.StatusOK, http.StatusCreated, http.StatusAccepted); err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// HasBlob reports whether a blob is in the repository.
func (c *Client) HasBlob(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
	repo = c.Repo(repo)
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.repoURL(repo, "/blobs/"+d.String()), nil)
	if err != nil {
		return false, err
	}
	resp, err := c.do(ctx, repo, []string{pull(repo)}, req)
	if err != nil {
		return false, err
	}
	if err := check(resp, http.StatusOK); err != nil {
		if IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// GetBlob opens a blob for reading. The caller closes it.
func (c *Client) GetBlob(ctx context.Context, repo name.Repository, d v1.Hash) (io.ReadCloser, error) {
	repo = c.Repo(repo)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.repoURL(repo, "/blobs/"+d.String()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, repo, []string{pull(repo)}, req)
	if err != nil {
		return nil, err
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// StartUpload opens an upload of blob d into repo. When from is set (a
// repository of the same registry known to hold the blob), it asks for a
// cross-repository mount first: mounted is true when the registry did so,
// and no upload is needed. Otherwise location is where to PUT the blob.
func (c *Client) StartUpload(ctx context.Context, repo name.Repository, d v1.Hash, from *name.Repository) (mounted bool, location string, err error) {
	repo = c.Repo(repo)
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	u := c.repoURL(repo, "/blobs/uploads/")
	scopes := []string{push(repo)}
	if from != nil {
		u += "?mount=" + url.QueryEscape(d.String()) + "&from=" + url.QueryEscape(from.RepositoryStr())
		scopes = append(scopes, pull(*from))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return false, "", err
	}
	resp, err := c.do(ctx, repo, scopes, req)
	if err != nil {
		return false, "", err
	}
	if err := check(resp, http.StatusCreated, http.StatusAccepted); err != nil {
		return false, "", err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return true, "", nil
	}
	loc, err := req.URL.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return false, "", fmt.Errorf("upload to %s: registry gave no usable Location", repo)
	}
	return false, loc.String(), nil
}

// FinishUpload sends the whole blob in one PUT to an upload location (a
// monolithic upload: one request after StartUpload).
func (c *Client) FinishUpload(ctx context.Context, repo name.Repository, location string, d v1.Hash, body io.Reader, size int64) error {
	repo = c.Repo(repo)
	u, err := url.Parse(location)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.do(ctx, repo, []string{push(repo)}, req)
	if err != nil {
		return err
	}
	if err := check(resp, http.StatusCreated, http.StatusNoContent); err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Acquire takes a concurrency slot on every registry host of a transfer at
// once (see limiter.Acquire); requests made with the returned context use
// those slots.
func (c *Client) Acquire(ctx context.Context, hosts ...string) (context.Context, func(), error) {
	return c.lim.Acquire(ctx, hosts...)
}
