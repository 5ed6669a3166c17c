package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/report"
	"github.com/imgpromoter/promoter/pkg/shard"
	"github.com/imgpromoter/promoter/pkg/shard/merge"
)

// maxReportBytes bounds one report file read by report merge.
const maxReportBytes = 1 << 30

func newReportCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Work with JSON reports (merge the reports of sharded runs)",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newReportMergeCmd(e))
	return cmd
}

func newReportMergeCmd(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "merge FILE|DIR...",
		Short: "Combine the JSON reports of the shards of one plan or run",
		Long: `merge reads the JSON reports (plan, run or drift -o json) of the shards of
one promotion, checks that they are exactly its shards (one plan id and shard
count, every shard index once, units disjoint and covering the plan) and
prints the combined report, as one unsharded process would have. A directory
stands for every *.json file in it.
Exit status: 0 when the combined report has nothing refused or failed, 1
otherwise, 2 when the reports are not the shards of one promotion (missing,
duplicated or foreign reports) or cannot be read.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("report merge needs the JSON report files of every shard")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := report.ParseFormat(output, report.Text, report.JSON, report.Markdown)
			if err != nil {
				return usageErr("%v", err)
			}
			files, err := reportFiles(args)
			if err != nil {
				return usageErr("%v", err)
			}
			inputs := make([]merge.Input, len(files))
			for i, path := range files {
				data, err := readReport(path)
				if err != nil {
					return usageErr("%v", err)
				}
				inputs[i] = merge.Input{Name: path, Data: data}
			}
			res, err := merge.Merge(inputs)
			if errors.Is(err, shard.ErrUsage) {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			if err != nil {
				return err
			}
			if err := writeMerged(e.stdout, format, res); err != nil {
				return err
			}
			if res.Failed() {
				return &ExitError{Code: ExitProblems}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or markdown")
	return cmd
}

// reportFiles expands each directory argument into the *.json regular
// files in it, sorted; files are kept as given.
func reportFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Lstat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		entries, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, e := range entries {
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
				out = append(out, filepath.Join(a, e.Name()))
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no *.json report in it", a)
		}
	}
	return out, nil
}

// readReport reads one report file, refusing symlinks and oversized files.
func readReport(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxReportBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than a report can be", path, fi.Size())
	}
	return os.ReadFile(path)
}

// writeMerged renders the combined report.
func writeMerged(w io.Writer, f report.Format, res *merge.Result) error {
	if f == report.JSON {
		return render.WriteJSON(w, res.JSON())
	}
	head := fmt.Sprintf("Merged %d shards of plan %s: %d units, %d edges\n\n", res.Shard.Count, res.Shard.PlanID, len(res.Shard.Units), res.Shard.Edges)
	if f == report.Markdown {
		head = fmt.Sprintf("_Merged %d shards of plan `%s`: %d units, %d edges._\n\n", res.Shard.Count, res.Shard.PlanID, len(res.Shard.Units), res.Shard.Edges)
	}
	if _, err := io.WriteString(w, head); err != nil {
		return err
	}
	if res.Drift != nil {
		return drift.Write(w, drift.Format(f), res.Drift)
	}
	if res.Run != nil {
		return report.Run(w, f, res.Run)
	}
	return report.Plan(w, f, res.Plan)
}
