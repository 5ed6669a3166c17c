package shard

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"github.com/imgpromoter/promoter/pkg/edge"
)

// Unit is the smallest piece of work a shard takes: one source image name
// (staging repository) with all its digests and all their destinations. A
// unit is never split, so each blob is still read once and fanned out to
// every destination, an index stays with its children, and one
// destination repository's tags are all planned by one shard.
//
// When images of two source repositories go to the same destination
// repository (several staging projects feeding one production name), they
// form one unit, named by the first source in sort order: splitting them
// would let two shards write one repository's tags.
type Unit struct {
	// Name is the unit's source repository (the first, if several).
	Name string
	// Sources are the unit's source repositories, sorted.
	Sources []string
	// Edges is the number of edges of the unit: its cost.
	Edges int
	// Groups are the unit's groups, in the order given.
	Groups []*edge.Group
}

// Units partitions groups into units, sorted by name. The result depends
// only on the set of groups, not on their order.
func Units(groups []*edge.Group) []Unit {
	// Union-find over source repositories, joined through shared
	// destination repositories.
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok {
			parent[x] = x
			return x
		}
		if p == x {
			return x
		}
		r := find(p)
		parent[x] = r
		return r
	}
	union := func(a, b string) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		// The smaller name becomes the root, so that the root is the
		// component's first name whatever the order of unions.
		if rb < ra {
			ra, rb = rb, ra
		}
		parent[rb] = ra
	}
	firstSource := map[string]string{} // destination repository -> a source using it
	for _, g := range groups {
		src := g.Source.Context().Name()
		find(src)
		for _, d := range g.Dests {
			dn := d.Name()
			if s, ok := firstSource[dn]; ok {
				union(s, src)
			} else {
				firstSource[dn] = src
			}
		}
	}
	byRoot := map[string]*Unit{}
	for _, g := range groups {
		src := g.Source.Context().Name()
		root := find(src)
		u := byRoot[root]
		if u == nil {
			u = &Unit{Name: root}
			byRoot[root] = u
		}
		if !slices.Contains(u.Sources, src) {
			u.Sources = append(u.Sources, src)
		}
		u.Edges += g.EdgeCount()
		u.Groups = append(u.Groups, g)
	}
	out := make([]Unit, 0, len(byRoot))
	for _, u := range byRoot {
		slices.Sort(u.Sources)
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b Unit) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Assign gives each unit a shard in [0, count): longest job first (by edge
// count, ties by name), each to the least-loaded shard so far (ties: the
// lowest index). It returns the shard of units[i] at out[i]. The result
// depends only on the units' names and edge counts, so every process
// computes the same one.
func Assign(units []Unit, count int) []int {
	count = max(1, count)
	order := make([]int, len(units))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(units[b].Edges, units[a].Edges), cmp.Compare(units[a].Name, units[b].Name))
	})
	load := make([]int, count)
	out := make([]int, len(units))
	for _, i := range order {
		best := 0
		for s := 1; s < count; s++ {
			if load[s] < load[best] {
				best = s
			}
		}
		out[i] = best
		load[best] += units[i].Edges
	}
	return out
}

// Selection is one shard's part of a plan.
type Selection struct {
	// Groups are the shard's groups, in the order given.
	Groups []*edge.Group
	// Info describes the shard for its report.
	Info Info
}

// Partition is a set of groups cut into units, ready to be split into any
// number of shards.
type Partition struct {
	groups     []*edge.Group
	units      []Unit
	unitOf     []int // unit index of groups[i]
	totalEdges int
	digest     string
}

// NewPartition cuts groups into units (see Units).
func NewPartition(groups []*edge.Group) *Partition {
	p := &Partition{groups: groups, units: Units(groups), unitOf: make([]int, len(groups))}
	index := make(map[*edge.Group]int, len(groups))
	for ui, u := range p.units {
		p.totalEdges += u.Edges
		for _, g := range u.Groups {
			index[g] = ui
		}
	}
	for i, g := range groups {
		p.unitOf[i] = index[g]
	}
	p.digest = UnitsDigest(unitNames(p.units))
	return p
}

// Units returns the partition's units, sorted by name.
func (p *Partition) Units() []Unit { return p.units }

// Select returns shard spec's part, described for the report with planID
// (see PlanID). Unsharded, it is everything.
func (p *Partition) Select(spec Spec, planID string) Selection {
	count := max(1, spec.Count)
	assigned := Assign(p.units, count)
	info := Info{PlanID: planID, Index: spec.Index, Count: count, TotalUnits: len(p.units), TotalEdges: p.totalEdges, UnitsDigest: p.digest, Units: []string{}}
	for i, u := range p.units {
		if assigned[i] == spec.Index {
			info.Units = append(info.Units, u.Name)
			info.Edges += u.Edges
		}
	}
	sel := Selection{Info: info}
	for i, g := range p.groups {
		if assigned[p.unitOf[i]] == spec.Index {
			sel.Groups = append(sel.Groups, g)
		}
	}
	return sel
}

// Select is NewPartition(groups).Select(spec, planID).
func Select(groups []*edge.Group, spec Spec, planID string) Selection {
	return NewPartition(groups).Select(spec, planID)
}

func unitNames(units []Unit) []string {
	out := make([]string, len(units))
	for i, u := range units {
		out[i] = u.Name
	}
	return out
}

// UnitsDigest is the digest of a set of unit names: "sha256:" and the hex
// SHA-256 of the sorted names, each followed by a newline. The shards of
// one plan all record the digest of the whole set, so that a merge can
// check that their units cover it without reading the manifests.
func UnitsDigest(names []string) string {
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	h := sha256.New()
	for _, n := range sorted {
		h.Write([]byte(n))
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
