package access_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/regerr"
)

// serve starts go-containerregistry's registry (with or without the
// referrers API) behind wrap, and returns its host.
func serve(t *testing.T, referrers bool, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)), ggcrregistry.WithReferrersSupport(referrers))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func repo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s, name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func blob(content string) v1.Descriptor {
	h, _, _ := v1.SHA256(strings.NewReader(content))
	return v1.Descriptor{MediaType: types.OCILayer, Size: int64(len(content)), Digest: h}
}

func client(t *testing.T) *access.Client {
	t.Helper()
	c, err := access.New(testenv.FastRetries())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStorageOperations goes through every storage operation once against
// a registry: what is absent says so with regerr.ErrNotFound, what was
// written reads back the same.
func TestStorageOperations(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	host := serve(t, false, nil)
	r := repo(t, host+"/team/app")
	content := "config"
	desc := blob(content)

	if _, err := c.Resolve(ctx, r.Tag("v1")); !errors.Is(err, regerr.ErrNotFound) {
		t.Fatalf("Resolve of a missing tag: %v, want regerr.ErrNotFound", err)
	}
	if ok, err := c.BlobExists(ctx, r, desc.Digest); ok || err != nil {
		t.Fatalf("BlobExists before the push = %v, %v", ok, err)
	}
	if err := c.PushBlob(ctx, r, desc, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.BlobExists(ctx, r, desc.Digest); !ok || err != nil {
		t.Fatalf("BlobExists after the push = %v, %v", ok, err)
	}
	rc, err := c.FetchBlob(ctx, r, desc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != content {
		t.Fatalf("FetchBlob = %q, %v", got, err)
	}

	// This registry does not mount across repositories: the blob is
	// uploaded instead, into the session it opened.
	other := repo(t, host+"/team/other")
	asked := 0
	mounted, err := c.MountBlob(ctx, other, desc, r, func() (io.ReadCloser, error) {
		asked++
		return io.NopCloser(strings.NewReader(content)), nil
	})
	if ok, _ := c.BlobExists(ctx, other, desc.Digest); mounted || err != nil || asked != 1 || !ok {
		t.Fatalf("MountBlob refused = %v, %v; content asked %d times; blob there %v", mounted, err, asked, ok)
	}

	m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":6,"digest":"` + desc.Digest.String() + `"},"layers":[]}`)
	if _, err := c.PutManifest(ctx, r.Tag("v1"), m, types.OCIManifestSchema1); err != nil {
		t.Fatal(err)
	}
	d, err := c.Resolve(ctx, r.Tag("v1"))
	if err != nil {
		t.Fatal(err)
	}
	raw, fd, err := c.FetchManifest(ctx, r.Digest(d.Digest.String()))
	if err != nil || !bytes.Equal(raw, m) || fd.Digest != d.Digest || fd.MediaType != types.OCIManifestSchema1 || fd.Size != int64(len(m)) {
		t.Fatalf("FetchManifest = %s, %+v, %v; resolved %+v", raw, fd, err, d)
	}
	tags, _, err := c.ListTags(ctx, r)
	if err != nil || len(tags) != 1 || tags[0] != "v1" {
		t.Fatalf("ListTags = %v, %v", tags, err)
	}
}

// subjectHeader answers manifest PUTs that have a subject with the
// OCI-Subject header, as registries that index subjects do
// (go-containerregistry's registry lists referrers but does not say so).
func subjectHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m v1.Manifest
			if json.Unmarshal(body, &m) == nil && m.Subject != nil {
				w.Header().Set("OCI-Subject", m.Subject.Digest.String())
			}
		}
		next.ServeHTTP(w, r)
	})
}

// TestReferrers writes an artifact whose subject is an image: a registry
// with the referrers API says so (OCI-Subject) and lists it; one without
// says neither, and its referrers call matches regerr.ErrUnsupported.
func TestReferrers(t *testing.T) {
	ctx := context.Background()
	for _, supported := range []bool{true, false} {
		c := client(t)
		var wrap func(http.Handler) http.Handler
		if supported {
			wrap = subjectHeader
		}
		host := serve(t, supported, wrap)
		r := repo(t, host+"/app")
		img := testenv.PushImage(t, host+"/app:v1", 1)
		empty := blob("{}")
		if err := c.PushBlob(ctx, r, empty, strings.NewReader("{}")); err != nil {
			t.Fatal(err)
		}
		art := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/example.sig",` +
			`"config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"` + empty.Digest.String() + `"},"layers":[],` +
			`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"` + img.String() + `"}}`)
		artDigest, _, _ := v1.SHA256(bytes.NewReader(art))
		subject, err := c.PutManifest(ctx, r.Digest(artDigest.String()), art, types.OCIManifestSchema1)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := c.Referrers(ctx, r, img)
		if !supported {
			if subject != (v1.Hash{}) {
				t.Errorf("no referrers API: PutManifest reported subject %s", subject)
			}
			if !errors.Is(err, regerr.ErrUnsupported) {
				t.Errorf("no referrers API: Referrers error %v, want regerr.ErrUnsupported", err)
			}
			continue
		}
		if subject != img {
			t.Errorf("PutManifest subject = %s, want %s", subject, img)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != artDigest {
			t.Errorf("referrers = %+v, want the artifact %s", idx.Manifests, artDigest)
		}
	}
}

