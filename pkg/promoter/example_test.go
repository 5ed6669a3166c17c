package promoter_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/internal/regtest"
	"github.com/imgpromoter/promoter/pkg/promoter"
)

// startRegistry serves go-containerregistry's in-memory registry on
// 127.0.0.1 and returns its host.
func startRegistry() (host string, stop func()) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	return strings.TrimPrefix(srv.URL, "http://"), srv.Close
}

// pushImage pushes a small deterministic image to repo and returns its
// digest.
func pushImage(repo string) (v1.Hash, error) {
	l, err := regtest.NewLayer("hello.txt", strings.NewReader("hello\n"), 6)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := regtest.NewImage(&v1.Platform{OS: "linux", Architecture: "amd64"}, nil, []regtest.ImageLayer{{Layer: l}})
	if err != nil {
		return v1.Hash{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := name.NewDigest(repo + "@" + d.String())
	if err != nil {
		return v1.Hash{}, err
	}
	return d, remote.Write(ref, img)
}

// Example promotes an image from a staging registry to a production
// registry, both in-process, the way `promoter run --confirm` does: a
// manifest names the registries and the image digest with its tag; Run
// plans, copies, tags and returns the report.
func Example() {
	ctx := context.Background()
	staging, stopStaging := startRegistry()
	defer stopStaging()
	prod, stopProd := startRegistry()
	defer stopProd()

	digest, err := pushImage(staging + "/team/hello")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "promoter-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	manifest := filepath.Join(dir, "promoter-manifest.yaml")
	yaml := fmt.Sprintf(`registries:
- name: %s/team
  src: true
- name: %s/release
images:
- name: hello
  dmap:
    "%s": ["1.0"]
`, staging, prod, digest)
	if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
		log.Fatal(err)
	}

	in := promoter.Inputs{Files: []string{manifest}}
	planned, err := promoter.Plan(ctx, in)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("planned:", planned.Plan.Counts())

	res, err := promoter.Run(ctx, in, promoter.WithJobs(4))
	if err != nil {
		log.Fatal(err)
	}
	t := res.Report.Totals
	fmt.Printf("run: %d promoted, %d failed; %d image copied\n", t.Promoted, t.Failed, res.Report.Images)

	// What ends up in production: the tag, at the reviewed digest.
	tag, err := name.NewTag(prod + "/release/hello:1.0")
	if err != nil {
		log.Fatal(err)
	}
	desc, err := remote.Head(tag)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("production tag at the reviewed digest:", desc.Digest == digest)

	again, err := promoter.Run(ctx, in)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("second run: %d promoted, %d already there\n", again.Report.Totals.Promoted, again.Report.Totals.Present)
	// Output:
	// planned: map[copy:1]
	// run: 1 promoted, 0 failed; 1 image copied
	// production tag at the reviewed digest: true
	// second run: 0 promoted, 1 already there
}
