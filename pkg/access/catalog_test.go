package access_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/regerr"
)

func catalogClient(t *testing.T) *access.Client {
	t.Helper()
	c, err := access.New(testenv.FastRetries())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func registry(t *testing.T, host string) name.Registry {
	t.Helper()
	r, err := name.NewRegistry(host)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCatalogPagination reads the catalog of a real Distribution registry
// a page at a time, through a proxy that records the pages asked for.
func TestCatalogPagination(t *testing.T) {
	reg := testenv.StartDistribution(t, "catalog")
	u, err := url.Parse("http://" + reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var pages []string
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/_catalog" {
			mu.Lock()
			pages = append(pages, r.URL.RawQuery)
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	want := []string{"a", "b/c", "b/c/d", "e", "f-g"}
	for i, r := range want {
		testenv.PushImage(t, fmt.Sprintf("%s/%s:v1", host, r), int64(i))
	}
	c := catalogClient(t)
	for _, size := range []int{1, 2, 0} {
		pages = nil
		got, err := c.Catalog(context.Background(), registry(t, host), size)
		if err != nil {
			t.Fatalf("page size %d: %v", size, err)
		}
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("page size %d (-want +got):\n%s", size, diff)
		}
		t.Logf("page size %d: pages %q", size, pages)
		wantPages := 1
		if size > 0 {
			wantPages = len(want)/size + 1 // the last page may come back empty
		}
		if len(pages) < wantPages-1 || len(pages) > wantPages {
			t.Errorf("page size %d: pages asked %q", size, pages)
		}
	}
}

func TestCatalogAnswers(t *testing.T) {
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		want        []string
		unavailable bool // the error says: no catalog for this client
	}{
		{
			name: "page size refused, asked again without",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Has("n") {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					fmt.Fprint(w, `{"errors":[{"code":"PAGINATION_NUMBER_INVALID","message":"too many"}]}`)
					return
				}
				fmt.Fprint(w, `{"repositories":["x","y/z"]}`)
			},
			want: []string{"x", "y/z"},
		},
		{
			name: "next link relative to the request",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("last") == "" {
					w.Header().Set("Link", `</v2/_catalog?n=1&last=x>; rel="next"`)
					fmt.Fprint(w, `{"repositories":["x"]}`)
					return
				}
				fmt.Fprint(w, `{"repositories":["y"]}`)
			},
			want: []string{"x", "y"},
		},
		{
			name: "endless pagination",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", `</v2/_catalog?n=1&last=x>; rel="next"`)
				fmt.Fprint(w, `{"repositories":["x"]}`)
			},
		},
		{
			name: "link to another host",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", `<http://elsewhere.example/v2/_catalog?last=x>; rel="next"`)
				fmt.Fprint(w, `{"repositories":["x"]}`)
			},
		},
		{
			name:        "not offered",
			handler:     func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			unavailable: true,
		},
		{
			name: "unsupported",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"errors":[{"code":"UNSUPPORTED","message":"no catalog"}]}`)
			},
			unavailable: true,
		},
		{
			name:        "denied",
			handler:     func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) },
			unavailable: true,
		},
		{
			name:    "server failure",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					return // no credentials needed
				}
				tt.handler(w, r)
			}))
			t.Cleanup(srv.Close)
			got, err := catalogClient(t).Catalog(context.Background(), registry(t, strings.TrimPrefix(srv.URL, "http://")), 0)
			if tt.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; got %v", got)
			}
			if errors.Is(err, regerr.ErrUnsupported) != tt.unavailable {
				t.Errorf("errors.Is(%v, regerr.ErrUnsupported) = %v, want %v", err, !tt.unavailable, tt.unavailable)
			}
		})
	}
}
