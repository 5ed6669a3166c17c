package access

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// The operations below speak the OCI distribution API directly (auth comes
// from go-containerregistry's transport): the promoter decides exactly which
// requests are sent, which is what its request budget is about.

// manifestAccept lists the manifest media types the promoter reads.
const manifestAccept = string(types.OCIImageIndex) + ", " + string(types.OCIManifestSchema1) + ", " + string(types.DockerManifestList) + ", " +
	string(types.DockerManifestSchema2) + ", " + string(types.DockerManifestSchema1) + ", " + string(types.DockerManifestSchema1Signed)

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
	t, err := transport.NewWithContext(context.WithoutCancel(ctx), repo.Registry, auth, plainOnly{c: c, next: c.chain}, scopes)
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
	if c.plainHTTP(reg.RegistryStr()) {
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
	resp, err := t.RoundTrip(req)
	if err != nil {
		return nil, classify(err)
	}
	return resp, nil
}

// classify makes a failed request's error testable with errors.Is against
// the regerr sentinels, keeping its message.
func classify(err error) error {
	var re *regerr.Error
	if errors.As(err, &re) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return registryError(err)
	}
	return temporary(err)
}

// check turns an answer with another status than codes into a typed
// registry error (see regerr.Error; its message is go-containerregistry's).
func check(resp *http.Response, codes ...int) error {
	if err := transport.CheckError(resp, codes...); err != nil {
		resp.Body.Close()
		return registryError(err)
	}
	return nil
}

// registryError wraps go-containerregistry's *transport.Error as a
// *regerr.Error, keeping its status, codes and message.
func registryError(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	re := &regerr.Error{Status: te.StatusCode, Err: err}
	for _, d := range te.Errors {
		re.Codes = append(re.Codes, string(d.Code))
	}
	return re
}

// maxTagPages bounds the pages of one tag list: 10,000 pages of 1,000
// tags, ten million tags, is beyond any real repository; a registry that
// goes on is broken or hostile.
const maxTagPages = 10_000

