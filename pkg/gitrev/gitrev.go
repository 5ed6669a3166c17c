// Package gitrev reads promoter manifests as they are at a git revision, so
// that a change (a pull request, a merge) can be compared with its base.
//
// It runs the git command line (no git library) and reads objects straight
// from the object database: the work tree, the index and the checkout are
// never touched, and export attributes (export-ignore, export-subst) and
// line-ending filters play no part. The files of each input are written to a
// temporary directory, read there with package manifest exactly as the work
// tree is read, and every position is then renamed back to the path the
// caller gave, so that both states name the same files the same way.
package gitrev

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/manifest"
)

// Revision is a git revision resolved in the repository holding the inputs.
type Revision struct {
	// Name is the revision as given: a commit, a branch, HEAD^, ...
	Name string `json:"name"`
	// Commit is the full hash of the commit it resolves to.
	Commit string `json:"commit"`
	// Root is the repository's top-level directory.
	Root string `json:"-"`
}

// Short is the commit hash shortened to 12 hex digits, for messages.
func (r Revision) Short() string {
	if len(r.Commit) > 12 {
		return r.Commit[:12]
	}
	return r.Commit
}

// String renders "NAME (SHORT)", or only the hash when the name is one.
func (r Revision) String() string {
	if r.Name == "" || strings.HasPrefix(r.Commit, r.Name) {
		return r.Short()
	}
	return r.Name + " (" + r.Short() + ")"
}

// MissingRevisionError says the revision is not in the local clone, typically
// because a CI job checked out a shallow clone without the base commit.
type MissingRevisionError struct {
	Rev     string
	Root    string
	Shallow bool
	// Remote and Ref are what to fetch: for a remote-tracking name
	// ("origin/main") its remote and branch, else the clone's remote
	// (origin when there are several) and Rev. Remote is empty when the
	// clone has no remote.
	Remote, Ref string
}

func (e *MissingRevisionError) Error() string {
	var fetch string
	depth := ""
	if e.Shallow {
		depth = "--depth=1 "
	}
	switch {
	case e.Remote == "":
		fetch = "this clone has no remote to fetch it from: fetch it into the clone, or name a revision it has"
	case strings.ContainsAny(e.Rev, "^~@:"):
		fetch = "deepen the history with `git fetch --deepen=N` (or `git fetch --unshallow`)"
		if !e.Shallow {
			fetch = fmt.Sprintf("fetch the history it names with `git fetch %s`", e.Remote)
		}
	case e.Shallow:
		fetch = fmt.Sprintf("fetch it with `git fetch %s%s %s` (or `git fetch --unshallow`)", depth, e.Remote, e.Ref)
	default:
		fetch = fmt.Sprintf("fetch it with `git fetch %s %s`", e.Remote, e.Ref)
	}
	clone := "the local clone"
	if e.Shallow {
		clone = "the local clone, which is shallow"
	}
	return fmt.Sprintf("git revision %q is not in %s (%s): %s", e.Rev, clone, e.Root, fetch)
}

// fetchesAllBranches reports whether `git fetch REMOTE BRANCH` updates
// REMOTE/BRANCH: the remote's fetch refspecs map every branch.
func fetchesAllBranches(ctx context.Context, root, remote string) bool {
	out, err := git(ctx, root, "config", "--get-all", "remote."+remote+".fetch")
	if err != nil {
		return false
	}
	for _, spec := range strings.Fields(string(out)) {
		if strings.TrimPrefix(spec, "+") == "refs/heads/*:refs/remotes/"+remote+"/*" {
			return true
		}
	}
	return false
}

// fetchSource returns the remote and ref to fetch for rev, given the
// clone's remotes: "origin/x" (or "refs/remotes/origin/x") is branch x of
// origin, since `git fetch origin origin/x` names a branch origin does not
// have; anything else is fetched as it is from origin, or from the only
// remote.
func fetchSource(remotes []string, rev string) (remote, ref string) {
	for _, r := range remotes {
		for _, prefix := range []string{"refs/remotes/" + r + "/", r + "/"} {
			if b, ok := strings.CutPrefix(rev, prefix); ok && b != "" && len(r) > len(remote) {
				remote, ref = r, b
			}
		}
	}
	if remote != "" {
		return remote, ref
	}
	switch {
	case slices.Contains(remotes, "origin"):
		return "origin", rev
	case len(remotes) == 1:
		return remotes[0], rev
	case len(remotes) > 1:
		return "REMOTE", rev
	}
	return "", rev
}

