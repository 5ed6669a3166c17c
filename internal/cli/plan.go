package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/edge"
	"github.com/imgpromoter/promoter/pkg/promoter"
	"github.com/imgpromoter/promoter/pkg/report"
	"github.com/imgpromoter/promoter/pkg/sign"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// promoteFlags are shared by plan, run and cip.
type promoteFlags struct {
	in       inputFlags
	output   string
	jobs     int
	insecure []string
	confirm  bool
	// since is a git revision: plan only the edges added since then.
	since string

	describeLimit int
	hostLimits

	// policy is the promotion policy file (default: promotion-policy.yaml
	// at the manifest root, when present); supplyChain carries signatures,
	// attestations and SBOMs.
	policy      string
	supplyChain bool

	shard shardFlags
	state stateFlags
	obs   observeFlags

	signing signFlags
}

func (f *promoteFlags) register(cmd *cobra.Command, withConfirm bool) {
	f.in.register(cmd)
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text, json or markdown")
	cmd.Flags().IntVarP(&f.jobs, "jobs", "j", 8, "images (and registry requests) handled at once")
	cmd.Flags().StringArrayVar(&f.insecure, "insecure-registry", nil, "registry host to reach over plain HTTP (loopback hosts always are)")
	f.registerLimits(cmd)
	if withConfirm {
		cmd.Flags().BoolVar(&f.confirm, "confirm", false, "execute the plan (without it, only plan)")
	}
	cmd.Flags().IntVar(&f.describeLimit, "describe-limit", 200, "with -o markdown or json: read size and platforms from staging for at most this many images (0: none)")
	cmd.Flags().StringVar(&f.since, "since", "", "pull-request mode: only the edges the change since git revision REV adds (the manifests must be in a git work tree)")
	cmd.Flags().StringVar(&f.policy, "policy", "", "promotion policy file: verify signatures and attestations before promoting (default: promotion-policy.yaml at the manifest root, when present)")
	cmd.Flags().BoolVar(&f.supplyChain, "supply-chain", true, "carry each image's signatures, attestations and SBOMs (OCI referrers and cosign tags) and verify them against the policy")
	f.shard.register(cmd)
	f.state.register(cmd)
	f.obs.register(cmd)
}

func newPlanCmd(e *env) *cobra.Command {
	var f promoteFlags
	cmd := &cobra.Command{
		Use:   "plan [PATH...]",
		Short: "Dry run: read the registries and say what a promotion would do",
		Long: `plan reads the manifests and the state of the source and every destination
registry, and classifies every edge: already promoted, copy, tag only,
conflict (a tag that would move: refused), missing in source (refused).
Invalid entries are excluded and reported; the rest is planned.
Exit status: 0 when nothing is refused, 1 otherwise, 2 for usage errors.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.shard.resolve(cmd); err != nil {
				return err
			}
			return e.promote(cmd.Context(), cmd, &f, args, false)
		},
	}
	f.register(cmd, false)
	return cmd
}

func newRunCmd(e *env) *cobra.Command {
	var f promoteFlags
	cmd := &cobra.Command{
		Use:   "run [PATH...]",
		Short: "Promote: plan, then with --confirm copy every image and tag",
		Long: `run plans like "plan"; with --confirm it then copies each image by digest
(with every child manifest and blob), adds tags only once the image is complete,
never deletes and never moves a tag, and prints a report.
Exit status: 0 when every edge is promoted, 1 when any was refused or failed,
2 for usage errors.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.shard.resolve(cmd); err != nil {
				return err
			}
			if f.confirm {
				return e.promote(cmd.Context(), cmd, &f, args, true)
			}
			// Without --confirm, run only plans: say so before and after
			// the plan (on standard error, so -o json stays a document).
			fmt.Fprintln(e.stderr, dryRunFirst)
			err := e.promote(cmd.Context(), cmd, &f, args, false)
			if ee := (*ExitError)(nil); err == nil || errors.As(err, &ee) && ee.Err == nil {
				fmt.Fprintln(e.stderr, dryRunLast) // the plan was printed
			}
			return err
		},
	}
	f.register(cmd, true)
	f.signing.register(cmd)
	return cmd
}

// What `run` without --confirm says first and last.
const (
	dryRunFirst = "dry run: run without --confirm only plans; nothing will be written to any registry"
	dryRunLast  = "dry run: nothing was written; to promote, run again with --confirm"
)

