// Package demo runs a complete promotion on this machine alone: embedded
// staging and production registries on loopback, sample images (one
// multi-arch), an example thin-manifest directory, then plan, promotion,
// report and a second, no-op run. It is the README's first command.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/regtest"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/plan"
	"github.com/imgpromoter/promoter/pkg/promoter"
	"github.com/imgpromoter/promoter/pkg/report"
)

// Options configures Run.
type Options struct {
	// Dir is where the example manifest directory is written (default: a
	// new temporary directory, removed at the end unless Keep is set).
	Dir string
	// Keep leaves the registries running until ctx is cancelled, and prints
	// how to look at them.
	Keep bool
	// Out receives the demo's narration and reports.
	Out io.Writer
}

// Registry is one embedded registry server.
type Registry struct {
	Name string
	Host string
	srv  *http.Server
}

// Start serves an in-memory OCI registry on a free loopback port.
func Start(name string) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Registry{Name: name, Host: ln.Addr().String(), srv: srv}, nil
}

// Close stops the registry.
func (r *Registry) Close() error { return r.srv.Close() }

// Run executes the demo. It returns an error if any step does not do what
// the demo expects, so that it doubles as a smoke test.
func Run(ctx context.Context, o Options) (err error) {
	out := o.Out
	if out == nil {
		out = os.Stdout
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	regs := map[string]*Registry{}
	for _, n := range []string{"staging", "production-us", "production-eu"} {
		r, err := Start(n)
		if err != nil {
			return fmt.Errorf("starting embedded %s registry: %w", n, err)
		}
		regs[n] = r
		defer r.Close()
	}
	staging, us, eu := regs["staging"].Host, regs["production-us"].Host, regs["production-eu"].Host
	say("== Embedded registries on loopback (no network, no credentials)")
	say("   staging:        %s", staging)
	say("   production-us:  %s", us)
	say("   production-eu:  %s  (images go under the path prefix mirror/)", eu)

	dir := o.Dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "promoter-demo-")
		if err != nil {
			return err
		}
		if !o.Keep {
			defer os.RemoveAll(dir)
		}
	}

	say("\n== Maintainers push images to staging")
	images, err := pushSamples(ctx, staging)
	if err != nil {
		return fmt.Errorf("pushing sample images: %w", err)
	}
	for _, im := range images {
		say("   %s/demo/%s@%s  %s", staging, im.name, im.digest, im.what)
	}

	say("\n== The reviewed promoter manifest (thin layout) in %s", dir)
	if err := writeManifests(dir, staging, us, eu, images); err != nil {
		return err
	}
	for _, f := range []string{"manifests/demo/promoter-manifest.yaml", "images/demo/images.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		say("--- %s\n%s", f, b)
	}

	in := promoter.Inputs{ThinDirs: []string{dir}}
	planned := func() (*plan.Plan, error) {
		res, err := promoter.Plan(ctx, in)
		if err != nil {
			return nil, err
		}
		if res.Plan.Stats.Errors > 0 {
			return nil, fmt.Errorf("example manifests have %d problems", res.Plan.Stats.Errors)
		}
		return res.Plan, nil
	}

	say("== promoter plan %s", dir)
	p, err := planned()
	if err != nil {
		return err
	}
	if err := report.Plan(out, report.Text, p.Document()); err != nil {
		return err
	}

	say("\n== promoter run --confirm %s", dir)
	res, err := promoter.Run(ctx, in)
	if err != nil {
		return err
	}
	if err := report.Run(out, report.Text, res.Report); err != nil {
		return err
	}
	if res.Failed() || res.Report.Totals.Promoted == 0 {
		return errors.New("the demo promotion did not promote everything")
	}

	say("\n== Second run: nothing left to do")
	p2, err := planned()
	if err != nil {
		return err
	}
	if err := report.Plan(out, report.Text, p2.Document()); err != nil {
		return err
	}
	if n := len(p2.Actions()); n != 0 {
		return fmt.Errorf("second run still has %d actions", n)
	}

	if !o.Keep {
		say("\nDone. Try it on your own manifests: promoter validate DIR; promoter plan DIR; promoter run --confirm DIR")
		return nil
	}
	self, _ := os.Executable()
	if self == "" || filepath.Base(filepath.Dir(self)) == "exe" {
		self = "go run ./cmd/promoter" // under go run the binary is temporary
	}
	say("\n== Registries kept running; press Ctrl-C to stop. Look at them with the tool itself:")
	say("   %s plan %s", self, dir)
	say("   %s validate %s", self, dir)
	say("   push more to %s/demo/..., add it to %s/images/demo/images.yaml, then %s run --confirm %s", staging, dir, self, dir)
	<-ctx.Done()
	return nil
}