// NotInRepositoryError says an input is not inside a git work tree.
type NotInRepositoryError struct {
	Path   string
	Detail string // what git said
}

func (e *NotInRepositoryError) Error() string {
	msg := fmt.Sprintf("%s is not inside a git work tree", e.Path)
	if e.Detail != "" {
		msg += " (git: " + e.Detail + ")"
	}
	return msg
}

// GitError is a git command that failed, with what it wrote on stderr.
type GitError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *GitError) Error() string {
	msg := "git " + strings.Join(e.Args, " ") + ": " + e.Err.Error()
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *GitError) Unwrap() error { return e.Err }

// Snapshot is what the inputs held at a revision.
type Snapshot struct {
	Rev Revision
	// Set is the manifests read at the revision, with positions naming the
	// paths the caller gave.
	Set *manifest.Set
	// Absent lists the inputs that did not exist at the revision (the change
	// adds them); they contribute nothing to Set.
	Absent []string
}

// Load reads the inputs as they are at rev in the git repository holding
// them (all inputs must be in one repository). Each input is mapped to its
// path inside the repository, so manifests in a sub-folder work, whatever
// the current directory.
func Load(ctx context.Context, rev string, in manifest.Inputs) (*Snapshot, error) {
	if rev == "" {
		return nil, errors.New("empty git revision")
	}
	if strings.HasPrefix(rev, "-") {
		return nil, fmt.Errorf("git revision %q starts with '-'", rev)
	}
	type input struct {
		path string // as given
		rel  string // slash-separated, inside the repository; "" is its root
		thin bool
	}
	var inputs []input
	root := ""
	add := func(p string, thin bool) error {
		r, rel, err := locate(ctx, p)
		if err != nil {
			return err
		}
		if root == "" {
			root = r
		} else if r != root {
			return fmt.Errorf("the inputs are in different git repositories (%s and %s)", root, r)
		}
		inputs = append(inputs, input{path: p, rel: rel, thin: thin})
		return nil
	}
	for _, f := range in.Files {
		if err := add(f, false); err != nil {
			return nil, err
		}
	}
	for _, d := range in.ThinDirs {
		if err := add(d, true); err != nil {
			return nil, err
		}
	}
	if len(inputs) == 0 {
		return nil, errors.New("no inputs")
	}
	commit, err := resolve(ctx, root, rev)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{Rev: Revision{Name: rev, Commit: commit, Root: root}, Set: &manifest.Set{}}

	rels := make([]string, 0, len(inputs))
	for _, i := range inputs {
		rels = append(rels, i.rel)
	}
	entries, err := listTree(ctx, root, commit, rels)
	if err != nil {
		return nil, err
	}
	present := map[string]bool{}
	for _, i := range inputs {
		present[i.rel] = exists(entries, i.rel)
	}
	// Of a thin directory, only what the loader may read is written: its
	// manifests/ and images/ (the loader never follows imagesPath).
	entries = slices.DeleteFunc(entries, func(e treeEntry) bool {
		return !slices.ContainsFunc(inputs, func(i input) bool {
			if !under(e.path, i.rel) {
				return false
			}
			if !i.thin {
				return true
			}
			rest := strings.TrimPrefix(strings.TrimPrefix(e.path, i.rel), "/")
			return under(rest, manifest.ThinManifestsDir) || under(rest, manifest.ThinImagesDir)
		})
	})
	tmp, err := os.MkdirTemp("", "promoter-gitrev-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := materialise(ctx, root, tmp, entries); err != nil {
		return nil, err
	}

	var load manifest.Inputs
	var renames []rename
	for _, i := range inputs {
		if !present[i.rel] {
			snap.Absent = append(snap.Absent, i.path)
			continue
		}
		at := filepath.Join(tmp, filepath.FromSlash(i.rel))
		if i.thin {
			// It exists, even when nothing in it is a manifest.
			if err := os.MkdirAll(at, 0o755); err != nil {
				return nil, err
			}
			load.ThinDirs = append(load.ThinDirs, at)
		} else {
			load.Files = append(load.Files, at)
		}
		renames = append(renames, rename{from: at, to: i.path, file: !i.thin})
	}
	if len(renames) == 0 {
		return snap, nil
	}
	// Anything else under tmp is named by its place in the repository.
	renames = append(renames, rename{from: tmp, to: root})
	slices.SortStableFunc(renames, func(a, b rename) int { return cmp.Compare(len(b.from), len(a.from)) })
	snap.Set = manifest.Load(load)
	renameSet(snap.Set, renames)
	return snap, nil
}

