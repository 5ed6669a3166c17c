package access

import "time"

// Observer is told about every HTTP attempt to a registry, for metrics. Its
// methods are called concurrently and must be cheap.
type Observer interface {
	// Request is one attempt to a registry host: its status code (0 when
	// there was no answer) and the time to the answer's headers.
	Request(host, method string, code int, d time.Duration)
	// Retry is one retry of a request to a registry host (a whole blob
	// upload started again counts too).
	Retry(host string)
}

// WithObserver sets an observer of every request (default: none).
func WithObserver(o Observer) Option { return func(opts *options) { opts.observer = o } }

type nopObserver struct{}

func (nopObserver) Request(string, string, int, time.Duration) {}
func (nopObserver) Retry(string)                               {}
