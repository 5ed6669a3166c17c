package sign_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imgpromoter/promoter/pkg/sign"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "keys", "release.key"), "KEY")
	write(filepath.Join(outside, "secret.key"), "SECRET")
	if err := os.Symlink(filepath.Join(outside, "secret.key"), filepath.Join(dir, "keys", "link.key")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		yaml    string
		loadErr bool
		keyErr  bool
		key     string
	}{
		{name: "key inside", yaml: "sign: true\nkey: keys/release.key\n", key: "KEY"},
		{name: "unknown field", yaml: "sign: true\nsignn: true\n", loadErr: true},
		{name: "absolute key", yaml: "key: " + filepath.Join(outside, "secret.key") + "\n", keyErr: true},
		{name: "escaping key", yaml: "key: ../" + filepath.Base(outside) + "/secret.key\n", keyErr: true},
		{name: "symlinked key", yaml: "key: keys/link.key\n", keyErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, sign.ConfigFile)
			write(p, tc.yaml)
			c, err := sign.LoadConfig(p)
			if tc.loadErr {
				if err == nil {
					t.Fatal("loaded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.ReadKeyFile()
			if tc.keyErr {
				if err == nil {
					t.Fatalf("read key %q", got)
				}
				return
			}
			if err != nil || string(got) != tc.key {
				t.Fatalf("ReadKeyFile = %q, %v; want %q", got, err, tc.key)
			}
		})
	}
	// The config file itself may not be a symlink.
	link := filepath.Join(t.TempDir(), sign.ConfigFile)
	if err := os.Symlink(filepath.Join(dir, sign.ConfigFile), link); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.LoadConfig(link); err == nil {
		t.Error("loaded a symlinked config")
	}
}
