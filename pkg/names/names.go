// Package names is the one home of the naming rules every stage applies: the
// OCI repository path and registry host grammar, kpromo's digest and tag
// rules with the messages that explain them, and the keys under which
// registries and repositories are compared for identity.
//
// A rule lives here once, so that validation, the presubmit guard, manifest
// editing and snapshots can never disagree on what a name is or on whether
// two names are the same place.
package names

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// The OCI distribution name grammar (distribution/reference), and kpromo's
// digest and tag rules.
const (
	pathComponent = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
	domainLabel   = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domain        = domainLabel + `(?:\.` + domainLabel + `)*(?::[0-9]+)?`

	// TagPattern is kpromo's tag rule, as printed in messages.
	TagPattern = `^\w[\w.-]{0,127}$`

	// MaxNameLen is the longest repository name (registry included).
	MaxNameLen = 255
)

var (
	pathRE   = regexp.MustCompile(`^` + pathComponent + `(?:/` + pathComponent + `)*$`)
	hostRE   = regexp.MustCompile(`^` + domain + `$`)
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	tagRE    = regexp.MustCompile(TagPattern)
)

// ValidPath reports whether s is a valid OCI repository path (components of
// lowercase letters and digits with single separators, joined by /).
func ValidPath(s string) bool { return pathRE.MatchString(s) }

// ValidHost reports whether s is a registry host with an optional port in
// the range 1 to 65535.
func ValidHost(s string) bool { return hostRE.MatchString(s) && checkPort(s) == "" }

// ValidDigest reports whether s is a sha256 digest as manifests write it.
func ValidDigest(s string) bool { return digestRE.MatchString(s) }

// ValidTag reports whether s is a valid tag.
func ValidTag(s string) bool { return tagRE.MatchString(s) }

// CheckImageName says what is wrong with an image name, or "".
func CheckImageName(s string) string {
	switch {
	case s == "":
		return "image name is empty"
	case !ValidPath(s):
		return "image name " + quote(s) + " is not a valid OCI repository path (lowercase letters, digits and single separators . _ __ - between components, / between components)"
	}
	return ""
}

// CheckRegistryName says what is wrong with a registry name (host[:port]
// followed by an optional path prefix), or "".
func CheckRegistryName(s string) string {
	if s == "" {
		return "registry name is empty"
	}
	host, path, hasPath := strings.Cut(s, "/")
	if !hostRE.MatchString(host) {
		return "registry name " + quote(s) + " does not start with a valid registry host"
	}
	if msg := checkPort(host); msg != "" {
		return "registry name " + quote(s) + " " + msg
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "registry name " + quote(s) + " must start with a registry host (a name with a dot or a port, or localhost)"
	}
	// hasPath, not path != "": "gcr.io/" would otherwise pass and make
	// destinations like gcr.io//image.
	if hasPath && !ValidPath(path) {
		return "registry name " + quote(s) + " has an invalid path prefix " + quote(path)
	}
	if len(s) > MaxNameLen {
		return "registry name is longer than 255 characters"
	}
	return ""
}

// checkPort says what is wrong with the port of a host that matched hostRE,
// or "": a TCP port is 1 to 65535.
func checkPort(host string) string {
	_, port, ok := strings.Cut(host, ":")
	if !ok {
		return ""
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "has an invalid port " + quote(port) + " (want 1 to 65535)"
	}
	return ""
}

// CheckDigest says what is wrong with a digest, or "".
func CheckDigest(s string) string {
	if ValidDigest(s) {
		return ""
	}
	why := ""
	switch {
	case !strings.HasPrefix(s, "sha256:"):
		why = " (must start with sha256:)"
	case len(s) != len("sha256:")+64:
		why = " (" + strconv.Itoa(len(s)-len("sha256:")) + " hex digits, want 64)"
	default:
		why = " (must be 64 lowercase hex digits)"
	}
	return "invalid digest " + quote(s) + why
}

// CheckTag says what is wrong with a tag, or "".
func CheckTag(s string) string {
	if ValidTag(s) {
		return ""
	}
	return "invalid tag " + quote(s) + " (must match " + TagPattern + ")"
}

// RegistryKey is a registry name (host and optional path prefix) as compared
// for identity: the way repositories under it are named, so that every side
// of a comparison agrees. Host names are case-insensitive, Docker Hub's
// spellings are one registry (docker.io is index.docker.io/library, as
// go-containerregistry names its repositories), and localhost is 127.0.0.1.
// Paths are compared as written.
func RegistryKey(s string) string {
	const probe = "x"
	if r, err := name.NewRepository(s+"/"+probe, name.WeakValidation); err == nil {
		return strings.TrimSuffix(RepositoryKey(r), "/"+probe)
	}
	host, path, ok := strings.Cut(s, "/")
	host = hostKey(host)
	if !ok {
		return host
	}
	return host + "/" + path
}

// RepositoryKey is a repository as compared for identity: the registry host
// is case-insensitive and localhost is 127.0.0.1 (the same registry answers
// at both).
func RepositoryKey(r name.Repository) string {
	return hostKey(r.RegistryStr()) + "/" + r.RepositoryStr()
}

// hostKey is a registry host as compared: lowercase, with localhost written
// as the loopback address it resolves to, so that localhost:5000 and
// 127.0.0.1:5000 are seen as the one registry they are.
func hostKey(host string) string {
	host = strings.ToLower(host)
	if h, port, ok := strings.Cut(host, ":"); ok && h == "localhost" {
		return "127.0.0.1:" + port
	}
	if host == "localhost" {
		return "127.0.0.1"
	}
	return host
}

// SameHostAlias reports whether a and b are different spellings of one
// registry host (localhost and 127.0.0.1, Docker Hub's names), for messages
// that explain why two names were found to be the same registry.
func SameHostAlias(a, b string) bool {
	return a != b && RegistryKey(a) == RegistryKey(b) && !strings.EqualFold(a, b)
}

func quote(s string) string { return strconv.Quote(s) }
