// Package progress shows how far a long command is: edges done of the total,
// bytes moved, rate and ETA. On a terminal one line is redrawn in place, at
// most a few times a second; off a terminal (CI logs) a plain summary line
// is printed every 30 seconds, besides a line per finished item. It writes
// to standard error only, so it never mixes into -o json output on standard
// output.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Mode is the --progress setting.
type Mode string

// Modes.
const (
	Auto   Mode = "auto"   // in place on a terminal, summary lines otherwise
	Always Mode = "always" // in place, even when the output is not a terminal
	Never  Mode = "never"  // nothing
)

// ParseMode reads a --progress value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, Always, Never:
		return m, nil
	}
	return "", fmt.Errorf("--progress %q: want auto, always or never", s)
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

type options struct {
	redraw  time.Duration
	summary time.Duration
	unit    string
	now     func() time.Time
}

// WithUnit names what is counted (default "edges").
func WithUnit(u string) Option { return func(o *options) { o.unit = u } }

// Option configures a Reporter.
type Option func(*options)

// WithIntervals sets the terminal redraw interval (default 250ms: four
// redraws a second at most) and the off-terminal summary interval (default
// 30s).
func WithIntervals(redraw, summary time.Duration) Option {
	return func(o *options) { o.redraw, o.summary = redraw, summary }
}

// Reporter counts progress and shows it. Its counting methods are safe for
// concurrent use and cheap (atomics); drawing happens on its own goroutine.
type Reporter struct {
	w     io.Writer
	tty   bool
	off   bool
	o     options
	label string
	start time.Time

	edgesTotal, edgesDone, failed atomic.Int64
	bytes                         atomic.Int64

	bytesFrom atomic.Pointer[func() int64]

	mu       sync.Mutex
	started  bool
	lastLine string
	stop     chan struct{}
	done     chan struct{}
}

// SetBytesSource makes the reporter read the bytes moved from f at each
// draw, instead of counting AddBytes calls.
func (r *Reporter) SetBytesSource(f func() int64) { r.bytesFrom.Store(&f) }

// New returns a reporter writing to w (standard error) in a mode; label
// names the work ("run", "drift").
func New(w io.Writer, mode Mode, label string, opts ...Option) *Reporter {
	o := options{redraw: 250 * time.Millisecond, summary: 30 * time.Second, unit: "edges", now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	r := &Reporter{w: w, o: o, label: label, off: mode == Never, stop: make(chan struct{}), done: make(chan struct{})}
	r.tty = mode == Always || (mode == Auto && IsTerminal(w))
	return r
}

// Start begins drawing.
func (r *Reporter) Start() {
	r.mu.Lock()
	r.started = true
	r.mu.Unlock()
	r.start = r.o.now()
	if r.off {
		close(r.done)
		return
	}
	go r.loop()
}

// SetTotal sets the number of edges of the work.
func (r *Reporter) SetTotal(edges int) { r.edgesTotal.Store(int64(edges)) }

// EdgeDone counts one finished edge, or whatever unit is counted (failed
// or not).
func (r *Reporter) EdgeDone(failed bool) {
	r.edgesDone.Add(1)
	if failed {
		r.failed.Add(1)
	}
}

// Item prints a line about one finished piece of work. Off a terminal every
// such line is printed (a CI log then shows each item as it ends); on a
// terminal only failures are, above the progress line.
func (r *Reporter) Item(line string, failed bool) {
	if r.off || (r.tty && !failed) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tty {
		fmt.Fprintf(r.w, "\r\033[K%s\n%s", line, r.lastLine)
		return
	}
	fmt.Fprintln(r.w, line)
}

// AddBytes counts bytes moved.
func (r *Reporter) AddBytes(n int64) { r.bytes.Add(n) }

func (r *Reporter) loop() {
	defer close(r.done)
	iv := r.o.summary
	if r.tty {
		iv = r.o.redraw
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.draw(false)
		}
	}
}

// Stop draws the final state (on a terminal, ending the line) and stops.
// It is safe to call more than once.
func (r *Reporter) Stop() {
	r.mu.Lock()
	if !r.started {
		r.mu.Unlock()
		return
	}
	select {
	case <-r.stop:
		r.mu.Unlock()
		return
	default:
		close(r.stop)
	}
	r.mu.Unlock()
	<-r.done
	if r.off {
		return
	}
	r.draw(true)
}

// Line is the progress line as it would be drawn now.
func (r *Reporter) Line() string {
	done, total, failed, b := r.edgesDone.Load(), r.edgesTotal.Load(), r.failed.Load(), r.bytes.Load()
	if f := r.bytesFrom.Load(); f != nil {
		b = (*f)()
	}
	el := r.o.now().Sub(r.start)
	var s strings.Builder
	fmt.Fprintf(&s, "%s: %d/%d %s", r.label, done, total, r.o.unit)
	if total > 0 {
		fmt.Fprintf(&s, " (%d%%)", done*100/total)
	}
	if failed > 0 {
		fmt.Fprintf(&s, ", %d failed", failed)
	}
	if b > 0 {
		fmt.Fprintf(&s, ", %s", Bytes(b))
		if secs := el.Seconds(); secs >= 1 {
			fmt.Fprintf(&s, " at %s/s", Bytes(int64(float64(b)/secs)))
		}
	}
	fmt.Fprintf(&s, ", %s elapsed", el.Round(time.Second))
	if done > 0 && total > done {
		eta := time.Duration(float64(el) / float64(done) * float64(total-done))
		fmt.Fprintf(&s, ", ETA %s", eta.Round(time.Second))
	}
	return s.String()
}

func (r *Reporter) draw(final bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := r.Line()
	if r.tty {
		if line == r.lastLine && !final {
			return // nothing changed: no redraw
		}
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(r.w, "\r\033[K%s%s", line, end)
		r.lastLine = line
		return
	}
	if !final && line == r.lastLine {
		return // no news since the last summary line
	}
	fmt.Fprintln(r.w, line)
	r.lastLine = line
}

// Bytes writes a byte count with a binary unit.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