// locate finds the repository holding path and path's place in it.
func locate(ctx context.Context, path string) (root, rel string, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", err
	}
	// Resolve symbolic links the way git does for its top level, walking up
	// to the nearest existing directory for a path that no longer exists.
	resolved, dir := abs, abs
	for suffix := ""; ; {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			resolved = filepath.Join(r, suffix)
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		suffix = filepath.Join(filepath.Base(dir), suffix)
		dir = parent
	}
	cwd := resolved
	if st, err := os.Stat(cwd); err != nil || !st.IsDir() {
		cwd = filepath.Dir(cwd)
		for {
			if st, err := os.Stat(cwd); err == nil && st.IsDir() {
				break
			}
			parent := filepath.Dir(cwd)
			if parent == cwd {
				break
			}
			cwd = parent
		}
	}
	out, err := git(ctx, cwd, "rev-parse", "--show-toplevel")
	if err != nil {
		var ge *GitError
		if errors.As(err, &ge) && ge.Stderr != "" {
			return "", "", &NotInRepositoryError{Path: path, Detail: strings.TrimSpace(ge.Stderr)}
		}
		return "", "", err
	}
	root = strings.TrimSpace(string(out))
	if root == "" {
		return "", "", &NotInRepositoryError{Path: path}
	}
	r, err := filepath.EvalSymlinks(root)
	if err == nil {
		root = r
	}
	rel, err = filepath.Rel(root, resolved)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", "", &NotInRepositoryError{Path: path, Detail: "outside the work tree " + root}
	}
	if rel == "." {
		rel = ""
	}
	return root, filepath.ToSlash(rel), nil
}

// resolve turns rev into a commit hash, or says why it cannot.
func resolve(ctx context.Context, root, rev string) (string, error) {
	out, err := git(ctx, root, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err == nil {
		if c := strings.TrimSpace(string(out)); c != "" {
			return c, nil
		}
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return "", err // git itself could not run
	}
	shallow := false
	if out, err := git(ctx, root, "rev-parse", "--is-shallow-repository"); err == nil {
		shallow = strings.TrimSpace(string(out)) == "true"
	}
	var remotes []string
	if out, err := git(ctx, root, "remote"); err == nil {
		remotes = strings.Fields(string(out))
	}
	remote, ref := fetchSource(remotes, rev)
	if ref != rev && !fetchesAllBranches(ctx, root, remote) {
		// A single-branch clone (`git clone --depth`, actions/checkout)
		// does not update origin/x on `git fetch origin x`: name the
		// remote-tracking ref to write.
		ref += ":refs/remotes/" + remote + "/" + ref
	}
	return "", &MissingRevisionError{Rev: rev, Root: root, Shallow: shallow, Remote: remote, Ref: ref}
}

// treeEntry is one blob of the tree at the revision.
type treeEntry struct {
	mode   string
	object string
	path   string // slash-separated, from the repository root
}

// listTree lists the blobs at commit under the given paths ("" is the whole
// tree). Submodules are skipped: they hold no manifests of this repository.
func listTree(ctx context.Context, root, commit string, rels []string) ([]treeEntry, error) {
	args := []string{"--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", commit}
	whole := slices.Contains(rels, "")
	if !whole {
		args = append(args, "--")
		args = append(args, rels...)
	}
	out, err := git(ctx, root, args...)
	if err != nil {
		return nil, err
	}
	var entries []treeEntry
	for rec := range bytes.SplitSeq(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, path, ok := bytes.Cut(rec, []byte{'\t'})
		f := strings.Fields(string(meta))
		if !ok || len(f) != 3 {
			return nil, fmt.Errorf("git ls-tree: unexpected line %q", rec)
		}
		if f[1] != "blob" {
			continue
		}
		e := treeEntry{mode: f[0], object: f[2], path: string(path)}
		if whole || slices.ContainsFunc(rels, func(r string) bool { return under(e.path, r) }) {
			entries = append(entries, e)
		}
	}
	return entries, nil
}

// under reports whether path is rel or inside it.
func under(path, rel string) bool {
	return rel == "" || path == rel || strings.HasPrefix(path, rel+"/")
}

func exists(entries []treeEntry, rel string) bool {
	return slices.ContainsFunc(entries, func(e treeEntry) bool { return under(e.path, rel) })
}

// materialise writes the blobs under dir, read in one `git cat-file --batch`.
func materialise(ctx context.Context, root, dir string, entries []treeEntry) error {
	if len(entries) == 0 {
		return nil
	}
	var req bytes.Buffer
	for _, e := range entries {
		req.WriteString(e.object + "\n")
	}
	cmd := exec.CommandContext(ctx, "git", "-C", root, "cat-file", "--batch")
	cmd.Stdin = &req
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return &GitError{Args: []string{"cat-file", "--batch"}, Err: err}
	}
	werr := writeBlobs(bufio.NewReaderSize(stdout, 1<<16), dir, entries)
	if werr != nil {
		_, _ = io.Copy(io.Discard, stdout)
	}
	if err := cmd.Wait(); err != nil {
		return &GitError{Args: []string{"cat-file", "--batch"}, Stderr: stderr.String(), Err: err}
	}
	return werr
}

