package supplychain_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/supplychain"
)

func TestFiltersFromManifests(t *testing.T) {
	const d = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	text := `registries:
- name: staging.example/team
  src: true
- name: prod.example/all
- name: prod.example/off
  referrers: {carry: false}
- name: prod.example/sigs
  referrers: {artifactTypes: [application/vnd.dev.sigstore.bundle.v0.3+json, cosign/sig]}
images:
- name: app
  dmap: {"` + d + `": [v1]}
- name: tool
  referrers: {artifactTypes: [cosign/sig, cosign/att]}
  dmap: {"` + d + `": [v1]}
`
	dir := t.TempDir()
	path := filepath.Join(dir, "promoter-manifest.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	set := manifest.Load(manifest.Inputs{Files: []string{path}})
	if len(set.Problems) != 0 {
		t.Fatalf("problems: %v", set.Problems)
	}
	fs := supplychain.FiltersFrom(set)
	for repo, want := range map[string]supplychain.Filter{
		"prod.example/all/app":   {},
		"prod.example/off/app":   {Off: true},
		"prod.example/sigs/app":  {ArtifactTypes: []string{"application/vnd.dev.sigstore.bundle.v0.3+json", "cosign/sig"}},
		"prod.example/all/tool":  {ArtifactTypes: []string{"cosign/sig", "cosign/att"}},
		"prod.example/off/tool":  {Off: true, ArtifactTypes: []string{"cosign/sig", "cosign/att"}},
		"prod.example/sigs/tool": {ArtifactTypes: []string{"cosign/sig"}},
	} {
		r, err := name.NewRepository(repo)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, fs.For(r)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", repo, diff)
		}
	}
}
