// Package policy reads the promotion policy (promotion-policy.yaml beside
// the manifests, reviewed in the same pull request) and decides, from the
// evidence attached to an image, whether it may enter a destination
// repository. Scopes are registry/repository prefixes; the most specific
// scope covering a destination wins. Within a scope every requirement must
// hold. Unknown fields, unreadable files and anything else unexpected are
// errors: the policy fails closed.
package policy

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/root"
	yaml "go.yaml.in/yaml/v3"

	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/evidence"
)

// DefaultFile is the policy file used when present at the root of the
// manifest directory and no --policy is given.
const DefaultFile = "promotion-policy.yaml"

// Kind is the kind of a requirement. The names are those of the file.
type Kind string

// Requirement kinds.
const (
	SignedBy               Kind = "signedBy"               // signed with a PEM public key
	KeylessSigned          Kind = "keyless"                // signed with a Fulcio certificate for an OIDC identity
	Attestation            Kind = "attestation"            // an attestation of a predicate type by one of the scope's identities
	Reject                 Kind = "reject"                 // nothing enters
	InsecureAcceptAnything Kind = "insecureAcceptAnything" // anything enters, unverified
)

// Requirement is one condition of a scope.
type Requirement struct {
	Kind Kind
	// Identity is the signer (SignedBy, KeylessSigned).
	Identity *evidence.Identity
	// PredicateType is the attestation's type (Attestation).
	PredicateType string
	Pos           diag.Position
}

// Gates are conditions on what verified attestations say.
type Gates struct {
	// MaxSeverity is the highest vulnerability severity allowed ("" : no
	// gate). Setting it requires a verified vulnerability scan.
	MaxSeverity string
	// RequiredPredicateTypes must each be attested by one of the scope's
	// identities.
	RequiredPredicateTypes []string
	// MaxScanAge is how old the verified scan may be (0: no gate).
	MaxScanAge time.Duration
}

// Scope is the requirements for destinations under a prefix.
type Scope struct {
	// Prefix is a registry, or a registry and repository path prefix
	// (matched whole path components); "" is the default scope.
	Prefix       string
	Requirements []Requirement
	Gates        Gates
	Pos          diag.Position
}

// Name is the scope's prefix, or "default".
func (s *Scope) Name() string {
	if s.Prefix == "" {
		return "default"
	}
	return s.Prefix
}

// Identities are the signers the scope names.
func (s *Scope) Identities() []evidence.Identity {
	var out []evidence.Identity
	for _, r := range s.Requirements {
		if r.Identity != nil {
			out = append(out, *r.Identity)
		}
	}
	return out
}

// Policy is a loaded policy file.
type Policy struct {
	// File is the policy file's path as given.
	File string
	// Scopes, most specific (longest prefix) first; the default scope, if
	// any, is last.
	Scopes []*Scope
}

