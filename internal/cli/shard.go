package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promote"
	"github.com/imgpromoter/promoter/pkg/report"
	"github.com/imgpromoter/promoter/pkg/shard"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// shardFlags select one shard of a promotion split across processes, and
// where its JSON report goes.
type shardFlags struct {
	index, count int
	reportFile   string

	// spec is the resolved shard (set by resolve).
	spec shard.Spec
	// info describes the shard once selected (nil when not sharded).
	info *shard.Info
}

func (f *shardFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.index, "shard-index", 0, "this process's shard, 0 to --shard-count minus 1 (default from "+shard.EnvIndex+", "+shard.EnvJobIndex+" or "+shard.EnvCINodeIndex+")")
	cmd.Flags().IntVar(&f.count, "shard-count", 0, "split the promotion across this many processes (default from "+shard.EnvCount+" or "+shard.EnvCINodeTotal+"; 1: not sharded)")
	cmd.Flags().StringVar(&f.reportFile, "report-file", "", "also write the JSON report to this file (written atomically; what `report merge` reads)")
}

// resolve decides the shard from the flags and the environment.
func (f *shardFlags) resolve(cmd *cobra.Command) error {
	spec, err := shard.Resolve(shard.Flags{
		Index: f.index, Count: f.count,
		IndexSet: cmd.Flags().Changed("shard-index"), CountSet: cmd.Flags().Changed("shard-count"),
	}, os.Getenv)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	f.spec = spec
	return nil
}

// apply keeps only this shard's groups in res, before any registry is
// read. options are the flags that change the plan, for the plan id.
func (f *shardFlags) apply(res *validate.Result, options []string) {
	if !f.spec.Sharded() {
		return
	}
	id := shard.PlanID(res.Groups, options, promoterVersion())
	sel := shard.Select(res.Groups, f.spec, id)
	res.Groups = sel.Groups
	f.info = &sel.Info
}

// describe is the line saying which shard this is, for standard error.
func (f *shardFlags) describe() string {
	in := f.info
	return fmt.Sprintf("shard %d of %d (index from %s, count from %s): %d of %d units, %d of %d edges; plan %s",
		in.Index, in.Count, f.spec.IndexFrom, f.spec.CountFrom, len(in.Units), in.TotalUnits, in.Edges, in.TotalEdges, in.PlanID)
}

// writePlan renders a plan with this shard's section, and writes the JSON
// report file if asked.
func (e *env) writePlan(f *shardFlags, format report.Format, p *plan.Document) error {
	var doc any = p
	if f.info != nil {
		doc = struct {
			*plan.Document
			Shard *shard.Info `json:"shard"`
		}{p, f.info}
	}
	return e.writeReport(f, format, doc, func(w io.Writer) error { return report.Plan(w, format, p) })
}

// writeRun renders a run report with this shard's section, and writes the
// JSON report file if asked.
func (e *env) writeRun(f *shardFlags, format report.Format, r *promote.Report) error {
	var doc any = r
	if f.info != nil {
		doc = struct {
			*promote.Report
			Shard *shard.Info `json:"shard"`
		}{r, f.info}
	}
	return e.writeReport(f, format, doc, func(w io.Writer) error { return report.Run(w, format, r) })
}

// writeDrift renders a drift report with this shard's section, and writes
// the JSON report file if asked.
func (e *env) writeDrift(f *shardFlags, format drift.Format, r *drift.Report) error {
	var doc any = r
	if f.info != nil {
		doc = struct {
			*drift.Report
			Shard *shard.Info `json:"shard"`
		}{r, f.info}
	}
	return e.writeReport(f, report.Format(format), doc, func(w io.Writer) error { return drift.Write(w, format, r) })
}

func (e *env) writeReport(f *shardFlags, format report.Format, doc any, text func(io.Writer) error) error {
	if f.reportFile != "" {
		var buf bytes.Buffer
		if err := render.WriteJSON(&buf, doc); err != nil {
			return err
		}
		if err := writeFileAtomic(f.reportFile, buf.Bytes()); err != nil {
			return fmt.Errorf("--report-file: %w", err)
		}
	}
	if f.info != nil && format != report.JSON {
		fmt.Fprintln(e.stderr, f.describe())
	}
	if format == report.JSON {
		return render.WriteJSON(e.stdout, doc)
	}
	return text(e.stdout)
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory (created if missing), so that a reader never sees half a
// report.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file: not overwritten", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// promoterVersion is the version the binary was built at, part of the plan
// id: shards of different versions might plan differently.
func promoterVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v
}
