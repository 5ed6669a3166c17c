package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// manifestAccept is every manifest media type a verification asks for, so
// the registry returns the stored bytes whatever their type.
var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// verify checks, directly against each registry (not through its proxy),
// with images under the path prefix, that every image's tag resolves to the expected digest, that
// an index's platform manifests are there, and that every blob the image
// needs is in the repository with the right size. It returns every
// problem found, at most 20 of them, as one error.
func verify(ctx context.Context, hosts []string, prefix string, images []*Image) error {
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16},
	}
	var problems []string
	report := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	type result struct{ problems []string }
	results := make([]result, len(hosts)*len(images))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for hi, host := range hosts {
		for ii, img := range images {
			g.Go(func() error {
				results[hi*len(images)+ii].problems = verifyImage(ctx, client, host, prefix, img)
				return nil
			})
		}
	}
	_ = g.Wait()
	for _, r := range results {
		for _, p := range r.problems {
			report("%s", p)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	n := len(problems)
	if n > 20 {
		problems = append(problems[:20], fmt.Sprintf("... and %d more", n-20))
	}
	return fmt.Errorf("destination check failed (%d problems):\n  %s", n, strings.Join(problems, "\n  "))
}

// verifyImage checks one image in one destination registry.
func verifyImage(ctx context.Context, client *http.Client, host, prefix string, img *Image) []string {
	repo := prefix + "/" + img.Repo
	ref := fmt.Sprintf("%s/%s:%s", host, repo, img.Tag)
	var out []string
	body, err := get(ctx, client, http.MethodGet, fmt.Sprintf("http://%s/v2/%s/manifests/%s", host, repo, img.Tag))
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", ref, err)}
	}
	sum := sha256.Sum256(body)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != img.Digest {
		return []string{fmt.Sprintf("%s resolves to %s, want %s", ref, got, img.Digest)}
	}
	for _, c := range img.Children {
		if _, err := get(ctx, client, http.MethodHead, fmt.Sprintf("http://%s/v2/%s/manifests/%s", host, repo, c)); err != nil {
			out = append(out, fmt.Sprintf("%s: platform manifest %s: %v", ref, c, err))
		}
	}
	for _, b := range img.Blobs {
		resp, err := do(ctx, client, http.MethodHead, fmt.Sprintf("http://%s/v2/%s/blobs/%s", host, repo, b.Digest))
		if err != nil {
			out = append(out, fmt.Sprintf("%s: blob %s: %v", ref, b.Digest, err))
			continue
		}
		if n, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); n != b.Size {
			out = append(out, fmt.Sprintf("%s: blob %s has %d bytes, want %d", ref, b.Digest, n, b.Size))
		}
	}
	return out
}

// get sends a request and returns the body of a 200 answer.
func get(ctx context.Context, client *http.Client, method, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return body, nil
}

// do sends a body-less request and returns the 200 answer, body closed.
func do(ctx context.Context, client *http.Client, method, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return resp, nil
}
