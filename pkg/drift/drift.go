package drift

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/regerr"
	"github.com/imgpromoter/promoter/pkg/snapshot"
)

// Report is the result of a drift check, findings sorted.
type Report struct {
	SchemaVersion int `json:"schemaVersion"`
	// Prefixes are the registry prefixes checked.
	Prefixes []string `json:"prefixes"`
	// Findings are sorted by repository, tag, digest and kind.
	Findings []Finding `json:"findings"`
	// Notes say what could not be checked (e.g. a registry without a
	// catalog: unexpected repositories are then not looked for).
	Notes []string `json:"notes"`
}

// Counts returns the number of findings of each kind.
func (r *Report) Counts() map[Kind]int {
	out := map[Kind]int{}
	for _, f := range r.Findings {
		out[f.Kind]++
	}
	return out
}

// Registry is the registry access Check needs (an *access.Client).
type Registry interface {
	snapshot.Registry
}

// ManifestLister is the optional capability of listing every manifest of a
// repository, untagged ones included, found by type assertion on the
// Registry. Google's registries list them with the tags; ok is false when the
// registry's answer did not (the OCI API has no such listing).
type ManifestLister interface {
	ListManifests(ctx context.Context, repo name.Repository) (digests []v1.Hash, ok bool, err error)
}

// Option configures Check.
type Option func(*config)

type config struct {
	jobs   int
	logger *slog.Logger
	// shard is set when this check is one shard of several (WithShard).
	shard *shardCheck
	done  func()
}

// shardCheck is one shard's part of a sharded check.
type shardCheck struct {
	all     *Expected // what every shard together expects
	catalog bool      // this shard looks for unexpected repositories
}

func defaults() config {
	return config{jobs: 8, logger: slog.New(slog.DiscardHandler), done: func() {}}
}

// WithPrefixDone is called after each prefix is checked (for progress).
func WithPrefixDone(f func()) Option { return func(c *config) { c.done = f } }

// WithJobs bounds the registry requests in flight (default 8).
func WithJobs(n int) Option { return func(c *config) { c.jobs = max(1, n) } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithShard makes the check one shard of several (see package shard): the
// Expected given to Check is this shard's part, all is the whole. The
// shard reads only the repositories of its part (named, without the
// catalog); the one shard with catalog set also lists each registry's
// catalog and reports the repositories the whole does not list. Together
// the shards find what one unsharded check finds.
func WithShard(all *Expected, catalog bool) Option {
	return func(c *config) { c.shard = &shardCheck{all: all, catalog: catalog} }
}

// Check compares each prefix of a registry with the expected state. Any
// registry error stops it: a partial answer would read as drift (or as none).
func Check(ctx context.Context, r Registry, exp *Expected, prefixes []snapshot.Prefix, opts ...Option) (*Report, error) {
	c := defaults()
	for _, o := range opts {
		o(&c)
	}
	rep := &Report{SchemaVersion: 1, Findings: []Finding{}, Notes: []string{}}
	for _, p := range prefixes {
		rep.Prefixes = append(rep.Prefixes, p.String())
		fs, notes, err := checkPrefix(ctx, r, exp, p, c)
		if err != nil {
			return nil, err
		}
		rep.Findings = append(rep.Findings, fs...)
		rep.Notes = append(rep.Notes, notes...)
		c.done()
	}
	SortFindings(rep.Findings)
	return rep, nil
}

// SortFindings orders findings by repository, tag, digest, then kind.
func SortFindings(fs []Finding) {
	slices.SortFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Tag, b.Tag), cmp.Compare(a.Digest, b.Digest), cmp.Compare(a.Kind, b.Kind))
	})
}

