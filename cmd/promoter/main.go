// Command promoter promotes container images from staging to production
// registries by reviewed manifest. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/imgpromoter/promoter/internal/cli"
)

func main() {
	// Ctrl-C cancels the context: in-flight requests stop, nothing is
	// tagged afterwards, and a rerun finishes the job.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
