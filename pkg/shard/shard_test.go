package shard_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/shard"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name  string
		flags shard.Flags
		env   map[string]string
		want  string // "index/count from/from", or "error: substring"
	}{
		{name: "nothing", want: "0/1 /"},
		{name: "flags", flags: shard.Flags{Index: 2, Count: 4, IndexSet: true, CountSet: true}, want: "2/4 --shard-index/--shard-count"},
		{name: "flags win over environment", flags: shard.Flags{Index: 1, Count: 3, IndexSet: true, CountSet: true},
			env: map[string]string{"PROMOTER_SHARD_INDEX": "0", "PROMOTER_SHARD_COUNT": "8", "JOB_COMPLETION_INDEX": "5"}, want: "1/3 --shard-index/--shard-count"},
		{name: "promoter environment", env: map[string]string{"PROMOTER_SHARD_INDEX": "3", "PROMOTER_SHARD_COUNT": "4"}, want: "3/4 PROMOTER_SHARD_INDEX/PROMOTER_SHARD_COUNT"},
		{name: "promoter index wins over indexed job", env: map[string]string{"PROMOTER_SHARD_INDEX": "1", "JOB_COMPLETION_INDEX": "2", "PROMOTER_SHARD_COUNT": "4"}, want: "1/4 PROMOTER_SHARD_INDEX/PROMOTER_SHARD_COUNT"},
		{name: "indexed job", env: map[string]string{"JOB_COMPLETION_INDEX": "0", "PROMOTER_SHARD_COUNT": "4"}, want: "0/4 JOB_COMPLETION_INDEX/PROMOTER_SHARD_COUNT"},
		{name: "gitlab is 1-based", env: map[string]string{"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "3"}, want: "0/3 CI_NODE_INDEX/CI_NODE_TOTAL"},
		{name: "gitlab last node", env: map[string]string{"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "3"}, want: "2/3 CI_NODE_INDEX/CI_NODE_TOTAL"},
		{name: "indexed job wins over gitlab", env: map[string]string{"JOB_COMPLETION_INDEX": "1", "CI_NODE_INDEX": "1", "PROMOTER_SHARD_COUNT": "2", "CI_NODE_TOTAL": "5"}, want: "1/2 JOB_COMPLETION_INDEX/PROMOTER_SHARD_COUNT"},
		{name: "count one without index", flags: shard.Flags{Count: 1, CountSet: true}, want: "0/1 /--shard-count"},
		{name: "count flag with index from environment", flags: shard.Flags{Count: 2, CountSet: true}, env: map[string]string{"JOB_COMPLETION_INDEX": "1"}, want: "1/2 JOB_COMPLETION_INDEX/--shard-count"},
		{name: "count without index", flags: shard.Flags{Count: 4, CountSet: true}, want: "error: no shard index"},
		{name: "environment count without index", env: map[string]string{"PROMOTER_SHARD_COUNT": "4"}, want: "error: no shard index"},
		{name: "indexed job without count", env: map[string]string{"JOB_COMPLETION_INDEX": "2"}, want: "error: no shard count"},
		{name: "index without count", flags: shard.Flags{Index: 0, IndexSet: true}, want: "error: no shard count"},
		{name: "index out of range", flags: shard.Flags{Index: 4, Count: 4, IndexSet: true, CountSet: true}, want: "error: out of range"},
		{name: "negative index", flags: shard.Flags{Index: -1, Count: 4, IndexSet: true, CountSet: true}, want: "error: out of range"},
		{name: "zero count", flags: shard.Flags{Index: 0, Count: 0, IndexSet: true, CountSet: true}, want: "error: want at least 1"},
		{name: "gitlab index zero", env: map[string]string{"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "3"}, want: "error: 1-based"},
		{name: "not a number", env: map[string]string{"PROMOTER_SHARD_INDEX": "one", "PROMOTER_SHARD_COUNT": "2"}, want: "error: not a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := shard.Resolve(tt.flags, func(k string) string { return tt.env[k] })
			var got string
			if err != nil {
				if !errors.Is(err, shard.ErrUsage) {
					t.Errorf("error %v is not a usage error", err)
				}
				if want, ok := strings.CutPrefix(tt.want, "error: "); ok && strings.Contains(err.Error(), want) {
					return
				}
				got = "error: " + err.Error()
			} else {
				got = fmt.Sprintf("%d/%d %s/%s", s.Index, s.Count, s.IndexFrom, s.CountFrom)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// group builds a group from "source@digest-letter" to destination
// repositories, with tags.
func group(t *testing.T, src string, digestLetter string, dests []string, tags ...string) *edge.Group {
	t.Helper()
	d := "sha256:" + strings.Repeat(digestLetter, 64)
	h, err := v1.NewHash(d)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(src, name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	g := &edge.Group{Image: src[strings.LastIndex(src, "/")+1:], Source: repo.Digest(d), Digest: h}
	for _, dn := range dests {
		r, err := name.NewRepository(dn, name.StrictValidation)
		if err != nil {
			t.Fatal(err)
		}
		g.Dests = append(g.Dests, r)
	}
	for _, tag := range tags {
		g.Tags = append(g.Tags, edge.Tag{Name: tag})
	}
	return g
}

func TestUnits(t *testing.T) {
	gs := []*edge.Group{
		group(t, "stg.example/a/app", "a", []string{"p1.example/app", "p2.example/app"}, "v1", "v2"),
		group(t, "stg.example/a/app", "b", []string{"p1.example/app"}, "v3"),
		group(t, "stg.example/a/tool", "c", []string{"p1.example/tool"}),
		// Two staging projects feeding one production name: one unit.
		group(t, "stg.example/b/shared", "d", []string{"p1.example/shared"}, "x"),
		group(t, "stg.example/a/shared", "e", []string{"p1.example/shared", "p2.example/other"}, "y"),
		group(t, "stg.example/c/other", "f", []string{"p2.example/other"}, "z"),
	}
	type unit struct {
		Name    string
		Sources []string
		Edges   int
		Groups  int
	}
	var got []unit
	for _, u := range shard.Units(gs) {
		got = append(got, unit{u.Name, u.Sources, u.Edges, len(u.Groups)})
	}
	want := []unit{
		{"stg.example/a/app", []string{"stg.example/a/app"}, 5, 2},
		{"stg.example/a/shared", []string{"stg.example/a/shared", "stg.example/b/shared", "stg.example/c/other"}, 4, 3},
		{"stg.example/a/tool", []string{"stg.example/a/tool"}, 1, 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("units (-want +got):\n%s", diff)
	}
}

func TestAssign(t *testing.T) {
	units := []shard.Unit{
		{Name: "a", Edges: 1}, {Name: "b", Edges: 10}, {Name: "c", Edges: 7}, {Name: "d", Edges: 7},
		{Name: "e", Edges: 3}, {Name: "f", Edges: 2}, {Name: "g", Edges: 1},
	}
	// Order b(10) c(7) d(7) e(3) f(2) a(1) g(1):
	// b->0 (10,0,0); c->1 (10,7,0); d->2 (10,7,7); e->1 (10,10,7);
	// f->2 (10,10,9); a->2 (10,10,10); g->0 (11,10,10).
	want := []int{2, 0, 1, 2, 1, 2, 0}
	if diff := cmp.Diff(want, shard.Assign(units, 3)); diff != "" {
		t.Errorf("assignment (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0, 0, 0, 0, 0, 0, 0}, shard.Assign(units, 1)); diff != "" {
		t.Errorf("one shard (-want +got):\n%s", diff)
	}
	// More shards than units: the extra shards get nothing.
	got := shard.Assign(units[:2], 4)
	if diff := cmp.Diff([]int{1, 0}, got); diff != "" {
		t.Errorf("4 shards, 2 units (-want +got):\n%s", diff)
	}
}

func TestPlanID(t *testing.T) {
	base := func() []*edge.Group {
		return []*edge.Group{
			group(t, "stg.example/a/app", "a", []string{"p1.example/app", "p2.example/app"}, "v1", "v2"),
			group(t, "stg.example/a/tool", "c", []string{"p1.example/tool"}),
		}
	}
	id := shard.PlanID(base(), []string{"since=", "x=1"}, "v1.0.0")
	if !strings.HasPrefix(id, "sha256:") || len(id) != 71 {
		t.Fatalf("plan id %q", id)
	}
	reordered := base()
	reordered[0], reordered[1] = reordered[1], reordered[0]
	reordered[1].Tags[0], reordered[1].Tags[1] = reordered[1].Tags[1], reordered[1].Tags[0]
	if got := shard.PlanID(reordered, []string{"x=1", "since="}, "v1.0.0"); got != id {
		t.Errorf("order of groups, tags or options changed the plan id: %s, want %s", got, id)
	}
	changes := map[string]func() string{
		"version": func() string { return shard.PlanID(base(), []string{"since=", "x=1"}, "v1.0.1") },
		"option":  func() string { return shard.PlanID(base(), []string{"since=abc", "x=1"}, "v1.0.0") },
		"tag": func() string {
			g := base()
			g[0].Tags[1].Name = "v3"
			return shard.PlanID(g, []string{"since=", "x=1"}, "v1.0.0")
		},
		"destination": func() string {
			g := base()
			g[0].Dests = g[0].Dests[:1]
			return shard.PlanID(g, []string{"since=", "x=1"}, "v1.0.0")
		},
		"digest": func() string {
			g := base()
			g[1] = group(t, "stg.example/a/tool", "d", []string{"p1.example/tool"})
			return shard.PlanID(g, []string{"since=", "x=1"}, "v1.0.0")
		},
	}
	for what, f := range changes {
		if f() == id {
			t.Errorf("changing the %s kept the plan id", what)
		}
	}
}

func TestCheckSet(t *testing.T) {
	all := []string{"u1", "u2", "u3", "u4"}
	d := shard.UnitsDigest(all)
	info := func(idx int, units ...string) *shard.Info {
		return &shard.Info{PlanID: "sha256:p", Index: idx, Count: 3, Units: units, TotalUnits: 4, UnitsDigest: d}
	}
	foreign := info(2, "u4")
	foreign.PlanID = "sha256:other"
	tests := []struct {
		name  string
		infos []*shard.Info
		want  []string // substrings of the problems; none: consistent
	}{
		{name: "whole", infos: []*shard.Info{info(0, "u1", "u3"), info(1, "u2"), info(2, "u4")}},
		{name: "order does not matter", infos: []*shard.Info{info(2, "u4"), info(0, "u1", "u3"), info(1, "u2")}},
		{name: "empty shard", infos: []*shard.Info{info(0, "u1", "u2", "u3"), info(1, "u4"), info(2)}},
		{name: "missing", infos: []*shard.Info{info(0, "u1", "u3"), info(2, "u4")}, want: []string{"shard index 1 of 3 is missing"}},
		{name: "duplicated", infos: []*shard.Info{info(0, "u1", "u3"), info(1, "u2"), info(1, "u2"), info(2, "u4")},
			want: []string{"unit u2 is in r1 and in r2", "shard index 1 appears 2 times: r1, r2"}},
		{name: "foreign", infos: []*shard.Info{info(0, "u1", "u3"), info(1, "u2"), foreign}, want: []string{"r2: plan id sha256:other"}},
		{name: "other count", infos: []*shard.Info{info(0, "u1", "u3"), info(1, "u2"), {PlanID: "sha256:p", Index: 2, Count: 4, Units: []string{"u4"}, TotalUnits: 4, UnitsDigest: d}},
			want: []string{"r2: shard count 4"}},
		{name: "overlap", infos: []*shard.Info{info(0, "u1", "u3"), info(1, "u2", "u3"), info(2, "u4")}, want: []string{"unit u3 is in r0 and in r1"}},
		{name: "not covering", infos: []*shard.Info{info(0, "u1"), info(1, "u2"), info(2, "u4")}, want: []string{"3 units are not the plan's 4 units"}},
		{name: "wrong units", infos: []*shard.Info{info(0, "u1", "u5"), info(1, "u2"), info(2, "u4")}, want: []string{"are not the plan's 4 units"}},
		{name: "no shard section", infos: []*shard.Info{info(0, "u1", "u3"), nil, info(2, "u4")}, want: []string{"r1: not a shard report"}},
		{name: "none", infos: nil, want: []string{"no reports"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names := make([]string, len(tt.infos))
			for i := range names {
				names[i] = fmt.Sprintf("r%d", i)
			}
			err := shard.CheckSet(names, tt.infos)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var se *shard.SetError
			if !errors.As(err, &se) || !errors.Is(err, shard.ErrUsage) {
				t.Fatalf("error %v: want a *SetError that is a usage error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
