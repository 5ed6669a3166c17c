package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The GitHub Action (action.yml) is tested by running its steps the way the
// Actions runner does (expressions of inputs, runner and steps substituted,
// GITHUB_PATH and GITHUB_OUTPUT honoured, `if:` evaluated) against a release
// laid out as GoReleaser publishes it (.goreleaser.yaml), in a folder reached
// through a file:// download-url.

// actionSpec is the part of action.yml the test runner understands.
type actionSpec struct {
	Inputs map[string]struct {
		Required bool   `yaml:"required"`
		Default  string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Value string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Using string       `yaml:"using"`
		Steps []actionStep `yaml:"steps"`
	} `yaml:"runs"`
}

type actionStep struct {
	Name             string            `yaml:"name"`
	ID               string            `yaml:"id"`
	If               string            `yaml:"if"`
	Shell            string            `yaml:"shell"`
	Run              string            `yaml:"run"`
	WorkingDirectory string            `yaml:"working-directory"`
	Env              map[string]string `yaml:"env"`
}

// actionRun is the outcome of running the action.
type actionRun struct {
	err     error
	log     string            // stdout and stderr of every step
	outputs map[string]string // the action's outputs
}

var expr = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// runAction runs action.yml at the repository root with inputs, as a step
// whose env: is callerEnv.
func runAction(t *testing.T, inputs, callerEnv map[string]string) actionRun {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var spec actionSpec
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if spec.Runs.Using != "composite" {
		t.Fatalf("action.yml runs.using = %q, want composite", spec.Runs.Using)
	}
	in := map[string]string{}
	for k, v := range spec.Inputs {
		in[k] = v.Default
		if v.Required && inputs[k] == "" {
			t.Fatalf("required input %q not given", k)
		}
	}
	for k, v := range inputs {
		if _, ok := spec.Inputs[k]; !ok {
			t.Fatalf("action.yml has no input %q", k)
		}
		in[k] = v
	}
	tmp := t.TempDir()
	runnerTemp := filepath.Join(tmp, "runner-temp")
	if err := os.Mkdir(runnerTemp, 0o755); err != nil {
		t.Fatal(err)
	}
	pathFile := filepath.Join(tmp, "github-path")
	if err := os.WriteFile(pathFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stepOutputs := map[string]map[string]string{}
	eval := func(s string) string {
		return expr.ReplaceAllStringFunc(s, func(m string) string {
			e := expr.FindStringSubmatch(m)[1]
			switch {
			case strings.HasPrefix(e, "inputs."):
				return in[strings.TrimPrefix(e, "inputs.")]
			case e == "runner.temp":
				return runnerTemp
			case strings.HasPrefix(e, "steps."):
				parts := strings.Split(e, ".") // steps.ID.outputs.NAME
				if len(parts) == 4 && parts[2] == "outputs" {
					return stepOutputs[parts[1]][parts[3]]
				}
			}
			t.Fatalf("action.yml: expression %q is not understood by this test", m)
			return ""
		})
	}
	ifInputSet := regexp.MustCompile(`^\$\{\{\s*inputs\.([a-z-]+)\s*!=\s*''\s*\}\}$`)

	var log strings.Builder
	for _, st := range spec.Runs.Steps {
		if st.If != "" {
			m := ifInputSet.FindStringSubmatch(st.If)
			if m == nil {
				t.Fatalf("action.yml: step %q: if: %q is not understood by this test", st.Name, st.If)
			}
			if in[m[1]] == "" {
				continue
			}
		}
		if st.Shell != "bash" {
			t.Fatalf("step %q: shell %q, want bash (the same on every runner)", st.Name, st.Shell)
		}
		outFile := filepath.Join(tmp, "output-"+st.ID)
		if err := os.WriteFile(outFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		pathLines, err := os.ReadFile(pathFile)
		if err != nil {
			t.Fatal(err)
		}
		path := os.Getenv("PATH")
		for _, p := range strings.Split(strings.TrimSpace(string(pathLines)), "\n") {
			if p != "" {
				path = p + string(os.PathListSeparator) + path
			}
		}
		env := append(os.Environ(),
			"PATH="+path,
			"GITHUB_ACTION_PATH="+root,
			"GITHUB_PATH="+pathFile,
			"GITHUB_OUTPUT="+outFile,
			"RUNNER_TEMP="+runnerTemp,
			"RUNNER_OS=Linux",
		)
		for k, v := range callerEnv {
			env = append(env, k+"="+v)
		}
		for k, v := range st.Env {
			env = append(env, k+"="+eval(v))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		// The runner's bash: `bash --noprofile --norc -eo pipefail {0}`.
		cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", st.Run)
		cmd.Env = env
		cmd.Dir = root
		if wd := eval(st.WorkingDirectory); wd != "" {
			cmd.Dir = filepath.Join(root, wd)
		}
		out, err := cmd.CombinedOutput()
		cancel()
		log.Write(out)
		b, rerr := os.ReadFile(outFile)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if st.ID != "" {
			stepOutputs[st.ID] = map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					stepOutputs[st.ID][k] = v
				}
			}
		}
		if err != nil {
			return actionRun{err: fmt.Errorf("step %q: %w", st.Name, err), log: log.String()}
		}
	}
	outputs := map[string]string{}
	for k, v := range spec.Outputs {
		outputs[k] = eval(v.Value)
	}
	return actionRun{log: log.String(), outputs: outputs}
}

// release is a fake GitHub release folder: base/TAG/ASSETS.
type release struct {
	base string // the download-url: file://...
	dir  string // base's folder
}

// fakeRelease lays out release tag as GoReleaser names its assets, with bin
// as the binary of the machine's platform (other platforms get a stand-in),
// and the checksums file over every archive.
func fakeRelease(t *testing.T, tag string, bin []byte) release {
	t.Helper()
	dir := t.TempDir()
	v := strings.TrimPrefix(tag, "v")
	rel := filepath.Join(dir, tag)
	if err := os.Mkdir(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	var sums strings.Builder
	for _, goos := range []string{"linux", "darwin", "windows"} {
		for _, arch := range []string{"amd64", "arm64"} {
			content := []byte("stand-in for " + goos + "/" + arch)
			if goos == runtime.GOOS && arch == runtime.GOARCH {
				content = bin
			}
			name := fmt.Sprintf("promoter_%s_%s_%s", v, goos, arch)
			var archive []byte
			if goos == "windows" {
				name += ".zip"
				archive = zipOf(t, map[string][]byte{"promoter.exe": content, "README.md": []byte("readme\n")})
			} else {
				name += ".tar.gz"
				archive = tarGzOf(t, map[string][]byte{"promoter": content, "README.md": []byte("readme\n")})
			}
			if err := os.WriteFile(filepath.Join(rel, name), archive, 0o644); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(archive)
			fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
		}
	}
	if err := os.WriteFile(filepath.Join(rel, "promoter_"+v+"_checksums.txt"), []byte(sums.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return release{base: "file://" + filepath.ToSlash(dir), dir: dir}
}

func tarGzOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range []string{"README.md", "promoter"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range []string{"README.md", "promoter.exe"} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// releaseBinary builds the promoter as a release build of tag would report
// itself (the version set at link time, as .goreleaser.yaml does).
func releaseBinary(t *testing.T, tag string) []byte {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "promoter")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin,
		"-ldflags", "-X github.com/imgpromoter/promoter/internal/version.version="+tag,
		"github.com/imgpromoter/promoter/cmd/promoter")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// needTools fails (in CI) or skips when a tool the action's script uses is
// missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is needed by action/install.sh: apt-get install %s", tool, tool)
			}
			t.Skipf("%s is not installed (apt-get install %s); action/install.sh needs it", tool, tool)
		}
	}
}

