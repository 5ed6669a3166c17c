package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

// k8sJob is the part of a batch/v1 Job the example is checked for.
type k8sJob struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		CompletionMode       string `yaml:"completionMode"`
		Completions          int    `yaml:"completions"`
		Parallelism          int    `yaml:"parallelism"`
		BackoffLimitPerIndex *int   `yaml:"backoffLimitPerIndex"`
		PodReplacementPolicy string `yaml:"podReplacementPolicy"`
		Template             struct {
			Spec struct {
				RestartPolicy string `yaml:"restartPolicy"`
				Containers    []struct {
					Args []string `yaml:"args"`
					Env  []struct {
						Name      string         `yaml:"name"`
						Value     *string        `yaml:"value"`
						ValueFrom map[string]any `yaml:"valueFrom"`
					} `yaml:"env"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
						Items      []struct {
							Key  string `yaml:"key"`
							Path string `yaml:"path"`
						} `yaml:"items"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func readK8sJob(t *testing.T, file, id string) k8sJob {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", "kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	var j k8sJob
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(string(b), "RUN_ID", id)), &j); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if j.Kind != "Job" || len(j.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: not a Job with one container", file)
	}
	return j
}

// expandK8s expands $(VAR) in s the way Kubernetes expands container args.
var k8sVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// TestKubernetesExample runs examples/kubernetes as Kubernetes would: the
// Indexed Job's container, once per completion index at the same time,
// with the environment Kubernetes gives it (JOB_COMPLETION_INDEX, the
// env of the manifest, $(VAR) expanded in the args, the volumes' paths
// mapped onto temporary directories), against real registries; then the
// merge Job's container on the reports. Everything asked for must be
// promoted and the merge must accept the shards.
func TestKubernetesExample(t *testing.T) {
	e2e(t)
	const runID = "e2e"
	const name = "promoter-" + runID
	job := readK8sJob(t, "promoter-job.yaml", runID)
	merge := readK8sJob(t, "merge-job.yaml", runID)
	s := job.Spec
	pod := s.Template.Spec
	if s.CompletionMode != "Indexed" || s.BackoffLimitPerIndex == nil || s.PodReplacementPolicy != "Failed" || pod.RestartPolicy != "Never" {
		t.Errorf("job spec: completionMode %q, backoffLimitPerIndex %v, podReplacementPolicy %q, restartPolicy %q", s.CompletionMode, s.BackoffLimitPerIndex, s.PodReplacementPolicy, pod.RestartPolicy)
	}
	secret := false
	for _, v := range pod.Volumes {
		if v.Secret != nil && len(v.Secret.Items) == 1 && v.Secret.Items[0].Key == ".dockerconfigjson" && v.Secret.Items[0].Path == "config.json" {
			secret = true
		}
	}
	if !secret {
		t.Error("no volume with the registry credentials Secret as config.json")
	}
	c := pod.Containers[0]

	regs := startRegistries(t)
	ps := shardSet(t, regs.src())
	manifests, _ := thinDir(t, "sample", regs.spec(), entries(ps...))
	reports, docker := t.TempDir(), t.TempDir()
	// The volumes, mapped onto this machine.
	mounts := map[string]string{"/manifests/repo": manifests, "/reports": reports, "/docker": docker}
	mapPaths := func(s string) string {
		for from, to := range mounts {
			if s == from || strings.HasPrefix(s, from+"/") {
				return to + strings.TrimPrefix(s, from)
			}
			if i := strings.Index(s, "="+from); i >= 0 {
				return s[:i+1] + to + s[i+1+len(from):]
			}
		}
		return s
	}
	env := func(index int) map[string]string {
		vars := map[string]string{"JOB_COMPLETION_INDEX": strconv.Itoa(index)}
		for _, e := range c.Env {
			switch {
			case e.Value != nil:
				vars[e.Name] = mapPaths(*e.Value)
			case e.Name == "JOB_NAME":
				vars[e.Name] = name // metadata.labels['job-name']
			default:
				t.Fatalf("env %s: unsupported valueFrom %v", e.Name, e.ValueFrom)
			}
		}
		return vars
	}
	if got := env(0)["PROMOTER_SHARD_COUNT"]; got != strconv.Itoa(s.Completions) || s.Parallelism != s.Completions {
		t.Fatalf("PROMOTER_SHARD_COUNT %q, completions %d, parallelism %d: they must agree", got, s.Completions, s.Parallelism)
	}
	run := func(args []string, vars map[string]string) result {
		var expanded []string
		for _, a := range args {
			a = k8sVar.ReplaceAllStringFunc(a, func(m string) string {
				if v, ok := vars[m[2:len(m)-1]]; ok {
					return v
				}
				return m
			})
			expanded = append(expanded, mapPaths(a))
		}
		ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
		defer cancel()
		cmd := promoterCmd(ctx, t, expanded...)
		for k, v := range vars {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		_ = cmd.Run()
		return result{args: expanded, code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
	}

	var wg sync.WaitGroup
	results := make([]result, s.Completions)
	for i := range s.Completions {
		wg.Go(func() { results[i] = run(c.Args, env(i)) })
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("index %d: exit %d\n%s", i, r.code, r)
		}
		if _, err := os.Stat(filepath.Join(reports, name, fmt.Sprintf("shard-%d.json", i))); err != nil {
			t.Errorf("index %d wrote no report: %v", i, err)
		}
	}
	wantPromoted(t, regs.src(), regs.dests(), ps...)
	if files, _ := filepath.Glob(filepath.Join(reports, "state", "promoter.state.shard-*")); len(files) != s.Completions {
		t.Errorf("state files %v, want one per index", files)
	}

	m := run(merge.Spec.Template.Spec.Containers[0].Args, map[string]string{})
	wantExit(t, m, 0)
	wantContains(t, "merge job output", m.stdout, m, fmt.Sprintf("Merged %d shards of plan", s.Completions), "### Promotion run:")
}
