package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// ListManifests returns every manifest of a repository, untagged ones
// included, where the registry lists them with the tags (Google's
// registries add a "manifest" map, keyed by digest, to the tag list); ok is
// false when it does not (the OCI API has no such listing). A repository
// that does not exist has none.
func (c *Client) ListManifests(ctx context.Context, repo name.Repository) (digests []v1.Hash, ok bool, err error) {
	repo = c.Repo(repo)
	next := c.repoURL(repo, "/tags/list?n=1000")
	seen := map[string]bool{}
	got := map[v1.Hash]bool{}
	for page := 1; next != ""; page++ {
		if seen[next] || page > maxTagPages {
			return nil, false, fmt.Errorf("registry %s: tag list of %s: pagination loops or goes on for more than %d pages", repo.RegistryStr(), repo.RepositoryStr(), maxTagPages)
		}
		seen[next] = true
		m, link, err := c.manifestsPage(ctx, repo, next)
		if errors.Is(err, regerr.ErrNotFound) && page == 1 {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if m != nil {
			ok = true
		}
		for d := range m {
			h, err := v1.NewHash(d)
			if err != nil || got[h] {
				continue
			}
			got[h] = true
			digests = append(digests, h)
		}
		next = link
	}
	return digests, ok, nil
}

// manifestsPage reads the "manifest" map of one tag list page.
func (c *Client) manifestsPage(ctx context.Context, repo name.Repository, u string) (map[string]json.RawMessage, string, error) {
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
	var page struct {
		Manifest map[string]json.RawMessage `json:"manifest"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&page); err != nil {
		return nil, "", fmt.Errorf("tags of %s: %w", repo, err)
	}
	next, err := nextLink(resp, req.URL)
	return page.Manifest, next, err
}
