package referrers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgpromoter/promoter/pkg/regerr"
)

// ManifestPutter writes a manifest at a tag or digest. subject is the
// registry's OCI-Subject answer header: set when the registry has the
// referrers API and indexed the manifest's subject, zero otherwise.
// (*access.Client satisfies it.)
type ManifestPutter interface {
	PutManifest(ctx context.Context, ref name.Reference, raw []byte, mt types.MediaType) (subject v1.Hash, err error)
}

// Destination is what a Writer writes to.
type Destination interface {
	ManifestReader
	ManifestPutter
	ReferrersLister
}

// errNotIndex is wrapped by MergeFallback's refusal of a non-index.
var errNotIndex = errors.New("the fallback tag holds something other than an OCI image index")

// FallbackConflictError says a destination's fallback tag holds something
// other than a referrers index (an image, a Docker list, the subject
// itself): the subject's referrers are refused there and the tag is left
// as it is.
type FallbackConflictError struct {
	Tag    name.Tag
	Digest v1.Hash // what the tag holds
	Reason string
}

func (e *FallbackConflictError) Error() string {
	return fmt.Sprintf("fallback tag %s holds %s, which is not a referrers index (%s): refusing to overwrite it", e.Tag, e.Digest, e.Reason)
}

// TagRefusedError says a destination refused to write a tag (registries
// with immutable tags refuse to rewrite cosign's .sig and .att tags), or
// that the tag already holds another manifest and would have to move.
type TagRefusedError struct {
	Tag      name.Tag
	Existing v1.Hash // the manifest the tag holds now, when known
	Err      error   // the registry's answer, when it refused
}

func (e *TagRefusedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("destination refused tag %s: %v", e.Tag, e.Err)
	}
	return fmt.Sprintf("tag %s already holds %s: a published tag never moves", e.Tag, e.Existing)
}

func (e *TagRefusedError) Unwrap() error { return e.Err }

// MergeAttempts is how many times a fallback index update is read back and
// redone when a concurrent writer dropped our entries.
const MergeAttempts = 5

// Writer writes referrers to destination registries. It decides per
// registry whether the referrers API exists (an OCI-Subject header on a PUT
// says yes; otherwise one probe, remembered), and serialises fallback index
// updates of one (repository, subject) within the run. Registries ignore
// If-Match, so each update is read back and redone when our entries are
// missing. It is safe for concurrent use.
type Writer struct {
	dst Destination
	log *slog.Logger

	mu    sync.Mutex
	api   map[string]bool        // registry host -> has the referrers API (absent: unknown)
	locks map[string]*sync.Mutex // repository@subject -> fallback lock
}

// NewWriter returns a Writer to dst. A nil logger discards.
func NewWriter(dst Destination, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{dst: dst, log: log, api: map[string]bool{}, locks: map[string]*sync.Mutex{}}
}

// HasReferrersAPI reports whether the registry of repo has the referrers
// API, probing it once per registry (GET /v2/<repo>/referrers/<subject>;
// call it for a repository that exists: some registries answer 404 for
// unknown repositories).
func (w *Writer) HasReferrersAPI(ctx context.Context, repo name.Repository, subject v1.Hash) (bool, error) {
	host := repo.RegistryStr()
	w.mu.Lock()
	has, known := w.api[host]
	w.mu.Unlock()
	if known {
		return has, nil
	}
	_, err := referrersOf(ctx, w.dst, repo, subject)
	switch {
	case err == nil:
		has = true
	case IsUnsupported(err):
		has = false
	default:
		return false, fmt.Errorf("probing the referrers API of %s: %w", host, err)
	}
	w.remember(host, has)
	return has, nil
}

func (w *Writer) remember(host string, has bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, known := w.api[host]; !known || has {
		w.api[host] = has
	}
}

// Status is what happened to one artifact on one destination.
type Status string

// Statuses of an artifact on a destination. They are part of the JSON schema.
const (
	Copied  Status = "copied"  // written by this run
	Present Status = "present" // already there: nothing written
	Refused Status = "refused" // not written; see the error
)

