package cli

import "github.com/spf13/cobra"

// newCheckCmd is the presubmit guard (issue: review workflow).
func newCheckCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:    "check",
		Short:  "Presubmit guard: refuse changes that unpublish or move what is published",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageErr("check: not implemented yet")
		},
	}
}