// Error is a problem in the policy file, at a position.
type Error struct {
	Pos diag.Position
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Default returns the default policy file of a manifest directory when it
// exists.
func Default(manifestRoot string) (string, bool) {
	p := filepath.Join(manifestRoot, DefaultFile)
	fi, err := os.Lstat(p)
	return p, err == nil && fi.Mode().IsRegular()
}

// Load reads and checks the policy file at path. Key and trust root files
// it names are read relative to the policy file's directory and must stay
// inside root (the manifest root) without symbolic links.
func Load(path, rootDir string) (*Policy, error) {
	raw, err := readInside(rootDir, path)
	if err != nil {
		return nil, &Error{Pos: diag.Position{File: path}, Msg: err.Error()}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, &Error{Pos: diag.Position{File: path}, Msg: "not YAML: " + err.Error()}
	}
	l := &loader{file: path, dir: filepath.Dir(path), root: rootDir, roots: map[string]root.TrustedMaterial{}}
	p := &Policy{File: path}
	if len(doc.Content) == 0 {
		return nil, l.errf(&doc, "empty policy: name at least a default scope or one scope")
	}
	top := doc.Content[0]
	if err := l.fields(top, "version", "default", "scopes"); err != nil {
		return nil, err
	}
	if v := field(top, "version"); v != nil && v.Value != "1" {
		return nil, l.errf(v, "version %q: only version 1 is known", v.Value)
	}
	if d := field(top, "default"); d != nil {
		s, err := l.scope(d, "")
		if err != nil {
			return nil, err
		}
		p.Scopes = append(p.Scopes, s)
	}
	if ss := field(top, "scopes"); ss != nil {
		if ss.Kind != yaml.SequenceNode {
			return nil, l.errf(ss, "scopes must be a list")
		}
		seen := map[string]bool{}
		for _, n := range ss.Content {
			if err := l.mapping(n); err != nil {
				return nil, err
			}
			pf := field(n, "prefix")
			if pf == nil || pf.Value == "" {
				return nil, l.errf(n, "a scope needs a prefix (registry or registry/repository)")
			}
			prefix := strings.TrimSuffix(pf.Value, "/")
			if _, err := name.NewRepository(prefix, name.StrictValidation); err != nil {
				if _, rerr := name.NewRegistry(prefix, name.StrictValidation); rerr != nil {
					return nil, l.errf(pf, "prefix %q is neither a registry nor a repository: %v", pf.Value, err)
				}
			}
			if seen[prefix] {
				return nil, l.errf(pf, "prefix %q is scoped twice", prefix)
			}
			seen[prefix] = true
			s, err := l.scope(n, prefix, "prefix")
			if err != nil {
				return nil, err
			}
			p.Scopes = append(p.Scopes, s)
		}
	}
	if len(p.Scopes) == 0 {
		return nil, l.errf(top, "no scope: name a default scope or at least one scope")
	}
	slices.SortStableFunc(p.Scopes, func(a, b *Scope) int { return cmp.Compare(len(b.Prefix), len(a.Prefix)) })
	return p, nil
}

// For returns the scope covering a destination repository: the most
// specific one, else the default, else nil (nothing covers it).
func (p *Policy) For(repo name.Repository) *Scope {
	full := repo.Name()
	for _, s := range p.Scopes {
		if s.Prefix == "" || full == s.Prefix || strings.HasPrefix(full, s.Prefix+"/") {
			return s
		}
	}
	return nil
}

// Identities returns every signer named by the scopes covering repos,
// each once, in a deterministic order: what evidence is collected against.
func (p *Policy) Identities(repos ...name.Repository) []evidence.Identity {
	var out []evidence.Identity
	seen := map[string]bool{}
	for _, r := range repos {
		s := p.For(r)
		if s == nil {
			continue
		}
		for _, id := range s.Identities() {
			if !seen[id.ID] {
				seen[id.ID] = true
				out = append(out, id)
			}
		}
	}
	slices.SortFunc(out, func(a, b evidence.Identity) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

type loader struct {
	file, dir, root string
	roots           map[string]root.TrustedMaterial
}

func (l *loader) pos(n *yaml.Node) diag.Position {
	return diag.Position{File: l.file, Line: n.Line, Column: n.Column}
}

func (l *loader) errf(n *yaml.Node, format string, args ...any) error {
	return &Error{Pos: l.pos(n), Msg: fmt.Sprintf(format, args...)}
}

func (l *loader) mapping(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return l.errf(n, "expected a mapping")
	}
	return nil
}

// fields checks that n is a mapping with only the allowed keys, each once.
func (l *loader) fields(n *yaml.Node, allowed ...string) error {
	if err := l.mapping(n); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			return l.errf(k, "unknown field %q (known: %s)", k.Value, strings.Join(allowed, ", "))
		}
		if seen[k.Value] {
			return l.errf(k, "field %q given twice", k.Value)
		}
		seen[k.Value] = true
	}
	return nil
}

func field(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func (l *loader) str(n *yaml.Node, key string) (string, error) {
	v := field(n, key)
	if v == nil {
		return "", nil
	}
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", l.errf(v, "%s must be a string", key)
	}
	return v.Value, nil
}

func (l *loader) scope(n *yaml.Node, prefix string, extra ...string) (*Scope, error) {
	if err := l.fields(n, append([]string{"requirements", "gates"}, extra...)...); err != nil {
		return nil, err
	}
	s := &Scope{Prefix: prefix, Pos: l.pos(n)}
	reqs := field(n, "requirements")
	if reqs == nil || reqs.Kind != yaml.SequenceNode || len(reqs.Content) == 0 {
		return nil, l.errf(n, "scope %s needs a non-empty list of requirements (write insecureAcceptAnything to accept anything)", s.Name())
	}
	for _, r := range reqs.Content {
		req, err := l.requirement(r)
		if err != nil {
			return nil, err
		}
		s.Requirements = append(s.Requirements, req)
	}
	kinds := map[Kind]bool{}
	for _, r := range s.Requirements {
		kinds[r.Kind] = true
	}
	if (kinds[Reject] || kinds[InsecureAcceptAnything]) && len(s.Requirements) > 1 {
		return nil, l.errf(reqs, "scope %s: reject and insecureAcceptAnything stand alone", s.Name())
	}
	if g := field(n, "gates"); g != nil {
		if err := l.fields(g, "maxSeverity", "requiredPredicateTypes", "maxScanAge"); err != nil {
			return nil, err
		}
		sev, err := l.str(g, "maxSeverity")
		if err != nil {
			return nil, err
		}
		if sev != "" && evidence.SeverityRank(sev) < 0 {
			return nil, l.errf(field(g, "maxSeverity"), "maxSeverity %q: one of %s", sev, strings.Join(evidence.Severities, ", "))
		}
		s.Gates.MaxSeverity = strings.ToLower(sev)
		if rp := field(g, "requiredPredicateTypes"); rp != nil {
			if rp.Kind != yaml.SequenceNode {
				return nil, l.errf(rp, "requiredPredicateTypes must be a list")
			}
			for _, v := range rp.Content {
				if v.Kind != yaml.ScalarNode || v.Value == "" {
					return nil, l.errf(v, "a predicate type is a non-empty string")
				}
				s.Gates.RequiredPredicateTypes = append(s.Gates.RequiredPredicateTypes, v.Value)
			}
		}
		age, err := l.str(g, "maxScanAge")
		if err != nil {
			return nil, err
		}
		if age != "" {
			d, err := time.ParseDuration(age)
			if err != nil || d <= 0 {
				return nil, l.errf(field(g, "maxScanAge"), "maxScanAge %q: a positive Go duration such as 168h", age)
			}
			s.Gates.MaxScanAge = d
		}
	}
	needsIDs := kinds[Attestation] || len(s.Gates.RequiredPredicateTypes) > 0 || s.Gates.MaxSeverity != "" || s.Gates.MaxScanAge > 0
	if needsIDs && len(s.Identities()) == 0 {
		return nil, l.errf(n, "scope %s: attestations and gates are verified against the scope's signedBy or keyless identities, and it has none", s.Name())
	}
	if (kinds[Reject] || kinds[InsecureAcceptAnything]) && needsIDs {
		return nil, l.errf(n, "scope %s: gates make no sense with reject or insecureAcceptAnything", s.Name())
	}
	return s, nil
}

