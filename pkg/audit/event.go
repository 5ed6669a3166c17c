// Package audit checks changes to production registries against the
// reviewed manifests: it receives the registries' notifications (CNCF
// Distribution, Google Pub/Sub push, Harbor webhooks, a generic JSON form),
// stores each event durably before acknowledging it, and judges every event
// as a hint: it re-reads the tag or digest named in the registry and compares
// what is there with what the manifests say should be. What does not match
// is a Finding.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Source is the kind of sender an event came from.
type Source string

// Sources, one per route of the server.
const (
	SourceDistribution Source = "distribution"
	SourcePubSub       Source = "pubsub"
	SourceHarbor       Source = "harbor"
	SourceGeneric      Source = "generic"
)

// Action is what happened in the registry.
type Action string

// Actions. Other actions (Harbor's scans, quotas ...) are stored as Other and
// judged no further.
const (
	ActionPush   Action = "push"
	ActionDelete Action = "delete"
	ActionPull   Action = "pull"
	ActionMount  Action = "mount"
	ActionOther  Action = "other"
)

// Event is one notification in the form every sender is read into. An event
// is a hint: it says which tag or digest of which repository to look at,
// not what the registry now holds.
type Event struct {
	Source Source `json:"source"`
	// ID is unique per source: the sender's event or message id, or, for
	// senders without one, a digest of the body and the event's position.
	ID     string `json:"id"`
	Action Action `json:"action"`
	// Repository is the repository path, with a registry host when the
	// sender names one (Pub/Sub does; Distribution and Harbor name the path
	// only).
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
	// Blob marks an event about a blob (layer or config), which the audit
	// does not judge: manifests are what the promoter promotes.
	Blob bool `json:"blob,omitempty"`
}

// ErrMalformed marks a body that is not what its route expects. The server
// keeps such bodies and answers 2xx anyway: a 4xx answer makes Distribution
// retry the same body forever and stalls every later event.
var ErrMalformed = errors.New("malformed notification")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// DistributionMediaType is the media type of a Distribution notification
// envelope.
const DistributionMediaType = "application/vnd.docker.distribution.events.v2+json"

type distributionEnvelope struct {
	Events []struct {
		ID     string `json:"id"`
		Action string `json:"action"`
		Target struct {
			MediaType  string `json:"mediaType"`
			Digest     string `json:"digest"`
			Repository string `json:"repository"`
			URL        string `json:"url"`
			Tag        string `json:"tag"`
		} `json:"target"`
	} `json:"events"`
}

// ParseDistribution reads a CNCF Distribution notification envelope
// ({"events":[...]}).
func ParseDistribution(body []byte) ([]Event, error) {
	var env distributionEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, malformed("distribution envelope: %v", err)
	}
	out := make([]Event, 0, len(env.Events))
	for i, e := range env.Events {
		if e.ID == "" {
			return nil, malformed("distribution event %d has no id", i)
		}
		if e.Target.Repository == "" {
			return nil, malformed("distribution event %s has no target repository", e.ID)
		}
		out = append(out, Event{
			Source: SourceDistribution, ID: e.ID, Action: distributionAction(e.Action),
			Repository: e.Target.Repository, Tag: e.Target.Tag, Digest: e.Target.Digest,
			Blob: isBlobTarget(e.Target.URL, e.Target.MediaType),
		})
	}
	return out, nil
}

func distributionAction(a string) Action {
	switch Action(a) {
	case ActionPush, ActionDelete, ActionPull, ActionMount:
		return Action(a)
	}
	return ActionOther
}

// isBlobTarget tells a blob event from a manifest event: by the URL when the
// registry gives one, else by the media type (a manifest delete carries
// neither, and is a manifest event).
func isBlobTarget(url, mediaType string) bool {
	if strings.Contains(url, "/blobs/") {
		return true
	}
	if strings.Contains(url, "/manifests/") || mediaType == "" {
		return false
	}
	return !isManifestMediaType(mediaType)
}

