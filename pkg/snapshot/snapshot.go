// Package snapshot describes what a registry holds under a path prefix, or
// what the manifests say it should hold, as kpromo's snapshot does: every
// repository with its manifest digests and their tags, rendered as a thin
// manifest images.yaml or as kpromo's CSV. It is how a manifest repository
// is bootstrapped from an existing registry, and how a registry is compared
// with the manifests that should describe it.
//
// A registry is read over the plain OCI distribution API. That API lists
// tags, not manifests: a snapshot finds the tagged manifests and, by reading
// every tagged index, the manifests those indexes name (listed without
// tags). A manifest that is neither tagged nor the child of a tagged index
// cannot be found.
package snapshot

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/names"
)

// Digest is one manifest of a repository and its tags, sorted (none: the
// manifest is held by digest only).
type Digest struct {
	Digest v1.Hash
	Tags   []string
}

// Image is one repository, named relative to the snapshot's prefix (the
// image name a manifest whose registry is the prefix would use), with its
// digests sorted.
type Image struct {
	Name    string
	Digests []Digest
}

// Snapshot is what a registry prefix holds, images sorted by name.
type Snapshot struct {
	Images []Image
}

// Counts returns the number of images, digests and tags of the snapshot.
func (s *Snapshot) Counts() (images, digests, tags int) {
	for _, img := range s.Images {
		digests += len(img.Digests)
		for _, d := range img.Digests {
			tags += len(d.Tags)
		}
	}
	return len(s.Images), digests, tags
}

// Prefix is a registry and a path inside it (empty: the whole registry),
// written like a manifest's registry name: host[:port][/path].
type Prefix struct {
	Registry name.Registry
	Path     string
}

// ParsePrefix reads host[:port][/path]. The host needs a dot or a port, or
// is localhost, as in manifests: without one, "team/app" would be read as a
// Docker Hub repository.
func ParsePrefix(s string) (Prefix, error) {
	host, path, hasPath := strings.Cut(s, "/")
	if !names.ValidHost(host) {
		return Prefix{}, fmt.Errorf("registry prefix %q does not start with a valid registry host", s)
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return Prefix{}, fmt.Errorf("registry prefix %q must start with a registry host (a name with a dot or a port, or localhost)", s)
	}
	reg, err := name.NewRegistry(host, name.StrictValidation)
	if err != nil {
		return Prefix{}, fmt.Errorf("registry prefix %q: %w", s, err)
	}
	path = strings.TrimSuffix(path, "/")
	if hasPath && path != "" && !names.ValidPath(path) {
		return Prefix{}, fmt.Errorf("registry prefix %q: invalid path %q (lowercase OCI repository path components)", s, path)
	}
	return Prefix{Registry: reg, Path: path}, nil
}

// String is host[/path].
func (p Prefix) String() string {
	if p.Path == "" {
		return p.Registry.RegistryStr()
	}
	return p.Registry.RegistryStr() + "/" + p.Path
}

// Repo is the repository of an image name relative to the prefix.
func (p Prefix) Repo(rel string) (name.Repository, error) {
	if !names.ValidPath(rel) {
		return name.Repository{}, fmt.Errorf("repository name %q is not a valid OCI repository path", rel)
	}
	return name.NewRepository(p.String()+"/"+rel, name.StrictValidation)
}

// Rel returns a repository path (without host) relative to the prefix, and
// whether it is under the prefix. Prefixes match whole path components:
// "team" holds "team/app" but not "teammate/app". The prefix itself is
// under the prefix, with an empty relative name.
func (p Prefix) Rel(repoPath string) (string, bool) {
	if p.Path == "" {
		return repoPath, true
	}
	if repoPath == p.Path {
		return "", true
	}
	if rest, ok := strings.CutPrefix(repoPath, p.Path+"/"); ok {
		return rest, true
	}
	return "", false
}

// RelRepo is Rel for a repository: also its host must be the prefix's
// (compared case-insensitively).
func (p Prefix) RelRepo(r name.Repository) (string, bool) {
	if !strings.EqualFold(r.RegistryStr(), p.Registry.RegistryStr()) {
		return "", false
	}
	return p.Rel(r.RepositoryStr())
}

// ErrBadOption marks an error in the options given to Take or FromGroups
// (found before any registry is read).
var ErrBadOption = errors.New("invalid snapshot option")

// Option configures Take and FromGroups.
type Option func(*config)

type config struct {
	repos   []string
	tag     string
	minimal bool
	jobs    int
	logger  *slog.Logger
}

func defaults() config {
	return config{jobs: 8, logger: slog.New(slog.DiscardHandler)}
}