func (l *loader) requirement(n *yaml.Node) (Requirement, error) {
	kinds := []string{string(SignedBy), string(KeylessSigned), string(Attestation), string(Reject), string(InsecureAcceptAnything)}
	if err := l.fields(n, kinds...); err != nil {
		return Requirement{}, err
	}
	if len(n.Content) != 2 {
		return Requirement{}, l.errf(n, "a requirement is exactly one of %s", strings.Join(kinds, ", "))
	}
	kind, body := Kind(n.Content[0].Value), n.Content[1]
	req := Requirement{Kind: kind, Pos: l.pos(n.Content[0])}
	switch kind {
	case Reject, InsecureAcceptAnything:
		if err := l.fields(body); err != nil {
			return req, l.errf(body, "%s takes no fields: write %s: {}", kind, kind)
		}
	case SignedBy:
		if err := l.fields(body, "key"); err != nil {
			return req, err
		}
		key, err := l.str(body, "key")
		if err != nil || key == "" {
			return req, l.errf(body, "signedBy needs key: the path of a PEM public key file")
		}
		raw, err := readInside(l.root, l.rel(key))
		if err != nil {
			return req, l.errf(field(body, "key"), "%v", err)
		}
		id, err := evidence.KeyIdentity(key, raw)
		if err != nil {
			return req, l.errf(field(body, "key"), "%v", err)
		}
		req.Identity = &id
	case KeylessSigned:
		if err := l.fields(body, "issuer", "issuerRegExp", "subject", "subjectRegExp", "trustedRoot"); err != nil {
			return req, err
		}
		var k evidence.Keyless
		var tr string
		for key, dst := range map[string]*string{"issuer": &k.Issuer, "issuerRegExp": &k.IssuerRegexp, "subject": &k.Subject, "subjectRegExp": &k.SubjectRegexp, "trustedRoot": &tr} {
			v, err := l.str(body, key)
			if err != nil {
				return req, err
			}
			*dst = v
		}
		if tr == "" {
			return req, l.errf(body, "keyless needs trustedRoot: the path of a trusted_root.json kept in the repository")
		}
		tm, err := l.trustRoot(tr)
		if err != nil {
			return req, l.errf(field(body, "trustedRoot"), "%v", err)
		}
		id, err := evidence.KeylessIdentity(k, tm)
		if err != nil {
			return req, l.errf(body, "%v", err)
		}
		req.Identity = &id
	case Attestation:
		if err := l.fields(body, "predicateType"); err != nil {
			return req, err
		}
		pt, err := l.str(body, "predicateType")
		if err != nil || pt == "" {
			return req, l.errf(body, "attestation needs predicateType")
		}
		req.PredicateType = pt
	}
	return req, nil
}

func (l *loader) rel(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

func (l *loader) trustRoot(p string) (root.TrustedMaterial, error) {
	full := l.rel(p)
	if tm, ok := l.roots[full]; ok {
		return tm, nil
	}
	raw, err := readInside(l.root, full)
	if err != nil {
		return nil, err
	}
	tm, err := root.NewTrustedRootFromJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", p, err)
	}
	l.roots[full] = tm
	return tm, nil
}

var errOutside = errors.New("is outside the manifest root")

// readInside reads a regular file that lies inside rootDir, refusing
// symbolic links anywhere on the way.
func readInside(rootDir, path string) ([]byte, error) {
	absRoot, err := filepath.Abs(rootDir)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(absRoot, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return nil, fmt.Errorf("%s %w %s", path, errOutside, rootDir)
	}
	cur := absRoot
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s: symbolic links are not followed", cur)
		}
	}
	r, err := os.OpenRoot(absRoot)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.ReadFile(rel)
}
