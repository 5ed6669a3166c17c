// Package validate checks promoter manifests offline: every rule kpromo
// applies (also to thin manifests, which kpromo skips), the OCI name grammar,
// and cross-manifest tag conflicts. It turns the valid part into edge groups;
// every invalid part is excluded on its own and reported with its position.
package validate

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/names"
)

// Stats counts what the manifests ask for, as written (invalid entries
// included), and how many edges remain valid.
type Stats struct {
	Manifests  int `json:"manifests"`
	Images     int `json:"images"`
	Digests    int `json:"digests"`
	Tags       int `json:"tags"`
	Edges      int `json:"edges"`
	ValidEdges int `json:"validEdges"`
	Errors     int `json:"errors"`
	Warnings   int `json:"warnings"`
}

// SchemaVersion is the version of the JSON forms (validation, plan, run
// report). It changes only when a field is removed or changes meaning.
const SchemaVersion = 1

// Result is the outcome of validating a manifest set.
type Result struct {
	SchemaVersion int            `json:"schemaVersion"`
	Stats         Stats          `json:"stats"`
	Problems      []diag.Problem `json:"problems"`
	// Groups are the valid promotions, sorted.
	Groups []*edge.Group `json:"-"`
	// Refused are the tags refused by a conflict (one destination tag
	// wanted with two digests), one per group and tag, sorted: each is
	// promoted to none of the group's destinations. The conflict problems
	// explain them; this is their typed form.
	Refused []RefusedTag `json:"-"`
	// Unreadable is true when some input could not be read at all.
	Unreadable bool `json:"unreadable"`
}

// RefusedTag is a tag a group asked for and lost to a conflict.
type RefusedTag struct {
	// Source is the group's source image by digest.
	Source name.Digest
	// Tag is the tag refused.
	Tag string
	// Dests are the group's destination repositories: the tag is set in
	// none of them.
	Dests []name.Repository
}

// Validate checks the set and returns its valid edge groups and all problems
// (including those found while reading), sorted by position.
func Validate(set *manifest.Set) *Result {
	probs := append([]diag.Problem{}, set.Problems...) // never null in JSON
	v := &validator{res: &Result{SchemaVersion: SchemaVersion, Problems: probs, Unreadable: set.Unreadable()}, groups: map[groupKey]*edge.Group{}}
	for _, m := range set.Manifests {
		v.manifest(m)
	}
	v.finish()
	return v.res
}

type groupKey struct {
	source string // source repository name
	digest string
	dests  string // destination repository names, joined
}

type validator struct {
	res    *Result
	groups map[groupKey]*edge.Group
	order  []*edge.Group
}