func makeConfig(opts []Option) (config, error) {
	c := defaults()
	for _, o := range opts {
		o(&c)
	}
	if c.tag != "" && !names.ValidTag(c.tag) {
		return c, fmt.Errorf("%w: tag %q is not a valid tag (must match %s)", ErrBadOption, c.tag, names.TagPattern)
	}
	for _, r := range c.repos {
		if !names.ValidPath(r) {
			return c, fmt.Errorf("%w: repository name %q is not a valid OCI repository path (relative to the prefix)", ErrBadOption, r)
		}
	}
	c.repos = slices.Compact(slices.Sorted(slices.Values(c.repos)))
	return c, nil
}

// WithRepos names the repositories to snapshot, relative to the prefix,
// instead of listing the registry's catalog (which many registries do not
// offer). For FromGroups it keeps only these.
func WithRepos(rel ...string) Option {
	return func(c *config) { c.repos = append(c.repos, rel...) }
}

// WithTag keeps only the digests that have this tag, each listed with this
// tag only (kpromo's --snapshot-tag).
func WithTag(tag string) Option { return func(c *config) { c.tag = tag } }

// WithMinimal leaves out the children of indexes that have no tag of their
// own (kpromo's --minimal-snapshot): promoting an index copies them anyway.
// Take then reads no index.
func WithMinimal(on bool) Option { return func(c *config) { c.minimal = on } }

// WithJobs bounds the registry requests in flight (default 8; the client's
// per-host limits apply too).
func WithJobs(n int) Option { return func(c *config) { c.jobs = max(1, n) } }

// WithLogger sets the logger for warnings and progress.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// builder collects repository -> digest -> tags, then sorts.
type builder map[string]map[v1.Hash]map[string]bool

// add records a digest in a repository, with a tag unless tag is empty.
func (b builder) add(repo string, d v1.Hash, tag string) {
	ds, ok := b[repo]
	if !ok {
		ds = map[v1.Hash]map[string]bool{}
		b[repo] = ds
	}
	ts, ok := ds[d]
	if !ok {
		ts = map[string]bool{}
		ds[d] = ts
	}
	if tag != "" {
		ts[tag] = true
	}
}

// snapshot applies the tag filter and sorts.
func (b builder) snapshot(c config) *Snapshot {
	s := &Snapshot{Images: []Image{}}
	for _, repo := range slices.Sorted(maps.Keys(b)) {
		img := Image{Name: repo}
		for d, ts := range b[repo] {
			tags := slices.Sorted(maps.Keys(ts))
			if c.tag != "" {
				if !ts[c.tag] {
					continue
				}
				tags = []string{c.tag}
			}
			img.Digests = append(img.Digests, Digest{Digest: d, Tags: tags})
		}
		if len(img.Digests) == 0 {
			continue
		}
		slices.SortFunc(img.Digests, func(a, b Digest) int { return cmp.Compare(a.Digest.String(), b.Digest.String()) })
		s.Images = append(s.Images, img)
	}
	return s
}

// Format is an output format of a snapshot.
type Format string

// Formats.
const (
	YAML Format = "yaml" // a thin manifest images.yaml
	CSV  Format = "csv"  // kpromo's snapshot CSV
)

// ParseFormat reads an --output value (in any case: kpromo users write YAML).
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case YAML, CSV:
		return f, nil
	}
	return "", fmt.Errorf("unknown output format %q (want yaml or csv)", s)
}

// Write renders the snapshot in a format.
func Write(w io.Writer, f Format, s *Snapshot) error {
	switch f {
	case YAML:
		return WriteYAML(w, s)
	case CSV:
		return WriteCSV(w, s)
	}
	return fmt.Errorf("unknown output format %q", f)
}

// WriteYAML renders the snapshot as a thin manifest images.yaml, in the
// layout kpromo's snapshot prints and the Kubernetes manifests use:
//
//	# images/<project>/images.yaml
//	- name: app
//	  dmap:
//	    "sha256:...": ["1.0", "latest"]
//	    "sha256:...": []
//
// An empty snapshot is an empty file (an images.yaml without images).
func WriteYAML(w io.Writer, s *Snapshot) error {
	var b strings.Builder
	for _, img := range s.Images {
		fmt.Fprintf(&b, "- name: %s\n  dmap:\n", render.YAMLName(img.Name))
		for _, d := range img.Digests {
			fmt.Fprintf(&b, "    %q: %s\n", d.Digest.String(), render.YAMLFlowList(d.Tags))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCSV renders the snapshot as kpromo's snapshot CSV: one line per tag,
// "name@digest,name:tag", and "name@digest,-" for a digest without tags.
func WriteCSV(w io.Writer, s *Snapshot) error {
	var b strings.Builder
	for _, img := range s.Images {
		for _, d := range img.Digests {
			if len(d.Tags) == 0 {
				fmt.Fprintf(&b, "%s@%s,-\n", img.Name, d.Digest)
				continue
			}
			for _, t := range d.Tags {
				fmt.Fprintf(&b, "%s@%s,%s:%s\n", img.Name, d.Digest, img.Name, t)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