// Outcome is what happened to one artifact on one destination.
type Outcome struct {
	Digest v1.Hash
	Tag    string // cosign tag, if any
	Status Status
	Err    error // why it was refused
}

// Write writes the artifacts attached to subject (as a Finder returns them:
// parents first) to repo, whose registry must already hold subject and the
// artifacts' blobs: child manifests, then each manifest by digest, then,
// when the registry has no referrers API, the merged fallback index, then
// cosign's tags. present lists digests known to be in repo already (they
// are not rewritten; nil: none known). A refusal (a fallback tag that is not
// an index, a tag that would move, an immutable tag) is reported in the
// artifact's Outcome and the rest is still written; the error is for
// failures that stop the subject's artifacts.
func (w *Writer) Write(ctx context.Context, repo name.Repository, subject v1.Hash, arts []Artifact, present map[v1.Hash]bool) ([]Outcome, error) {
	out := make([]Outcome, len(arts))
	for i, a := range arts {
		out[i] = Outcome{Digest: a.Descriptor.Digest, Tag: a.Tag, Status: Present}
	}
	// The referrers to write, per subject.
	bySubject := map[v1.Hash][]int{}
	var subjects []v1.Hash
	for i, a := range arts {
		if a.Via == ViaCosign || present[a.Descriptor.Digest] {
			continue // a present referrer is listed already
		}
		if _, ok := bySubject[a.Subject]; !ok {
			subjects = append(subjects, a.Subject)
		}
		bySubject[a.Subject] = append(bySubject[a.Subject], i)
	}
	has := true
	if len(subjects) > 0 {
		var err error
		if has, err = w.HasReferrersAPI(ctx, repo, subject); err != nil {
			return out, err
		}
	}
	if !has {
		// A fallback tag that is not an index refuses its subject's
		// referrers before anything is written for them.
		for _, s := range subjects {
			existing, err := w.readFallback(ctx, repo.Tag(FallbackTag(s)), s)
			if err == nil && existing != nil {
				if _, _, merr := MergeFallback(existing, nil); merr != nil {
					err = &FallbackConflictError{Tag: repo.Tag(FallbackTag(s)), Digest: digestOf(existing), Reason: merr.Error()}
				}
			}
			var conflict *FallbackConflictError
			if errors.As(err, &conflict) {
				for _, i := range bySubject[s] {
					out[i].Status, out[i].Err = Refused, err
				}
				delete(bySubject, s)
				continue
			}
			if err != nil {
				return out, err
			}
		}
	}

	// Manifests by digest, parents first (cosign's are written by their tag
	// below).
	for _, s := range subjects {
		for _, i := range bySubject[s] {
			a := arts[i]
			if err := w.putChildren(ctx, repo, a); err != nil {
				return out, err
			}
			indexed, err := w.dst.PutManifest(ctx, repo.Digest(a.Descriptor.Digest.String()), a.Manifest, a.Descriptor.MediaType)
			if err != nil {
				return out, fmt.Errorf("writing %s@%s: %w", repo, a.Descriptor.Digest, err)
			}
			if indexed != (v1.Hash{}) {
				w.remember(repo.RegistryStr(), true)
			}
			out[i].Status = Copied
		}
	}

	// The fallback index, one per subject.
	if !has {
		for _, s := range subjects {
			idx, ok := bySubject[s]
			if !ok {
				continue
			}
			var entries []v1.Descriptor
			for _, i := range idx {
				entries = append(entries, arts[i].Descriptor)
			}
			_, err := w.UpdateFallback(ctx, repo, s, entries)
			var conflict *FallbackConflictError
			if errors.As(err, &conflict) {
				for _, i := range idx {
					out[i].Status, out[i].Err = Refused, err
				}
				continue
			}
			if err != nil {
				return out, err
			}
		}
	}

	// cosign's tags, after everything they could point at.
	for i, a := range arts {
		if a.Via != ViaCosign || present[a.Descriptor.Digest] {
			continue
		}
		if err := w.putChildren(ctx, repo, a); err != nil {
			return out, err
		}
		st, err := w.PutTag(ctx, repo.Tag(a.Tag), a.Manifest, a.Descriptor)
		var refused *TagRefusedError
		switch {
		case errors.As(err, &refused):
			out[i].Status, out[i].Err = Refused, err
		case err != nil:
			return out, err
		case st == Copied:
			out[i].Status = Copied
		}
	}
	return out, nil
}

