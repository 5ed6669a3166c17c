// Package state is the opt-in record of what promotion runs verified in
// the destinations (`--state PATH`): per destination repository, which tag
// pointed at which digest, and when that was last seen. A later run trusts
// an edge verified within the maximum age while the tag is still listed,
// so that a no-op costs one tag list per repository instead of a HEAD per
// edge.
//
// The trade-off: the state cannot see a tag moved by someone else (a tag
// list does not say where a tag points). `drift`, or a periodic run without
// --state, is what catches that.
//
// Files are written atomically (a temporary file, then rename). Sharded
// runs each write their own file next to PATH and read all of them, newest
// record winning, so no two processes ever write one file.
package state

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// header is the first line of a state file.
const header = "promoter-state v1"

// Record is one verified edge: in repository Repo, Tag pointed at Digest at
// VerifiedAt. Tag is empty for an image verified by digest.
type Record struct {
	Repo       string
	Tag        string
	Digest     v1.Hash
	VerifiedAt time.Time
}

// entry is a record without its repository and tag (the map keys).
type entry struct {
	digest [32]byte
	at     int64 // Unix seconds
}

// Store holds the records of every state file read, and the observations
// of this run. It is safe for concurrent use.
type Store struct {
	mu     sync.Mutex
	byRepo map[string]map[string]entry // repo -> tag ("" + "@" + digest hex for digest-only) -> entry
}

// New returns an empty store.
func New() *Store { return &Store{byRepo: map[string]map[string]entry{}} }

// FileError is a state file that cannot be used; the run should go on
// without trusting it (a state is an optimisation, never a requirement).
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("state file %s: %v", e.Path, e.Err) }

func (e *FileError) Unwrap() error { return e.Err }

// Files returns the state files of path: path itself and every shard file
// next to it (path.shard-*), those that exist, sorted.
func Files(path string) ([]string, error) {
	var out []string
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
		out = append(out, path)
	}
	matches, err := filepath.Glob(globEscape(path) + ".shard-*")
	if err != nil {
		return nil, err
	}
	for _, m := range matches {
		if strings.HasSuffix(m, ".tmp") {
			continue
		}
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out, nil
}

// globEscape escapes the glob metacharacters of a literal path.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ShardFile is the file shard index of count writes: path itself when
// unsharded.
func ShardFile(path string, index, count int) string {
	if count <= 1 {
		return path
	}
	return fmt.Sprintf("%s.shard-%d-of-%d", path, index, count)
}

// Load reads every state file of path (see Files) into a store, the newest
// record of an edge winning. Files that cannot be read or parsed are
// skipped and returned as *FileError (joined): their edges are then
// verified again, which is always safe.
func Load(path string) (*Store, error) {
	s := New()
	files, err := Files(path)
	if err != nil {
		return s, &FileError{Path: path, Err: err}
	}
	var errs []error
	for _, f := range files {
		if err := s.readFile(f); err != nil {
			errs = append(errs, &FileError{Path: f, Err: err})
		}
	}
	return s, errors.Join(errs...)
}

// readFile merges one file into the store. A file is all or nothing:
// records are merged only once the whole file parsed.
func (s *Store) readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != header {
		return fmt.Errorf("not a state file (want first line %q)", header)
	}
	fresh := New()
	var repo map[string]entry
	line := 1
	for sc.Scan() {
		line++
		text := sc.Text()
		if name, ok := strings.CutPrefix(text, "R "); ok {
			repo = fresh.byRepo[name]
			if repo == nil {
				repo = map[string]entry{}
				fresh.byRepo[name] = repo
			}
			continue
		}
		if repo == nil {
			return fmt.Errorf("line %d: record before any repository", line)
		}
		tag, rest, ok1 := strings.Cut(text, "\t")
		hexDigest, at, ok2 := strings.Cut(rest, "\t")
		if !ok1 || !ok2 {
			return fmt.Errorf("line %d: want TAG<tab>DIGEST<tab>TIME", line)
		}
		var e entry
		if n, err := hex.Decode(e.digest[:], []byte(hexDigest)); err != nil || n != 32 {
			return fmt.Errorf("line %d: bad digest %q", line, hexDigest)
		}
		if e.at, err = strconv.ParseInt(at, 10, 64); err != nil {
			return fmt.Errorf("line %d: bad time %q", line, at)
		}
		key := tag
		if tag == "" {
			key = "@" + hexDigest
		}
		repo[key] = e
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if err := zr.Close(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, recs := range fresh.byRepo {
		dst := s.byRepo[name]
		if dst == nil {
			s.byRepo[name] = recs
			continue
		}
		for k, e := range recs {
			if old, ok := dst[k]; !ok || e.at > old.at {
				dst[k] = e
			}
		}
	}
	return nil
}

// Observe records that in repo, tag (empty: the image by digest) points at
// d, seen at t.
func (s *Store) Observe(repo, tag string, d v1.Hash, t time.Time) {
	e, ok := toEntry(d, t)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := s.byRepo[repo]
	if recs == nil {
		recs = map[string]entry{}
		s.byRepo[repo] = recs
	}
	recs[key(tag, e.digest)] = e
}

// Forget drops what the store says about tag in repo (it was found absent).
func (s *Store) Forget(repo, tag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byRepo[repo], tag)
}

