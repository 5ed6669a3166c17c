// Package version says which build of the promoter is running: its version,
// the commit and time it was built from, and the Go toolchain that built it.
//
// Everything comes from the binary's build information (runtime/debug): a
// binary built by `go install MODULE@VERSION` reports that module version, a
// binary built in a git clone reports the commit (vcs.revision, vcs.time,
// vcs.modified). Release builds override the fields at link time:
//
//	-X github.com/imgpromoter/promoter/internal/version.version=v1.2.3
//	-X github.com/imgpromoter/promoter/internal/version.commit=FULL_SHA
//	-X github.com/imgpromoter/promoter/internal/version.date=2026-01-02T03:04:05Z
package version

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker in release builds (see the package comment and
// .goreleaser.yaml); empty otherwise. Never assigned at run time.
var (
	version string
	commit  string
	date    string
)

// Unknown is what a field says when the build did not record it.
const Unknown = "unknown"

// Info describes one build of the promoter.
type Info struct {
	// Version is the release or module version ("v1.2.3", a pseudo-version
	// for a build in a git clone), or "devel" when none was recorded.
	Version string `json:"version"`
	// Commit is the full git commit the binary was built from, or "unknown".
	Commit string `json:"commit"`
	// Modified is true when the work tree had uncommitted changes.
	Modified bool `json:"modified"`
	// Date is the commit time (RFC 3339, UTC), or "unknown".
	Date string `json:"date"`
	// GoVersion is the toolchain that built the binary ("go1.26.8").
	GoVersion string `json:"goVersion"`
	// Platform is GOOS/GOARCH of the binary.
	Platform string `json:"platform"`
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo() // nil without module support: all unknown
	return resolve(bi, linked{version: version, commit: commit, date: date}, runtime.GOOS+"/"+runtime.GOARCH)
}

// linked holds the values set at link time.
type linked struct{ version, commit, date string }

// resolve combines the link-time values (which win) with the build
// information.
func resolve(bi *debug.BuildInfo, l linked, platform string) Info {
	info := Info{Version: "devel", Commit: Unknown, Date: Unknown, GoVersion: runtime.Version(), Platform: platform}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.time":
				info.Date = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if l.version != "" {
		info.Version = l.version
	}
	if l.commit != "" {
		// A release build is made from a clean checkout of its tag.
		info.Commit, info.Modified = l.commit, false
	}
	if l.date != "" {
		info.Date = l.date
	}
	return info
}

// WriteText writes the build information, one field a line.
func (i Info) WriteText(w io.Writer) error {
	c := i.Commit
	if i.Modified {
		c += " (with uncommitted changes)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "promoter %s\n", i.Version)
	fmt.Fprintf(&b, "  commit:   %s\n", c)
	fmt.Fprintf(&b, "  date:     %s\n", i.Date)
	fmt.Fprintf(&b, "  go:       %s\n", i.GoVersion)
	fmt.Fprintf(&b, "  platform: %s\n", i.Platform)
	_, err := io.WriteString(w, b.String())
	return err
}
