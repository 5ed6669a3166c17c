package cli

import "github.com/spf13/cobra"

// newSnapshotCmd prints what a registry (or the manifests) hold.
func newSnapshotCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:    "snapshot",
		Short:  "Print what a registry holds as an images.yaml or CSV",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageErr("snapshot: not implemented yet")
		},
	}
}
