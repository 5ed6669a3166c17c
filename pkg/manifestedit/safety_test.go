package manifestedit

import (
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/manifest"
)

// TestAddNeverWritesOutside checks that add neither reads nor writes
// through a symbolic link: an images file, or a project folder, linked to a
// place outside the thin directory stays untouched, and add refuses.
func TestAddNeverWritesOutside(t *testing.T) {
	s := newStaging(t)
	for _, link := range []string{"images/team/images.yaml", "images/team"} {
		t.Run(link, func(t *testing.T) {
			top := t.TempDir()
			dir := writeThin(t, filepath.Join(top, "tree"), "team", s.registries(), nil)
			outside := filepath.Join(top, "outside")
			if err := os.MkdirAll(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			const before = "- name: other\n  dmap: {}\n"
			if err := os.WriteFile(filepath.Join(outside, "images.yaml"), []byte(before), 0o644); err != nil {
				t.Fatal(err)
			}
			target := outside
			if filepath.Base(link) == "images.yaml" {
				target = filepath.Join(outside, "images.yaml")
			}
			at := filepath.Join(dir, filepath.FromSlash(link))
			if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, at); err != nil {
				t.Skip("no symbolic links here:", err)
			}
			_, err := Add(t.Context(), client(t), Request{ThinDir: dir, Project: "team", Image: "app", Digests: []v1.Hash{s.v100}})
			if err == nil {
				t.Error("add wrote through a link")
			}
			if data, _ := os.ReadFile(filepath.Join(outside, "images.yaml")); string(data) != before {
				t.Errorf("the file outside the tree was changed:\n%s", data)
			}
			if st, err := os.Lstat(at); err != nil || st.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the link was replaced: %v", err)
			}
		})
	}
}

// TestFilesRefusesLinkedFolder checks that fmt's file list does not go
// through a linked project folder, which the glob would follow.
func TestFilesRefusesLinkedFolder(t *testing.T) {
	top := t.TempDir()
	dir := writeThin(t, filepath.Join(top, "tree"), "team", "registries: []\n", []byte("[]\n"))
	if err := os.MkdirAll(filepath.Join(top, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "outside", "images.yaml"), []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(top, "outside"), filepath.Join(dir, "images", "other")); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	if files, err := Files(manifest.Inputs{ThinDirs: []string{dir}}); err == nil {
		t.Errorf("Files = %v, want the linked folder refused", files)
	}
}