// TestPushBlobRetriesTheWholeUpload fails the first upload PUT: content
// that can seek is sent again in a new session; content that cannot is
// sent once and the failure is reported, testable as temporary.
func TestPushBlobRetriesTheWholeUpload(t *testing.T) {
	ctx := context.Background()
	for _, seekable := range []bool{true, false} {
		var puts, fails atomic.Int32
		host := serve(t, false, func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && puts.Add(1) == 1 {
					io.Copy(io.Discard, r.Body)
					fails.Add(1)
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				next.ServeHTTP(w, r)
			})
		})
		c := client(t)
		r := repo(t, host+"/app")
		content := strings.Repeat("layer", 1000)
		desc := blob(content)
		var body io.Reader = strings.NewReader(content)
		if !seekable {
			body = io.MultiReader(body)
		}
		err := c.PushBlob(ctx, r, desc, body)
		ok, _ := c.BlobExists(ctx, r, desc.Digest)
		if seekable && (err != nil || !ok || puts.Load() != 2) {
			t.Errorf("seekable content: err %v, blob there %v, %d PUTs; want sent again once", err, ok, puts.Load())
		}
		if !seekable && (!errors.Is(err, regerr.ErrTemporary) || regerr.Status(err) != http.StatusInternalServerError || ok || puts.Load() != 1) {
			t.Errorf("content that cannot seek: err %v, blob there %v, %d PUTs; want one failed PUT", err, ok, puts.Load())
		}
		if fails.Load() != 1 {
			t.Errorf("%d failures injected, want 1", fails.Load())
		}
	}
}

// TestFetchBlobResumes cuts the first blob download off halfway: the
// reader still delivers the whole blob, once.
func TestFetchBlobResumes(t *testing.T) {
	ctx := context.Background()
	var gets atomic.Int32
	host := serve(t, false, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") && gets.Add(1) == 1 {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				w.Header().Set("Content-Length", rec.Header().Get("Content-Length"))
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
				panic(http.ErrAbortHandler) // cut the connection
			}
			next.ServeHTTP(w, r)
		})
	})
	c := client(t)
	r := repo(t, host+"/app")
	content := strings.Repeat("0123456789", 10000)
	desc := blob(content)
	if err := c.PushBlob(ctx, r, desc, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	rc, err := c.FetchBlob(ctx, r, desc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != content {
		t.Fatalf("read %d bytes (want %d), err %v", len(got), len(content), err)
	}
	if gets.Load() != 2 {
		t.Errorf("%d GETs, want 2 (the cut one and the resumed one)", gets.Load())
	}
}

// TestMountBlob mounts a blob across repositories of a Distribution
// registry: nothing is uploaded, so the content is never asked for.
func TestMountBlob(t *testing.T) {
	ctx := context.Background()
	host := testenv.StartDistribution(t, "mount").Host
	c := client(t)
	from, to := repo(t, host+"/a"), repo(t, host+"/b")
	desc := blob("shared layer")
	if err := c.PushBlob(ctx, from, desc, strings.NewReader("shared layer")); err != nil {
		t.Fatal(err)
	}
	mounted, err := c.MountBlob(ctx, to, desc, from, func() (io.ReadCloser, error) {
		t.Error("content asked for although the registry mounts")
		return nil, errors.New("unexpected")
	})
	if ok, _ := c.BlobExists(ctx, to, desc.Digest); !mounted || err != nil || !ok {
		t.Fatalf("MountBlob = %v, %v; blob there %v", mounted, err, ok)
	}
	if _, err := c.Referrers(ctx, from, desc.Digest); !errors.Is(err, regerr.ErrUnsupported) {
		t.Errorf("Distribution v3.0.0 has no referrers API: error %v, want regerr.ErrUnsupported", err)
	}
}
