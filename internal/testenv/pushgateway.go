package testenv

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/imgpromoter/promoter/internal/regtest"
)

// PushgatewayBinEnv names the environment variable that, when set, points
// at the Prometheus Pushgateway binary to use instead of looking on PATH for
// prometheus-pushgateway (Debian's package) or pushgateway.
const PushgatewayBinEnv = "PROMOTER_PUSHGATEWAY_BIN"

// StartPushgateway runs a real Prometheus Pushgateway on a free 127.0.0.1
// port and returns its URL ("http://127.0.0.1:PORT"); it is killed when the
// test ends. Without a binary the test fails when CI=true and is skipped
// otherwise, saying how to install one.
func StartPushgateway(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(PushgatewayBinEnv)
	if bin == "" {
		for _, n := range []string{"prometheus-pushgateway", "pushgateway"} {
			if p, err := exec.LookPath(n); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		msg := "no Pushgateway binary: install it (apt-get install -y prometheus-pushgateway) or set " + PushgatewayBinEnv
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	out := &regtest.SyncBuffer{}
	cmd := exec.Command(bin, "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "http://" + addr
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv: pushgateway did not become ready on %s:\n%s", addr, out.String())
	return ""
}
