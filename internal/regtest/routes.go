package regtest

import (
	"net/http"
	"net/url"
	"regexp"
)

// Path patterns of the distribution API routes, as regular expressions
// matched against a URL path.
const (
	// PathManifest matches manifest requests, by tag or digest.
	PathManifest = `^/v2/.+/manifests/[^/]+$`
	// PathBlob matches blob requests by digest (not uploads).
	PathBlob = `^/v2/.+/blobs/` + DigestPattern + `$`
	// PathUpload matches blob upload requests: start, chunk and commit.
	PathUpload = `^/v2/.+/blobs/uploads/`
	// PathTags matches tag listing requests.
	PathTags = `^/v2/.+/tags/list$`
	// PathReferrers matches referrers listings.
	PathReferrers = `^/v2/.+/referrers/[^/]+$`

	// DigestPattern is the OCI distribution-spec digest grammar.
	DigestPattern = `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`
)

// Route classes Classify returns.
const (
	// ClassBase is the API version check, /v2/.
	ClassBase = "base"
	// ClassCatalog is the repository listing, /v2/_catalog.
	ClassCatalog = "catalog"
	// ClassManifest is a manifest request, see PathManifest.
	ClassManifest = "manifest"
	// ClassBlob is a blob request by digest, see PathBlob.
	ClassBlob = "blob"
	// ClassUpload is a blob upload request, see PathUpload.
	ClassUpload = "upload"
	// ClassTags is a tag listing, see PathTags.
	ClassTags = "tags"
	// ClassReferrers is a referrers listing, see PathReferrers.
	ClassReferrers = "referrers"
	// ClassOther is any other path.
	ClassOther = "other"
)

// Route patterns, compiled once and never modified.
var (
	manifestRE  = regexp.MustCompile(PathManifest)
	blobRE      = regexp.MustCompile(`^/v2/.+/blobs/(` + DigestPattern + `)$`)
	uploadRE    = regexp.MustCompile(PathUpload)
	tagsRE      = regexp.MustCompile(PathTags)
	referrersRE = regexp.MustCompile(PathReferrers)
)

// Classify names the API route of a URL path; see the Class constants.
func Classify(path string) string {
	switch {
	case path == "/v2/" || path == "/v2":
		return ClassBase
	case path == "/v2/_catalog":
		return ClassCatalog
	case uploadRE.MatchString(path):
		return ClassUpload
	case blobRE.MatchString(path):
		return ClassBlob
	case manifestRE.MatchString(path):
		return ClassManifest
	case tagsRE.MatchString(path):
		return ClassTags
	case referrersRE.MatchString(path):
		return ClassReferrers
	default:
		return ClassOther
	}
}

// BlobDigest returns the digest a blob request path names, as written in
// the path, and whether path is a blob request at all.
func BlobDigest(path string) (string, bool) {
	m := blobRE.FindStringSubmatch(path)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// RewriteLocation points an absolute Location header that names the
// upstream host (Distribution sends them for blob upload sessions) at the
// proxy host instead, so that clients keep going through a proxy for the
// rest of an upload. It suits httputil.ReverseProxy.ModifyResponse and
// never fails: a header it cannot parse is left alone.
func RewriteLocation(resp *http.Response, upstreamHost, proxyHost string) error {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host != upstreamHost {
		return nil
	}
	u.Host = proxyHost
	resp.Header.Set("Location", u.String())
	return nil
}
