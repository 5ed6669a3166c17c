package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/access"
)

// hostLimits are the per-host request limits every command that talks to
// registries takes (--host-concurrency, --host-rate, --max-retry-wait).
type hostLimits struct {
	hostConcurrency int
	hostRate        float64
	maxRetryWait    time.Duration
}

func (l *hostLimits) registerLimits(cmd *cobra.Command) {
	cmd.Flags().IntVar(&l.hostConcurrency, "host-concurrency", 16, "requests in flight to one registry host")
	cmd.Flags().Float64Var(&l.hostRate, "host-rate", 0, "requests per second to one registry host (0: unlimited; a 429 answer slows that host down anyway)")
	cmd.Flags().DurationVar(&l.maxRetryWait, "max-retry-wait", time.Minute, "longest wait a registry's Retry-After answer can impose before a retry")
}

// accessOptions are the registry client options that apply the limits.
func (l *hostLimits) accessOptions() []access.Option {
	return []access.Option{
		access.WithHostLimits(access.HostLimits{Concurrency: l.hostConcurrency, Rate: l.hostRate}),
		access.WithMaxRetryWait(l.maxRetryWait),
	}
}
