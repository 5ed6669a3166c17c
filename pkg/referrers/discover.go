package referrers

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Source is what a Finder reads: manifests, the referrers API and tag
// lists.
type Source interface {
	ManifestReader
	ReferrersLister
	TagLister
}

// MaxDepth bounds the recursion into referrers of referrers.
const MaxDepth = 8

// Finder discovers the artifacts attached to images in a source registry.
// It remembers, per registry, whether the referrers API exists, and per
// repository its tags, so that each costs one request per run. It is safe
// for concurrent use.
type Finder struct {
	src Source
	log *slog.Logger

	mu    sync.Mutex
	noAPI map[string]bool      // registry host -> has no referrers API
	tags  map[string]*tagsOnce // repository -> its tags
}

type tagsOnce struct {
	once sync.Once
	tags map[string]bool
	err  error
}

// NewFinder returns a Finder reading src. A nil logger discards.
func NewFinder(src Source, log *slog.Logger) *Finder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Finder{src: src, log: log, noAPI: map[string]bool{}, tags: map[string]*tagsOnce{}}
}

func (f *Finder) tagSet(ctx context.Context, repo name.Repository) (map[string]bool, error) {
	f.mu.Lock()
	t, ok := f.tags[repo.Name()]
	if !ok {
		t = &tagsOnce{}
		f.tags[repo.Name()] = t
	}
	f.mu.Unlock()
	t.once.Do(func() {
		tags, _, err := f.src.ListTags(ctx, repo)
		if err != nil {
			t.err = fmt.Errorf("listing tags of %s: %w", repo, err)
			return
		}
		t.tags = make(map[string]bool, len(tags))
		for _, tag := range tags {
			t.tags[tag] = true
		}
	})
	return t.tags, t.err
}

// Find returns every artifact attached to subject in repo, and to those
// artifacts in turn (referrers of referrers, up to MaxDepth), each once,
// parents before the artifacts that refer to them, in a deterministic
// order. A registry error fails the whole search: a partial answer would
// silently drop signatures.
func (f *Finder) Find(ctx context.Context, repo name.Repository, subject v1.Hash) ([]Artifact, error) {
	seen := map[v1.Hash]bool{subject: true}
	var out []Artifact
	level := []v1.Hash{subject}
	for depth := 0; len(level) > 0; depth++ {
		if depth == MaxDepth {
			return nil, fmt.Errorf("referrers of %s@%s nest deeper than %d levels", repo, subject, MaxDepth)
		}
		var next []v1.Hash
		for _, s := range level {
			arts, err := f.direct(ctx, repo, s)
			if err != nil {
				return nil, err
			}
			for _, a := range arts {
				if seen[a.Descriptor.Digest] {
					continue
				}
				seen[a.Descriptor.Digest] = true
				out = append(out, a)
				next = append(next, a.Descriptor.Digest)
			}
		}
		level = next
	}
	return out, nil
}