func checkPrefix(ctx context.Context, r Registry, exp *Expected, p snapshot.Prefix, c config) ([]Finding, []string, error) {
	// The expected repositories under the prefix, by relative name.
	want := map[string]*Repo{}
	for _, k := range exp.Repos() {
		repo := exp.Repo(k)
		if rel, ok := p.RelRepo(repo.Ref); ok && rel != "" {
			want[rel] = repo
		}
	}
	var notes []string
	snapOpts := []snapshot.Option{snapshot.WithJobs(c.jobs), snapshot.WithLogger(c.logger)}
	if c.shard != nil {
		return checkShardPrefix(ctx, r, want, p, c, snapOpts)
	}
	snap, err := snapshot.Take(ctx, r, p, snapOpts...)
	if errors.Is(err, snapshot.ErrNoCatalog) {
		notes = append(notes, fmt.Sprintf("%s does not list its repositories: only the %d repositories the manifests name were checked (unexpected repositories cannot be seen)", p, len(want)))
		if len(want) == 0 {
			return nil, notes, nil
		}
		snap, err = snapshot.Take(ctx, r, p, append(snapOpts, snapshot.WithRepos(slices.Sorted(maps.Keys(want))...))...)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", p, err)
	}
	var out []Finding
	held := map[string]snapshot.Image{}
	for _, img := range snap.Images {
		held[img.Name] = img
		w, ok := want[img.Name]
		full := p.String() + "/" + img.Name
		if !ok {
			out = append(out, Finding{Kind: UnexpectedRepository, Repository: full})
			continue
		}
		out = append(out, unexpectedTags(w, img, RepoKey(w.Ref))...)
	}
	missing, err := missingContent(ctx, r, want, held, c)
	if err != nil {
		return nil, nil, err
	}
	out = append(out, missing...)
	if ml, ok := r.(ManifestLister); ok {
		untagged, err := unexpectedDigests(ctx, r, ml, want, held, c)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, untagged...)
	}
	return out, notes, nil
}

// unexpectedDigests lists the manifests of each expected repository, where
// the registry can, and reports those that are neither listed, nor reached
// by the tags (an unexpected tag is reported already), nor children or
// referrers of expected digests.
func unexpectedDigests(ctx context.Context, r Registry, ml ManifestLister, want map[string]*Repo, held map[string]snapshot.Image, c config) ([]Finding, error) {
	rel := NewRelations(r)
	var out []Finding
	for _, relName := range slices.Sorted(maps.Keys(want)) {
		w := want[relName]
		all, ok, err := ml.ListManifests(ctx, w.Ref)
		if err != nil {
			return nil, fmt.Errorf("listing the manifests of %s: %w", w.Ref, err)
		}
		if !ok {
			continue
		}
		seen := map[v1.Hash]bool{}
		for _, d := range held[relName].Digests {
			seen[d.Digest] = true
		}
		for _, d := range all {
			if seen[d] {
				continue
			}
			exp, err := rel.Expected(ctx, w, d)
			if err != nil {
				return nil, err
			}
			if !exp {
				out = append(out, Finding{Kind: UnexpectedDigest, Repository: RepoKey(w.Ref), Digest: d.String()})
			}
		}
	}
	return out, nil
}

// checkShardPrefix is checkPrefix for one shard: its own repositories by
// name, and, for the catalog shard, the repositories no shard expects.
func checkShardPrefix(ctx context.Context, r Registry, want map[string]*Repo, p snapshot.Prefix, c config, snapOpts []snapshot.Option) ([]Finding, []string, error) {
	var out, notes = []Finding{}, []string{}
	if c.shard.catalog {
		names, err := r.Catalog(ctx, p.Registry, 0)
		switch {
		case errors.Is(err, regerr.ErrUnsupported):
			notes = append(notes, fmt.Sprintf("%s does not list its repositories: unexpected repositories cannot be seen", p))
		case err != nil:
			return nil, nil, fmt.Errorf("reading %s: %w", p, err)
		}
		all := map[string]bool{}
		for _, k := range c.shard.all.Repos() {
			if rel, ok := p.RelRepo(c.shard.all.Repo(k).Ref); ok {
				all[rel] = true
			}
		}
		seen := map[string]bool{}
		var extra []string
		for _, n := range names {
			rel, ok := p.Rel(n)
			if !ok || rel == "" || all[rel] || seen[rel] {
				continue
			}
			seen[rel] = true
			extra = append(extra, rel)
		}
		if len(extra) > 0 {
			// As in an unsharded check, a repository counts when it has
			// tags (the snapshot leaves out the others).
			snap, err := snapshot.Take(ctx, r, p, append(snapOpts, snapshot.WithRepos(extra...), snapshot.WithMinimal(true))...)
			if err != nil {
				return nil, nil, fmt.Errorf("reading %s: %w", p, err)
			}
			for _, img := range snap.Images {
				out = append(out, Finding{Kind: UnexpectedRepository, Repository: p.String() + "/" + img.Name})
			}
		}
	}
	if len(want) == 0 {
		return out, notes, nil
	}
	snap, err := snapshot.Take(ctx, r, p, append(snapOpts, snapshot.WithRepos(slices.Sorted(maps.Keys(want))...))...)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", p, err)
	}
	held := map[string]snapshot.Image{}
	for _, img := range snap.Images {
		held[img.Name] = img
		if w, ok := want[img.Name]; ok {
			out = append(out, unexpectedTags(w, img, RepoKey(w.Ref))...)
		}
	}
	missing, err := missingContent(ctx, r, want, held, c)
	if err != nil {
		return nil, nil, err
	}
	return append(out, missing...), notes, nil
}

