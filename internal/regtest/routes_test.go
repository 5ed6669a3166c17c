package regtest

import (
	"net/http"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		path string
		want string
	}{
		{"/v2/", ClassBase},
		{"/v2", ClassBase},
		{"/v2/_catalog", ClassCatalog},
		{"/v2/prod/app/manifests/v1.0.0", ClassManifest},
		{"/v2/prod/app/manifests/sha256:" + strings.Repeat("a", 64), ClassManifest},
		{"/v2/prod/app/blobs/sha256:" + strings.Repeat("b", 64), ClassBlob},
		{"/v2/prod/app/blobs/uploads/", ClassUpload},
		{"/v2/prod/app/blobs/uploads/0b6e-41", ClassUpload},
		{"/v2/prod/app/tags/list", ClassTags},
		{"/v2/prod/app/referrers/sha256:" + strings.Repeat("c", 64), ClassReferrers},
		{"/metrics", ClassOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.path); got != tt.want {
			t.Errorf("Classify(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestBlobDigest(t *testing.T) {
	dig := "sha256:" + strings.Repeat("b", 64)
	if got, ok := BlobDigest("/v2/prod/app/blobs/" + dig); !ok || got != dig {
		t.Errorf("BlobDigest(blob path) = %q, %v; want %q, true", got, ok, dig)
	}
	if got, ok := BlobDigest("/v2/prod/app/blobs/uploads/0b6e-41"); ok {
		t.Errorf("BlobDigest(upload path) = %q, true; want false", got)
	}
}

func TestRewriteLocation(t *testing.T) {
	tests := []struct {
		name, loc, want string
	}{
		{"upstream absolute", "http://127.0.0.1:5000/v2/app/blobs/uploads/x?_state=s", "http://127.0.0.1:6000/v2/app/blobs/uploads/x?_state=s"},
		{"other host", "http://example.com/v2/app/blobs/uploads/x", "http://example.com/v2/app/blobs/uploads/x"},
		{"relative", "/v2/app/blobs/uploads/x", "/v2/app/blobs/uploads/x"},
		{"none", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{Header: http.Header{}}
			if tt.loc != "" {
				resp.Header.Set("Location", tt.loc)
			}
			if err := RewriteLocation(resp, "127.0.0.1:5000", "127.0.0.1:6000"); err != nil {
				t.Fatal(err)
			}
			if got := resp.Header.Get("Location"); got != tt.want {
				t.Errorf("Location = %q, want %q", got, tt.want)
			}
		})
	}
}
