package version_test

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imgpromoter/promoter/internal/version"
)

// These tests build the real binary and run `promoter version`: the build
// information is written by the go command and the linker, so only a built
// binary shows that it is read right. Every build is static and uses
// -trimpath, as the release and image builds do, so the packages are
// compiled once (in CI, by .ci/run before the tests) and then come from the
// build cache.

const modulePath = "github.com/imgpromoter/promoter"

// goTool returns the go command of the toolchain running the tests.
func goTool(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the promoter binary: skipped with -short")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	return goCmd
}

// moduleRoot returns the directory of this module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// command runs name with args in dir with env added to the test's
// environment, and returns stdout; it fails the test on any error.
func command(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// versionOf runs `BIN version -o json` and `BIN --version`, checks that
// --version prints what `version` prints, and returns the JSON.
func versionOf(t *testing.T, bin string) version.Info {
	t.Helper()
	var info version.Info
	if err := json.Unmarshal([]byte(command(t, "", nil, bin, "version", "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	text := command(t, "", nil, bin, "version")
	if flag := command(t, "", nil, bin, "--version"); flag != text {
		t.Errorf("--version prints\n%s\nbut version prints\n%s", flag, text)
	}
	if !strings.HasPrefix(text, "promoter "+info.Version+"\n  commit:   "+info.Commit) {
		t.Errorf("text output does not match the JSON %+v:\n%s", info, text)
	}
	return info
}

// skipped reports whether the walk of the module root must leave out
// rel: the git metadata (a directory, or in a git worktree a file that
// points to the real repository, which git commands in the copy would then
// change) and GoReleaser's dist/.
func skipped(rel string, d fs.DirEntry) bool {
	return rel == ".git" || (d.IsDir() && rel == "dist")
}

// copyModule copies the module's source (no .git, no dist/) into dst.
func copyModule(t *testing.T, dst string) {
	t.Helper()
	root := moduleRoot(t)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if skipped(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil // symlinks are not source
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBinaryBuiltInGitClone(t *testing.T) {
	goCmd := goTool(t)
	git, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("git is needed (CI=%s): %v", os.Getenv("CI"), err)
		}
		t.Skip("git is not installed (apt-get install git); it is needed to stamp a commit")
	}
	src := t.TempDir()
	copyModule(t, src)
	gitEnv := []string{
		// Only ever the new repository in src, whatever is around it.
		"GIT_DIR=" + filepath.Join(src, ".git"), "GIT_WORK_TREE=" + src, "GIT_CEILING_DIRECTORIES=" + filepath.Dir(src),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid",
		"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z",
	}
	command(t, src, gitEnv, git, "init", "-q")
	command(t, src, gitEnv, git, "add", "-A")
	command(t, src, gitEnv, git, "commit", "-q", "-m", "release")
	head := strings.TrimSpace(command(t, src, gitEnv, git, "rev-parse", "HEAD"))

	bin := filepath.Join(t.TempDir(), "promoter")
	build := func() version.Info {
		// GOFLAGS is cleared: a machine-wide -buildvcs=false would hide the commit.
		command(t, src, []string{"GOFLAGS=", "GOTOOLCHAIN=local", "CGO_ENABLED=0"}, goCmd, "build", "-trimpath", "-buildvcs=true", "-o", bin, "./cmd/promoter")
		return versionOf(t, bin)
	}
	got := build()
	want := version.Info{
		Version:   "v0.0.0-20260102030405-" + head[:12], // the go command's pseudo-version of an untagged commit
		Commit:    head,
		Date:      "2026-01-02T03:04:05Z",
		GoVersion: got.GoVersion,
		Platform:  got.Platform,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("clean clone (-want +got):\n%s", diff)
	}

	// An uncommitted change is reported.
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got = build()
	want.Version += "+dirty"
	want.Modified = true
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("modified clone (-want +got):\n%s", diff)
	}
	if text := command(t, "", nil, bin, "version"); !strings.Contains(text, "  commit:   "+head+" (with uncommitted changes)\n") {
		t.Errorf("text does not say the work tree was modified:\n%s", text)
	}
}

func TestBinaryReleaseLdflags(t *testing.T) {
	goCmd := goTool(t)
	bin := filepath.Join(t.TempDir(), "promoter")
	// The flags .goreleaser.yaml passes.
	ldflags := fmt.Sprintf("-s -w -X %[1]s/internal/version.version=v9.8.7 -X %[1]s/internal/version.commit=%[2]s -X %[1]s/internal/version.date=2026-05-06T07:08:09Z",
		modulePath, strings.Repeat("ab", 20))
	command(t, moduleRoot(t), []string{"GOTOOLCHAIN=local", "CGO_ENABLED=0"}, goCmd, "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/promoter")
	got := versionOf(t, bin)
	want := version.Info{Version: "v9.8.7", Commit: strings.Repeat("ab", 20), Date: "2026-05-06T07:08:09Z", GoVersion: got.GoVersion, Platform: got.Platform}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("release build (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got.GoVersion, "go1.") {
		t.Errorf("go version %q", got.GoVersion)
	}
}

// TestBinaryGoInstall installs the module at a version from a module proxy
// in a local folder (the module's source zipped as that version, and the
// module cache for its dependencies), as `go install MODULE/cmd/promoter@v1.2.3`
// from the public proxy would, and checks the binary reports v1.2.3.
func TestBinaryGoInstall(t *testing.T) {
	goCmd := goTool(t)
	const v = "v1.2.3"
	proxy := t.TempDir()
	vdir := filepath.Join(proxy, filepath.FromSlash(modulePath), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	root := moduleRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"list":      v + "\n",
		v + ".info": `{"Version":"` + v + `","Time":"2026-01-02T03:04:05Z"}`,
		v + ".mod":  string(gomod),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(vdir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeModuleZip(filepath.Join(vdir, v+".zip"), root, modulePath+"@"+v+"/"); err != nil {
		t.Fatal(err)
	}

	modcache := strings.TrimSpace(command(t, root, nil, goCmd, "env", "GOMODCACHE"))
	gobin := t.TempDir()
	command(t, t.TempDir(), []string{
		"GOBIN=" + gobin,
		"GOPROXY=file://" + filepath.ToSlash(proxy) + ",file://" + filepath.ToSlash(filepath.Join(modcache, "cache", "download")),
		"GOSUMDB=off", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0",
	}, goCmd, "install", "-trimpath", modulePath+"/cmd/promoter@"+v)

	got := versionOf(t, filepath.Join(gobin, "promoter"))
	want := version.Info{Version: v, Commit: version.Unknown, Date: version.Unknown, GoVersion: got.GoVersion, Platform: got.Platform}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("go install %s (-want +got):\n%s", v, diff)
	}
}

// writeModuleZip writes the files of the module at root to a module zip
// whose entries start with prefix ("MODULE@VERSION/").
func writeModuleZip(path, root, prefix string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	zw := zip.NewWriter(f)
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if skipped(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		w, err := zw.Create(prefix + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(w, src)
		return err
	})
	return errors.Join(walkErr, zw.Close())
}
