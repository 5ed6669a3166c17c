package state_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/state"
)

func hash(t *testing.T, c string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash("sha256:" + strings.Repeat(c, 64))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	s := state.New()
	s.Observe("prod.example/app", "v1", hash(t, "a"), t0)
	s.Observe("prod.example/app", "v2", hash(t, "b"), t0.Add(time.Hour))
	s.Observe("prod.example/app", "", hash(t, "c"), t0)
	s.Observe("prod.example/other", "v1", hash(t, "a"), t0)
	if err := s.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := state.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s.Records(), got.Records()); diff != "" {
		t.Errorf("records after a round trip (-saved +loaded):\n%s", diff)
	}
	if d, at, ok := got.Tag("prod.example/app", "v2"); !ok || d != hash(t, "b") || !at.Equal(t0.Add(time.Hour)) {
		t.Errorf("Tag(app, v2) = %v %v %v", d, at, ok)
	}
	if at, ok := got.Image("prod.example/app", hash(t, "c")); !ok || !at.Equal(t0) {
		t.Errorf("Image(app, c) = %v %v", at, ok)
	}
	if _, _, ok := got.Tag("prod.example/app", "v3"); ok {
		t.Error("a tag never recorded is known")
	}
	// Same records, same bytes; no temporary file left.
	if err := got.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(path)
	if string(first) != string(second) {
		t.Error("saving the same records gave other bytes")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only the state file", len(entries))
	}
	// keep filters repositories.
	if err := got.Save(path, func(r string) bool { return r == "prod.example/other" }); err != nil {
		t.Fatal(err)
	}
	only, err := state.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := only.Len(); n != 1 {
		t.Errorf("filtered save kept %d records, want 1", n)
	}
}

func TestShardFilesNewestWins(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	a, b := state.New(), state.New()
	a.Observe("prod.example/app", "v1", hash(t, "a"), t0)
	a.Observe("prod.example/app", "v2", hash(t, "a"), t0.Add(2*time.Hour))
	b.Observe("prod.example/app", "v1", hash(t, "b"), t0.Add(time.Hour))
	b.Observe("prod.example/app", "v2", hash(t, "b"), t0)
	if err := a.Save(state.ShardFile(path, 0, 2), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(state.ShardFile(path, 1, 2), nil); err != nil {
		t.Fatal(err)
	}
	files, err := state.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{path + ".shard-0-of-2", path + ".shard-1-of-2"}, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	got, err := state.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if d, _, _ := got.Tag("prod.example/app", "v1"); d != hash(t, "b") {
		t.Errorf("v1: %v, want the newer record's digest", d)
	}
	if d, _, _ := got.Tag("prod.example/app", "v2"); d != hash(t, "a") {
		t.Errorf("v2: %v, want the newer record's digest", d)
	}
}

func TestLoadBadFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	good := state.New()
	good.Observe("prod.example/app", "v1", hash(t, "a"), t0)
	if err := good.Save(state.ShardFile(path, 0, 2), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state.ShardFile(path, 1, 2), []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := state.Load(path)
	var fe *state.FileError
	if !errors.As(err, &fe) || fe.Path != state.ShardFile(path, 1, 2) {
		t.Fatalf("error %v: want a FileError for the bad shard file", err)
	}
	if got.Len() != 1 {
		t.Errorf("%d records, want the good file's 1", got.Len())
	}
	// No state yet: an empty store, no error.
	empty, err := state.Load(filepath.Join(dir, "none"))
	if err != nil || empty.Len() != 0 {
		t.Errorf("missing state: %d records, %v", empty.Len(), err)
	}
	// A symlink is never overwritten.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(state.ShardFile(path, 0, 2), link); err != nil {
		t.Fatal(err)
	}
	if err := good.Save(link, nil); err == nil {
		t.Error("saved through a symlink")
	}
}

func TestFresh(t *testing.T) {
	const maxAge = 24 * time.Hour
	half, full := 0, 0
	for i := range 1000 {
		tag := "v" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		if !state.Fresh("prod.example/app", tag, t0, t0.Add(maxAge/2-time.Second), maxAge) {
			t.Fatalf("%s: not fresh before half the max age", tag)
		}
		if state.Fresh("prod.example/app", tag, t0, t0.Add(maxAge), maxAge) {
			t.Fatalf("%s: fresh at the max age", tag)
		}
		if state.Fresh("prod.example/app", tag, t0, t0.Add(-time.Minute), maxAge) {
			t.Fatalf("%s: fresh when verified in the future", tag)
		}
		if state.Fresh("prod.example/app", tag, t0, t0.Add(3*maxAge/4), maxAge) {
			full++
		} else {
			half++
		}
	}
	// Re-verification spreads: at three quarters of the max age about half
	// the edges are due.
	if half < 350 || full < 350 {
		t.Errorf("at 3/4 of the max age %d due and %d fresh: want both near 500", half, full)
	}
	if state.Fresh("r", "t", t0, t0, 0) {
		t.Error("fresh with max age 0")
	}
}

func TestPrune(t *testing.T) {
	s := state.New()
	s.Observe("r", "old", hash(t, "a"), t0)
	s.Observe("r", "new", hash(t, "b"), t0.Add(2*time.Hour))
	s.Observe("gone", "old", hash(t, "c"), t0)
	s.Prune(t0.Add(time.Hour))
	var got []string
	for _, r := range s.Records() {
		got = append(got, r.Repo+":"+r.Tag)
	}
	if diff := cmp.Diff([]string{"r:new"}, got); diff != "" {
		t.Errorf("after pruning (-want +got):\n%s", diff)
	}
}