func isManifestMediaType(mt string) bool {
	switch mt {
	case "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.v1+json", "application/vnd.docker.distribution.manifest.v1+prettyjws":
		return true
	}
	return false
}

// pubsubPush is a Pub/Sub push request body.
type pubsubPush struct {
	Message struct {
		Data      string `json:"data"`
		MessageID string `json:"messageId"`
		// message_id is the older spelling, still sent alongside.
		MessageIDOld string `json:"message_id"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

// gcrMessage is what Google's registries publish on their topic.
type gcrMessage struct {
	Action string `json:"action"`
	Digest string `json:"digest"` // host/path@sha256:...
	Tag    string `json:"tag"`    // host/path:tag
}

// ParsePubSub reads a Pub/Sub push request carrying a Google registry
// notification (message.data: base64 of {"action":"INSERT|DELETE",
// "digest":"HOST/PATH@sha256:...","tag":"HOST/PATH:TAG"}). The event id is
// the message id, which Pub/Sub keeps across redeliveries.
func ParsePubSub(body []byte) ([]Event, error) {
	var p pubsubPush
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, malformed("pub/sub push: %v", err)
	}
	id := p.Message.MessageID
	if id == "" {
		id = p.Message.MessageIDOld
	}
	if id == "" {
		return nil, malformed("pub/sub push has no message id")
	}
	data, err := base64.StdEncoding.DecodeString(p.Message.Data)
	if err != nil {
		return nil, malformed("pub/sub message %s: data is not base64: %v", id, err)
	}
	var m gcrMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, malformed("pub/sub message %s: data: %v", id, err)
	}
	e := Event{Source: SourcePubSub, ID: id}
	switch m.Action {
	case "INSERT":
		e.Action = ActionPush
	case "DELETE":
		e.Action = ActionDelete
	default:
		e.Action = ActionOther
	}
	if m.Digest != "" {
		repo, d, ok := strings.Cut(m.Digest, "@")
		if !ok {
			return nil, malformed("pub/sub message %s: digest %q is not REPOSITORY@DIGEST", id, m.Digest)
		}
		e.Repository, e.Digest = repo, d
	}
	if m.Tag != "" {
		i := strings.LastIndex(m.Tag, ":")
		if i < 0 || strings.Contains(m.Tag[i:], "/") {
			return nil, malformed("pub/sub message %s: tag %q is not REPOSITORY:TAG", id, m.Tag)
		}
		repo := m.Tag[:i]
		if e.Repository != "" && e.Repository != repo {
			return nil, malformed("pub/sub message %s: digest and tag name different repositories", id)
		}
		e.Repository, e.Tag = repo, m.Tag[i+1:]
	}
	if e.Repository == "" {
		return nil, malformed("pub/sub message %s names neither a digest nor a tag", id)
	}
	return []Event{e}, nil
}

// harborData is the part of a Harbor webhook payload the audit reads, in
// both formats (in CloudEvents it is the event's data).
type harborData struct {
	Resources []struct {
		Digest      string `json:"digest"`
		Tag         string `json:"tag"`
		ResourceURL string `json:"resource_url"`
	} `json:"resources"`
	Repository struct {
		Name         string `json:"name"`
		Namespace    string `json:"namespace"`
		RepoFullName string `json:"repo_full_name"`
	} `json:"repository"`
}

type harborDefault struct {
	Type      string     `json:"type"`
	OccurAt   int64      `json:"occur_at"`
	EventData harborData `json:"event_data"`
}

type cloudEvent struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// ParseHarbor reads a Harbor webhook: the default format
// ({"type":"PUSH_ARTIFACT","event_data":{...}}), or CloudEvents, in binary
// mode (ce-id and ce-type headers, the data as body) or structured mode
// ({"id":...,"type":"harbor.artifact.pushed","data":{...}}). The default
// format carries no event id: the id is a digest of the body.
func ParseHarbor(h http.Header, body []byte) ([]Event, error) {
	if id := h.Get("Ce-Id"); id != "" {
		var d harborData
		if err := json.Unmarshal(body, &d); err != nil {
			return nil, malformed("harbor cloudevent %s: %v", id, err)
		}
		return harborEvents(id, harborAction(h.Get("Ce-Type")), d)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, malformed("harbor webhook: %v", err)
	}
	if _, ok := probe["specversion"]; ok {
		var ce cloudEvent
		if err := json.Unmarshal(body, &ce); err != nil {
			return nil, malformed("harbor cloudevent: %v", err)
		}
		if ce.ID == "" {
			return nil, malformed("harbor cloudevent has no id")
		}
		var d harborData
		if err := json.Unmarshal(ce.Data, &d); err != nil {
			return nil, malformed("harbor cloudevent %s data: %v", ce.ID, err)
		}
		return harborEvents(ce.ID, harborAction(ce.Type), d)
	}
	var hd harborDefault
	if err := json.Unmarshal(body, &hd); err != nil {
		return nil, malformed("harbor webhook: %v", err)
	}
	if hd.Type == "" {
		return nil, malformed("harbor webhook has no type")
	}
	return harborEvents(bodyID(body), harborAction(hd.Type), hd.EventData)
}

func harborAction(t string) Action {
	switch t {
	case "PUSH_ARTIFACT", "harbor.artifact.pushed":
		return ActionPush
	case "DELETE_ARTIFACT", "harbor.artifact.deleted":
		return ActionDelete
	case "PULL_ARTIFACT", "harbor.artifact.pulled":
		return ActionPull
	}
	return ActionOther
}

func harborEvents(id string, a Action, d harborData) ([]Event, error) {
	repo := d.Repository.RepoFullName
	if repo == "" && d.Repository.Namespace != "" && d.Repository.Name != "" {
		repo = d.Repository.Namespace + "/" + d.Repository.Name
	}
	if repo == "" {
		return nil, malformed("harbor event %s names no repository", id)
	}
	if len(d.Resources) == 0 {
		return []Event{{Source: SourceHarbor, ID: id, Action: a, Repository: repo}}, nil
	}
	out := make([]Event, 0, len(d.Resources))
	for i, r := range d.Resources {
		eid := id
		if len(d.Resources) > 1 {
			eid = id + "/" + strconv.Itoa(i)
		}
		out = append(out, Event{Source: SourceHarbor, ID: eid, Action: a, Repository: repo, Tag: r.Tag, Digest: r.Digest})
	}
	return out, nil
}

// genericEnvelope is the documented generic form (docs/audit.md).
type genericEnvelope struct {
	Events []struct {
		ID         string `json:"id"`
		Action     string `json:"action"`
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
		Digest     string `json:"digest"`
	} `json:"events"`
}

// ParseGeneric reads the generic form:
//
//	{"events":[{"id":"...","action":"push|delete","repository":"[HOST/]PATH","tag":"...","digest":"sha256:..."}]}
//
// id, action and repository are required, and a tag or a digest.
func ParseGeneric(body []byte) ([]Event, error) {
	var env genericEnvelope
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, malformed("generic envelope: %v", err)
	}
	out := make([]Event, 0, len(env.Events))
	for i, e := range env.Events {
		switch {
		case e.ID == "":
			return nil, malformed("generic event %d has no id", i)
		case e.Repository == "":
			return nil, malformed("generic event %s has no repository", e.ID)
		case e.Tag == "" && e.Digest == "":
			return nil, malformed("generic event %s names neither a tag nor a digest", e.ID)
		}
		a := Action(e.Action)
		if a != ActionPush && a != ActionDelete {
			return nil, malformed("generic event %s: action %q (want push or delete)", e.ID, e.Action)
		}
		out = append(out, Event{Source: SourceGeneric, ID: e.ID, Action: a, Repository: e.Repository, Tag: e.Tag, Digest: e.Digest})
	}
	return out, nil
}

// bodyID names a body by its content, for senders that give no event id:
// a replayed body gets the same id.
func bodyID(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// now is the clock of stored times, in UTC with a fixed layout so that the
// store's text columns sort in time order.
func now() string { return time.Now().UTC().Format(timeLayout) }

const timeLayout = "2006-01-02T15:04:05.000000Z"
