package cli

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/snapshot"
	"github.com/imgpromoter/promoter/pkg/validate"
)

type driftFlags struct {
	in         inputFlags
	limits     hostLimits
	registries []string
	output     string
	jobs       int
	insecure   []string
	shard      shardFlags
	obs        observeFlags
}

func newDriftCmd(e *env) *cobra.Command {
	var f driftFlags
	cmd := &cobra.Command{
		Use:   "drift [--registry REGISTRY[/PREFIX]]... PATH...",
		Short: "Compare what production registries hold with what the manifests list",
		Long: `drift reads every destination registry of the manifests (or only those named
with --registry) and reports what differs from the manifests: listed digests
and tags that are missing, listed tags that point at another digest (moved),
and tags and repositories no manifest lists (unexpected). The children of a
listed index and cosign signature, attestation and SBOM tags of a listed digest
are expected. It reads registries like "promoter snapshot" does, with the same
credentials and per-host limits as "run".

Exit status: 0 no drift, 1 drift found, 2 could not complete (usage error,
unreadable manifests, or a registry that could not be read).`,
		Example: `  promoter drift path/to/manifests
  promoter drift --registry prod.example/team -o markdown path/to/manifests`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.shard.resolve(cmd); err != nil {
				return err
			}
			return e.drift(cmd.Context(), &f, args)
		},
	}
	f.in.register(cmd)
	cmd.Flags().StringArrayVar(&f.registries, "registry", nil, "destination registry prefix to check, as the manifests name it (repeatable; default: every destination)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text, json or markdown")
	cmd.Flags().IntVarP(&f.jobs, "jobs", "j", 8, "registry requests in flight")
	cmd.Flags().StringArrayVar(&f.insecure, "insecure-registry", nil, "registry host to reach over plain HTTP (loopback hosts always are)")
	f.limits.registerLimits(cmd)
	f.shard.register(cmd)
	f.obs.register(cmd)
	return cmd
}

func (e *env) drift(ctx context.Context, f *driftFlags, args []string) error {
	format, err := drift.ParseFormat(f.output)
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
	set := manifest.Load(inputs)
	res := validate.Validate(set)
	if res.Unreadable {
		return &ExitError{Code: ExitUsage, Err: errors.New("some manifests could not be read (see promoter validate): drift against part of the manifests would report the rest as unexpected")}
	}
	var prefixes []snapshot.Prefix
	if len(f.registries) > 0 {
		if prefixes, err = parsePrefixes(f.registries); err != nil {
			return err
		}
	} else {
		prefixes = destinationPrefixes(set)
		if len(prefixes) == 0 {
			return usageErr("the manifests name no destination registry")
		}
	}
	obs, err := e.observe(&f.obs, "drift", shardLabel(f.shard.spec), "registry prefixes")
	if err != nil {
		return err
	}
	log := e.logger()
	client, err := access.New(append(f.limits.accessOptions(), access.WithInsecureRegistries(f.insecure...), access.WithLogger(log))...)
	if err != nil {
		return usageErr("%v", err)
	}
	opts := []drift.Option{drift.WithJobs(f.jobs), drift.WithLogger(log)}
	if f.shard.spec.Sharded() {
		// This shard checks its units' repositories; shard 0 also looks
		// for repositories no manifest lists.
		all := drift.NewExpected(res.Groups)
		f.shard.apply(res, append([]string{"command=drift"}, f.registries...))
		opts = append(opts, drift.WithShard(all, f.shard.spec.Index == 0))
	}
	obs.progress.SetTotal(len(prefixes))
	obs.progress.Start()
	opts = append(opts, drift.WithPrefixDone(func() { obs.progress.EdgeDone(false) }))
	rep, err := drift.Check(ctx, client, drift.NewExpected(res.Groups), prefixes, opts...)
	if err != nil {
		obs.finish(ctx, e, false)
		return &ExitError{Code: ExitUsage, Err: err}
	}
	for k, n := range rep.Counts() {
		obs.metrics.Findings(string(k), n)
	}
	obs.finish(ctx, e, true)
	if err := e.writeDrift(&f.shard, format, rep); err != nil {
		return err
	}
	if len(rep.Findings) > 0 {
		return &ExitError{Code: ExitProblems}
	}
	return nil
}

// destinationPrefixes are the destination registries of the manifests,
// deduplicated, in order; a prefix inside another is dropped (it would be
// checked twice).
func destinationPrefixes(set *manifest.Set) []snapshot.Prefix {
	var names []string
	for _, m := range set.Manifests {
		if m.Broken {
			continue
		}
		for _, r := range m.Registries {
			if !r.Src {
				names = append(names, r.Name)
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	var out []snapshot.Prefix
	for _, n := range names {
		p, err := snapshot.ParsePrefix(n)
		if err != nil {
			continue // validation reported it
		}
		covered := false
		for _, q := range out {
			if strings.HasPrefix(strings.ToLower(p.String())+"/", strings.ToLower(q.String())+"/") {
				covered = true
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}
