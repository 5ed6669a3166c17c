// Package regerr classifies what registries answer, for callers that test
// errors with errors.Is and errors.As. It is a leaf: it imports nothing of
// this module and nothing outside the standard library, so every package
// (access, transfer, plan, snapshot, ...) can use it without depending on
// how registries are reached.
//
// The registry access layer (package access) turns every failed request into
// an error that matches one or more of the sentinels below; the registry's
// own answer (HTTP status, error codes) stays available as an *Error.
package regerr

import (
	"errors"
	"net/http"
	"slices"
)

// The kinds of failure callers act on. An error may match several: a 503
// answer is both an *Error and ErrTemporary.
var (
	// ErrNotFound: the repository, manifest or blob does not exist.
	ErrNotFound = errors.New("not found in the registry")
	// ErrTemporary: worth trying again later (rate limiting, a server or
	// proxy failure, a dropped connection). The access layer has already
	// retried it as its policy allows.
	ErrTemporary = errors.New("temporary registry failure")
	// ErrDenied: the credentials do not allow the operation.
	ErrDenied = errors.New("denied by the registry")
	// ErrUnsupported: the registry does not offer the operation (for
	// example the referrers API or the catalog).
	ErrUnsupported = errors.New("not supported by the registry")
)

// Error is a registry's answer to one request that failed. Its message is
// the underlying error's, unchanged.
type Error struct {
	// Status is the HTTP status code of the answer.
	Status int
	// Codes are the registry's error codes, in the order it gave them
	// (for example "MANIFEST_UNKNOWN", "DENIED").
	Codes []string
	// Err is the error as the HTTP layer reported it.
	Err error
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinels from the status and the error codes.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound || e.hasCode("NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN")
	case ErrTemporary:
		return TemporaryStatus(e.Status)
	case ErrDenied:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.hasCode("DENIED", "UNAUTHORIZED")
	case ErrUnsupported:
		return e.Status == http.StatusMethodNotAllowed || e.Status == http.StatusNotImplemented || e.hasCode("UNSUPPORTED")
	}
	return false
}

func (e *Error) hasCode(codes ...string) bool {
	for _, c := range e.Codes {
		if slices.Contains(codes, c) {
			return true
		}
	}
	return false
}

// TemporaryStatus reports whether an HTTP answer is a transient failure
// worth retrying: request timeout, rate limiting, and the server-side and
// proxy failures that pass.
func TemporaryStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, // 408
		http.StatusTooManyRequests,     // 429
		499,                            // nginx: client closed request
		http.StatusInternalServerError, // 500
		http.StatusBadGateway,          // 502
		http.StatusServiceUnavailable,  // 503
		http.StatusGatewayTimeout,      // 504
		522:                            // Cloudflare: connection timed out
		return true
	}
	return false
}

// Status returns the HTTP status of the registry answer in err's chain, or
// 0 when there is none.
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// kindError marks an error (a dropped connection, an unsupported API) as
// one of the sentinels, keeping its message.
type kindError struct {
	kind error
	err  error
}

func (k *kindError) Error() string        { return k.err.Error() }
func (k *kindError) Unwrap() error        { return k.err }
func (k *kindError) Is(target error) bool { return target == k.kind }

// Temporary marks err as a temporary failure (it then matches
// ErrTemporary); its message is unchanged. Temporary(nil) is nil.
func Temporary(err error) error { return mark(ErrTemporary, err) }

// Unsupported marks err as an operation the registry does not offer (it
// then matches ErrUnsupported); its message is unchanged.
func Unsupported(err error) error { return mark(ErrUnsupported, err) }

func mark(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}