type sample struct {
	name   string
	digest v1.Hash
	tags   []string
	what   string
}

// pushSamples pushes deterministic images (built as the tests build
// theirs, internal/regtest): the same bytes, hence the same digests, on
// every run.
func pushSamples(ctx context.Context, host string) ([]sample, error) {
	base, err := layer("base", 1)
	if err != nil {
		return nil, err
	}
	img := func(top, arch string, seed int) (v1.Image, error) {
		l, err := layer(top, seed)
		if err != nil {
			return nil, err
		}
		return regtest.NewImage(&v1.Platform{OS: "linux", Architecture: arch}, nil,
			[]regtest.ImageLayer{{Layer: base, CreatedBy: "demo base"}, {Layer: l, CreatedBy: "demo " + top}})
	}
	hello1, err := img("hello v1", "amd64", 2)
	if err != nil {
		return nil, err
	}
	hello2, err := img("hello v2", "amd64", 3)
	if err != nil {
		return nil, err
	}
	amd, err := img("web amd64", "amd64", 4)
	if err != nil {
		return nil, err
	}
	arm, err := img("web arm64", "arm64", 5)
	if err != nil {
		return nil, err
	}
	idx, err := regtest.NewIndex([]regtest.IndexChild{
		{Image: amd, Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}},
		{Image: arm, Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}},
	})
	if err != nil {
		return nil, err
	}
	pushers := []struct {
		name string
		tags []string
		what string
		t    remote.Taggable
	}{
		{"hello", []string{"1.0", "latest-stable"}, "single-arch image", hello1},
		{"hello", []string{"1.1"}, "single-arch image, shares its base layer", hello2},
		{"web", []string{"2.1"}, "multi-arch index (linux/amd64, linux/arm64)", idx},
	}
	var out []sample
	for _, s := range pushers {
		repo, err := name.NewRepository(host + "/demo/" + s.name)
		if err != nil {
			return nil, err
		}
		d, err := digestOf(s.t)
		if err != nil {
			return nil, err
		}
		ref := repo.Digest(d.String())
		switch v := s.t.(type) {
		case v1.Image:
			err = remote.Write(ref, v, remote.WithContext(ctx))
		case v1.ImageIndex:
			err = remote.WriteIndex(ref, v, remote.WithContext(ctx))
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sample{name: s.name, digest: d, tags: s.tags, what: s.what})
	}
	return out, nil
}

func digestOf(t remote.Taggable) (v1.Hash, error) {
	switch v := t.(type) {
	case v1.Image:
		return v.Digest()
	case v1.ImageIndex:
		return v.Digest()
	}
	return v1.Hash{}, errors.New("unknown artifact")
}

// layer is a small deterministic layer: one text file.
func layer(content string, seed int) (v1.Layer, error) {
	body := strings.Repeat(content+"\n", 64*seed)
	return regtest.NewLayer("demo/"+fmt.Sprint(seed)+".txt", strings.NewReader(body), int64(len(body)))
}

func writeManifests(dir, staging, us, eu string, images []sample) error {
	mdir := filepath.Join(dir, "manifests", "demo")
	idir := filepath.Join(dir, "images", "demo")
	for _, d := range []string{mdir, idir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	m := fmt.Sprintf(`# Where demo images come from (src) and where they are published.
registries:
  - name: %s/demo
    src: true
  - name: %s/demo
  - name: %s/mirror/demo
`, staging, us, eu)
	var b bytes.Buffer
	b.WriteString("# Each image: digest -> tags. Added by pull request, reviewed, merged.\n")
	last := ""
	for _, im := range images {
		if im.name != last {
			fmt.Fprintf(&b, "- name: %s\n  dmap:\n", im.name)
			last = im.name
		}
		fmt.Fprintf(&b, "    \"%s\": [", im.digest)
		for i, t := range im.tags {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "\"%s\"", t)
		}
		b.WriteString("]\n")
	}
	if err := os.WriteFile(filepath.Join(mdir, manifest.ThinManifestFile), []byte(m), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(idir, manifest.ThinImagesFile), b.Bytes(), 0o644)
}
