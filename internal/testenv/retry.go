package testenv

import (
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgpromoter/promoter/pkg/access"
)

// FastRetries is a registry client option that retries quickly, for tests
// that provoke failures on purpose.
func FastRetries() access.Option {
	return access.WithRetryBackoff(remote.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2})
}