// unexpectedTags finds the tags the registry holds that no manifest lists
// (or lists for another digest). A cosign tag of an expected digest is
// expected.
func unexpectedTags(w *Repo, img snapshot.Image, full string) []Finding {
	var out []Finding
	for _, d := range img.Digests {
		for _, t := range d.Tags {
			if wd, ok := w.Tags[t]; ok {
				if wd != d.Digest {
					out = append(out, Finding{Kind: MovedTag, Repository: full, Tag: t, Digest: d.Digest.String(), Expected: wd.String()})
				}
				continue
			}
			if subj, ok := CosignSubject(t); ok && w.Listed(subj) {
				continue
			}
			out = append(out, Finding{Kind: UnexpectedTag, Repository: full, Tag: t, Digest: d.Digest.String()})
		}
	}
	return out
}

// missingContent finds listed tags the registry lacks and listed digests it
// does not hold. A digest the snapshot did not see may still be there
// untagged: it is looked up.
func missingContent(ctx context.Context, r Registry, want map[string]*Repo, held map[string]snapshot.Image, c config) ([]Finding, error) {
	var out []Finding
	type lookup struct {
		repo *Repo
		d    v1.Hash
	}
	var lookups []lookup
	for _, rel := range slices.Sorted(maps.Keys(want)) {
		w := want[rel]
		full := RepoKey(w.Ref)
		tags := map[string]bool{}
		digests := map[v1.Hash]bool{}
		for _, d := range held[rel].Digests {
			digests[d.Digest] = true
			for _, t := range d.Tags {
				tags[t] = true
			}
		}
		for _, t := range slices.Sorted(maps.Keys(w.Tags)) {
			if !tags[t] {
				out = append(out, Finding{Kind: MissingTag, Repository: full, Tag: t, Expected: w.Tags[t].String()})
			}
		}
		for _, d := range slices.SortedFunc(maps.Keys(w.Sources), func(a, b v1.Hash) int { return cmp.Compare(a.String(), b.String()) }) {
			if !digests[d] {
				lookups = append(lookups, lookup{w, d})
			}
		}
	}
	absent := make([]bool, len(lookups))
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(c.jobs)
	for i, l := range lookups {
		eg.Go(func() error {
			ref := l.repo.Ref.Digest(l.d.String())
			desc, err := Head(gctx, r, ref)
			if err != nil {
				return fmt.Errorf("looking up %s: %w", ref, err)
			}
			absent[i] = desc == nil
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	for i, l := range lookups {
		if absent[i] {
			out = append(out, Finding{Kind: MissingDigest, Repository: RepoKey(l.repo.Ref), Digest: l.d.String()})
		}
	}
	return out, nil
}

// PrefixOf returns the prefix a repository key is under, if any.
func PrefixOf(prefixes []snapshot.Prefix, repo name.Repository) (snapshot.Prefix, bool) {
	for _, p := range prefixes {
		if _, ok := p.RelRepo(repo); ok {
			return p, true
		}
	}
	return snapshot.Prefix{}, false
}
