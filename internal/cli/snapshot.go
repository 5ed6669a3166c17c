package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/diag"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/snapshot"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// snapshotFlags are the flags of snapshot.
type snapshotFlags struct {
	in            inputFlags
	limits        hostLimits
	output        string
	tag           string
	minimal       bool
	repos         []string
	fromManifests string
	jobs          int
	insecure      []string
}

// newSnapshotCmd prints what a registry (or the manifests) hold.
func newSnapshotCmd(e *env) *cobra.Command {
	var f snapshotFlags
	cmd := &cobra.Command{
		Use:   "snapshot (REGISTRY[/PREFIX] | --from-manifests REGISTRY[/PREFIX] [PATH...])",
		Short: "Print what a registry holds (or what the manifests say it should) as an images.yaml or CSV",
		Long: `snapshot lists the repositories under REGISTRY/PREFIX (the registry's
catalog, or the repositories named with --repo), and prints their digests and
tags as a thin manifest images.yaml (image names relative to the prefix) or,
with -o csv, as kpromo's snapshot CSV (name@digest,name:tag; name@digest,- for
a digest without tags). Use it to start a manifest repository from an existing
registry.

The OCI API lists tags, not manifests: the snapshot holds every tagged
manifest and, read from every tagged index, the manifests the index names
(without tags unless they have their own). An untagged manifest that no tagged
index names cannot be found, and a repository without tags is left out.

--from-manifests REGISTRY/PREFIX reads no registry: it prints what the
manifests (plain files and thin directories alike) say that prefix should hold
once everything is promoted (kpromo's --manifest-based-snapshot-of).

Exit status: 0 on success, 1 when a registry could not be read (or, with
--from-manifests, when the manifests have errors: their entries are left out),
2 for usage errors.`,
		Example: `  promoter snapshot registry.example/team > images.yaml
  promoter snapshot --repo app --repo tools/cli registry.example/team
  promoter snapshot -o csv --tag v1.2.0 registry.example/team
  promoter snapshot --from-manifests prod.example/team path/to/manifests`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.snapshot(cmd.Context(), &f, args)
		},
	}
	f.in.register(cmd)
	cmd.Flags().StringVarP(&f.output, "output", "o", "yaml", "output format: yaml (an images.yaml) or csv (kpromo's snapshot CSV)")
	cmd.Flags().StringVar(&f.tag, "tag", "", "only digests with this tag, listed with this tag only (kpromo's --snapshot-tag)")
	cmd.Flags().BoolVar(&f.minimal, "minimal", false, "leave out index children without tags of their own (kpromo's --minimal-snapshot); reads no index")
	cmd.Flags().StringArrayVar(&f.repos, "repo", nil, "repository to snapshot, relative to the prefix, instead of the registry's catalog (repeatable)")
	cmd.Flags().StringVar(&f.fromManifests, "from-manifests", "", "print what the manifests say REGISTRY[/PREFIX] should hold, reading no registry")
	cmd.Flags().IntVarP(&f.jobs, "jobs", "j", 8, "registry requests in flight")
	cmd.Flags().StringArrayVar(&f.insecure, "insecure-registry", nil, "registry host to reach over plain HTTP (loopback hosts always are)")
	f.limits.registerLimits(cmd)
	return cmd
}

func (e *env) snapshot(ctx context.Context, f *snapshotFlags, args []string) error {
	format, err := snapshot.ParseFormat(f.output)
	if err != nil {
		return usageErr("%v", err)
	}
	if f.jobs < 1 {
		return usageErr("--jobs must be at least 1")
	}
	log := e.logger()
	opts := []snapshot.Option{snapshot.WithTag(f.tag), snapshot.WithMinimal(f.minimal), snapshot.WithRepos(f.repos...),
		snapshot.WithJobs(f.jobs), snapshot.WithLogger(log)}
	if f.fromManifests != "" {
		return e.snapshotManifests(f, args, format, opts)
	}
	if len(f.in.files) > 0 || len(f.in.thinDirs) > 0 {
		return usageErr("--manifest and --thin-manifest-dir are read with --from-manifests only")
	}
	if len(args) != 1 {
		return usageErr("snapshot takes one REGISTRY[/PREFIX] (got %d arguments), or --from-manifests REGISTRY[/PREFIX] and manifests", len(args))
	}
	prefix, err := snapshot.ParsePrefix(args[0])
	if err != nil {
		return usageErr("%v", err)
	}
	client, err := access.New(append(f.limits.accessOptions(), access.WithInsecureRegistries(f.insecure...), access.WithLogger(log))...)
	if err != nil {
		return usageErr("%v", err)
	}
	snap, err := snapshot.Take(ctx, client, prefix, opts...)
	switch {
	case errors.Is(err, snapshot.ErrBadOption):
		return usageErr("%v", err)
	case errors.Is(err, snapshot.ErrNoCatalog):
		return &ExitError{Code: ExitProblems, Err: fmt.Errorf("%w\nname the repositories to snapshot with --repo NAME (relative to %s), once per repository", err, prefix)}
	case err != nil:
		return err
	}
	return e.writeSnapshot(format, snap, prefix.String())
}

// snapshotManifests is snapshot --from-manifests.
func (e *env) snapshotManifests(f *snapshotFlags, args []string, format snapshot.Format, opts []snapshot.Option) error {
	if f.minimal {
		return usageErr("--minimal does not apply to --from-manifests: which digests are index children is only known to the registry")
	}
	prefix, err := snapshot.ParsePrefix(f.fromManifests)
	if err != nil {
		return usageErr("--from-manifests: %v", err)
	}
	inputs, err := f.in.inputs(args)
	if err != nil {
		return err
	}
	res := validate.Validate(manifest.Load(inputs))
	snap, err := snapshot.FromGroups(res.Groups, prefix, opts...)
	if err != nil {
		return usageErr("%v", err)
	}
	if err := e.writeSnapshot(format, snap, prefix.String()+" (from the manifests)"); err != nil {
		return err
	}
	if n := diag.Errors(res.Problems); n > 0 || res.Unreadable {
		fmt.Fprintf(e.stderr, "the manifests have %s (see promoter validate): the entries concerned are left out of the snapshot\n", render.Plural(n, "error"))
		return &ExitError{Code: ExitProblems}
	}
	return nil
}

func (e *env) writeSnapshot(format snapshot.Format, snap *snapshot.Snapshot, what string) error {
	if err := snapshot.Write(e.stdout, format, snap); err != nil {
		return err
	}
	images, digests, tags := snap.Counts()
	fmt.Fprintf(e.stderr, "snapshot of %s: %s, %s, %s\n", what, render.Plural(images, "image"), render.Plural(digests, "digest"), render.Plural(tags, "tag"))
	return nil
}