func (w *Writer) putChildren(ctx context.Context, repo name.Repository, a Artifact) error {
	for _, c := range a.Children {
		if _, err := w.dst.PutManifest(ctx, repo.Digest(c.Descriptor.Digest.String()), c.Raw, c.Descriptor.MediaType); err != nil {
			return fmt.Errorf("writing %s@%s: %w", repo, c.Descriptor.Digest, err)
		}
	}
	return nil
}

// PutTag writes a manifest at a tag that must not move: Present when the
// tag already holds it, a *TagRefusedError when it holds another manifest
// or the registry refuses the write (immutable tags), Copied otherwise.
func (w *Writer) PutTag(ctx context.Context, tag name.Tag, raw []byte, desc v1.Descriptor) (Status, error) {
	_, _, have, err := getManifest(ctx, w.dst, tag)
	switch {
	case err == nil && have == desc.Digest:
		return Present, nil
	case err == nil:
		return Refused, &TagRefusedError{Tag: tag, Existing: have}
	case !IsNotFound(err):
		return Refused, fmt.Errorf("reading %s: %w", tag, err)
	}
	if _, err := w.dst.PutManifest(ctx, tag, raw, desc.MediaType); err != nil {
		return Refused, &TagRefusedError{Tag: tag, Err: err}
	}
	return Copied, nil
}

func (w *Writer) lock(repo name.Repository, subject v1.Hash) func() {
	key := repo.Name() + "@" + subject.String()
	w.mu.Lock()
	l, ok := w.locks[key]
	if !ok {
		l = &sync.Mutex{}
		w.locks[key] = l
	}
	w.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// UpdateFallback merges entries into the fallback index of subject in repo
// (see MergeFallback): it reads the index (absent: empty), keeps every
// existing entry, adds the missing ones, writes it only when something is
// new, and reads it back, redoing the merge (up to MergeAttempts times) if
// a concurrent writer dropped ours. Updates of one (repository, subject)
// are serialised within the Writer. A tag holding anything but an index of
// its own is refused with a *FallbackConflictError and left untouched.
func (w *Writer) UpdateFallback(ctx context.Context, repo name.Repository, subject v1.Hash, entries []v1.Descriptor) (changed bool, err error) {
	defer w.lock(repo, subject)()
	tag := repo.Tag(FallbackTag(subject))
	for attempt := 0; attempt < MergeAttempts; attempt++ {
		existing, err := w.readFallback(ctx, tag, subject)
		if err != nil {
			return changed, err
		}
		merged, added, err := MergeFallback(existing, entries)
		if errors.Is(err, errNotIndex) {
			return changed, &FallbackConflictError{Tag: tag, Digest: digestOf(existing), Reason: err.Error()}
		}
		if err != nil {
			return changed, err
		}
		if !added {
			return changed, nil
		}
		if _, err := w.dst.PutManifest(ctx, tag, merged, types.OCIImageIndex); err != nil {
			return changed, fmt.Errorf("writing fallback index %s: %w", tag, err)
		}
		changed = true
		back, err := w.readFallback(ctx, tag, subject)
		if err != nil {
			return changed, err
		}
		missing := listed(back, entries)
		if len(missing) == 0 {
			return changed, nil
		}
		w.log.Warn("fallback index lost entries to a concurrent writer; merging again", "tag", tag.String(), "missing", len(missing))
	}
	return changed, fmt.Errorf("fallback index %s: our entries were dropped %d times by concurrent writers", tag, MergeAttempts)
}

// readFallback reads the fallback tag: nil when absent; a
// *FallbackConflictError when it resolves to the subject itself.
func (w *Writer) readFallback(ctx context.Context, tag name.Tag, subject v1.Hash) ([]byte, error) {
	raw, _, d, err := getManifest(ctx, w.dst, tag)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading fallback index %s: %w", tag, err)
	}
	if d == subject {
		return nil, &FallbackConflictError{Tag: tag, Digest: d, Reason: "the registry resolves it to the subject itself"}
	}
	return raw, nil
}