func writeBlobs(r *bufio.Reader, dir string, entries []treeEntry) error {
	for _, e := range entries {
		header, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("git cat-file: reading %s: %w", e.path, err)
		}
		f := strings.Fields(header)
		if len(f) != 3 || f[0] != e.object {
			return fmt.Errorf("git cat-file: unexpected answer %q for %s", strings.TrimSpace(header), e.path)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("git cat-file: bad size in %q", strings.TrimSpace(header))
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(r, data); err != nil {
			return fmt.Errorf("git cat-file: reading %s: %w", e.path, err)
		}
		if b, err := r.ReadByte(); err != nil || b != '\n' {
			return fmt.Errorf("git cat-file: %s: missing end of object", e.path)
		}
		local := filepath.FromSlash(e.path)
		if !filepath.IsLocal(local) {
			return fmt.Errorf("git tree holds an unsafe path %q", e.path)
		}
		target := filepath.Join(dir, local)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		switch e.mode {
		case "120000": // a symbolic link, as a checkout would make it
			err = os.Symlink(string(data), target)
		case "100755":
			err = os.WriteFile(target, data, 0o755)
		default:
			err = os.WriteFile(target, data, 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// git runs a git command in dir and returns its standard output.
func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &GitError{Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// rename maps a materialised path back to the caller's name for it.
type rename struct {
	from, to string
	file     bool // from is a file: only an exact match is renamed
}

func (r rename) apply(p string) (string, bool) {
	if p == r.from {
		return r.to, true
	}
	if !r.file && strings.HasPrefix(p, r.from+string(filepath.Separator)) {
		return filepath.Join(r.to, p[len(r.from)+1:]), true
	}
	return p, false
}

// renameSet gives every path in the set the name the caller used, and sorts
// it again as manifest.Load does.
func renameSet(s *manifest.Set, rs []rename) {
	path := func(p string) string {
		for _, r := range rs {
			if out, ok := r.apply(p); ok {
				return out
			}
		}
		return p
	}
	pos := func(p *diag.Position) { p.File = path(p.File) }
	for _, m := range s.Manifests {
		m.File = path(m.File)
		if m.ImagesFile != "" {
			m.ImagesFile = path(m.ImagesFile)
		}
		pos(&m.Pos)
		for i := range m.Registries {
			pos(&m.Registries[i].Pos)
		}
		for i := range m.Images {
			img := &m.Images[i]
			pos(&img.Pos)
			for j := range img.Digests {
				d := &img.Digests[j]
				pos(&d.Pos)
				for k := range d.Tags {
					pos(&d.Tags[k].Pos)
				}
			}
		}
	}
	for i := range s.Problems {
		p := &s.Problems[i]
		pos(&p.Pos)
		if p.Related != nil {
			rel := *p.Related
			pos(&rel)
			p.Related = &rel
		}
		for _, r := range rs {
			p.Message = strings.ReplaceAll(p.Message, r.from, r.to)
		}
	}
	slices.SortStableFunc(s.Manifests, func(a, b *manifest.Manifest) int { return cmp.Compare(a.File, b.File) })
	diag.Sort(s.Problems)
}
