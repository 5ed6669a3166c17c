package audit_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/validate"
)

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}

// readBody copies a response body into w and closes it.
func readBody(w io.Writer, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

func loadExpected(t *testing.T, path string) *drift.Expected {
	t.Helper()
	res := validate.Validate(manifest.Load(manifest.Inputs{Files: []string{path}}))
	if res.Unreadable || len(res.Groups) == 0 {
		t.Fatalf("manifest %s: %+v", path, res.Problems)
	}
	return drift.NewExpected(res.Groups)
}