// Tag returns the digest tag pointed at in repo and when that was verified.
func (s *Store) Tag(repo, tag string) (v1.Hash, time.Time, bool) {
	s.mu.Lock()
	e, ok := s.byRepo[repo][tag]
	s.mu.Unlock()
	if !ok || tag == "" {
		return v1.Hash{}, time.Time{}, false
	}
	return fromEntry(e)
}

// Image returns when the image d was last verified in repo, by digest.
func (s *Store) Image(repo string, d v1.Hash) (time.Time, bool) {
	e, ok := toEntry(d, time.Time{})
	if !ok {
		return time.Time{}, false
	}
	s.mu.Lock()
	got, found := s.byRepo[repo][key("", e.digest)]
	s.mu.Unlock()
	if !found {
		return time.Time{}, false
	}
	return time.Unix(got.at, 0), true
}

// Prune drops the records verified before t: past the maximum age they
// are never trusted again, so keeping them only grows the file.
func (s *Store) Prune(t time.Time) {
	cut := t.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	for repo, recs := range s.byRepo {
		for k, e := range recs {
			if e.at < cut {
				delete(recs, k)
			}
		}
		if len(recs) == 0 {
			delete(s.byRepo, repo)
		}
	}
}

// Len is the number of records.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.byRepo {
		n += len(r)
	}
	return n
}

// Records returns every record, sorted by repository, tag and digest.
func (s *Store) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, repo := range slices.Sorted(maps.Keys(s.byRepo)) {
		recs := s.byRepo[repo]
		for _, k := range slices.Sorted(maps.Keys(recs)) {
			d, at, _ := fromEntry(recs[k])
			tag := k
			if strings.HasPrefix(k, "@") {
				tag = ""
			}
			out = append(out, Record{Repo: repo, Tag: tag, Digest: d, VerifiedAt: at})
		}
	}
	return out
}

// Save writes the records of the repositories keep accepts (nil: all) to
// path atomically: a temporary file in the same directory, synced, then
// renamed over path. The output is sorted, so the same records give the
// same bytes.
func (s *Store) Save(path string, keep func(repo string) bool) (err error) {
	if fi, lerr := os.Lstat(path); lerr == nil && !fi.Mode().IsRegular() {
		return &FileError{Path: path, Err: errors.New("not a regular file (a symlink or a directory): not overwritten")}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &FileError{Path: path, Err: err}
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := s.write(zw, keep); err != nil {
		return &FileError{Path: path, Err: err}
	}
	if err := zw.Close(); err != nil {
		return &FileError{Path: path, Err: err}
	}
	if err := bw.Flush(); err != nil {
		return &FileError{Path: path, Err: err}
	}
	if err := tmp.Sync(); err != nil {
		return &FileError{Path: path, Err: err}
	}
	if err := tmp.Close(); err != nil {
		return &FileError{Path: path, Err: err}
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return &FileError{Path: path, Err: err}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return &FileError{Path: path, Err: err}
	}
	return nil
}

func (s *Store) write(w io.Writer, keep func(string) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, header)
	buf := make([]byte, 0, 256)
	for _, repo := range slices.Sorted(maps.Keys(s.byRepo)) {
		if keep != nil && !keep(repo) {
			continue
		}
		recs := s.byRepo[repo]
		if len(recs) == 0 {
			continue
		}
		fmt.Fprintf(bw, "R %s\n", repo)
		for _, k := range slices.Sorted(maps.Keys(recs)) {
			e := recs[k]
			buf = buf[:0]
			if !strings.HasPrefix(k, "@") {
				buf = append(buf, k...)
			}
			buf = append(buf, '\t')
			buf = hex.AppendEncode(buf, e.digest[:])
			buf = append(buf, '\t')
			buf = strconv.AppendInt(buf, e.at, 10)
			buf = append(buf, '\n')
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

func key(tag string, d [32]byte) string {
	if tag != "" {
		return tag
	}
	return "@" + hex.EncodeToString(d[:])
}

func toEntry(d v1.Hash, t time.Time) (entry, bool) {
	var e entry
	if d.Algorithm != "sha256" {
		return e, false
	}
	if n, err := hex.Decode(e.digest[:], []byte(d.Hex)); err != nil || n != 32 {
		return e, false
	}
	e.at = t.Unix()
	return e, true
}

func fromEntry(e entry) (v1.Hash, time.Time, bool) {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(e.digest[:])}, time.Unix(e.at, 0), true
}

// Fresh reports whether a record verified at t is still trusted at now
// under maxAge. Each edge's own limit is between half of maxAge and all of
// it, picked from the edge's name, so that records verified in one run
// fall due over several later runs instead of all on one day.
func Fresh(repo, tag string, t, now time.Time, maxAge time.Duration) bool {
	if maxAge <= 0 {
		return false
	}
	h := sha256.Sum256([]byte(repo + "\x00" + tag))
	frac := float64(binary.BigEndian.Uint64(h[:8])>>11) / float64(1<<53) // [0, 1)
	limit := time.Duration(float64(maxAge) * (0.5 + 0.5*frac))
	age := now.Sub(t)
	return age >= 0 && age < limit
}
