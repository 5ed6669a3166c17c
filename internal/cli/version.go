package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/internal/version"
	"github.com/imgpromoter/promoter/pkg/report"
)

func newVersionCmd(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the promoter's version, commit, build date and Go version",
		Long: `version prints which build of the promoter this is: its version (the release,
or the module version of a binary built by go install), the git commit and
commit date it was built from, the Go version and the platform. The same text
is printed by promoter --version.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := report.ParseFormat(output, report.Text, report.JSON)
			if err != nil {
				return usageErr("--output: %v", err)
			}
			info := version.Get()
			if format == report.JSON {
				return render.WriteJSON(e.stdout, info)
			}
			return info.WriteText(e.stdout)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// versionTemplate is what --version prints: the text of `promoter version`.
func versionTemplate() string {
	var b strings.Builder
	_ = version.Get().WriteText(&b)
	// The template language would read braces; a version never has any.
	return b.String()
}
