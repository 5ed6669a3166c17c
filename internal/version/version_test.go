package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolve(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: sha},
		{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		l    linked
		want Info
	}{{
		name: "no build information",
		want: Info{Version: "devel", Commit: "unknown", Date: "unknown", GoVersion: runtime.Version(), Platform: "os/arch"},
	}, {
		name: "go build outside a git work tree",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/imgpromoter/promoter", Version: "(devel)"}},
		want: Info{Version: "devel", Commit: "unknown", Date: "unknown", GoVersion: "go1.26.8", Platform: "os/arch"},
	}, {
		name: "go install MODULE@VERSION: the module version, no VCS",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/imgpromoter/promoter", Version: "v1.2.3"}},
		want: Info{Version: "v1.2.3", Commit: "unknown", Date: "unknown", GoVersion: "go1.26.8", Platform: "os/arch"},
	}, {
		name: "go build in a git clone with changes",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20260102030405-0123456789ab+dirty"}, Settings: vcs},
		want: Info{Version: "v0.0.0-20260102030405-0123456789ab+dirty", Commit: sha, Modified: true, Date: "2026-01-02T03:04:05Z", GoVersion: "go1.26.8", Platform: "os/arch"},
	}, {
		name: "release build: link-time values win",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs},
		l:    linked{version: "v2.0.0", commit: "fedcba9876543210fedcba9876543210fedcba98", date: "2026-03-04T05:06:07Z"},
		want: Info{Version: "v2.0.0", Commit: "fedcba9876543210fedcba9876543210fedcba98", Date: "2026-03-04T05:06:07Z", GoVersion: "go1.26.8", Platform: "os/arch"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.bi, tt.l, "os/arch")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resolve (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteText(t *testing.T) {
	info := Info{Version: "v1.2.3", Commit: "0123456789abcdef0123456789abcdef01234567", Modified: true, Date: "2026-01-02T03:04:05Z", GoVersion: "go1.26.8", Platform: "linux/arm64"}
	var b strings.Builder
	if err := info.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `promoter v1.2.3
  commit:   0123456789abcdef0123456789abcdef01234567 (with uncommitted changes)
  date:     2026-01-02T03:04:05Z
  go:       go1.26.8
  platform: linux/arm64
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
}
