package validate

import (
	"regexp"
	"strconv"
	"strings"
)

// The OCI distribution name grammar (distribution/reference), and kpromo's
// digest and tag rules.
var (
	pathComponent = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
	domainLabel   = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domain        = domainLabel + `(?:\.` + domainLabel + `)*(?::[0-9]+)?`

	pathRE     = regexp.MustCompile(`^` + pathComponent + `(?:/` + pathComponent + `)*$`)
	domainRE   = regexp.MustCompile(`^` + domain + `$`)
	digestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	tagRE      = regexp.MustCompile(`^\w[\w.-]{0,127}$`)
	maxNameLen = 255
)

// checkImageName says what is wrong with an image name, or "".
func checkImageName(s string) string {
	switch {
	case s == "":
		return "image name is empty"
	case !pathRE.MatchString(s):
		return "image name " + quote(s) + " is not a valid OCI repository path (lowercase letters, digits and single separators . _ __ - between components, / between components)"
	}
	return ""
}

// checkRegistryName says what is wrong with a registry name (host[:port]
// followed by an optional path prefix), or "".
func checkRegistryName(s string) string {
	if s == "" {
		return "registry name is empty"
	}
	host, path, hasPath := strings.Cut(s, "/")
	if !domainRE.MatchString(host) {
		return "registry name " + quote(s) + " does not start with a valid registry host"
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "registry name " + quote(s) + " must start with a registry host (a name with a dot or a port, or localhost)"
	}
	// hasPath, not path != "": "gcr.io/" would otherwise pass and make
	// destinations like gcr.io//image.
	if hasPath && !pathRE.MatchString(path) {
		return "registry name " + quote(s) + " has an invalid path prefix " + quote(path)
	}
	if len(s) > maxNameLen {
		return "registry name is longer than 255 characters"
	}
	return ""
}

// registryKey is the registry name as compared for identity: host names are
// case-insensitive, paths are not.
func registryKey(s string) string {
	host, path, hasPath := strings.Cut(s, "/")
	if !hasPath {
		return strings.ToLower(host)
	}
	return strings.ToLower(host) + "/" + path
}

func checkDigest(s string) string {
	if digestRE.MatchString(s) {
		return ""
	}
	why := ""
	switch {
	case !strings.HasPrefix(s, "sha256:"):
		why = " (must start with sha256:)"
	case len(s) != len("sha256:")+64:
		why = " (" + itoa(len(s)-len("sha256:")) + " hex digits, want 64)"
	default:
		why = " (must be 64 lowercase hex digits)"
	}
	return "invalid digest " + quote(s) + why
}

func checkTag(s string) string {
	if tagRE.MatchString(s) {
		return ""
	}
	return "invalid tag " + quote(s) + ` (must match ^\w[\w.-]{0,127}$)`
}

func quote(s string) string { return strconv.Quote(s) }

func itoa(n int) string { return strconv.Itoa(n) }
