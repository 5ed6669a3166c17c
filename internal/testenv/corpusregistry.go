package testenv

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
)

// CorpusManifestType and CorpusManifestSize are what a CorpusRegistry
// answers for every manifest it holds: the world has no manifest bodies,
// only digests, so every image is an OCI image manifest of the same size.
const (
	CorpusManifestType = "application/vnd.oci.image.manifest.v1+json"
	CorpusManifestSize = 1024
)

// CorpusRegistry is an http.Handler answering the read side of the OCI
// distribution API (version check, tag listing, manifest HEAD) for a
// synthetic world in which every promotion a set of edge groups asks for is
// already done: each source repository holds its groups' digests, and each
// destination repository holds them too, with every tag pointing at its
// group's digest.
//
// It exists because writing the tens of thousands of images of a real
// manifest tree into a registry takes far too long for a test, while
// planning against it only reads tags and manifest descriptors. Holding only
// names and digests, it stays small: about fifty bytes per (repository,
// tag or digest), 71 MiB for the 1.5 million of the Kubernetes corpus.
//
// Repositories are keyed by their path on the server (RepositoryStr), so
// the host of the groups' names is ignored: give it groups whose names point
// at the server (see StartCorpusRegistry and RehostThinDir). It is safe for
// concurrent use; the world never changes once built.
type CorpusRegistry struct {
	repos      map[string]*corpusRepo
	digests    []string // interned: corpusRepo.refs values index it
	maxPage    int
	tagDigests bool
	counts     corpusCounters
}

// corpusRepo is one repository: its tags, sorted, and what each tag or
// digest resolves to.
type corpusRepo struct {
	tags []string
	refs map[string]int32 // tag or digest -> index into CorpusRegistry.digests
}

type corpusCounters struct {
	requests, base, tagLists, manifestHits, manifestMisses, other atomic.Int64
}

// CorpusStats counts the requests a CorpusRegistry has served, by kind.
type CorpusStats struct {
	// Requests counts every request.
	Requests int64
	// Base counts API version checks, /v2/.
	Base int64
	// TagLists counts tag list requests (each page is one), also those for
	// unknown repositories.
	TagLists int64
	// ManifestHits counts manifest HEADs answered 200.
	ManifestHits int64
	// ManifestMisses counts manifest HEADs answered 404.
	ManifestMisses int64
	// Other counts everything else (answered 404 or 405).
	Other int64
}

// CorpusOption configures a CorpusRegistry.
type CorpusOption func(*CorpusRegistry)

// CorpusMaxPage caps the number of tags one tag list page holds, whatever
// the client asks for, as real registries do (0, the default: no cap). The
// rest follows through Link headers.
func CorpusMaxPage(n int) CorpusOption {
	return func(r *CorpusRegistry) { r.maxPage = max(0, n) }
}

// CorpusTagDigests makes tag lists carry the "manifest" map Google's
// registries (GCR, Artifact Registry) add: each digest of the page's tags,
// with its media type and those of its tags on the page. A client that reads
// it needs no HEAD to learn where a tag points. Without it, tag lists are
// plain OCI.
func CorpusTagDigests() CorpusOption {
	return func(r *CorpusRegistry) { r.tagDigests = true }
}

// NewCorpusRegistry builds the world of groups.
func NewCorpusRegistry(groups []*edge.Group, opts ...CorpusOption) *CorpusRegistry {
	r := &CorpusRegistry{repos: map[string]*corpusRepo{}}
	for _, o := range opts {
		o(r)
	}
	repo := func(key string) *corpusRepo {
		cr, ok := r.repos[key]
		if !ok {
			cr = &corpusRepo{refs: map[string]int32{}}
			r.repos[key] = cr
		}
		return cr
	}
	interned := map[string]int32{}
	for _, g := range groups {
		// One string per digest, shared by every repository holding it.
		dg := g.Digest.String()
		idx, ok := interned[dg]
		if !ok {
			idx = int32(len(r.digests))
			interned[dg] = idx
			r.digests = append(r.digests, dg)
		}
		dg = r.digests[idx]
		repo(g.Source.Context().RepositoryStr()).refs[dg] = idx
		for _, d := range g.Dests {
			cr := repo(d.RepositoryStr())
			cr.refs[dg] = idx
			for _, t := range g.Tags {
				cr.refs[t.Name] = idx
			}
		}
	}
	for _, cr := range r.repos {
		for ref := range cr.refs {
			if !strings.Contains(ref, ":") { // digests have one, tags never
				cr.tags = append(cr.tags, ref)
			}
		}
		slices.Sort(cr.tags)
	}
	return r
}

