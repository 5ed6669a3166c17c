package cli

import "github.com/spf13/cobra"

// newManifestCmd groups the manifest editing commands (add, fmt).
func newManifestCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:    "manifest",
		Short:  "Grow and format manifests",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageErr("manifest: not implemented yet")
		},
	}
}
