// Package shard splits one promotion across N cooperating processes (a
// Kubernetes Indexed Job, a CI matrix): which shard this process is, how the
// plan's work is cut into units and assigned to shards, the plan id every
// shard must agree on, and the check that a set of shard reports is one
// whole promotion.
//
// The assignment depends only on the manifests: every process computes the
// same one without talking to the others, and without reading a registry.
package shard

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Environment variables read when the flags are absent, in this order of
// precedence (index and count are each taken from the first that has them).
const (
	EnvIndex = "PROMOTER_SHARD_INDEX" // 0-based
	EnvCount = "PROMOTER_SHARD_COUNT"
	// EnvJobIndex is set by Kubernetes in the pods of an Indexed Job
	// (0-based). Kubernetes does not expose the completion count, so it is
	// used with EnvCount.
	EnvJobIndex = "JOB_COMPLETION_INDEX"
	// EnvCINodeIndex and EnvCINodeTotal are GitLab CI's `parallel:` job
	// variables; the index is 1-based.
	EnvCINodeIndex = "CI_NODE_INDEX"
	EnvCINodeTotal = "CI_NODE_TOTAL"
)

// Spec says which shard this process is: Index of Count, 0-based. The zero
// value and {0, 1} both mean "not sharded: everything".
type Spec struct {
	Index int
	Count int
	// IndexFrom and CountFrom say where the values came from ("--shard-index",
	// "JOB_COMPLETION_INDEX", ...; empty for the default), for messages.
	IndexFrom string
	CountFrom string
}

// Sharded reports whether the process does only part of the work.
func (s Spec) Sharded() bool { return s.Count > 1 }

// String renders the spec for messages: "shard 2 of 4 (index 1)".
func (s Spec) String() string {
	if !s.Sharded() {
		return "not sharded"
	}
	return fmt.Sprintf("shard index %d of count %d", s.Index, s.Count)
}

// Flags are the command-line values; Set* say whether the flag was given.
type Flags struct {
	Index, Count       int
	IndexSet, CountSet bool
}

// ErrUsage is matched (errors.Is) by every error of Resolve: the shard
// settings are wrong, which commands report as a usage error (exit 2).
var ErrUsage = errors.New("shard settings")

// UsageError is a wrong or incomplete shard setting, with what to do.
type UsageError struct {
	Msg string
}

func (e *UsageError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrUsage) true.
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

func usage(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Resolve decides the spec from the flags, else the environment (getenv is
// os.Getenv in a real run). The index comes from --shard-index,
// PROMOTER_SHARD_INDEX, JOB_COMPLETION_INDEX, then CI_NODE_INDEX (1-based);
// the count from --shard-count, PROMOTER_SHARD_COUNT, then CI_NODE_TOTAL.
//
// It fails closed: a count above 1 without an index, or an index without a
// count, is an error, because a shard that silently does everything (or
// nothing) is the classic failure of sharded jobs.
func Resolve(f Flags, getenv func(string) string) (Spec, error) {
	var s Spec
	var err error
	type source struct {
		name   string
		oneOff bool // 1-based
	}
	pick := func(flagSet bool, flagVal int, flagName string, envs []source) (int, string, error) {
		if flagSet {
			return flagVal, flagName, nil
		}
		for _, e := range envs {
			v := strings.TrimSpace(getenv(e.name))
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, e.name, usage("%s=%q is not a whole number", e.name, v)
			}
			if e.oneOff {
				if n < 1 {
					return 0, e.name, usage("%s=%d: it is 1-based, want at least 1", e.name, n)
				}
				n--
			}
			return n, e.name, nil
		}
		return 0, "", nil
	}
	s.Index, s.IndexFrom, err = pick(f.IndexSet, f.Index, "--shard-index", []source{{EnvIndex, false}, {EnvJobIndex, false}, {EnvCINodeIndex, true}})
	if err != nil {
		return Spec{}, err
	}
	s.Count, s.CountFrom, err = pick(f.CountSet, f.Count, "--shard-count", []source{{EnvCount, false}, {EnvCINodeTotal, false}})
	if err != nil {
		return Spec{}, err
	}
	switch {
	case s.CountFrom == "" && s.IndexFrom == "":
		return Spec{Index: 0, Count: 1}, nil
	case s.CountFrom == "":
		return Spec{}, usage("shard index %d (from %s) but no shard count: set --shard-count or %s (to %d or more; 1 runs everything in one process)", s.Index, s.IndexFrom, EnvCount, s.Index+1)
	case s.Count < 1:
		return Spec{}, usage("shard count %d (from %s): want at least 1", s.Count, s.CountFrom)
	case s.IndexFrom == "" && s.Count > 1:
		return Spec{}, usage("shard count %d (from %s) but no shard index: set --shard-index or %s (0 to %d); a shard without an index would do everything", s.Count, s.CountFrom, EnvIndex, s.Count-1)
	case s.Index < 0 || s.Index >= s.Count:
		return Spec{}, usage("shard index %d (from %s) out of range for shard count %d (from %s): want 0 to %d", s.Index, s.IndexFrom, s.Count, s.CountFrom, s.Count-1)
	}
	return s, nil
}
