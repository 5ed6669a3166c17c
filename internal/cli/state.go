package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/state"
)

// stateFlags are --state and --state-max-age of plan and run.
type stateFlags struct {
	path   string
	maxAge time.Duration

	store *state.Store
	// repos are the destination repositories this process planned (its
	// shard's), whose records its state file keeps.
	repos map[string]bool
}

func (f *stateFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.path, "state", "", "record of verified edges: trust an edge verified within --state-max-age while its tag is listed, instead of resolving it (opt-in; run writes it; see docs/sharding.md)")
	cmd.Flags().DurationVar(&f.maxAge, "state-max-age", 7*24*time.Hour, "with --state: how long a verified edge is trusted (each edge between half of it and all of it, so re-verification spreads over runs)")
}

// load reads the state files, if --state is given. A file that cannot be
// read is reported and ignored: its edges are verified again.
func (e *env) loadState(f *stateFlags) error {
	if f.path == "" {
		return nil
	}
	if f.maxAge < 0 {
		return usageErr("--state-max-age must not be negative")
	}
	st, err := state.Load(f.path)
	if err != nil {
		fmt.Fprintf(e.stderr, "warning: %v (those edges are verified again)\n", err)
	}
	f.store = st
	return nil
}

// noteGroups remembers the destination repositories of the planned groups.
func (f *stateFlags) noteGroups(groups []*edge.Group) {
	f.repos = map[string]bool{}
	for _, g := range groups {
		for _, d := range g.Dests {
			f.repos[d.Name()] = true
		}
	}
}

// save writes this process's state file: PATH, or PATH.shard-I-of-N for a
// shard, which keeps only its own repositories (ownOnly). Records past the
// maximum age are dropped.
func (e *env) saveState(f *stateFlags, sh *shardFlags, ownOnly bool) error {
	if f.store == nil {
		return nil
	}
	f.store.Prune(time.Now().Add(-f.maxAge))
	var keep func(string) bool
	if ownOnly && f.repos != nil {
		keep = func(repo string) bool { return f.repos[repo] }
	}
	path := state.ShardFile(f.path, sh.spec.Index, sh.spec.Count)
	if err := f.store.Save(path, keep); err != nil {
		return fmt.Errorf("--state: %w", err)
	}
	return nil
}
