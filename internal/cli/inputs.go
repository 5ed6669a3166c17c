package cli

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/manifest"
)

// inputFlags are the manifest inputs every command takes.
type inputFlags struct {
	files    []string
	thinDirs []string
}

func (f *inputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.files, "manifest", "m", nil, "plain promoter manifest file (repeatable)")
	cmd.Flags().StringArrayVar(&f.thinDirs, "thin-manifest-dir", nil, "thin manifest directory holding manifests/ and images/ (repeatable)")
}

// inputs merges flags and positional paths (a directory is a thin manifest
// directory, a file a plain manifest).
func (f *inputFlags) inputs(args []string) (manifest.Inputs, error) {
	in := manifest.Inputs{Files: f.files, ThinDirs: f.thinDirs}
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return in, usageErr("cannot read %s: %v", a, err)
		}
		if st.IsDir() {
			in.ThinDirs = append(in.ThinDirs, a)
		} else {
			in.Files = append(in.Files, a)
		}
	}
	if len(in.Files) == 0 && len(in.ThinDirs) == 0 {
		return in, usageErr("no manifests given: name a manifest file or a thin manifest directory (--manifest FILE, --thin-manifest-dir DIR, or a path)")
	}
	return in, nil
}