// Stats returns the request counts so far.
func (r *CorpusRegistry) Stats() CorpusStats {
	c := &r.counts
	return CorpusStats{Requests: c.requests.Load(), Base: c.base.Load(), TagLists: c.tagLists.Load(),
		ManifestHits: c.manifestHits.Load(), ManifestMisses: c.manifestMisses.Load(), Other: c.other.Load()}
}

// ResetStats sets the request counts back to zero.
func (r *CorpusRegistry) ResetStats() {
	c := &r.counts
	for _, n := range []*atomic.Int64{&c.requests, &c.base, &c.tagLists, &c.manifestHits, &c.manifestMisses, &c.other} {
		n.Store(0)
	}
}

// ServeHTTP answers one distribution API request.
func (r *CorpusRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.counts.requests.Add(1)
	path := req.URL.Path
	read := req.Method == http.MethodGet || req.Method == http.MethodHead
	switch {
	case path == "/v2/" || path == "/v2":
		r.counts.base.Add(1)
		if !read {
			corpusError(w, req, http.StatusMethodNotAllowed, "UNSUPPORTED", "read-only registry")
			return
		}
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	case strings.HasPrefix(path, "/v2/") && strings.HasSuffix(path, "/tags/list") && len(path) > len("/v2//tags/list"):
		r.counts.tagLists.Add(1)
		if !read {
			corpusError(w, req, http.StatusMethodNotAllowed, "UNSUPPORTED", "read-only registry")
			return
		}
		r.listTags(w, req, path[len("/v2/"):len(path)-len("/tags/list")])
	case strings.HasPrefix(path, "/v2/") && strings.Contains(path, "/manifests/"):
		i := strings.LastIndex(path, "/manifests/")
		repoName, ref := path[len("/v2/"):i], path[i+len("/manifests/"):]
		if req.Method != http.MethodHead || repoName == "" || ref == "" || strings.Contains(ref, "/") {
			// Manifest bodies are not part of the world.
			r.counts.other.Add(1)
			corpusError(w, req, http.StatusMethodNotAllowed, "UNSUPPORTED", "this test registry answers manifest HEAD requests only")
			return
		}
		r.headManifest(w, req, repoName, ref)
	default:
		r.counts.other.Add(1)
		corpusError(w, req, http.StatusNotFound, "UNSUPPORTED", "not served by this test registry")
	}
}

