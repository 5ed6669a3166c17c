package cli

import (
	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/report"
	"github.com/imgpromoter/promoter/pkg/validate"
)

func newValidateCmd(e *env) *cobra.Command {
	var in inputFlags
	var output string
	cmd := &cobra.Command{
		Use:   "validate [PATH...]",
		Short: "Check manifests offline and report every problem with file and line",
		Long: `validate reads the manifests without any network access and reports every
problem (file:line: entry: what is wrong), then a summary. Exit status: 0 when
clean, 1 when problems were found, 2 for usage errors or unreadable input.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := report.ParseFormat(output, report.Text, report.JSON)
			if err != nil {
				return usageErr("%v", err)
			}
			inputs, err := in.inputs(args)
			if err != nil {
				return err
			}
			res := validate.Validate(manifest.Load(inputs))
			if err := report.Validation(e.stdout, f, res); err != nil {
				return err
			}
			return validationExit(res)
		},
	}
	in.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func validationExit(res *validate.Result) error {
	switch {
	case res.Unreadable:
		return &ExitError{Code: ExitUsage}
	case res.Stats.Errors > 0:
		return &ExitError{Code: ExitProblems}
	}
	return nil
}