// ListTags returns every tag of a repository, following pagination, and,
// when the registry lists digests with its tags, the digest of each tag (nil
// otherwise). A repository that does not exist has no tags. It holds the
// whole list: to look for some tags in a list that may be huge, use
// WalkTags.
func (c *Client) ListTags(ctx context.Context, repo name.Repository) ([]string, map[string]v1.Hash, error) {
	var tags []string
	listed := map[string]bool{}
	digests := map[string]v1.Hash{}
	err := c.WalkTags(ctx, repo, func(tag string, d v1.Hash) error {
		if d != (v1.Hash{}) {
			digests[tag] = d
			return nil
		}
		if !listed[tag] {
			listed[tag] = true
			tags = append(tags, tag)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// Trust the digest map only if it covers every tag.
	for _, t := range tags {
		if _, ok := digests[t]; !ok {
			digests = nil
			break
		}
	}
	if len(digests) == 0 {
		digests = nil
	}
	return tags, digests, nil
}

// WalkTags reads the tag list of a repository as a stream, following
// pagination, and calls fn for every tag listed (with a zero digest) and,
// when the registry lists digests with its tags (Google's registries add a
// "manifest" map), for every tag of that map with its digest. Nothing but
// the entry being read is held, whatever the size of the list. A
// repository that does not exist has no tags. A page whose answer breaks
// part-way is read again, so fn may see a tag more than once.
//
// Pagination that leads back to a page already read, or goes on for more
// than 10,000 pages, ends with an error naming the registry.
func (c *Client) WalkTags(ctx context.Context, repo name.Repository, fn func(tag string, digest v1.Hash) error) error {
	repo = c.Repo(repo)
	next := c.repoURL(repo, "/tags/list?n=1000")
	seen := map[string]bool{}
	var prev tagPageSummary
	for page := 1; next != ""; page++ {
		if seen[next] {
			return fmt.Errorf("registry %s: tag list of %s: pagination leads back to a page already read (page %d: %s)", repo.RegistryStr(), repo.RepositoryStr(), page, next)
		}
		if page > maxTagPages {
			return fmt.Errorf("registry %s: tag list of %s: more than %d pages; giving up", repo.RegistryStr(), repo.RepositoryStr(), maxTagPages)
		}
		seen[next] = true
		var sum tagPageSummary
		link, err := c.tagsPage(ctx, repo, next, func(tag string, d v1.Hash) error {
			if d == (v1.Hash{}) {
				sum.add(tag)
			}
			return fn(tag, d)
		})
		if errors.Is(err, regerr.ErrNotFound) && page == 1 {
			return nil
		}
		if err != nil {
			return err
		}
		if page > 1 && sum.count > 0 && sum == prev {
			return fmt.Errorf("registry %s: tag list of %s: page %d repeats the page before it (pagination does not advance)", repo.RegistryStr(), repo.RepositoryStr(), page)
		}
		prev = sum
		next = link
	}
	return nil
}

// tagPageSummary identifies a page of tags well enough to see that a
// registry sent the same page twice in a row.
type tagPageSummary struct {
	count       int
	first, last string
}

func (s *tagPageSummary) add(tag string) {
	if s.count == 0 {
		s.first = tag
	}
	s.last = tag
	s.count++
}

// tagsPage reads one page of a tag list, streaming it to fn, and returns
// the next page's URL ("" for the last page).
func (c *Client) tagsPage(ctx context.Context, repo name.Repository, u string, fn func(tag string, digest v1.Hash) error) (next string, err error) {
	err = c.readRetry(ctx, func() error {
		ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := c.do(ctx, repo, []string{pull(repo)}, req)
		if err != nil {
			return err
		}
		if err := check(resp, http.StatusOK); err != nil {
			return err
		}
		defer resp.Body.Close()
		br := &bodyReader{r: resp.Body}
		if err := decodeTagsPage(br, fn); err != nil {
			if br.err != nil {
				return &bodyError{fmt.Errorf("tags of %s: %w", repo, br.err)}
			}
			return fmt.Errorf("tags of %s: %w", repo, err)
		}
		next, err = nextLink(resp, req.URL)
		return err
	})
	return next, err
}

// bodyReader remembers the error reading an answer's body failed with, to
// tell a broken connection from a malformed answer.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// bodyError marks a failure reading an answer's body: the request was
// answered, so the transport did not retry it; readRetry does.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// readRetry runs read, which sends one request and reads its whole answer,
// again when the answer's body breaks part-way (a reset, an early end), on
// the client's retry schedule. This is the retry layer's part for answer
// bodies: the transport retries requests until their headers arrive.
func (c *Client) readRetry(ctx context.Context, read func() error) error {
	bo := c.o.backoff
	delay := bo.Duration
	for attempt := 1; ; attempt++ {
		err := read()
		var be *bodyError
		if !errors.As(err, &be) {
			return err
		}
		if !isTransient(be.err) || attempt >= bo.Steps {
			return temporary(err)
		}
		wait := jitter(delay, bo.Jitter)
		delay = time.Duration(float64(delay) * bo.Factor)
		c.o.logger.Warn("reading again after an answer broke off", "attempt", attempt, "error", err, "wait", wait.Round(time.Millisecond))
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
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

// Resolve returns the descriptor of the manifest at ref (a tag or a
// digest) with one HEAD request. A manifest that does not exist is an
// error matching regerr.ErrNotFound.
func (c *Client) Resolve(ctx context.Context, ref name.Reference) (v1.Descriptor, error) {
	ref = c.ref(ref)
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.manifestURL(ref), nil)
	if err != nil {
		return v1.Descriptor{}, err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := c.do(ctx, ref.Context(), []string{pull(ref.Context())}, req)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := check(resp, http.StatusOK); err != nil {
		return v1.Descriptor{}, err
	}
	resp.Body.Close()
	h, err := v1.NewHash(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		// Some registries omit the digest on HEAD: read the manifest.
		_, desc, gerr := c.FetchManifest(ctx, ref)
		return desc, gerr
	}
	size, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	return v1.Descriptor{MediaType: types.MediaType(resp.Header.Get("Content-Type")), Size: size, Digest: h}, nil
}

// FetchManifest reads a manifest's exact bytes and describes them (media
// type as served, size, digest of the bytes). For a digest reference the
// bytes are verified against it.
func (c *Client) FetchManifest(ctx context.Context, ref name.Reference) ([]byte, v1.Descriptor, error) {
	ref = c.ref(ref)
	var raw []byte
	var mt types.MediaType
	err := c.readRetry(ctx, func() error {
		ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.manifestURL(ref), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", manifestAccept)
		resp, err := c.do(ctx, ref.Context(), []string{pull(ref.Context())}, req)
		if err != nil {
			return err
		}
		if err := check(resp, http.StatusOK); err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return &bodyError{err}
		}
		mt = types.MediaType(resp.Header.Get("Content-Type"))
		return nil
	})
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	sum := sha256.Sum256(raw)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if want, ok := ref.(name.Digest); ok && want.DigestStr() != d.String() {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: registry served a manifest with digest %s", ref, d)
	}
	return raw, v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: d}, nil
}

// PutManifest writes a manifest at ref (a digest or a tag). subject is the
// OCI-Subject header of the answer: the digest of the manifest's subject
// when the registry indexed it for the referrers API; zero when the
// registry did not say so (then a client keeps the referrers tag schema up
// to date itself).
func (c *Client) PutManifest(ctx context.Context, ref name.Reference, raw []byte, mt types.MediaType) (subject v1.Hash, err error) {
	ref = c.ref(ref)
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.manifestURL(ref), bytes.NewReader(raw))
	if err != nil {
		return v1.Hash{}, err
	}
	req.Header.Set("Content-Type", string(mt))
	resp, err := c.do(ctx, ref.Context(), []string{push(ref.Context())}, req)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := check(resp, http.StatusOK, http.StatusCreated, http.StatusAccepted); err != nil {
		return v1.Hash{}, err
	}
	resp.Body.Close()
	if h, err := v1.NewHash(resp.Header.Get("OCI-Subject")); err == nil {
		subject = h
	}
	return subject, nil
}

// Referrers returns the referrers of the manifest subject in repo through
// the OCI referrers API (GET /v2/<name>/referrers/<digest>), following
// pagination. A registry without the API (it answers 404) gives an error
// matching regerr.ErrUnsupported; a registry with it answers an empty index
// for a subject nothing refers to.
func (c *Client) Referrers(ctx context.Context, repo name.Repository, subject v1.Hash) (*v1.IndexManifest, error) {
	repo = c.Repo(repo)
	out := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	next := c.repoURL(repo, "/referrers/"+subject.String())
	seen := map[string]bool{}
	for next != "" {
		if seen[next] {
			return nil, fmt.Errorf("referrers of %s@%s: pagination does not end (%s)", repo, subject, next)
		}
		seen[next] = true
		page, link, err := c.referrersPage(ctx, repo, next)
		if err != nil {
			if regerr.Status(err) == http.StatusNotFound && len(seen) == 1 {
				return nil, regerr.Unsupported(fmt.Errorf("referrers of %s@%s: %w", repo, subject, err))
			}
			return nil, fmt.Errorf("referrers of %s@%s: %w", repo, subject, err)
		}
		out.Manifests = append(out.Manifests, page.Manifests...)
		next = link
	}
	return out, nil
}

func (c *Client) referrersPage(ctx context.Context, repo name.Repository, u string) (*v1.IndexManifest, string, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", string(types.OCIImageIndex))
	resp, err := c.do(ctx, repo, []string{pull(repo)}, req)
	if err != nil {
		return nil, "", err
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var page v1.IndexManifest
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&page); err != nil {
		return nil, "", err
	}
	next, err := nextLink(resp, req.URL)
	return &page, next, err
}

// BlobExists reports whether a blob is in the repository.
func (c *Client) BlobExists(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
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
		if errors.Is(err, regerr.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// FetchBlob opens the blob desc for reading; the caller closes it. The
// bytes are not verified here (the caller hashes what it reads). A body cut
// off by a transient failure is read again, on the client's retry
// schedule, from where it was cut: the reader sees one whole blob.
func (c *Client) FetchBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor) (io.ReadCloser, error) {
	repo = c.Repo(repo)
	rc, err := c.getBlob(ctx, repo, desc.Digest)
	if err != nil {
		return nil, err
	}
	return &resumingBody{c: c, ctx: ctx, repo: repo, d: desc.Digest, rc: rc}, nil
}

// resumingBody is a blob's body that reads the blob again after a transient
// failure and skips what was already delivered (registries need not honour
// range requests; the skipped bytes are re-read, not re-delivered).
type resumingBody struct {
	c        *Client
	ctx      context.Context
	repo     name.Repository
	d        v1.Hash
	rc       io.ReadCloser
	n        int64 // bytes delivered
	attempts int
}

func (b *resumingBody) Read(p []byte) (int, error) {
	for {
		n, err := b.rc.Read(p)
		b.n += int64(n)
		if err == nil || err == io.EOF || !isTransient(err) {
			return n, err
		}
		if rerr := b.resume(err); rerr != nil {
			return n, rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume opens the blob again after err and skips the delivered bytes.
func (b *resumingBody) resume(err error) error {
	bo := b.c.o.backoff
	b.rc.Close()
	b.rc = io.NopCloser(strings.NewReader(""))
	for {
		b.attempts++
		if b.attempts >= bo.Steps {
			return regerr.Temporary(fmt.Errorf("after %d attempts: %w", b.attempts, err))
		}
		wait := jitter(time.Duration(float64(bo.Duration)*math.Pow(bo.Factor, float64(b.attempts-1))), bo.Jitter)
		b.c.o.logger.Warn("reading blob again", "blob", b.d.String(), "repository", b.repo.String(), "offset", b.n, "error", err, "wait", wait.Round(time.Millisecond))
		if serr := sleep(b.ctx, wait); serr != nil {
			return serr
		}
		rc, gerr := b.c.getBlob(b.ctx, b.repo, b.d)
		if gerr != nil {
			return gerr
		}
		if _, err = io.CopyN(io.Discard, rc, b.n); err == nil {
			b.rc = rc
			return nil
		}
		rc.Close()
		if !isTransient(err) {
			return err
		}
	}
}

func (b *resumingBody) Close() error { return b.rc.Close() }

func (c *Client) getBlob(ctx context.Context, repo name.Repository, d v1.Hash) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.repoURL(repo, "/blobs/"+d.String()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, repo, []string{pull(repo)}, req)
	if err != nil {
		return nil, err
	}
	if resp, err = c.followRedirects(ctx, repo, req, resp); err != nil {
		return nil, err
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// maxRedirects bounds the redirects followed for one blob read.
const maxRedirects = 5

// isRedirect reports whether status sends the client elsewhere.
func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// followRedirects follows the redirects a registry answers a blob read
// with (registries that keep blobs in object storage send the client
// there), at most maxRedirects of them. The registry's credentials go only
// to the registry itself (same scheme, host and port); any other host gets
// the request without them. A redirect from HTTPS to plain HTTP is refused
// unless the new host is one spoken to over plain HTTP anyway.
func (c *Client) followRedirects(ctx context.Context, repo name.Repository, first *http.Request, resp *http.Response) (*http.Response, error) {
	req := first
	for hops := 0; isRedirect(resp.StatusCode); hops++ {
		loc := resp.Header.Get("Location")
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if hops == maxRedirects {
			return nil, fmt.Errorf("reading %s: more than %d redirects (last to %s)", first.URL.Redacted(), maxRedirects, redactURL(loc))
		}
		u, err := req.URL.Parse(loc)
		if err != nil || loc == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("reading %s: unusable redirect Location %q", first.URL.Redacted(), redactURL(loc))
		}
		if u.Scheme == "http" && req.URL.Scheme == "https" && !c.plainHTTP(u.Host) {
			return nil, fmt.Errorf("reading %s: redirect from HTTPS to plain HTTP (%s) refused", first.URL.Redacted(), u.Host)
		}
		next, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		if u.Scheme == first.URL.Scheme && strings.EqualFold(u.Host, first.URL.Host) {
			resp, err = c.do(ctx, repo, []string{pull(repo)}, next)
		} else {
			// Another host: no credentials, only the one retrying chain.
			next.Header.Set("User-Agent", UserAgent)
			resp, err = c.chain.RoundTrip(next)
			if err != nil {
				err = classify(err)
			}
		}
		if err != nil {
			return nil, err
		}
		req = next
	}
	return resp, nil
}

// redactURL drops the query of a URL for messages: presigned object
// storage URLs carry their credentials there.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery = ""
	return u.Redacted()
}

// PushBlob uploads the blob desc into repo: one upload session, the whole
// blob in one PUT. When content can seek (a file, a bytes.Reader), an
// upload that fails in a transient way is started again in a new session
// from the beginning of content, as the client's retry policy allows;
// content that cannot seek is sent once.
func (c *Client) PushBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor, content io.Reader) error {
	repo = c.Repo(repo)
	return c.retryUpload(ctx, repo, desc.Digest, content, func(body io.Reader) error {
		mounted, loc, err := c.startUpload(ctx, repo, desc.Digest, nil)
		if err != nil || mounted {
			return err
		}
		return c.finishUpload(ctx, repo, loc, desc, body)
	})
}

// MountBlob asks the registry to link the blob desc into repo from the
// repository from of the same registry (a cross-repository mount: nothing
// is uploaded) and reports whether it did. When the registry refuses, the
// blob is uploaded instead, into the session the registry opened, from
// getContent (called only then; content that can seek is sent again after a
// transient failure, like PushBlob's).
func (c *Client) MountBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor, from name.Repository, getContent func() (io.ReadCloser, error)) (bool, error) {
	repo = c.Repo(repo)
	mounted, loc, err := c.startUpload(ctx, repo, desc.Digest, &from)
	if err != nil || mounted {
		return mounted, err
	}
	rc, err := getContent()
	if err != nil {
		return false, err
	}
	defer rc.Close()
	first := true
	return false, c.retryUpload(ctx, repo, desc.Digest, rc, func(body io.Reader) error {
		if !first {
			if _, loc, err = c.startUpload(ctx, repo, desc.Digest, nil); err != nil {
				return err
			}
		}
		first = false
		return c.finishUpload(ctx, repo, loc, desc, body)
	})
}

// startUpload opens an upload of blob d into repo. When from is set (a
// repository of the same registry known to hold the blob), it asks for a
// cross-repository mount first: mounted is true when the registry did so,
// and no upload is needed. Otherwise location is where to PUT the blob.
func (c *Client) startUpload(ctx context.Context, repo name.Repository, d v1.Hash, from *name.Repository) (mounted bool, location string, err error) {
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

// finishUpload sends the whole blob in one PUT to an upload location (a
// monolithic upload: one request after startUpload).
func (c *Client) finishUpload(ctx context.Context, repo name.Repository, location string, desc v1.Descriptor, body io.Reader) error {
	u, err := url.Parse(location)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", desc.Digest.String())
	u.RawQuery = q.Encode()
	// NopCloser: the transport must not close the content (a file is sent
	// again from its start after a failure), nor guess its length.
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), io.NopCloser(body))
	if err != nil {
		return err
	}
	req.ContentLength = desc.Size
	if desc.Size == 0 {
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
