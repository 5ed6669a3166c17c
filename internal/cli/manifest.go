package cli

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/internal/render"
	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/manifestedit"
	"github.com/imgpromoter/promoter/pkg/report"
)

// newManifestCmd groups the manifest editing commands (add, fmt).
func newManifestCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Grow and format manifests: add images from staging, rewrite in canonical form",
		Long: `manifest edits promoter manifests as text, keeping every comment:

  promoter manifest add   adds images from the staging registry to a project
                          of a thin manifest directory
  promoter manifest fmt   rewrites images lists in canonical form (--check for CI)

See docs/manifest-editing.md.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("unknown command %q for promoter manifest (see promoter manifest --help)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newManifestAddCmd(e), newManifestFmtCmd(e))
	return cmd
}

func newManifestAddCmd(e *env) *cobra.Command {
	var (
		dir, project, image, filter, output string
		tags, digests, insecure             []string
		allowLatest, dryRun                 bool
		limits                              hostLimits
	)
	cmd := &cobra.Command{
		Use:   "add --thin-manifest-dir DIR --project P --image NAME [--tag TAG]... [--digest DIGEST]... [--tag-filter REGEX]",
		Short: "Add images from the staging registry to a project's images.yaml",
		Long: `add looks the given tags up in the project's staging registry (the src registry
of DIR/manifests/P/promoter-manifest.yaml) and lists each digest with its tags
in DIR/images/P/images.yaml. The file is edited as text: existing lines and
comments stay as they are. Adding what is there changes nothing.

Refused, with nothing written: the tag latest (unless --allow-latest), a tag the
image already has for another digest, a tag or digest missing in staging, and
anything that would make the directory fail validation.
Exit status: 0 when done (or nothing to do), 1 when refused or failed, 2 for
usage errors.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := report.ParseFormat(output, report.Text, report.JSON)
			if err != nil {
				return usageErr("%v", err)
			}
			for _, req := range [][2]string{{"--thin-manifest-dir", dir}, {"--project", project}, {"--image", image}} {
				if req[1] == "" {
					return usageErr("%s is required", req[0])
				}
			}
			if len(tags) == 0 && len(digests) == 0 && filter == "" {
				return usageErr("nothing to add: give --tag, --digest or --tag-filter")
			}
			req := manifestedit.Request{ThinDir: dir, Project: project, Image: image, Tags: tags}
			for _, d := range digests {
				h, err := v1.NewHash(d)
				if err != nil {
					return usageErr("--digest %q: %v", d, err)
				}
				req.Digests = append(req.Digests, h)
			}
			if filter != "" {
				re, err := regexp.Compile(`^(?:` + filter + `)$`)
				if err != nil {
					return usageErr("--tag-filter: %v", err)
				}
				req.TagFilter = re
			}
			client, err := access.New(append(limits.accessOptions(), access.WithInsecureRegistries(insecure...), access.WithLogger(e.logger()))...)
			if err != nil {
				return usageErr("%v", err)
			}
			var opts []manifestedit.Option
			if allowLatest {
				opts = append(opts, manifestedit.AllowLatest())
			}
			if dryRun {
				opts = append(opts, manifestedit.DryRun())
			}
			rep, err := manifestedit.Add(cmd.Context(), client, req, opts...)
			var refused *manifestedit.RefusedError
			if err != nil && !errors.As(err, &refused) {
				return err
			}
			if werr := writeAddReport(e.stdout, format, rep); werr != nil {
				return werr
			}
			if refused != nil {
				return &ExitError{Code: ExitProblems}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "thin-manifest-dir", "", "thin manifest directory holding manifests/ and images/")
	fl.StringVar(&project, "project", "", "project: the folder name under manifests/ and images/")
	fl.StringVar(&image, "image", "", "image name inside the registries (as in the manifest's name:)")
	fl.StringSliceVar(&tags, "tag", nil, "tag to look up in staging and add with its digest (repeatable, or comma-separated)")
	fl.StringSliceVar(&digests, "digest", nil, "digest to add without tags; must exist in staging (repeatable, or comma-separated)")
	fl.StringVar(&filter, "tag-filter", "", "add every staging tag matching this regular expression (matched against the whole tag)")
	fl.BoolVar(&allowLatest, "allow-latest", false, "allow the tag latest (refused by default: it is not a reviewed release)")
	fl.BoolVar(&dryRun, "dry-run", false, "report what would be added, write nothing")
	fl.StringVarP(&output, "output", "o", "text", "output format: text or json")
	fl.StringArrayVar(&insecure, "insecure-registry", nil, "registry host to reach over plain HTTP (loopback hosts always are)")
	limits.registerLimits(cmd)
	return cmd
}

