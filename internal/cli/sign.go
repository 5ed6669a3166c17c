package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/sign"
)

// signFlags are run's signing flags; each overrides the signing section
// (promotion-signing.yaml) beside the manifests.
type signFlags struct {
	sign          bool
	config        string
	key           string
	passwordEnv   string
	tokenFile     string
	tokenEnv      string
	fulcioURL     string
	rekorURL      string
	tlog          bool
	legacy        bool
	indexChildren bool
	builderID     string
}

func (f *signFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.sign, "sign", false, "sign each promoted digest (cosign v3 bundle) and attest its promotion, before its tags are written")
	fl.StringVar(&f.config, "signing-config", "", "signing settings file (default: "+sign.ConfigFile+" in the manifest directory, when present)")
	fl.StringVar(&f.key, "signing-key", "", "private key file (cosign's encrypted format or PKCS#8 PEM, ECDSA P-256)")
	fl.StringVar(&f.passwordEnv, "signing-key-password-env", "", "environment variable holding the signing key's password")
	fl.StringVar(&f.tokenFile, "identity-token", "", "keyless: file holding the OIDC identity token (read again when a new certificate is needed)")
	fl.StringVar(&f.tokenEnv, "identity-token-env", "", "keyless: environment variable holding the OIDC identity token")
	fl.StringVar(&f.fulcioURL, "fulcio-url", "", "keyless: Fulcio instance issuing the signing certificate")
	fl.StringVar(&f.rekorURL, "rekor-url", "", "Rekor instance logging every signature")
	fl.BoolVar(&f.tlog, "tlog", true, "log signatures in Rekor (--tlog=false: key-based signing without a transparency log)")
	fl.BoolVar(&f.legacy, "sign-legacy", false, "also write cosign's legacy .sig tag (simple signing) in each destination")
	fl.BoolVar(&f.indexChildren, "sign-index-children", false, "also sign each child manifest of an index")
	fl.StringVar(&f.builderID, "builder-id", "https://github.com/imgpromoter/promoter", "promoter identity recorded in promotion attestations")
}

// settings merges the signing section beside the manifests with the flags
// (a flag given on the command line wins). It returns nil when signing is off.
func (f *signFlags) settings(cmd *cobra.Command, inputs manifest.Inputs) (*sign.Config, error) {
	var c sign.Config
	path := f.config
	if path == "" {
		for _, d := range inputs.ThinDirs {
			p := filepath.Join(d, sign.ConfigFile)
			if _, err := os.Lstat(p); err == nil {
				path = p
				break
			}
		}
	}
	if path != "" {
		lc, err := sign.LoadConfig(path)
		if err != nil {
			return nil, usageErr("signing config: %v", err)
		}
		c = *lc
	}
	ch := cmd.Flags().Changed
	if ch("sign") {
		c.Sign = f.sign
	}
	if !c.Sign {
		return nil, nil
	}
	if ch("signing-key-password-env") {
		c.KeyPasswordEnv = f.passwordEnv
	}
	if ch("identity-token-env") {
		c.IdentityTokenEnv = f.tokenEnv
	}
	if ch("fulcio-url") {
		c.FulcioURL = f.fulcioURL
	}
	if ch("rekor-url") {
		c.RekorURL = f.rekorURL
	}
	if ch("tlog") || c.Tlog == nil {
		t := f.tlog
		c.Tlog = &t
	}
	if ch("sign-legacy") {
		c.Legacy = f.legacy
	}
	if ch("sign-index-children") {
		c.IndexChildren = f.indexChildren
	}
	return &c, nil
}

// signer builds the Signer of the settings. A key given by flag is read as
// given; one named in the config file must lie inside its directory.
func (f *signFlags) signer(cmd *cobra.Command, c *sign.Config) (*sign.Signer, error) {
	var opts []sign.Option
	keyless := f.tokenFile != "" || c.IdentityTokenEnv != ""
	var keyPEM []byte
	var err error
	switch {
	case cmd.Flags().Changed("signing-key"):
		keyPEM, err = os.ReadFile(f.key)
	case c.Key != "" && !keyless:
		keyPEM, err = c.ReadKeyFile()
	}
	if err != nil {
		return nil, usageErr("signing key: %v", err)
	}
	switch {
	case keyPEM != nil && keyless:
		return nil, usageErr("give a signing key or an identity token, not both")
	case keyPEM != nil:
		var pw []byte
		if c.KeyPasswordEnv != "" {
			pw = []byte(os.Getenv(c.KeyPasswordEnv))
		}
		k, err := sign.LoadPrivateKey(keyPEM, pw)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		opts = append(opts, sign.WithKey(sign.FromCryptoSigner(k)))
	case f.tokenFile != "":
		opts = append(opts, sign.WithKeyless(sign.TokenFromFile(f.tokenFile), c.FulcioURL))
	case c.IdentityTokenEnv != "":
		opts = append(opts, sign.WithKeyless(sign.TokenFromEnv(c.IdentityTokenEnv), c.FulcioURL))
	}
	if c.Tlog != nil && !*c.Tlog {
		opts = append(opts, sign.WithoutTransparencyLogUnsafe())
	} else {
		opts = append(opts, sign.WithRekor(c.RekorURL))
	}
	s, err := sign.New(opts...)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return s, nil
}

// signingHook is the step between content and tags of a signing run, and
// the function printing what it published once the run is over.
func (f *signFlags) signingHook(s *sign.Signer, c *sign.Config, insecure []string, jobs int, log *slog.Logger, out io.Writer) (promote.BeforeTags, func() int) {
	store := sign.NewRemoteStore(nil, nil).WithInsecure(insecure...)
	pub := &sign.Publisher{Signer: s, Store: store, Created: time.Now().UTC().Truncate(time.Second), BuilderID: f.builderID}
	if c.Legacy {
		pub.Legacy = store
	}
	var actions []sign.Action
	hook := pub.Hook(store, sign.HookOptions{Jobs: jobs, IndexChildren: c.IndexChildren, Logger: log, Actions: func(a []sign.Action) { actions = a }})
	summary := func() int {
		slices.SortFunc(actions, func(a, b sign.Action) int {
			if a.Repo != b.Repo {
				return cmpStr(a.Repo, b.Repo)
			}
			if a.Digest != b.Digest {
				return cmpStr(a.Digest, b.Digest)
			}
			return cmpStr(a.Kind, b.Kind)
		})
		written := 0
		for _, a := range actions {
			if a.Written {
				written++
			}
		}
		fmt.Fprintf(out, "signing: %d signature/attestation artifact(s) written, %d already present\n", written, len(actions)-written)
		return written
	}
	return hook, summary
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