func (v *validator) add(pos diag.Position, code diag.Code, entry, format string, args ...any) {
	v.res.Problems = append(v.res.Problems, diag.Problem{Pos: pos, Severity: diag.SeverityError, Code: code, Entry: entry, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warn(pos diag.Position, code diag.Code, entry, format string, args ...any) {
	v.res.Problems = append(v.res.Problems, diag.Problem{Pos: pos, Severity: diag.SeverityWarning, Code: code, Entry: entry, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) manifest(m *manifest.Manifest) {
	st := &v.res.Stats
	st.Manifests++
	dests, ok := v.registries(m)
	for i := range m.Images {
		img := &m.Images[i]
		st.Images++
		for _, d := range img.Digests {
			st.Digests++
			st.Tags += len(d.Tags)
			st.Edges += max(1, len(d.Tags)) * countDests(m)
		}
		if !ok || img.Broken {
			continue // already reported
		}
		v.image(m, img, dests)
	}
}

// countDests is the number of destinations as written, for the edge count.
func countDests(m *manifest.Manifest) int {
	n := 0
	for _, r := range m.Registries {
		if !r.Src {
			n++
		}
	}
	return n
}

// registries checks the registries and returns the valid destinations, and
// whether the manifest has a usable source (false: all its images are
// excluded). It does not modify the manifest: validating a set twice gives
// the same result.
func (v *validator) registries(m *manifest.Manifest) (dests []manifest.Registry, ok bool) {
	if m.Broken {
		return nil, false
	}
	entry := "registries"
	srcs := m.Source()
	switch len(srcs) {
	case 1:
	case 0:
		v.add(m.Pos, diag.CodeSource, entry, "no source registry (one registry needs src: true)")
	default:
		v.add(srcs[1].Pos, diag.CodeSource, "registry "+srcs[1].Name, "more than one source registry (first at %s)", srcs[0].Pos)
	}
	srcOK := len(srcs) == 1
	srcKey := ""
	if srcOK {
		srcKey = names.RegistryKey(srcs[0].Name)
	}
	seen := map[string]diag.Position{}
	seenName := map[string]string{}
	for _, r := range m.Registries {
		if msg := names.CheckRegistryName(r.Name); msg != "" {
			v.add(r.Pos, diag.CodeRegistryName, "registry "+r.Name, "%s", msg)
			if r.Src {
				srcOK = false
			}
			continue
		}
		key := names.RegistryKey(r.Name)
		// Checked before duplicates: a destination equal to the source is
		// one mistake, reported once as what it is.
		if !r.Src && srcOK && key == srcKey {
			p := srcs[0].Pos
			msg := "destination is the source registry"
			if names.SameHostAlias(r.Name, srcs[0].Name) {
				msg += fmt.Sprintf(" (%s and %s name the same registry)", srcs[0].Name, r.Name)
			}
			v.res.Problems = append(v.res.Problems, diag.Problem{Pos: r.Pos, Severity: diag.SeverityError, Code: diag.CodeDestIsSource, Entry: "registry " + r.Name,
				Message: msg, Related: &p})
			continue
		}
		if first, dup := seen[key]; dup {
			msg := "registry listed twice in one manifest"
			if names.SameHostAlias(r.Name, seenName[key]) {
				msg += fmt.Sprintf(" (%s and %s name the same registry)", seenName[key], r.Name)
			}
			v.res.Problems = append(v.res.Problems, diag.Problem{Pos: r.Pos, Severity: diag.SeverityError, Code: diag.CodeDuplicateReg, Entry: "registry " + r.Name,
				Message: msg, Related: &first})
			continue
		}
		seen[key], seenName[key] = r.Pos, r.Name
		if r.Src {
			continue
		}
		dests = append(dests, r)
	}
	if countDests(m) == 0 {
		v.add(m.Pos, diag.CodeNoDestination, entry, "no destination registry (every registry but the source is a destination)")
	}
	if !srcOK {
		return nil, false // exclude the whole manifest: no safe source
	}
	return dests, true
}

func (v *validator) image(m *manifest.Manifest, img *manifest.Image, dests []manifest.Registry) {
	entry := "image " + img.Name
	if msg := names.CheckImageName(img.Name); msg != "" {
		v.add(img.Pos, diag.CodeImageName, entry, "%s", msg)
		return
	}
	if len(img.Digests) == 0 {
		v.add(img.Pos, diag.CodeEmptyDmap, entry, "dmap is empty: list at least one digest")
		return
	}
	srcName := m.Source()[0].Name
	// Names were checked above, so parsing cannot fail on grammar; it can
	// only fail on length, which is reported here.
	srcRepo, err := name.NewRepository(srcName+"/"+img.Name, name.StrictValidation)
	if err != nil {
		v.add(img.Pos, diag.CodeImageName, entry, "source repository %s/%s: %v", srcName, img.Name, err)
		return
	}
	var repos []name.Repository
	for _, d := range dests {
		full := d.Name + "/" + img.Name
		r, err := name.NewRepository(full, name.StrictValidation)
		if err == nil && len(full) > names.MaxNameLen {
			err = fmt.Errorf("longer than %d characters", names.MaxNameLen)
		}
		if err != nil {
			v.add(img.Pos, diag.CodeImageName, entry, "destination repository %s: %v", full, err)
			continue
		}
		repos = append(repos, r)
	}
	if len(repos) == 0 {
		return
	}
	slices.SortFunc(repos, func(a, b name.Repository) int { return cmp.Compare(a.Name(), b.Name()) })
	destKey := ""
	for _, r := range repos {
		destKey += r.Name() + "\x00"
	}
	for _, d := range img.Digests {
		dentry := img.Name + "@" + d.Digest
		if msg := names.CheckDigest(d.Digest); msg != "" {
			v.add(d.Pos, diag.CodeDigest, entry, "%s", msg)
			continue
		}
		h, err := v1.NewHash(d.Digest)
		if err != nil {
			v.add(d.Pos, diag.CodeDigest, entry, "invalid digest: %v", err)
			continue
		}
		var tags []edge.Tag
		seenTag := map[string]diag.Position{}
		for _, t := range d.Tags {
			if msg := names.CheckTag(t.Name); msg != "" {
				v.add(t.Pos, diag.CodeTag, dentry, "%s", msg)
				continue
			}
			if first, dup := seenTag[t.Name]; dup {
				v.res.Problems = append(v.res.Problems, diag.Problem{Pos: t.Pos, Severity: diag.SeverityWarning, Code: diag.CodeTag, Entry: dentry,
					Message: fmt.Sprintf("tag %q listed twice for this digest", t.Name), Related: &first})
				continue
			}
			seenTag[t.Name] = t.Pos
			tags = append(tags, edge.Tag{Name: t.Name, Pos: t.Pos})
		}
		if len(d.Tags) > 0 && len(tags) == 0 {
			continue // every tag was invalid: do not silently promote by digest only
		}
		key := groupKey{source: srcRepo.Name(), digest: h.String(), dests: destKey}
		g, ok := v.groups[key]
		if !ok {
			g = &edge.Group{Project: m.Project, Image: img.Name, Source: srcRepo.Digest(h.String()), Digest: h, Dests: repos, Pos: d.Pos}
			v.groups[key] = g
			v.order = append(v.order, g)
		}
		g.Tags = append(g.Tags, tags...)
	}
}

// finish merges tags, detects cross-manifest conflicts and counts.
func (v *validator) finish() {
	for _, g := range v.order {
		slices.SortStableFunc(g.Tags, func(a, b edge.Tag) int { return cmp.Compare(a.Name, b.Name) })
		g.Tags = slices.CompactFunc(g.Tags, func(a, b edge.Tag) bool { return a.Name == b.Name })
	}
	emptied := v.conflicts()
	var groups []*edge.Group
	for _, g := range v.order {
		if emptied[g] {
			continue // every tag refused by a conflict: not a digest-only promotion
		}
		groups = append(groups, g)
		v.res.Stats.ValidEdges += g.EdgeCount()
	}
	edge.Sort(groups)
	v.res.Groups = groups
	diag.Sort(v.res.Problems)
	v.res.Stats.Errors = diag.Errors(v.res.Problems)
	v.res.Stats.Warnings = len(v.res.Problems) - v.res.Stats.Errors
}

// conflicts finds destination tags wanted with two different digests and
// refuses that tag in every group that claims it there, whatever digest it
// claims: a published tag never moves, and which digest the reviewers meant
// cannot be guessed. Refusal is per group, so a group also loses the tag in
// its other destinations (failing closed). It records the refusals in the
// result and returns the groups that lost every tag.
func (v *validator) conflicts() map[*edge.Group]bool {
	byDest := map[string][]*edge.Group{}
	for _, g := range v.order {
		if len(g.Tags) == 0 {
			continue
		}
		for _, d := range g.Dests {
			k := names.RepositoryKey(d)
			byDest[k] = append(byDest[k], g)
		}
	}
	type claim struct {
		g   *edge.Group
		pos diag.Position
	}
	type refusal struct {
		g   *edge.Group
		tag string
	}
	refused := map[refusal]bool{}
	reported := map[[2]diag.Position]bool{}
	first := map[string]claim{} // tag -> first claim in this destination
	other := map[string]claim{} // tag -> first claim of another digest than first's
	dests := make([]string, 0, len(byDest))
	for d := range byDest {
		dests = append(dests, d)
	}
	slices.Sort(dests)
	for _, dest := range dests {
		gs := byDest[dest]
		if len(gs) < 2 {
			continue
		}
		clear(first)
		clear(other)
		for _, g := range gs {
			for _, t := range g.Tags {
				f, ok := first[t.Name]
				if !ok {
					first[t.Name] = claim{g, t.Pos}
					continue
				}
				if _, ok := other[t.Name]; !ok && f.g.Digest != g.Digest {
					other[t.Name] = claim{g, t.Pos}
				}
			}
		}
		if len(other) == 0 {
			continue
		}
		// Every claim of a contested tag is refused, also those agreeing
		// with the first claim, and each is reported against a claim of a
		// different digest.
		for _, g := range gs {
			for _, t := range g.Tags {
				o, contested := other[t.Name]
				if !contested {
					continue
				}
				refused[refusal{g, t.Name}] = true
				peer := first[t.Name]
				if peer.g.Digest == g.Digest {
					peer = o
				}
				// The problem sits at the earlier place and names what is there.
				a, b := t.Pos, peer.pos
				da, db := g.Digest, peer.g.Digest
				image := g.Image
				if b.Compare(a) < 0 {
					a, b, da, db, image = b, a, db, da, peer.g.Image
				}
				if reported[[2]diag.Position{a, b}] {
					continue
				}
				reported[[2]diag.Position{a, b}] = true
				v.res.Problems = append(v.res.Problems, diag.Problem{Pos: a, Severity: diag.SeverityError, Code: diag.CodeConflict, Entry: image + ":" + t.Name,
					Message: fmt.Sprintf("tag %s in %s is wanted with %s here and with %s at %s; the tag is refused for both", t.Name, dest, da, db, b), Related: &b})
			}
		}
	}
	if len(refused) == 0 {
		return nil
	}
	emptied := map[*edge.Group]bool{}
	for _, g := range v.order {
		if len(g.Tags) == 0 {
			continue
		}
		g.Tags = slices.DeleteFunc(g.Tags, func(t edge.Tag) bool {
			if !refused[refusal{g, t.Name}] {
				return false
			}
			v.res.Refused = append(v.res.Refused, RefusedTag{Source: g.Source, Tag: t.Name, Dests: g.Dests})
			return true
		})
		emptied[g] = len(g.Tags) == 0
	}
	slices.SortFunc(v.res.Refused, func(a, b RefusedTag) int {
		return cmp.Or(cmp.Compare(a.Source.String(), b.Source.String()), cmp.Compare(a.Tag, b.Tag))
	})
	return emptied
}
