package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/drift"
)

// Kind is a kind of finding: the kinds of drift.
type Kind = drift.Kind

// Finding is a stored drift finding: opened by an event or by a periodic
// reconcile, resolved when a later look finds the subject as the manifests
// say.
type Finding struct {
	ID int64 `json:"id"`
	drift.Finding
	// Detail says what was seen, e.g. "deleted".
	Detail string `json:"detail,omitempty"`
	// Origin is what opened the finding: "event SOURCE/ID" or "reconcile".
	Origin     string `json:"origin"`
	OpenedAt   string `json:"openedAt"`
	ResolvedAt string `json:"resolvedAt,omitempty"`
}

func (f Finding) key() string {
	return string(f.Kind) + "\x00" + f.Repository + "\x00" + f.Tag + "\x00" + f.Digest
}

// Subject is a tag (Tag set) or an untagged digest of a repository that was
// found as the manifests say: open findings about it are resolved.
type Subject struct {
	Repository string
	Tag        string
	Digest     string
}

// Verdict is what judging one event found.
type Verdict struct {
	Findings []Finding
	Clean    []Subject
}

// judge re-reads what the event names and compares it with the manifests.
// The event is a hint: order and duplicates do not matter, except that a
// delete of a listed tag or digest is always a finding (it was deleted, even
// if it is back by now; a later look resolves it).
func (s *Server) judge(ctx context.Context, ev StoredEvent) (Verdict, error) {
	if ev.Blob || (ev.Action != ActionPush && ev.Action != ActionDelete) {
		return Verdict{}, nil
	}
	repo, ok := s.qualify(ev.Event)
	if !ok {
		return Verdict{}, nil
	}
	key := drift.RepoKey(repo)
	w := s.expected().Repo(key)
	origin := fmt.Sprintf("event %s/%s", ev.Source, ev.ID)
	mk := func(k Kind, tag, digest, expected, detail string) Verdict {
		return Verdict{Findings: []Finding{{Finding: drift.Finding{Kind: k, Repository: key, Tag: tag, Digest: digest, Expected: expected}, Detail: detail, Origin: origin}}}
	}
	if ev.Tag != "" {
		var listed v1.Hash
		isListed := false
		if w != nil {
			listed, isListed = w.Tags[ev.Tag]
		}
		if isListed && ev.Action == ActionDelete {
			return mk(drift.MissingTag, ev.Tag, "", listed.String(), "deleted"), nil
		}
		desc, err := drift.Head(ctx, s.o.reader, repo.Tag(ev.Tag))
		if err != nil {
			return Verdict{}, err
		}
		if ev.Action == ActionPush && ev.Digest != "" && (desc == nil || desc.Digest.String() != ev.Digest) && young(ev) {
			// Distribution announces a manifest before it links the
			// tag: look again later.
			return Verdict{}, errNotYet
		}
		clean := Verdict{Clean: []Subject{{Repository: key, Tag: ev.Tag}}}
		switch {
		case isListed && desc == nil:
			return mk(drift.MissingTag, ev.Tag, "", listed.String(), "not in the registry"), nil
		case isListed && desc.Digest != listed:
			return mk(drift.MovedTag, ev.Tag, desc.Digest.String(), listed.String(), "points at another digest"), nil
		case isListed, desc == nil:
			return clean, nil
		}
		if subj, ok := drift.CosignSubject(ev.Tag); ok {
			exp, err := s.rel.Expected(ctx, w, subj)
			if err != nil {
				return Verdict{}, err
			}
			if exp {
				return clean, nil
			}
		}
		return mk(drift.UnexpectedTag, ev.Tag, desc.Digest.String(), "", "no manifest lists this tag"), nil
	}
	if ev.Digest == "" {
		return Verdict{}, nil
	}
	d, err := v1.NewHash(ev.Digest)
	if err != nil {
		return Verdict{}, nil // not a digest this audit can look up
	}
	if ev.Action == ActionDelete && w != nil && w.Listed(d) {
		return mk(drift.MissingDigest, "", d.String(), "", "deleted"), nil
	}
	desc, err := drift.Head(ctx, s.o.reader, repo.Digest(d.String()))
	if err != nil {
		return Verdict{}, err
	}
	if desc == nil {
		// Gone (an unlisted digest deleted): nothing to find there.
		return Verdict{Clean: []Subject{{Repository: key, Digest: d.String()}}}, nil
	}
	if ev.Action == ActionDelete {
		return Verdict{}, nil
	}
	exp, err := s.rel.Expected(ctx, w, d)
	if err != nil {
		return Verdict{}, err
	}
	if exp {
		return Verdict{Clean: []Subject{{Repository: key, Digest: d.String()}}}, nil
	}
	return mk(drift.UnexpectedDigest, "", d.String(), "", "no manifest lists this digest"), nil
}

// errNotYet says the registry does not show what a push event announces
// yet; the event stays pending.
var errNotYet = errors.New("the registry does not show the change yet")

// maxWait is how long an event may wait for the registry to show the change
// it announces before it is judged on what the registry shows.
const maxWait = time.Minute

func young(ev StoredEvent) bool {
	at, err := time.Parse(timeLayout, ev.ReceivedAt)
	return err == nil && time.Since(at) < maxWait
}

// qualify gives an event's repository its registry host and reports whether
// it is under an audited prefix. Senders that name no host (Distribution,
// Harbor, the generic form without one) are on the first prefix's host.
func (s *Server) qualify(ev Event) (name.Repository, bool) {
	full := ev.Repository
	first, _, _ := strings.Cut(full, "/")
	if !strings.ContainsAny(first, ".:") && first != "localhost" {
		full = s.o.prefixes[0].Registry.RegistryStr() + "/" + full
	}
	repo, err := name.NewRepository(full, name.StrictValidation)
	if err != nil {
		return name.Repository{}, false
	}
	_, ok := drift.PrefixOf(s.o.prefixes, repo)
	return repo, ok
}
