package progress_test

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/imgpromoter/promoter/pkg/progress"
)

// work simulates a run: 10 edges over about half a second.
func work(r *progress.Reporter) {
	r.SetTotal(10)
	r.Start()
	for i := range 10 {
		time.Sleep(50 * time.Millisecond)
		r.AddBytes(300 << 10)
		r.EdgeDone(i == 3)
	}
	r.Stop()
}

// TestTerminalRendering draws on a real pseudo-terminal: the line is
// redrawn in place (carriage return, erase line), at most four times a
// second, and ends with the final state and a newline.
func TestTerminalRendering(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = io.Copy(&out, ptmx) }()

	if !progress.IsTerminal(tty) {
		t.Fatal("the pty's tty side is not seen as a terminal")
	}
	start := time.Now()
	work(progress.New(tty, progress.Auto, "run"))
	elapsed := time.Since(start)
	tty.Close()
	wg.Wait()

	s := out.String()
	redraws := strings.Count(s, "\r\x1b[K")
	if redraws < 2 {
		t.Fatalf("%d redraws, want the line drawn in place repeatedly:\n%q", redraws, s)
	}
	// Four a second at most, plus the final draw.
	if limit := int(elapsed/(250*time.Millisecond)) + 1; redraws > limit {
		t.Errorf("%d redraws in %s, want at most %d", redraws, elapsed, limit)
	}
	last := s[strings.LastIndex(s, "\r\x1b[K")+len("\r\x1b[K"):]
	for _, want := range []string{"run: 10/10 edges (100%)", "1 failed", "2.9 MiB"} {
		if !strings.Contains(last, want) {
			t.Errorf("final line %q lacks %q", last, want)
		}
	}
	if !strings.HasSuffix(strings.TrimRight(last, "\r\n"), "elapsed") || !strings.HasSuffix(last, "\n") {
		t.Errorf("final line %q: want it ended with a newline and without an ETA", last)
	}
}

// TestOffTerminal prints plain summary lines, never control sequences.
func TestOffTerminal(t *testing.T) {
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, rd); close(done) }()
	start := time.Now()
	work(progress.New(wr, progress.Auto, "run", progress.WithIntervals(250*time.Millisecond, 200*time.Millisecond)))
	elapsed := time.Since(start)
	wr.Close()
	<-done
	s := out.String()
	if strings.Contains(s, "\x1b") || strings.Contains(s, "\r") {
		t.Errorf("control characters off a terminal: %q", s)
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	// One per 200ms at most, plus the final one.
	if limit := int(elapsed/(200*time.Millisecond)) + 1; len(lines) < 2 || len(lines) > limit {
		t.Errorf("%d lines in %s, want 2 to %d:\n%s", len(lines), elapsed, limit, s)
	}
	if !strings.HasPrefix(lines[len(lines)-1], "run: 10/10 edges") {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
}

func TestNever(t *testing.T) {
	var out bytes.Buffer
	work(progress.New(&out, progress.Never, "run"))
	if out.Len() != 0 {
		t.Errorf("--progress=never wrote %q", out.String())
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := progress.Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
