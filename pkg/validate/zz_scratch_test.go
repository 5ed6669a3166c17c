package validate

import (
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestScratch(t *testing.T) {
	fmt.Printf("%q\n", checkRegistryName("gcr.io/"))
	for _, s := range []string{"gcr.io//x", "localhost:5000/a", "r.io/a", "docker.io/x", "R.IO/a/b", "r.io/a/b__c", "r.io/A"} {
		r, err := name.NewRepository(s, name.StrictValidation)
		fmt.Printf("%s -> %q %v\n", s, r.Name(), err)
	}
}
