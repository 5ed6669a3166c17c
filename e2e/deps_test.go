package e2e

// The suite runs a binary that TestMain builds, which Go's test cache does
// not see as an input: importing the command's library makes every change to
// the promoter invalidate cached results of this package.
import _ "github.com/imgpromoter/promoter/internal/cli"
