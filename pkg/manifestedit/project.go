package manifestedit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/names"
	"github.com/imgpromoter/promoter/pkg/regerr"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// Registry is what Add reads from the staging registry (access.Client
// implements it).
type Registry interface {
	// Resolve returns a manifest's descriptor; one that does not exist is
	// an error matching regerr.ErrNotFound.
	Resolve(ctx context.Context, ref name.Reference) (v1.Descriptor, error)
	ListTags(ctx context.Context, repo name.Repository) ([]string, map[string]v1.Hash, error)
}

// Request says what Add adds to one project of a thin manifest directory.
type Request struct {
	ThinDir string
	Project string
	// Image is the image name inside the registries, as in the manifest.
	Image string
	// Tags are looked up in the staging repository; each is listed with
	// the digest it points to there.
	Tags []string
	// Digests are listed without tags; each must exist in staging.
	Digests []v1.Hash
	// TagFilter selects staging tags with MatchString (anchor it to match
	// whole tags; the command line does). Tags it selects are added like
	// Tags; "latest" is skipped unless AllowLatest.
	TagFilter *regexp.Regexp
}

// Skip is a tag selected by the filter and left out.
type Skip struct {
	Tag    string `json:"tag"`
	Digest string `json:"digest"`
	Reason string `json:"reason"`
}

// SchemaVersion is the version of Report's JSON form.
const SchemaVersion = 1

// Report is what Add did.
type Report struct {
	SchemaVersion int `json:"schemaVersion"`
	// File is the images file edited (or that would be, when refused).
	File  string `json:"file"`
	Image string `json:"image"`
	// Source is the staging repository the tags were looked up in.
	Source  string   `json:"source"`
	Changes []Change `json:"changes"`
	Skipped []Skip   `json:"skipped"`
	// Changed is true when the file's content changes; Written when it
	// was written (not for a dry run).
	Changed  bool           `json:"changed"`
	Written  bool           `json:"written"`
	Problems []diag.Problem `json:"problems"`
}

