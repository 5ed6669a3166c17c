package shard_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/shard"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// corpusDir is the Kubernetes project's manifest tree (see
// testdata/corpus/README.md).
var corpusDir = filepath.Join("..", "..", "testdata", "corpus", "k8s.io-2024-06", "registry.k8s.io")

// maxShards is the largest shard count the property test tries.
const maxShards = 64

// helperEnv makes the test binary print the corpus assignments instead of
// testing (see TestAssignmentHelperProcess).
const helperEnv = "PROMOTER_SHARD_TEST_HELPER"

var corpusOnce = sync.OnceValues(func() ([]*edge.Group, error) {
	res := validate.Validate(manifest.Load(manifest.Inputs{ThinDirs: []string{corpusDir}}))
	if res.Unreadable || len(res.Groups) == 0 {
		return nil, fmt.Errorf("corpus not read: %+v", res.Stats)
	}
	return res.Groups, nil
})

func corpusGroups(tb testing.TB) []*edge.Group {
	tb.Helper()
	gs, err := corpusOnce()
	if err != nil {
		tb.Fatal(err)
	}
	return gs
}

// assignments renders, for each shard count 1..maxShards, the digest of
// "index unit" for every unit of every shard: one line per count. groups
// are first shuffled with seed (0: not shuffled), so that agreeing
// results also show that the order of the input does not matter.
func assignments(groups []*edge.Group, seed uint64) string {
	gs := slices.Clone(groups)
	if seed != 0 {
		r := rand.New(rand.NewPCG(seed, seed))
		r.Shuffle(len(gs), func(i, j int) { gs[i], gs[j] = gs[j], gs[i] })
	}
	part := shard.NewPartition(gs)
	var b strings.Builder
	for n := 1; n <= maxShards; n++ {
		h := sha256.New()
		for i := 0; i < n; i++ {
			sel := part.Select(shard.Spec{Index: i, Count: n}, "")
			for _, u := range sel.Info.Units {
				fmt.Fprintf(h, "%d %s\n", i, u)
			}
		}
		fmt.Fprintf(&b, "%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	}
	return b.String()
}

// TestAssignmentHelperProcess is not a test: run by TestCorpusShards in a
// separate process, it prints the corpus assignments.
func TestAssignmentHelperProcess(t *testing.T) {
	seed := os.Getenv(helperEnv)
	if seed == "" {
		t.Skip("helper process for TestCorpusShards")
	}
	var s uint64
	fmt.Sscan(seed, &s)
	fmt.Print("BEGIN\n" + assignments(corpusGroups(t), s) + "END\n")
}

// TestCorpusShards is the property test over the real corpus: for every
// shard count from 1 to 64, the shards' groups are disjoint and cover every
// group and edge, no destination repository is split between shards, the
// load is balanced as greedy longest-first promises, and two separate
// processes (other hash seeds, other input orders) compute the same
// assignment as this one.
func TestCorpusShards(t *testing.T) {
	groups := corpusGroups(t)
	total := 0
	for _, g := range groups {
		total += g.EdgeCount()
	}
	part := shard.NewPartition(groups)
	units := part.Units()
	biggest := 0
	for _, u := range units {
		biggest = max(biggest, u.Edges)
	}
	destNames := map[*edge.Group][]string{}
	for _, g := range groups {
		for _, d := range g.Dests {
			destNames[g] = append(destNames[g], d.Name())
		}
	}
	t.Logf("corpus: %d groups, %d edges, %d units (largest %d edges)", len(groups), total, len(units), biggest)
	for n := 1; n <= maxShards; n++ {
		seen := map[*edge.Group]int{}
		destShard := map[string]int{}
		edges, most := 0, 0
		var ids []string
		var infos []*shard.Info
		for i := 0; i < n; i++ {
			sel := part.Select(shard.Spec{Index: i, Count: n}, "sha256:x")
			in := sel.Info
			if in.Index != i || in.Count != n || in.TotalUnits != len(units) || in.TotalEdges != total {
				t.Fatalf("n=%d shard %d: info %+v", n, i, in)
			}
			shardEdges := 0
			for _, g := range sel.Groups {
				seen[g]++
				shardEdges += g.EdgeCount()
				for _, d := range destNames[g] {
					if s, ok := destShard[d]; ok && s != i {
						t.Fatalf("n=%d: destination %s is in shards %d and %d", n, d, s, i)
					}
					destShard[d] = i
				}
			}
			if shardEdges != in.Edges {
				t.Fatalf("n=%d shard %d: %d edges in its groups, info says %d", n, i, shardEdges, in.Edges)
			}
			edges += shardEdges
			most = max(most, shardEdges)
			ids = append(ids, fmt.Sprint(i))
			infos = append(infos, &in)
		}
		if len(seen) != len(groups) || edges != total {
			t.Fatalf("n=%d: shards hold %d of %d groups, %d of %d edges", n, len(seen), len(groups), edges, total)
		}
		for g, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d: group %s in %d shards", n, g.Source, c)
			}
		}
		// Greedy longest-first: no shard exceeds the mean by more than the
		// largest unit.
		if limit := (total+n-1)/n + biggest; most > limit {
			t.Errorf("n=%d: largest shard %d edges, want at most %d", n, most, limit)
		}
		// The reports of these shards are one whole promotion.
		if err := shard.CheckSet(ids, infos); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
	}

	want := assignments(groups, 0)
	for _, seed := range []string{"1", "2"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAssignmentHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+seed)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helper process: %v\n%s", err, stderr.String())
		}
		got := between(string(out), "BEGIN\n", "END\n")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("process with input order %s disagrees (-this process +other):\n%s", seed, diff)
		}
	}
}

// between returns the text of s between the lines begin and end.
func between(s, begin, end string) string {
	var b strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text() + "\n"
		switch {
		case line == begin:
			in = true
		case line == end:
			in = false
		case in:
			b.WriteString(line)
		}
	}
	return b.String()
}
