// Package regtest holds the registry plumbing shared by the test helpers in
// internal/testenv and the benchmark harness in bench/cmd/bench: classifying
// distribution API routes behind a proxy, running a CNCF Distribution
// registry child process, and building deterministic images whose digests
// never depend on the machine, the run or the Go version.
//
// Nothing here imports testing: every function reports failure with an
// error, and callers decide whether that fails a test or a benchmark run.
package regtest
