package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// floorTool is the ideal client, the reference row of the table: it knows
// what the destinations lack (the harness tells it) and sends only what a
// copy cannot do without: one GET per source manifest and per unique blob,
// one upload (POST + PUT) per unique blob and destination registry, a
// mount for every other repository of that registry needing the blob, and
// one PUT per manifest (an image's top manifest by its tag). No pings, no
// checks, no retries. Requests in flight are bounded per registry host
// (inflight), nothing else: a blob's upload waits only for its own read.
type floorTool struct{ inflight int }

// Name implements Tool.
func (floorTool) Name() string { return "floor" }

// Run implements Tool.
func (t floorTool) Run(ctx context.Context, job Job) error {
	c := &floorClient{
		http: &http.Client{
			Timeout:   5 * time.Minute,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2 * t.inflight, MaxConnsPerHost: 0, DisableCompression: true},
		},
		hosts: map[string]*semaphore.Weighted{},
	}
	for _, h := range append([]string{job.Staging}, job.Dests...) {
		c.hosts[h] = semaphore.NewWeighted(int64(max(1, t.inflight)))
	}
	return c.copy(ctx, job)
}

// floorClient is one run of the ideal client.
type floorClient struct {
	http  *http.Client
	hosts map[string]*semaphore.Weighted
}

// blobDone is closed when a blob is in a destination repository.
type blobKey struct{ dest, repo, digest string }