// Add resolves the requested tags and digests in the project's staging
// registry (the src registry of its promoter-manifest.yaml) and adds them
// to the project's images.yaml with AddToList. Before writing, the edited
// project is read back with pkg/manifest and validated with pkg/validate
// together with the rest of the directory: an addition that would make a
// new validation error (a tag conflict with another project, say) is
// refused. The file is replaced atomically.
//
// A refusal returns the report with its Problems and a *RefusedError;
// nothing is written then.
func Add(ctx context.Context, reg Registry, req Request, opts ...Option) (*Report, error) {
	o := makeOptions(opts)
	p, err := openProject(req.ThinDir, req.Project)
	if err != nil {
		return nil, err
	}
	repo, err := name.NewRepository(p.source+"/"+req.Image, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", req.Image, err)
	}
	rep := &Report{SchemaVersion: SchemaVersion, File: p.imagesFile, Image: req.Image, Source: repo.Name(),
		Changes: []Change{}, Skipped: []Skip{}, Problems: []diag.Problem{}}
	refused := func(err error) (*Report, error) {
		var re *RefusedError
		if errors.As(err, &re) {
			rep.Problems = re.Problems
		}
		return rep, err
	}
	adds, skipped, probs, err := resolve(ctx, reg, repo, req, p.imagesFile, o)
	if err != nil {
		return nil, err
	}
	rep.Skipped = skipped
	if len(probs) > 0 {
		diag.Sort(probs)
		return refused(&RefusedError{Problems: probs})
	}
	data, err := manifest.ReadFileIn(req.ThinDir, p.imagesFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	out, changes, err := AddToList(p.imagesFile, data, req.Image, adds, opts...)
	if err != nil {
		return refused(err)
	}
	rep.Changes = changes
	rep.Changed = !bytes.Equal(out, data)
	if !rep.Changed {
		return rep, nil
	}
	if err := p.check(out); err != nil {
		return refused(err)
	}
	if o.dryRun {
		return rep, nil
	}
	if err := manifest.WriteFile(req.ThinDir, p.imagesFile, out); err != nil {
		return nil, err
	}
	rep.Written = true
	return rep, nil
}

// project is one project of a thin manifest directory, read.
type project struct {
	set        *manifest.Set // the whole directory
	m          *manifest.Manifest
	imagesFile string
	source     string
}

func openProject(dir, projectName string) (*project, error) {
	if projectName == "" || strings.ContainsAny(projectName, `/\`) || projectName == "." || projectName == ".." {
		return nil, fmt.Errorf("project %q: want the name of a folder under %s", projectName, filepath.Join(dir, manifest.ThinManifestsDir))
	}
	ms, probs := manifest.LoadThinDir(dir)
	p := &project{set: &manifest.Set{Manifests: ms, Problems: probs}}
	for _, m := range ms {
		if m.Project == projectName {
			p.m = m
		}
	}
	if p.m == nil {
		for _, pr := range probs {
			if pr.Code == diag.CodeUnreadable && pr.Pos.File == dir {
				return nil, pr
			}
		}
		return nil, fmt.Errorf("project %s not found: there is no %s", projectName, filepath.Join(dir, manifest.ThinManifestsDir, projectName, manifest.ThinManifestFile))
	}
	p.imagesFile = p.m.ImagesFile
	for _, pr := range probs {
		if pr.Severity == diag.SeverityError && (pr.Code == diag.CodeSyntax || pr.Code == diag.CodeUnreadable) &&
			(pr.Pos.File == p.m.File || (p.imagesFile != "" && pr.Pos.File == p.imagesFile)) {
			return nil, fmt.Errorf("fix this first (see promoter validate): %w", pr)
		}
	}
	if p.imagesFile == "" {
		p.imagesFile = filepath.Join(dir, manifest.ThinImagesDir, projectName, manifest.ThinImagesFile)
	}
	srcs := p.m.Source()
	if len(srcs) != 1 || p.m.Broken {
		return nil, fmt.Errorf("%s: the project needs exactly one source registry (src: true); found %d", p.m.File, len(srcs))
	}
	p.source = srcs[0].Name
	return p, nil
}

// resolve looks the requested tags and digests up in staging.
func resolve(ctx context.Context, reg Registry, repo name.Repository, req Request, file string, o options) ([]Addition, []Skip, []diag.Problem, error) {
	var probs []diag.Problem
	refuse := func(code diag.Code, entry, format string, args ...any) {
		probs = append(probs, diag.Problem{Pos: diag.Position{File: file}, Severity: diag.SeverityError, Code: code, Entry: entry, Message: fmt.Sprintf(format, args...)})
	}
	var tags []string
	for _, tag := range req.Tags {
		switch {
		case !names.ValidTag(tag):
			refuse(diag.CodeTag, req.Image+":"+tag, "%s", names.CheckTag(tag))
		case tag == Latest && !o.allowLatest:
			refuse(diag.CodeTag, req.Image+":"+tag, "tag latest is refused: it names whatever was pushed last, not a reviewed release (allow it explicitly with --allow-latest)")
		case !slices.Contains(tags, tag):
			tags = append(tags, tag)
		}
	}
	var skipped []Skip
	known := map[string]v1.Hash{} // tag -> digest, from the registry's tag listing
	if req.TagFilter != nil {
		all, digests, err := reg.ListTags(ctx, repo)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
		}
		slices.Sort(all)
		matched := 0
		for _, tag := range all {
			if !req.TagFilter.MatchString(tag) {
				continue
			}
			matched++
			if tag == Latest && !o.allowLatest {
				skipped = append(skipped, Skip{Tag: tag, Digest: digests[tag].String(), Reason: "latest is only added with --allow-latest"})
				continue
			}
			if !slices.Contains(tags, tag) {
				tags = append(tags, tag)
			}
			if d, ok := digests[tag]; ok {
				known[tag] = d
			}
		}
		if matched == 0 {
			refuse(diag.CodeTag, req.Image, "no tag of %s matches %s", repo, req.TagFilter)
		}
	}
	slices.Sort(tags)

	// Look up what the listing did not tell, a few requests at a time.
	var mu sync.Mutex
	found := map[string]v1.Hash{}
	for tag, d := range known {
		found[tag] = d
	}
	var missing []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	head := func(ref name.Reference, key string) {
		g.Go(func() error {
			desc, err := reg.Resolve(gctx, ref)
			if err != nil && !errors.Is(err, regerr.ErrNotFound) {
				return fmt.Errorf("looking up %s: %w", ref, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missing = append(missing, key)
				return nil
			}
			found[key] = desc.Digest
			return nil
		})
	}
	for _, tag := range tags {
		if _, ok := found[tag]; !ok {
			head(repo.Tag(tag), tag)
		}
	}
	for _, d := range req.Digests {
		if msg := names.CheckDigest(d.String()); msg != "" {
			refuse(diag.CodeDigest, req.Image+"@"+d.String(), "%s", msg)
			continue
		}
		head(repo.Digest(d.String()), d.String())
	}
	if err := g.Wait(); err != nil {
		return nil, nil, nil, err
	}
	slices.Sort(missing)
	for _, key := range missing {
		if strings.HasPrefix(key, "sha256:") {
			refuse(diag.CodeDigest, req.Image+"@"+key, "digest %s is not in %s", key, repo)
		} else {
			refuse(diag.CodeTag, req.Image+":"+key, "tag %s is not in %s", key, repo)
		}
	}

	byDigest := map[v1.Hash]*Addition{}
	var adds []*Addition
	add := func(d v1.Hash) *Addition {
		a := byDigest[d]
		if a == nil {
			a = &Addition{Digest: d}
			byDigest[d] = a
			adds = append(adds, a)
		}
		return a
	}
	for _, tag := range tags {
		if d, ok := found[tag]; ok {
			a := add(d)
			a.Tags = append(a.Tags, tag)
		}
	}
	for _, d := range req.Digests {
		if h, ok := found[d.String()]; ok {
			add(h)
		}
	}
	out := make([]Addition, len(adds))
	for i, a := range adds {
		out[i] = *a
	}
	return out, skipped, probs, nil
}

// check reads the edited project back with pkg/manifest and validates the
// directory with it: the edit must not add a validation error.
func (p *project) check(out []byte) error {
	tmp, err := os.MkdirTemp("", "promoter-manifest-add-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var reg strings.Builder
	reg.WriteString("registries:\n")
	for _, r := range p.m.Registries {
		fmt.Fprintf(&reg, "- name: %s\n", strconv.Quote(r.Name))
		if r.Src {
			reg.WriteString("  src: true\n")
		}
	}
	mpath := filepath.Join(tmp, manifest.ThinManifestsDir, p.m.Project, manifest.ThinManifestFile)
	ipath := filepath.Join(tmp, manifest.ThinImagesDir, p.m.Project, manifest.ThinImagesFile)
	for path, body := range map[string][]byte{mpath: []byte(reg.String()), ipath: out} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			return err
		}
	}
	ms, probs := manifest.LoadThinDir(tmp)
	if len(probs) > 0 || len(ms) != 1 {
		return fmt.Errorf("internal error: the edited %s does not load cleanly: %v", p.imagesFile, probs)
	}
	edited := *p.m
	edited.Images = ms[0].Images
	edited.ImagesFile = p.imagesFile
	for i := range edited.Images {
		img := &edited.Images[i]
		img.Pos.File = p.imagesFile
		for j := range img.Digests {
			d := &img.Digests[j]
			d.Pos.File = p.imagesFile
			for k := range d.Tags {
				d.Tags[k].Pos.File = p.imagesFile
			}
		}
	}
	after := &manifest.Set{}
	for _, m := range p.set.Manifests {
		if m == p.m {
			m = &edited
		}
		after.Manifests = append(after.Manifests, m)
	}
	for _, pr := range p.set.Problems {
		if pr.Pos.File != p.imagesFile {
			after.Problems = append(after.Problems, pr)
		}
	}
	before := errorCounts(validate.Validate(p.set).Problems)
	var added []diag.Problem
	for _, pr := range validate.Validate(after).Problems {
		k := errorKey(pr)
		if pr.Severity != diag.SeverityError {
			continue
		}
		if before[k] > 0 {
			before[k]--
			continue
		}
		added = append(added, pr)
	}
	if len(added) > 0 {
		return &RefusedError{Problems: added}
	}
	return nil
}

type problemKey struct {
	code  diag.Code
	entry string
}

func errorKey(p diag.Problem) problemKey { return problemKey{p.Code, p.Entry} }

func errorCounts(ps []diag.Problem) map[problemKey]int {
	out := map[problemKey]int{}
	for _, p := range ps {
		if p.Severity == diag.SeverityError {
			out[errorKey(p)]++
		}
	}
	return out
}
