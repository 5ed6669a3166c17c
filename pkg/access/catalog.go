package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// catalogScope is the token scope a registry asks for before it lists its
// repositories.
const catalogScope = "registry:catalog:*"

// DefaultCatalogPage is the page size Catalog asks for when none is given:
// CNCF Distribution refuses larger pages by default.
const DefaultCatalogPage = 1000

// maxCatalogPages bounds a catalog listing: a registry whose pagination
// never ends (a link back to an earlier page) is an error, not a hang.
const maxCatalogPages = 100000

// Catalog lists every repository of a registry (GET /v2/_catalog),
// following Link rel="next" pagination, pageSize at a time (0 or less:
// DefaultCatalogPage). The names are as the registry gives them, without
// the host. When the first page is refused as too large (400), the
// listing is asked again without a page size, letting the registry choose.
//
// Many registries do not offer the catalog, or only to some credentials:
// the registry's answer is returned as the error, and when it means that
// the registry does not list its repositories to this client (no such
// endpoint, not allowed, or unsupported) that error matches
// regerr.ErrUnsupported.
func (c *Client) Catalog(ctx context.Context, reg name.Registry, pageSize int) ([]string, error) {
	if pageSize <= 0 {
		pageSize = DefaultCatalogPage
	}
	base := c.scheme(reg) + "://" + reg.RegistryStr() + "/v2/_catalog"
	next := base + "?n=" + strconv.Itoa(pageSize)
	var repos []string
	seen := map[string]bool{}
	for pages := 0; next != ""; pages++ {
		if pages >= maxCatalogPages || seen[next] {
			return nil, fmt.Errorf("catalog of %s: pagination does not end (page %d: %s)", reg.RegistryStr(), pages+1, next)
		}
		seen[next] = true
		page, link, err := c.catalogPage(ctx, reg, next)
		if err != nil && pages == 0 && regerr.Status(err) == http.StatusBadRequest && next != base {
			next = base
			continue
		}
		if err != nil {
			if errors.Is(err, regerr.ErrNotFound) || errors.Is(err, regerr.ErrDenied) {
				return nil, regerr.Unsupported(err)
			}
			return nil, err
		}
		repos = append(repos, page.Repositories...)
		next = link
	}
	return repos, nil
}

// catalogResponse is one page of /v2/_catalog.
type catalogResponse struct {
	Repositories []string `json:"repositories"`
}

func (c *Client) catalogPage(ctx context.Context, reg name.Registry, u string) (*catalogResponse, string, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	// transportFor keys credentials by registry and scope; the repository
	// name is not used for a registry-wide scope.
	resp, err := c.do(ctx, reg.Repo("catalog"), []string{catalogScope}, req)
	if err != nil {
		return nil, "", fmt.Errorf("catalog of %s: %w", reg.RegistryStr(), err)
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, "", fmt.Errorf("catalog of %s: %w", reg.RegistryStr(), err)
	}
	defer resp.Body.Close()
	var page catalogResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&page); err != nil {
		return nil, "", fmt.Errorf("catalog of %s: %w", reg.RegistryStr(), err)
	}
	next, err := nextLink(resp, req.URL)
	if err != nil {
		return nil, "", fmt.Errorf("catalog of %s: %w", reg.RegistryStr(), err)
	}
	return &page, next, nil
}
