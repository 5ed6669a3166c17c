package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/imgpromoter/promoter/internal/demo"
)

// The demo checks its own outcome (everything promoted, second run a no-op)
// and returns an error otherwise; this runs it as the README does.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := demo.Run(context.Background(), demo.Options{Out: &out, Dir: t.TempDir()}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"Run: 8 edges promoted, 0 already there, 0 refused, 0 failed", "Nothing to do: every edge is already promoted."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