// copy copies job.New (or every image when New is nil) to every destination.
func (c *floorClient) copy(ctx context.Context, job Job) error {
	images := job.New
	if images == nil {
		images = job.Images
	}
	if len(images) == 0 {
		return nil
	}
	// What each destination repository already has: the blobs of the
	// listed images that are not new (they were promoted before).
	isNew := map[*Image]bool{}
	for _, img := range images {
		isNew[img] = true
	}
	present := map[string]bool{} // repo + " " + digest, in every destination alike
	for _, img := range job.Images {
		if !isNew[img] {
			for _, b := range img.Blobs {
				present[img.Repo+" "+b.Digest] = true
			}
		}
	}
	// Per destination registry, the plan of each blob: the repository it
	// is uploaded to (or mounted from, when some repository there already
	// has it) and the repositories it is mounted into.
	type blobPlan struct {
		digest string
		upload string   // repository to upload to; "" when mounted from an existing one
		from   string   // repository to mount from when upload is ""
		mounts []string // repositories to mount into after the upload
	}
	var order []string // unique blob digests, first use first
	seen := map[string]bool{}
	needs := map[string][]string{} // digest -> repositories needing it (sorted, unique)
	for _, img := range images {
		for _, b := range img.Blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				order = append(order, b.Digest)
			}
			if !present[img.Repo+" "+b.Digest] && !slices.Contains(needs[b.Digest], img.Repo) {
				needs[b.Digest] = append(needs[b.Digest], img.Repo)
			}
		}
	}
	haveIn := map[string]string{} // digest -> a repository that already has it
	for _, img := range job.Images {
		if !isNew[img] {
			for _, b := range img.Blobs {
				if _, ok := haveIn[b.Digest]; !ok {
					haveIn[b.Digest] = img.Repo
				}
			}
		}
	}
	plans := map[string]blobPlan{}
	for _, d := range order {
		repos := needs[d]
		if len(repos) == 0 {
			continue
		}
		if from, ok := haveIn[d]; ok {
			plans[d] = blobPlan{digest: d, from: from, mounts: repos}
		} else {
			plans[d] = blobPlan{digest: d, upload: repos[0], mounts: repos[1:]}
		}
	}

	done := map[blobKey]chan struct{}{}
	for _, dest := range job.Dests {
		for d, p := range plans {
			repos := p.mounts
			if p.upload != "" {
				repos = append([]string{p.upload}, repos...)
			}
			for _, r := range repos {
				done[blobKey{dest, r, d}] = make(chan struct{})
			}
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	// Blobs: read once, uploaded once per destination registry, mounted
	// into the other repositories there.
	for _, d := range order {
		p, ok := plans[d]
		if !ok {
			continue
		}
		g.Go(func() error {
			var data []byte
			if p.upload != "" {
				var err error
				data, err = c.get(ctx, job.Staging, fmt.Sprintf("/v2/%s/%s/blobs/%s", stagingPrefix, c.repoOf(images, d), d), "")
				if err != nil {
					return err
				}
			}
			dg, ctx := errgroup.WithContext(ctx)
			for _, dest := range job.Dests {
				dg.Go(func() error {
					if p.upload != "" {
						if err := c.upload(ctx, dest, p.upload, d, data); err != nil {
							return err
						}
						close(done[blobKey{dest, p.upload, d}])
					}
					from := p.upload
					if from == "" {
						from = p.from
					}
					mg, ctx := errgroup.WithContext(ctx)
					for _, r := range p.mounts {
						mg.Go(func() error {
							if err := c.mount(ctx, dest, r, from, d); err != nil {
								return err
							}
							close(done[blobKey{dest, r, d}])
							return nil
						})
					}
					return mg.Wait()
				})
			}
			return dg.Wait()
		})
	}
	// Manifests: read once; written per destination once the image's
	// blobs are there, children by digest, the top manifest by its tag.
	for _, img := range images {
		g.Go(func() error {
			type man struct {
				ref  string
				body []byte
				mt   string
			}
			var children []man
			for _, ch := range img.Children {
				body, mt, err := c.getManifest(ctx, job.Staging, img.Repo, ch)
				if err != nil {
					return err
				}
				children = append(children, man{ch, body, mt})
			}
			body, mt, err := c.getManifest(ctx, job.Staging, img.Repo, img.Digest)
			if err != nil {
				return err
			}
			dg, ctx := errgroup.WithContext(ctx)
			for _, dest := range job.Dests {
				dg.Go(func() error {
					for _, b := range img.Blobs {
						if ch, ok := done[blobKey{dest, img.Repo, b.Digest}]; ok {
							select {
							case <-ch:
							case <-ctx.Done():
								return ctx.Err()
							}
						}
					}
					for _, m := range children {
						if err := c.putManifest(ctx, dest, img.Repo, m.ref, m.body, m.mt); err != nil {
							return err
						}
					}
					return c.putManifest(ctx, dest, img.Repo, img.Tag, body, mt)
				})
			}
			return dg.Wait()
		})
	}
	return g.Wait()
}

// repoOf returns a staging repository holding blob d.
func (c *floorClient) repoOf(images []*Image, d string) string {
	for _, img := range images {
		for _, b := range img.Blobs {
			if b.Digest == d {
				return img.Repo
			}
		}
	}
	return ""
}

// do sends one request within host's in-flight limit and returns the
// response body when the status is want.
func (c *floorClient) do(ctx context.Context, host, method, pathQuery string, body []byte, header http.Header, want int) (*http.Response, []byte, error) {
	sem := c.hosts[host]
	if err := sem.Acquire(ctx, 1); err != nil {
		return nil, nil, err
	}
	defer sem.Release(1)
	u := "http://" + host + pathQuery
	if strings.HasPrefix(pathQuery, "http://") {
		u = pathQuery
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != want {
		return nil, nil, fmt.Errorf("floor: %s %s: %s: %s", method, u, resp.Status, strings.TrimSpace(string(data)))
	}
	return resp, data, nil
}

// get reads a blob.
func (c *floorClient) get(ctx context.Context, host, path, accept string) ([]byte, error) {
	h := http.Header{}
	if accept != "" {
		h.Set("Accept", accept)
	}
	_, data, err := c.do(ctx, host, http.MethodGet, path, nil, h, http.StatusOK)
	return data, err
}

// getManifest reads a manifest by digest from staging.
func (c *floorClient) getManifest(ctx context.Context, host, repo, digest string) ([]byte, string, error) {
	h := http.Header{"Accept": {manifestAccept}}
	resp, data, err := c.do(ctx, host, http.MethodGet, fmt.Sprintf("/v2/%s/%s/manifests/%s", stagingPrefix, repo, digest), nil, h, http.StatusOK)
	if err != nil {
		return nil, "", err
	}
	return data, resp.Header.Get("Content-Type"), nil
}

// upload sends a blob: POST to open a session, PUT with the content.
func (c *floorClient) upload(ctx context.Context, host, repo, digest string, data []byte) error {
	resp, _, err := c.do(ctx, host, http.MethodPost, fmt.Sprintf("/v2/%s/%s/blobs/uploads/", prodPrefix, repo), nil, nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("floor: upload session without a Location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	_, _, err = c.do(ctx, host, http.MethodPut, loc.String(), data, h, http.StatusCreated)
	return err
}

// mount mounts a blob from another repository of the same registry.
func (c *floorClient) mount(ctx context.Context, host, repo, from, digest string) error {
	q := url.Values{"mount": {digest}, "from": {prodPrefix + "/" + from}}
	_, _, err := c.do(ctx, host, http.MethodPost, fmt.Sprintf("/v2/%s/%s/blobs/uploads/?%s", prodPrefix, repo, q.Encode()), nil, nil, http.StatusCreated)
	if err != nil {
		return fmt.Errorf("mount (the ideal client expects every mount to succeed): %w", err)
	}
	return nil
}

// putManifest writes a manifest by digest or tag.
func (c *floorClient) putManifest(ctx context.Context, host, repo, ref string, body []byte, mt string) error {
	if mt == "" {
		return errors.New("floor: manifest without a media type")
	}
	h := http.Header{"Content-Type": {mt}}
	_, _, err := c.do(ctx, host, http.MethodPut, fmt.Sprintf("/v2/%s/%s/manifests/%s", prodPrefix, repo, ref), body, h, http.StatusCreated)
	return err
}
