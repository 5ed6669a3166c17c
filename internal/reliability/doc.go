// Package reliability holds the end-to-end scenarios of what a hostile or
// failing registry, a killed process and a rate-limiting host can do to a
// promotion, run through the command line in-process (and, for crashes,
// the built binary) against real registries and the fault proxy of
// internal/testenv. docs/reliability.md lists them with their figures.
//
// The package has no code of its own: only tests and benchmarks.
package reliability
