package sign

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ConfigFile is the name of the signing settings file read from the root
// of a manifest directory, beside the manifests (reviewed with them).
const ConfigFile = "promotion-signing.yaml"

// Config is the signing section beside the manifests. Every field has a
// flag of `promoter run` that overrides it.
type Config struct {
	// Sign turns signing on (--sign).
	Sign bool `yaml:"sign"`
	// Key is a private key file, relative to the config file's directory
	// and inside it (--signing-key).
	Key string `yaml:"key,omitempty"`
	// KeyPasswordEnv names the environment variable holding the key's
	// password (--signing-key-password-env).
	KeyPasswordEnv string `yaml:"keyPasswordEnv,omitempty"`
	// IdentityTokenEnv names the environment variable holding the OIDC
	// identity token for keyless signing (a file is given with
	// --identity-token only).
	IdentityTokenEnv string `yaml:"identityTokenEnv,omitempty"`
	// FulcioURL and RekorURL locate the Fulcio and Rekor instances.
	FulcioURL string `yaml:"fulcioURL,omitempty"`
	RekorURL  string `yaml:"rekorURL,omitempty"`
	// Tlog false signs without the transparency log (key-based only).
	Tlog *bool `yaml:"tlog,omitempty"`
	// Legacy also writes cosign's `.sig` tag (--sign-legacy).
	Legacy bool `yaml:"legacy,omitempty"`
	// IndexChildren also signs each child of an index (--sign-index-children).
	IndexChildren bool `yaml:"indexChildren,omitempty"`

	// dir is the directory the file was read from.
	dir string
}

// Dir is the directory the config was read from ("" when not from a file).
func (c *Config) Dir() string { return c.dir }

// LoadConfig reads a signing config file strictly: unknown fields are
// errors. A symlink is refused.
func LoadConfig(path string) (*Config, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode()&fs.ModeSymlink != 0 || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (symlinks are refused)", path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.dir = filepath.Dir(path)
	return &c, nil
}

// ReadKeyFile reads a key file named in a config: a relative path inside
// the config's directory, not a symlink and not through one.
func (c *Config) ReadKeyFile() ([]byte, error) {
	if c.Key == "" {
		return nil, errors.New("no key")
	}
	if filepath.IsAbs(c.Key) || !filepath.IsLocal(c.Key) {
		return nil, fmt.Errorf("%s: key %q must be a relative path inside the manifest directory", ConfigFile, c.Key)
	}
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	// Refuse symlinks on the way (os.Root only keeps them inside the root).
	p := ""
	for _, part := range strings.Split(filepath.ToSlash(filepath.Clean(c.Key)), "/") {
		p = filepath.Join(p, part)
		st, err := root.Lstat(p)
		if err != nil {
			return nil, err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s: key path %q goes through a symlink", ConfigFile, c.Key)
		}
	}
	f, err := root.Open(c.Key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}