// PresentIn returns which of the artifacts repo already holds, listed where
// a reader looks for them: the referrers API (or, without it, the fallback
// index) for referrers, the cosign tag for cosign artifacts. It costs one
// request per subject plus one per cosign tag.
func (w *Writer) PresentIn(ctx context.Context, repo name.Repository, arts []Artifact) (map[v1.Hash]bool, error) {
	present := map[v1.Hash]bool{}
	var subjects []v1.Hash
	for _, a := range arts {
		if a.Via != ViaCosign && !slices.Contains(subjects, a.Subject) {
			subjects = append(subjects, a.Subject)
		}
	}
	for _, s := range subjects {
		descs, err := w.listed(ctx, repo, s)
		if err != nil {
			return nil, err
		}
		for _, d := range descs {
			present[d] = true
		}
	}
	for _, a := range arts {
		if a.Via != ViaCosign {
			continue
		}
		_, _, d, err := getManifest(ctx, w.dst, repo.Tag(a.Tag))
		if err == nil && d == a.Descriptor.Digest {
			present[d] = true
		} else if err != nil && !IsNotFound(err) {
			return nil, fmt.Errorf("reading %s:%s: %w", repo, a.Tag, err)
		}
	}
	return present, nil
}

// listed returns the referrers of subject that repo lists.
func (w *Writer) listed(ctx context.Context, repo name.Repository, subject v1.Hash) ([]v1.Hash, error) {
	host := repo.RegistryStr()
	w.mu.Lock()
	has, known := w.api[host]
	w.mu.Unlock()
	if !known {
		// One caller at a time learns whether the registry has the API;
		// the others then use what it learnt.
		defer w.lock(name.Repository{Registry: repo.Registry}, v1.Hash{})()
		w.mu.Lock()
		has, known = w.api[host]
		w.mu.Unlock()
	}
	if !known || has {
		descs, err := referrersOf(ctx, w.dst, repo, subject)
		switch {
		case err == nil:
			w.remember(host, true)
			var out []v1.Hash
			for _, d := range descs {
				out = append(out, d.Digest)
			}
			return out, nil
		case known && IsNotFound(err):
			return nil, nil // the repository does not exist yet
		case IsUnsupported(err):
			// A 404 naming the repository unknown leaves the registry
			// unknown; any other says it has no API (Distribution answers a
			// plain 404 for the path). The fallback tag answers either way.
			if !unknownRepository(err) {
				w.remember(host, false)
			}
		default:
			return nil, fmt.Errorf("referrers of %s@%s: %w", repo, subject, err)
		}
	}
	raw, err := w.readFallback(ctx, repo.Tag(FallbackTag(subject)), subject)
	var conflict *FallbackConflictError
	if errors.As(err, &conflict) {
		return nil, nil
	}
	if err != nil || raw == nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if json.Unmarshal(raw, &idx) != nil {
		return nil, nil
	}
	var out []v1.Hash
	for _, m := range idx.Manifests {
		out = append(out, m.Digest)
	}
	return out, nil
}

func digestOf(raw []byte) v1.Hash {
	sum := sha256.Sum256(raw)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// unknownRepository reports whether a registry answer names the
// repository unknown (NAME_UNKNOWN).
func unknownRepository(err error) bool {
	var re *regerr.Error
	if errors.As(err, &re) && slices.Contains(re.Codes, "NAME_UNKNOWN") {
		return true
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			if d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}
