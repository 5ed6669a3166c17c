package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// PromoterBinary builds the promoter command once per test process and
// returns its path: tests that must kill or restart a real process (kill -9
// trials, a server stopped and started again) run this binary.
func PromoterBinary() (string, error) { return promoterBinary() }

var promoterBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "promoter-test-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "promoter")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/imgpromoter/promoter/cmd/promoter").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})
