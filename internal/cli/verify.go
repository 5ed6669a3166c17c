package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/report"
	"github.com/imgpromoter/promoter/pkg/sign"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// identityFlags name the signer to expect, as cosign names them.
type identityFlags struct {
	key           string
	identity      string
	identityRegex string
	issuer        string
	issuerRegex   string
	trustedRoot   string
}

func (f *identityFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.key, "key", "", "public key (PEM) the signatures must verify with")
	cmd.Flags().StringVar(&f.identity, "certificate-identity", "", "keyless: the signing certificate's identity (exact)")
	cmd.Flags().StringVar(&f.identityRegex, "certificate-identity-regexp", "", "keyless: the signing certificate's identity (Go regular expression; anchor it)")
	cmd.Flags().StringVar(&f.issuer, "certificate-oidc-issuer", "", "keyless: the OIDC issuer of the identity (exact)")
	cmd.Flags().StringVar(&f.issuerRegex, "certificate-oidc-issuer-regexp", "", "keyless: the OIDC issuer (Go regular expression)")
	cmd.Flags().StringVar(&f.trustedRoot, "trusted-root", "", "keyless: sigstore trusted_root.json (Fulcio, Rekor and CT log keys)")
}

func (f *identityFlags) toIdentity() (sign.Identity, error) {
	id := sign.Identity{TrustedRoot: f.trustedRoot, Subject: f.identity, SubjectRegexp: f.identityRegex, Issuer: f.issuer, IssuerRegexp: f.issuerRegex}
	if f.key != "" {
		if f.trustedRoot != "" || f.identity != "" || f.identityRegex != "" {
			return id, usageErr("--key and the keyless flags (--trusted-root, --certificate-identity...) exclude each other")
		}
		raw, err := os.ReadFile(f.key)
		if err != nil {
			return id, usageErr("--key: %v", err)
		}
		k, err := sign.LoadPublicKey(raw)
		if err != nil {
			return id, usageErr("--key %s: %v", f.key, err)
		}
		id.Key = k
	}
	return id, nil
}

// verifyOutput is the JSON output of verify.
type verifyOutput struct {
	Checked  int            `json:"checked"`
	Problems []sign.Problem `json:"problems"`
}

func newVerifyCmd(e *env) *cobra.Command {
	var in inputFlags
	var id identityFlags
	var output string
	var insecure []string
	var jobs int
	cmd := &cobra.Command{
		Use:   "verify [PATH...]",
		Short: "Check every destination: each promoted digest is present, signed, and attested",
		Long: `verify reads the manifests and checks, in every destination repository, that
each promoted digest is present, carries a signature by the expected identity
(a sigstore bundle attached as a referrer, as cosign v3 writes it) and its
promotion attestation (https://k8s.io/promo-tools/promotion/v1) by the same
identity. Name the identity like cosign: --key PUB, or --trusted-root FILE with
--certificate-identity[-regexp] and --certificate-oidc-issuer.
Exit status: 0 when everything verifies, 1 with the list of what is missing,
2 for usage errors or unreadable manifests.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := report.ParseFormat(output, report.Text, report.JSON)
			if err != nil {
				return usageErr("%v", err)
			}
			ident, err := id.toIdentity()
			if err != nil {
				return err
			}
			inputs, err := in.inputs(args)
			if err != nil {
				return err
			}
			res := validate.Validate(manifest.Load(inputs))
			if res.Unreadable || res.Stats.Errors > 0 {
				_ = report.Validation(e.stderr, report.Text, res)
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("the manifests must validate before they can be verified")}
			}
			store := sign.NewRemoteStore(nil, nil).WithInsecure(insecure...)
			v, err := sign.NewVerifier(ident, store)
			if err != nil {
				return usageErr("%v", err)
			}
			var targets []sign.Target
			for _, g := range res.Groups {
				for _, d := range g.Dests {
					targets = append(targets, sign.Target{Repo: d, Digest: g.Digest})
				}
			}
			out := verifyOutput{Checked: len(targets), Problems: sign.CheckPromoted(cmd.Context(), v, store, targets, jobs)}
			if out.Problems == nil {
				out.Problems = []sign.Problem{}
			}
			if format == report.JSON {
				if err := render.WriteJSON(e.stdout, out); err != nil {
					return err
				}
			} else {
				for _, p := range out.Problems {
					if p.Error != "" {
						fmt.Fprintf(e.stdout, "%s@%s: error: %s\n", p.Repo, p.Digest, p.Error)
						continue
					}
					fmt.Fprintf(e.stdout, "%s@%s: missing %s\n", p.Repo, p.Digest, p.Missing)
				}
				fmt.Fprintf(e.stdout, "%d digest(s) in destinations checked, %d problem(s)\n", out.Checked, len(out.Problems))
			}
			if len(out.Problems) > 0 {
				return &ExitError{Code: ExitProblems}
			}
			return nil
		},
	}
	in.register(cmd)
	id.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringArrayVar(&insecure, "insecure-registry", nil, "registry host to reach over plain HTTP (loopback hosts always are)")
	cmd.Flags().IntVarP(&jobs, "jobs", "j", 8, "destinations checked at once")
	return cmd
}
