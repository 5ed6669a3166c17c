package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/change"
	"github.com/imgpromoter/promoter/pkg/gitrev"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/report"
)

// newCheckCmd is the presubmit guard: it compares the manifests with a base
// revision and refuses removals and moves unless each is named in an
// override.
func newCheckCmd(e *env) *cobra.Command {
	var in inputFlags
	var base, output string
	var allow []string
	cmd := &cobra.Command{
		Use:   "check --base REV [PATH...]",
		Short: "Presubmit guard: refuse changes that unpublish or move what is published",
		Long: `check compares the manifests as they are now (the work tree) with the same
paths at git revision REV (for a pull request: its base), by what they promote,
not by their text. It fails when the change removes a digest, removes or moves a
tag, removes a destination registry, or changes where a destination's images
come from, unless every such finding is named with --allow-removal KEY (the key
printed with it; an override that matches nothing is an error too). It also
validates the manifests as validate does. A change that only adds is accepted.
Offline: no registry is contacted.
Exit status: 0 accepted, 1 rejected, 2 usage errors (a revision missing from
the clone included) or unreadable input.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := report.ParseFormat(output, report.Text, report.JSON)
			if err != nil {
				return usageErr("%v", err)
			}
			if base == "" {
				return usageErr("--base REV is required: the git revision the change starts from (for a pull request, its base commit)")
			}
			inputs, err := in.inputs(args)
			if err != nil {
				return err
			}
			head := change.Read(manifest.Load(inputs))
			snap, err := loadAt(cmd.Context(), base, inputs)
			if err != nil {
				return err
			}
			for _, p := range snap.Absent {
				fmt.Fprintf(e.stderr, "notice: %s does not exist at %s: everything in it is new\n", p, snap.Rev)
			}
			rep := change.Check(change.Read(snap.Set), head, allow)
			rep.Base, rep.BaseCommit = snap.Rev.Name, snap.Rev.Commit
			if format == report.JSON {
				err = change.WriteJSON(e.stdout, rep)
			} else {
				err = change.WriteText(e.stdout, rep)
			}
			if err != nil {
				return err
			}
			switch {
			case rep.Unreadable:
				return &ExitError{Code: ExitUsage}
			case !rep.Accepted:
				return &ExitError{Code: ExitProblems}
			}
			return nil
		},
	}
	in.register(cmd)
	cmd.Flags().StringVar(&base, "base", "", "git revision to compare with (required): a commit, branch or tag in the local clone")
	cmd.Flags().StringArrayVar(&allow, "allow-removal", nil, "allow the finding with this key, as printed in the report (repeatable; each must match a finding)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// loadAt reads the inputs as they are at git revision rev. Failures are
// usage errors (exit 2): the job needs fixing (a shallow clone, a path
// outside the repository), not the change.
func loadAt(ctx context.Context, rev string, in manifest.Inputs) (*gitrev.Snapshot, error) {
	snap, err := gitrev.Load(ctx, rev, in)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, usageErr("%v", err)
	}
	return snap, nil
}

// prowBase is the revision kpromo's --use-prow-manifest-diff compares with,
// from Prow's job environment: the pull request's base (PULL_BASE_SHA) for
// presubmit and batch jobs, the previous commit (HEAD^) for postsubmits.
// Outside Prow (no JOB_TYPE) PULL_BASE_SHA is used when set.
func prowBase() (rev, from string, err error) {
	jobType := os.Getenv("JOB_TYPE")
	switch jobType {
	case "presubmit", "batch", "":
		sha := os.Getenv("PULL_BASE_SHA")
		if sha == "" {
			if jobType == "" {
				return "", "", usageErr("--use-prow-manifest-diff needs PULL_BASE_SHA, the base of the pull request (Prow sets it with JOB_TYPE); elsewhere use promoter plan --since REV")
			}
			return "", "", usageErr("--use-prow-manifest-diff: PULL_BASE_SHA is not set (JOB_TYPE=%s)", jobType)
		}
		return sha, "PULL_BASE_SHA", nil
	case "postsubmit":
		return "HEAD^", "JOB_TYPE=postsubmit", nil
	default:
		return "", "", usageErr("--use-prow-manifest-diff: JOB_TYPE=%s has no base revision to compare with (want presubmit, batch or postsubmit)", jobType)
	}
}
