package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/report"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// kpromo flags that only configure Google Cloud access: accepted so that
// existing jobs keep working, and ignored with a notice (registry access here
// uses the docker config and credential helpers).
var cipGoogleOnly = []string{"key-files", "snapshot-service-account", "use-service-account"}

// kpromo flags that have no effect here (kpromo itself ignores
// max-image-size): accepted and ignored with a notice.
var cipNoEffect = []string{"json-log-summary", "max-image-size", "max-signature-copies", "max-signature-ops", "signer-account"}

// kpromo flags whose behaviour is not available: refused when they ask for
// it, rather than silently ignored, because ignoring them would change what
// the job does. Checked in this order.
var cipUnsupported = []struct{ flag, why string }{
	{"check-manifest-lists-from-snapshot", "not supported"},
	{"manifest-based-snapshot-of", "use 'promoter snapshot --from-manifests REGISTRY PATH' (it reads thin directories too)"},
	{"minimal-snapshot", "use 'promoter snapshot --minimal REGISTRY/PREFIX'"},
	{"output", "snapshot output: use 'promoter snapshot -o yaml|csv'"},
	{"repository", "not supported"},
	{"sign", "signing is not supported yet (pass --sign=false or drop the flag)"},
	{"snapshot", "use 'promoter snapshot REGISTRY/PREFIX'"},
	{"snapshot-tag", "use 'promoter snapshot --tag TAG REGISTRY/PREFIX'"},
	{"vuln-severity-threshold", "vulnerability checks use Google Container Analysis: not supported"},
}

// asksFor reports whether a kpromo flag was given a value that requests its
// behaviour (--sign=false or --vuln-severity-threshold=-1 ask for nothing).
func asksFor(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil || !f.Changed {
		return false
	}
	switch f.Value.Type() {
	case "bool":
		return f.Value.String() == "true"
	case "int":
		return f.Value.String() != "-1" // kpromo's "off" for its int options
	}
	return f.Value.String() != ""
}

func newCipCmd(e *env) *cobra.Command {
	var f promoteFlags
	var parseOnly bool
	cmd := &cobra.Command{
		Use:   "cip",
		Short: "kpromo-compatible entry: 'kpromo cip FLAGS' becomes 'promoter cip FLAGS'",
		Long: `cip accepts the flags of kpromo cip with the same meaning:
  --manifest FILE, --thin-manifest-dir DIR   the manifests
  --confirm                                  promote (without it: plan only, a dry run)
  --parse-only                               validate only (offline here)
  --use-prow-manifest-diff                   only the edges the change adds, since
                                             $PULL_BASE_SHA (presubmit, batch) or
                                             HEAD^ (postsubmit), as kpromo does
Google-Cloud-only flags (--use-service-account, --key-files, ...) are accepted
and ignored with a notice. See docs/kpromo.md for the full mapping.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range cipGoogleOnly {
				if cmd.Flags().Changed(name) {
					fmt.Fprintf(e.stderr, "notice: --%s is a Google Cloud option of kpromo and is ignored; credentials come from the docker config and credential helpers\n", name)
				}
			}
			for _, name := range cipNoEffect {
				if cmd.Flags().Changed(name) {
					fmt.Fprintf(e.stderr, "notice: --%s has no effect here and is ignored\n", name)
				}
			}
			for _, u := range cipUnsupported {
				if asksFor(cmd.Flags(), u.flag) {
					return usageErr("--%s: %s", u.flag, u.why)
				}
			}
			if asksFor(cmd.Flags(), "use-prow-manifest-diff") && !parseOnly {
				rev, from, err := prowBase()
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stderr, "notice: --use-prow-manifest-diff: only the edges added since %s (%s)\n", rev, from)
				f.since = rev
			}
			if parseOnly {
				inputs, err := f.in.inputs(nil)
				if err != nil {
					return err
				}
				res := validate.Validate(manifest.Load(inputs))
				if err := report.Validation(e.stdout, report.Text, res); err != nil {
					return err
				}
				return validationExit(res)
			}
			return e.promote(cmd.Context(), nil, &f, nil, f.confirm)
		},
	}
	cmd.Flags().StringArrayVar(&f.in.files, "manifest", nil, "the manifest file to load")
	cmd.Flags().StringArrayVar(&f.in.thinDirs, "thin-manifest-dir", nil, "directory of thin manifests (manifests/ and images/)")
	cmd.Flags().BoolVar(&f.confirm, "confirm", false, "initiate a PRODUCTION image promotion")
	cmd.Flags().BoolVar(&parseOnly, "parse-only", false, "only check that the manifests are valid (offline)")
	cmd.Flags().IntVar(&f.jobs, "threads", 8, "images handled at once")
	cmd.Flags().StringArrayVar(&f.insecure, "insecure-registry", nil, "registry host to reach over plain HTTP")
	f.registerLimits(cmd)
	f.output = "text"
	for _, name := range []string{"use-service-account", "json-log-summary", "minimal-snapshot", "use-prow-manifest-diff", "sign"} {
		cmd.Flags().Bool(name, false, "kpromo compatibility (see docs/kpromo.md)")
	}
	for _, name := range []string{"key-files", "snapshot-service-account", "signer-account", "snapshot", "snapshot-tag", "manifest-based-snapshot-of", "output", "check-manifest-lists-from-snapshot", "repository"} {
		cmd.Flags().String(name, "", "kpromo compatibility (see docs/kpromo.md)")
	}
	for _, name := range []string{"max-image-size", "max-signature-copies", "max-signature-ops"} {
		cmd.Flags().Int(name, 0, "kpromo compatibility (see docs/kpromo.md)")
	}
	cmd.Flags().Int("vuln-severity-threshold", -1, "kpromo compatibility (see docs/kpromo.md)")
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Usage == "kpromo compatibility (see docs/kpromo.md)" {
			fl.Hidden = true
		}
	})
	return cmd
}