// writeAddReport renders what add did.
func writeAddReport(w io.Writer, f report.Format, rep *manifestedit.Report) error {
	if f == report.JSON {
		return render.WriteJSON(w, rep)
	}
	var b strings.Builder
	digests, tags := 0, 0
	for _, c := range rep.Changes {
		ref := rep.Image + "@" + c.Digest
		switch c.Kind {
		case manifestedit.NewImage, manifestedit.NewDigest:
			digests++
			what := "added"
			if c.Kind == manifestedit.NewImage {
				what = "added in a new entry"
			}
			fmt.Fprintf(&b, "%s: %s: %s, %s\n", c.Pos, ref, what, addTagList(c.Added))
		case manifestedit.NewTags:
			tags += len(c.Added)
			fmt.Fprintf(&b, "%s: %s: tags added: %s\n", c.Pos, ref, strings.Join(c.Added, ", "))
		case manifestedit.Present:
			fmt.Fprintf(&b, "%s: %s: already listed, %s\n", c.Pos, ref, addTagList(c.Tags))
		}
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(&b, "skipped %s:%s (%s): %s\n", rep.Image, s.Tag, s.Digest, s.Reason)
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(&b, p)
	}
	switch {
	case len(rep.Problems) > 0:
		fmt.Fprintf(&b, "refused: nothing written (%s)\n", render.Plural(len(rep.Problems), "problem"))
	case !rep.Changed:
		fmt.Fprintf(&b, "nothing to add: %s already lists everything asked for\n", rep.File)
	default:
		verb := "wrote"
		if !rep.Written {
			verb = "would write (dry run)"
		}
		var parts []string
		if digests > 0 {
			parts = append(parts, render.Plural(digests, "digest")+" added")
		}
		if tags > 0 {
			parts = append(parts, render.Plural(tags, "tag")+" added to listed digests")
		}
		fmt.Fprintf(&b, "%s %s: %s\n", verb, rep.File, strings.Join(parts, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func addTagList(tags []string) string {
	if len(tags) == 0 {
		return "no tags (by digest only)"
	}
	return "tags " + strings.Join(tags, ", ")
}

func newManifestFmtCmd(e *env) *cobra.Command {
	var in inputFlags
	var check bool
	cmd := &cobra.Command{
		Use:   "fmt [PATH...] [--check]",
		Short: "Rewrite images lists in canonical form (--check: only say which files would change)",
		Long: `fmt rewrites the images lists of plain manifests and of the images.yaml files
of thin manifest directories in canonical form, keeping every entry, in order,
and every comment. Registries are left as written. It prints the files it
changed (with --check: the files it would change, writing nothing).
Exit status: 0 when every file is (or now is) canonical, 1 when --check finds
a file to change or a file cannot be formatted, 2 for usage errors.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inputs, err := in.inputs(args)
			if err != nil {
				return err
			}
			files, err := manifestedit.Files(inputs)
			if err != nil {
				return usageErr("%v", err)
			}
			changed, failed := 0, 0
			for _, f := range files {
				c, err := manifestedit.FormatFile(f, !check)
				if err != nil {
					failed++
					fmt.Fprintf(e.stderr, "%v (not formatted)\n", err)
					continue
				}
				if c {
					changed++
					fmt.Fprintln(e.stdout, f)
				}
			}
			if check && changed > 0 {
				fmt.Fprintf(e.stderr, "%s not in canonical form; to fix, run: %s\n", render.Plural(changed, "file"), fmtCommand(in, args))
			}
			if failed > 0 || (check && changed > 0) {
				return &ExitError{Code: ExitProblems}
			}
			return nil
		},
	}
	in.register(cmd)
	cmd.Flags().BoolVar(&check, "check", false, "write nothing; exit 1 and list the files that are not in canonical form")
	return cmd
}

// fmtCommand is the command that formats what `manifest fmt --check` was
// given: the same inputs, without --check, quoted for a POSIX shell.
func fmtCommand(in inputFlags, args []string) string {
	parts := []string{"promoter", "manifest", "fmt"}
	for _, f := range in.files {
		parts = append(parts, "--manifest", shellQuote(f))
	}
	for _, d := range in.thinDirs {
		parts = append(parts, "--thin-manifest-dir", shellQuote(d))
	}
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote returns s as one POSIX shell word: as it is when it holds only
// characters no shell treats specially, else in single quotes.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:@,+=%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
