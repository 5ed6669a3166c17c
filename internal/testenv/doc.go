// Package testenv provides real registry peers for integration and
// end-to-end tests of the promoter: an in-process OCI registry, a real CNCF
// Distribution server, deterministic image seeding, and a fault-injecting
// reverse proxy that scripts registry failures.
//
// Every helper takes a testing.TB, fails the test on setup errors and
// releases what it started through t.Cleanup, so callers never tear down by
// hand. Registries listen on 127.0.0.1 only; go-containerregistry speaks
// plain HTTP to 127.0.0.1 hosts on its own, so references need no
// name.Insecure option.
package testenv