// direct finds the artifacts attached to subject itself.
func (f *Finder) direct(ctx context.Context, repo name.Repository, subject v1.Hash) ([]Artifact, error) {
	tags, err := f.tagSet(ctx, repo)
	if err != nil {
		return nil, err
	}
	listed := map[v1.Hash]Via{}
	var order []v1.Hash
	add := func(d v1.Hash, via Via) {
		if _, ok := listed[d]; !ok {
			listed[d] = via
			order = append(order, d)
		}
	}

	// 1. The referrers API, unless this registry is known to lack it.
	host := repo.RegistryStr()
	f.mu.Lock()
	noAPI := f.noAPI[host]
	f.mu.Unlock()
	if !noAPI {
		descs, err := referrersOf(ctx, f.src, repo, subject)
		switch {
		case err == nil:
			for _, d := range descs {
				add(d.Digest, ViaAPI)
			}
		case IsUnsupported(err):
			f.mu.Lock()
			f.noAPI[host] = true
			f.mu.Unlock()
			f.log.Debug("registry has no referrers API; using the fallback tag", "registry", host)
		default:
			return nil, fmt.Errorf("referrers of %s@%s: %w", repo, subject, err)
		}
	}

	// 2. The fallback tag (also on registries with the API: clients that
	// could not tell write it there too).
	if ft := FallbackTag(subject); tags[ft] {
		raw, mt, d, err := getManifest(ctx, f.src, repo.Tag(ft))
		switch {
		case IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading fallback tag %s:%s: %w", repo, ft, err)
		default:
			desc, m, err := describe(raw, mt, d)
			// Some registries resolve the fallback tag to the subject itself;
			// anything but an index of its own is not a referrers list.
			if err == nil && isIndex(desc.MediaType) && d != subject {
				for _, e := range m.Manifests {
					add(e.Digest, ViaFallback)
				}
			} else {
				f.log.Warn("fallback tag is not a referrers index; ignored", "tag", repo.Tag(ft).String(), "mediaType", desc.MediaType)
			}
		}
	}

	var out []Artifact
	for _, d := range order {
		a, err := f.read(ctx, repo, d)
		if IsNotFound(err) {
			// Listed but gone (deleted, or a stale fallback entry).
			f.log.Warn("listed referrer is missing; skipped", "repository", repo.String(), "subject", subject.String(), "referrer", d.String())
			continue
		}
		if err != nil {
			return nil, err
		}
		if a.subject == nil || a.subject.Digest != subject {
			f.log.Warn("listed referrer does not name the subject; skipped", "repository", repo.String(), "subject", subject.String(), "referrer", d.String())
			continue
		}
		a.Subject, a.Via = subject, listed[d]
		out = append(out, a.Artifact)
	}
	slices.SortStableFunc(out, func(a, b Artifact) int {
		return cmp.Compare(a.Descriptor.Digest.String(), b.Descriptor.Digest.String())
	})

	// 3. cosign's tags.
	for _, suffix := range CosignSuffixes {
		tag := CosignTag(subject, suffix)
		if !tags[tag] {
			continue
		}
		raw, mt, d, err := getManifest(ctx, f.src, repo.Tag(tag))
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s:%s: %w", repo, tag, err)
		}
		desc, m, err := describe(raw, mt, d)
		if err != nil {
			return nil, err
		}
		a := Artifact{Subject: subject, Via: ViaCosign, Tag: tag, Descriptor: desc, Manifest: raw}
		if isIndex(desc.MediaType) {
			if a.Children, err = f.children(ctx, repo, m.Manifests); err != nil {
				return nil, err
			}
		}
		out = append(out, a)
	}
	return out, nil
}

type readArtifact struct {
	Artifact
	subject *v1.Descriptor
}

// read reads one referrer manifest by digest (and its children when it is
// an index).
func (f *Finder) read(ctx context.Context, repo name.Repository, d v1.Hash) (readArtifact, error) {
	raw, mt, got, err := getManifest(ctx, f.src, repo.Digest(d.String()))
	if err != nil {
		return readArtifact{}, err
	}
	if got != d {
		return readArtifact{}, fmt.Errorf("%s@%s: registry served digest %s", repo, d, got)
	}
	desc, m, err := describe(raw, mt, d)
	if err != nil {
		return readArtifact{}, err
	}
	a := readArtifact{Artifact: Artifact{Descriptor: desc, Manifest: raw}, subject: m.Subject}
	if isIndex(desc.MediaType) {
		if a.Children, err = f.children(ctx, repo, m.Manifests); err != nil {
			return readArtifact{}, err
		}
	}
	return a, nil
}

func (f *Finder) children(ctx context.Context, repo name.Repository, descs []v1.Descriptor) ([]Manifest, error) {
	var out []Manifest
	for _, c := range descs {
		raw, mt, got, err := getManifest(ctx, f.src, repo.Digest(c.Digest.String()))
		if err != nil {
			return nil, fmt.Errorf("reading %s@%s: %w", repo, c.Digest, err)
		}
		desc, _, err := describe(raw, mt, got)
		if err != nil {
			return nil, err
		}
		out = append(out, Manifest{Descriptor: desc, Raw: raw})
	}
	return out, nil
}