// listTags answers a tag list page: tags in lexical order, after "last" if
// given, at most "n" (and the registry's cap) of them, and a Link header to
// the next page when some remain.
func (r *CorpusRegistry) listTags(w http.ResponseWriter, req *http.Request, repoName string) {
	cr, ok := r.repos[repoName]
	if !ok {
		corpusError(w, req, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	}
	q := req.URL.Query()
	limit := len(cr.tags)
	if s := q.Get("n"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			corpusError(w, req, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
			return
		}
		limit = n
	}
	if r.maxPage > 0 {
		limit = min(limit, r.maxPage)
	}
	start := 0
	if last := q.Get("last"); last != "" {
		i, found := slices.BinarySearch(cr.tags, last)
		if found {
			i++
		}
		start = i
	}
	end := min(len(cr.tags), start+limit)
	page := cr.tags[start:end]
	if page == nil {
		page = []string{} // never null in JSON
	}
	if end < len(cr.tags) && len(page) > 0 {
		next := "/v2/" + repoName + "/tags/list?n=" + strconv.Itoa(limit) + "&last=" + url.QueryEscape(page[len(page)-1])
		w.Header().Set("Link", "<"+next+`>; rel="next"`)
	}
	type manifestInfo struct {
		MediaType string   `json:"mediaType"`
		Tag       []string `json:"tag"`
	}
	var manifests map[string]*manifestInfo
	if r.tagDigests {
		manifests = map[string]*manifestInfo{}
		for _, t := range page {
			dg := r.digests[cr.refs[t]]
			if manifests[dg] == nil {
				manifests[dg] = &manifestInfo{MediaType: CorpusManifestType}
			}
			manifests[dg].Tag = append(manifests[dg].Tag, t)
		}
	}
	body, err := json.Marshal(struct {
		Name     string                   `json:"name"`
		Tags     []string                 `json:"tags"`
		Manifest map[string]*manifestInfo `json:"manifest,omitempty"`
	}{repoName, page, manifests})
	if err != nil {
		corpusError(w, req, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// headManifest answers a manifest HEAD by tag or digest.
func (r *CorpusRegistry) headManifest(w http.ResponseWriter, req *http.Request, repoName, ref string) {
	cr, ok := r.repos[repoName]
	if !ok {
		r.counts.manifestMisses.Add(1)
		corpusError(w, req, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	}
	idx, ok := cr.refs[ref]
	if !ok {
		r.counts.manifestMisses.Add(1)
		corpusError(w, req, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	r.counts.manifestHits.Add(1)
	h := w.Header()
	h.Set("Docker-Content-Digest", r.digests[idx])
	h.Set("Content-Type", CorpusManifestType)
	h.Set("Content-Length", strconv.Itoa(CorpusManifestSize))
	w.WriteHeader(http.StatusOK)
}

// corpusError answers with a distribution-spec error body (none for HEAD).
func corpusError(w http.ResponseWriter, req *http.Request, status int, code, message string) {
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if req.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// StartCorpusRegistry serves a CorpusRegistry on 127.0.0.1 until the test
// ends. The port is chosen first and handed to world, which returns the
// groups to build the world from: manifests have to name the server's host
// before they are validated into groups (see RehostThinDir).
func StartCorpusRegistry(t testing.TB, world func(host string) []*edge.Group, opts ...CorpusOption) (*CorpusRegistry, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: corpus registry: %v", err)
	}
	t.Cleanup(func() { ln.Close() }) // also when world fails the test
	host := ln.Addr().String()
	groups := world(host)
	reg := NewCorpusRegistry(groups, opts...)
	srv := httptest.NewUnstartedServer(reg)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return reg, host
}

// registryNameLine matches a registry entry's name in a promoter manifest:
// "- name: HOST/..." (or "name:" on its own line of the entry), optionally
// quoted, where HOST has a dot or a port as registry hosts do. Submatch 3 is
// the port.
var registryNameLine = regexp.MustCompile(`(?m)^(\s*(?:-\s+)?name:\s*["']?)([a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(:[0-9]+)?/)`)

// RehostThinDir copies the thin manifest directory dir into a temporary
// directory, prefixing every registry name with host, so that
// "us-central1-docker.pkg.dev/k8s-artifacts-prod/images/x" becomes
// "HOST/us-central1-docker.pkg.dev/k8s-artifacts-prod/images/x": every
// registry the manifests name is then a path on one test server. Lines and
// columns stay where they were. A registry with a port, or without a dot,
// cannot become a path and fails the test. With projects, only those projects are
// copied (their manifests/ and images/ folders). It returns the copy.
func RehostThinDir(t testing.TB, dir, host string, projects ...string) string {
	t.Helper()
	out := t.TempDir()
	keep := func(rel string) bool {
		if len(projects) == 0 {
			return true
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) < 2 || (parts[0] != manifest.ThinManifestsDir && parts[0] != manifest.ThinImagesDir) {
			return len(parts) == 1 // top-level folders and files
		}
		return slices.Contains(projects, parts[1])
	}
	rehosted := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel != "." && !keep(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(out, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if d.Name() == manifest.ThinManifestFile {
			for _, m := range registryNameLine.FindAllSubmatch(data, -1) {
				host := string(m[2])
				if len(m[3]) > 0 || !strings.Contains(host, ".") {
					// Only a host with a dot and no port is both a
					// registry and a valid repository path component.
					return fmt.Errorf("%s: registry %s cannot become a repository path", rel, strings.TrimSuffix(host, "/"))
				}
				rehosted++
			}
			data = registryNameLine.ReplaceAll(data, []byte("${1}"+host+"/${2}"))
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatalf("testenv: rehosting %s: %v", dir, err)
	}
	if rehosted == 0 {
		t.Fatalf("testenv: rehosting %s: no registry names found", dir)
	}
	return out
}
