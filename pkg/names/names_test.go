package names

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestRegistryKey(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"docker.io", "index.docker.io/library"},
		{"docker.io/team", "index.docker.io/team"},
		{"localhost:5000", "127.0.0.1:5000"},
		{"LOCALHOST:5000/p", "127.0.0.1:5000/p"},
		{"localhost", "127.0.0.1"},
		{"GCR.io/Team", "gcr.io/Team"}, // not a valid name: compared as written, host folded
	} {
		if RegistryKey(tt.a) != RegistryKey(tt.b) {
			t.Errorf("RegistryKey(%q) = %q, RegistryKey(%q) = %q: want equal", tt.a, RegistryKey(tt.a), tt.b, RegistryKey(tt.b))
		}
	}
	for _, tt := range []struct{ a, b string }{
		{"gcr.io/a", "gcr.io/A"},
		{"localhost:5000", "localhost:5001"},
		{"localhost:5000", "127.0.0.2:5000"},
		{"localhost", "localhost:5000"},
	} {
		if RegistryKey(tt.a) == RegistryKey(tt.b) {
			t.Errorf("RegistryKey(%q) = RegistryKey(%q) = %q: want different", tt.a, tt.b, RegistryKey(tt.a))
		}
	}
	// Repositories under a registry are keyed the way the registry is.
	r, err := name.NewRepository("docker.io/team/app")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := RepositoryKey(r), RegistryKey("docker.io/team")+"/app"; got != want {
		t.Errorf("RepositoryKey = %q, want %q", got, want)
	}
}

func TestCheckRegistryName(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"gcr.io/team", ""},
		{"localhost", ""},
		{"localhost:1", ""},
		{"r.io:65535/p", ""},
		{"r.io:0", `registry name "r.io:0" has an invalid port "0" (want 1 to 65535)`},
		{"r.io:99999/p", `registry name "r.io:99999/p" has an invalid port "99999" (want 1 to 65535)`},
		{"r.io:00443", ""},
		{"team", `registry name "team" must start with a registry host (a name with a dot or a port, or localhost)`},
		{"gcr.io/", `registry name "gcr.io/" has an invalid path prefix ""`},
	} {
		if got := CheckRegistryName(tt.name); got != tt.want {
			t.Errorf("CheckRegistryName(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
	if ValidHost("r.io:0") || !ValidHost("r.io:443") {
		t.Error("ValidHost does not check the port")
	}
}

func TestCheckTagAndDigest(t *testing.T) {
	if got := CheckTag("v1+b"); got != `invalid tag "v1+b" (must match ^\w[\w.-]{0,127}$)` {
		t.Errorf("CheckTag = %q", got)
	}
	if got := CheckDigest("sha256:abc"); got != `invalid digest "sha256:abc" (3 hex digits, want 64)` {
		t.Errorf("CheckDigest = %q", got)
	}
	if CheckTag("v1.0") != "" || CheckDigest("sha256:"+string(make([]byte, 0))) == "" {
		t.Error("CheckTag or CheckDigest wrong on simple input")
	}
}
