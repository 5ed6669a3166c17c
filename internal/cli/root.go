// Package cli is the promoter's command line: it turns flags into calls of
// the library packages and results into output and exit codes. No promotion
// logic lives here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/version"
)

// Exit codes.
const (
	ExitOK       = 0 // everything asked for is done or valid
	ExitProblems = 1 // problems found, edges refused or failed
	ExitUsage    = 2 // bad flags or unreadable input
)

// ExitError carries an exit code out of a command. A nil Err means the
// command already printed what went wrong.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

func usageErr(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// env is what commands share: streams and logger.
type env struct {
	stdout, stderr io.Writer
	logLevel       string
}

func (e *env) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(e.logLevel)) // checked in PersistentPreRunE
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lvl}))
}

// noArgs rejects positional arguments as a usage error (exit 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// New builds the promoter command tree writing to the given streams.
func New(stdout, stderr io.Writer) *cobra.Command {
	e := &env{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "promoter",
		Short: "Promote container images from staging to production registries, by reviewed manifest",
		Long: `promoter copies container images by digest from a staging registry to every
production registry named in kpromo-format promoter manifests. It plans before
it acts, never deletes, never moves a published tag, and works with any OCI
registry.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.Args = cobra.ArbitraryArgs
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for promoter (see promoter --help)", args[0])
		}
		return cmd.Help()
	}
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(e.logLevel)); err != nil {
			return usageErr("--log-level %q: want debug, info, warn or error", e.logLevel)
		}
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &ExitError{Code: ExitUsage, Err: err} })
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&e.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.Version = version.Get().Version
	root.SetVersionTemplate(versionTemplate())
	root.AddCommand(newValidateCmd(e), newPlanCmd(e), newRunCmd(e), newCheckCmd(e), newManifestCmd(e), newSnapshotCmd(e), newCipCmd(e), newDemoCmd(e))
	root.AddCommand(newReportCmd(e))
	root.AddCommand(newAuditCmd(e), newDriftCmd(e))
	root.AddCommand(newVerifyCmd(e))
	root.AddCommand(newVersionCmd(e))
	return root
}

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := New(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(stderr, "error:", ee.Err)
		}
		return ee.Code
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "interrupted: stopped before finishing; run again to finish the job")
		return ExitProblems
	}
	fmt.Fprintln(stderr, "error:", err)
	return ExitProblems
}
