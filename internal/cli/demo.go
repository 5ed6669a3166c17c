package cli

import (
	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/demo"
)

func newDemoCmd(e *env) *cobra.Command {
	var o demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a full promotion against embedded registries (no network, no credentials)",
		Long: `demo starts an embedded staging registry and two production registries on
127.0.0.1, pushes sample images (one multi-arch), writes an example thin manifest
directory, shows the plan, promotes, shows the report and a no-op second run.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = e.stdout
			return demo.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "keep the registries running (until Ctrl-C) and print how to look at them")
	cmd.Flags().StringVar(&o.Dir, "dir", "", "where to write the example manifests (default: a temporary directory)")
	return cmd
}