// promote is plan, and with execute set, run: flags become promoter
// options, and the results are rendered.
func (e *env) promote(ctx context.Context, cmd *cobra.Command, f *promoteFlags, args []string, execute bool) error {
	format, err := report.ParseFormat(f.output, report.Text, report.JSON, report.Markdown)
	if err != nil {
		return usageErr("%v", err)
	}
	if f.jobs < 1 {
		return usageErr("--jobs must be at least 1")
	}
	inputs, err := f.in.inputs(args)
	if err != nil {
		return err
	}
	command := "plan"
	if execute {
		command = "run"
	}
	obs, err := e.observe(&f.obs, command, shardLabel(f.shard.spec), "images")
	if err != nil {
		return err
	}
	log := e.logger()
	// Signing settings are checked before anything is read or written.
	var sc *sign.Config
	var signer *sign.Signer
	if execute && cmd != nil {
		if sc, err = f.signing.settings(cmd, inputs); err != nil {
			return err
		}
		if sc != nil {
			if signer, err = f.signing.signer(cmd, sc); err != nil {
				return err
			}
		}
	}
	client, err := access.New(obs.accessOptions(access.WithInsecureRegistries(f.insecure...), access.WithLogger(log),
		access.WithHostLimits(access.HostLimits{Concurrency: f.hostConcurrency, Rate: f.hostRate}), access.WithMaxRetryWait(f.maxRetryWait))...)
	if err != nil {
		return usageErr("%v", err)
	}
	if err := e.loadState(&f.state); err != nil {
		return err
	}
	opts := []promoter.Option{promoter.WithClient(client), promoter.WithJobs(f.jobs), promoter.WithLogger(log),
		promoter.WithSelect(func(groups []*edge.Group) []*edge.Group {
			res := &validate.Result{Groups: groups}
			f.shard.apply(res, []string{"since=" + f.since})
			f.state.noteGroups(res.Groups)
			return res.Groups
		})}
	if f.state.store != nil {
		opts = append(opts, promoter.WithState(f.state.store, f.state.maxAge))
	}
	if f.since != "" {
		opts = append(opts, promoter.WithSince(f.since))
	}
	switch {
	case !f.supplyChain && f.policy != "":
		return usageErr("--policy needs --supply-chain")
	case !f.supplyChain:
		opts = append(opts, promoter.WithoutSupplyChain())
	case f.policy != "":
		opts = append(opts, promoter.WithPolicy(f.policy))
	}
	if !execute {
		if format != report.Text && f.describeLimit > 0 {
			// For reviewers: size and platforms of each image, read from
			// staging.
			opts = append(opts, promoter.WithDescribe(f.describeLimit))
		}
		res, err := promoter.Plan(ctx, inputs, opts...)
		if err != nil {
			obs.finish(ctx, e, false)
			return promoterErr(err)
		}
		obs.recordPlan(res.Plan)
		obs.finish(ctx, e, !res.Failed())
		e.sinceNotices(res.Since)
		if err := e.writePlan(&f.shard, format, res.Plan.Document()); err != nil {
			return err
		}
		return planExit(res.Failed())
	}
	var renderErr error
	opts = append(opts, promoter.WithProgress(obs.runProgress), promoter.WithPlanned(func(res *promoter.Result) {
		e.sinceNotices(res.Since)
		obs.startRun(client.Counter())
		if format == report.Text {
			renderErr = report.Plan(e.stderr, report.Text, res.Plan.Document())
		}
	}))
	var signSummary func() int
	if sc != nil {
		hook, summary := f.signing.signingHook(signer, sc, f.insecure, f.jobs, log, e.stderr)
		opts, signSummary = append(opts, promoter.WithBeforeTags(hook)), summary
	}
	res, err := promoter.Run(ctx, inputs, opts...)
	if signSummary != nil {
		signSummary()
	}
	if res != nil && res.Report != nil {
		obs.recordRun(res.Report)
		// What was verified and promoted is kept even when the run
		// failed or was interrupted: it is true either way.
		if serr := e.saveState(&f.state, &f.shard, f.shard.spec.Sharded() && f.since == ""); serr != nil {
			return serr
		}
	}
	obs.finish(ctx, e, err == nil && res != nil && !res.Failed())
	if res != nil && res.Report != nil {
		if werr := e.writeRun(&f.shard, format, res.Report); werr != nil {
			return werr
		}
	}
	if err != nil {
		return promoterErr(err)
	}
	if renderErr != nil {
		return renderErr
	}
	return planExit(res.Failed())
}

// promoterErr makes a revision that cannot be read a usage error (exit 2):
// the job needs fixing (a shallow clone, a path outside the repository),
// not the change.
func promoterErr(err error) error {
	var re *promoter.RevisionError
	if errors.As(err, &re) {
		return usageErr("%v", err)
	}
	var pe *promoter.PolicyError
	if errors.As(err, &pe) {
		return usageErr("policy: %v", err)
	}
	return err
}

// sinceNotices says, in pull-request mode, what the change adds.
func (e *env) sinceNotices(s *promoter.Since) {
	if s == nil {
		return
	}
	for _, p := range s.Absent {
		fmt.Fprintf(e.stderr, "notice: %s does not exist at %s: all its edges are new\n", p, s.Rev)
	}
	since := s.Rev.Short()
	if !strings.HasPrefix(s.Rev.Commit, s.Rev.Name) {
		since = s.Rev.Name + ", commit " + since
	}
	fmt.Fprintf(e.stderr, "change adds %s (since %s); only those are planned, of %d valid edges in the manifests\n",
		render.Plural(s.Added, "edge"), since, s.Valid)
}

// planExit is the exit status of plan and run: 1 when any edge was refused
// or failed or any input was invalid or unreadable (the readable rest was
// still planned and promoted: one bad file never blocks the others).
func planExit(failed bool) error {
	if failed {
		return &ExitError{Code: ExitProblems}
	}
	return nil
}