func TestActionInstallsAndRuns(t *testing.T) {
	e2e(t)
	needTools(t, "bash", "curl", "tar", "sha256sum", "unzip")
	if runtime.GOOS != "linux" {
		t.Skipf("runs the linux action steps; on %s the action is linted only", runtime.GOOS)
	}
	const tag = "v1.2.3"
	rel := fakeRelease(t, tag, releaseBinary(t, tag))
	out := filepath.Join(t.TempDir(), "out.txt")

	got := runAction(t, map[string]string{
		"version":      tag,
		"download-url": rel.base,
		"run":          `promoter validate "$MANIFESTS"; promoter version | head -n 1 > "$OUT"`,
	}, map[string]string{"MANIFESTS": "examples/manifests-repo", "OUT": out})
	if got.err != nil {
		t.Fatalf("%v\n%s", got.err, got.log)
	}
	archive := fmt.Sprintf("promoter_1.2.3_linux_%s.tar.gz", runtime.GOARCH)
	for _, want := range []string{
		"promoter v1.2.3 (linux/" + runtime.GOARCH + ") installed in ",
		"sha256 " + sha256Hex(t, filepath.Join(rel.dir, tag, archive)) + " verified against promoter_1.2.3_checksums.txt\n",
		"promoter v1.2.3\n  commit:   unknown\n", // the install step's `promoter version`
		"2 manifests, 5 images, 8 digests, 7 tags, 16 edges (16 valid); 0 problems (0 errors, 0 warnings)\n",
	} {
		if !strings.Contains(got.log, want) {
			t.Errorf("the action's log lacks %q:\n%s", want, got.log)
		}
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "promoter v1.2.3\n" {
		t.Errorf("the run step saw %q (%v), want the installed v1.2.3 on PATH", b, err)
	}
	if p := got.outputs["path"]; !strings.HasSuffix(p, "/promoter-v1.2.3/bin/promoter") || !isFile(p) {
		t.Errorf("output path = %q, want the installed binary", p)
	}

	// Install only: no run input, no run step.
	if got := runAction(t, map[string]string{"version": tag, "download-url": rel.base}, nil); got.err != nil || strings.Contains(got.log, "manifests,") {
		t.Errorf("install only: %v\n%s", got.err, got.log)
	}
}

func TestActionRefuses(t *testing.T) {
	e2e(t)
	needTools(t, "bash", "curl", "tar", "sha256sum")
	if runtime.GOOS != "linux" {
		t.Skipf("runs the linux action steps; on %s the action is linted only", runtime.GOOS)
	}
	const tag = "v1.2.3"
	rel := fakeRelease(t, tag, []byte("#!/bin/sh\necho should not run\n"))
	archive := fmt.Sprintf("promoter_1.2.3_linux_%s.tar.gz", runtime.GOARCH)
	sumsPath := filepath.Join(rel.dir, tag, "promoter_1.2.3_checksums.txt")
	good := sha256Hex(t, filepath.Join(rel.dir, tag, archive))

	// The archive was replaced after the checksums were published.
	if err := os.WriteFile(filepath.Join(rel.dir, tag, archive), tarGzOf(t, map[string][]byte{"promoter": []byte("#!/bin/sh\necho tampered\n")}), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := sha256Hex(t, filepath.Join(rel.dir, tag, archive))

	sums, err := os.ReadFile(sumsPath)
	if err != nil {
		t.Fatal(err)
	}
	unlisted := regexp.MustCompile(`(?m)^.*_linux_`+runtime.GOARCH+`\.tar\.gz\n`).ReplaceAllString(string(sums), "")

	tests := []struct {
		name    string
		version string
		sums    string // the checksums file's content for this case
		want    string
	}{{
		name:    "checksum mismatch",
		version: tag,
		sums:    string(sums),
		want:    "promoter install: checksum mismatch for " + archive + ": got " + bad + ", promoter_1.2.3_checksums.txt says " + good + "\n",
	}, {
		name:    "archive not in the checksums file",
		version: tag,
		sums:    unlisted,
		want:    "promoter install: promoter_1.2.3_checksums.txt does not list " + archive + "\n",
	}, {
		name:    "not a release tag",
		version: "latest",
		sums:    string(sums),
		want:    "promoter install: version \"latest\" is not a release tag like v1.2.3\n",
	}, {
		name:    "no such release",
		version: "v9.9.9",
		sums:    string(sums),
		want:    "promoter install: cannot download " + rel.base + "/v9.9.9/promoter_9.9.9_checksums.txt\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(sumsPath, []byte(tt.sums), 0o644); err != nil {
				t.Fatal(err)
			}
			got := runAction(t, map[string]string{"version": tt.version, "download-url": rel.base, "run": "promoter version"}, nil)
			if got.err == nil {
				t.Fatalf("the action succeeded:\n%s", got.log)
			}
			if !strings.HasSuffix(got.log, tt.want) {
				t.Errorf("log ends\n%s\nwant it to end with\n%s", got.log, tt.want)
			}
			if strings.Contains(got.log, "should not run") || strings.Contains(got.log, "tampered") {
				t.Errorf("a binary that failed the check was run:\n%s", got.log)
			}
		})
	}
}

// TestInstallScriptWindowsZip installs the windows archive (a zip with
// promoter.exe) with the action's script on its own.
func TestInstallScriptWindowsZip(t *testing.T) {
	e2e(t)
	needTools(t, "bash", "curl", "unzip", "sha256sum")
	rel := fakeRelease(t, "v0.4.0", []byte("host binary"))
	dir := filepath.Join(t.TempDir(), "bin")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(root, "action", "install.sh"))
	cmd.Env = append(os.Environ(), "PROMOTER_VERSION=v0.4.0", "PROMOTER_INSTALL_DIR="+dir,
		"PROMOTER_DOWNLOAD_URL="+rel.base, "PROMOTER_OS=windows", "PROMOTER_ARCH=arm64")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "promoter.exe"))
	if err != nil || string(b) != "stand-in for windows/arm64" {
		t.Errorf("promoter.exe = %q (%v)", b, err)
	}
	if want := "promoter v0.4.0 (windows/arm64) installed in " + dir + ", sha256 "; !strings.HasPrefix(string(out), want) {
		t.Errorf("install.sh said %q, want %q...", out, want)
	}
}

func sha256Hex(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
