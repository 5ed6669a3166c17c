package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/snapshot"
)

// Routes of the server.
const (
	RouteDistribution = "/v1/events/distribution"
	RoutePubSub       = "/v1/events/pubsub"
	RouteHarbor       = "/v1/events/harbor"
	RouteGeneric      = "/v1/events/generic"
	RouteFindings     = "/v1/findings"
	RouteMetrics      = "/metrics"
	RouteHealth       = "/healthz"
)

// maxBody bounds a notification body (Distribution sends batches of events;
// a batch of 64 events with references stays far below).
const maxBody = 8 << 20

type options struct {
	auth        map[Source]Authenticator
	allowAnon   bool
	settle      time.Duration
	poll        time.Duration
	retryWait   time.Duration
	reconcile   func(ctx context.Context) (*drift.Report, error)
	reconcileIv time.Duration
	logger      *slog.Logger
	findings    *slog.Logger
	registry    *prometheus.Registry
	reader      drift.Reader
	prefixes    []snapshot.Prefix
}

func defaults() options {
	return options{
		auth: map[Source]Authenticator{}, settle: 5 * time.Second, poll: 2 * time.Second, retryWait: 10 * time.Second,
		logger: slog.New(slog.DiscardHandler), findings: slog.New(slog.DiscardHandler), reconcileIv: time.Hour,
	}
}

// Option configures a Server.
type Option func(*options)

// WithAuth sets how one route's requests are authenticated.
func WithAuth(src Source, a Authenticator) Option { return func(o *options) { o.auth[src] = a } }

// WithUnauthenticatedRoutesUnsafe lets routes without an authenticator
// accept anyone's events (for a server reachable only by its registry).
// Without it, New refuses a route without an authenticator.
func WithUnauthenticatedRoutesUnsafe() Option { return func(o *options) { o.allowAnon = true } }

// WithSettle delays judging an event until it is this old (default 5s), so
// that a push of an index and its tag, sent as several events, is judged
// once the registry holds all of it.
func WithSettle(d time.Duration) Option { return func(o *options) { o.settle = d } }

// WithPoll sets how often the worker looks for events to judge besides being
// woken by a new one (default 2s).
func WithPoll(d time.Duration) Option { return func(o *options) { o.poll = d } }

// WithReconcile runs a full drift check every interval (and once at start):
// it catches the changes whose events never arrived (every sender is
// best-effort) and resolves the findings that no longer hold.
func WithReconcile(interval time.Duration, check func(ctx context.Context) (*drift.Report, error)) Option {
	return func(o *options) { o.reconcileIv, o.reconcile = interval, check }
}

// WithLogger sets the operational logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithFindingLog sets the logger that gets one line per finding opened
// (give it a JSON handler).
func WithFindingLog(l *slog.Logger) Option { return func(o *options) { o.findings = l } }

// WithMetrics registers the server's metrics in a registry (served at
// /metrics).
func WithMetrics(r *prometheus.Registry) Option { return func(o *options) { o.registry = r } }

// Server receives registry notifications, stores them, and judges them.
type Server struct {
	o     options
	store *Store
	exp   atomic.Pointer[drift.Expected]
	rel   *drift.Relations
	wake  chan struct{}
	m     *auditMetrics
	mux   *http.ServeMux
}

// New builds a server over a store, a registry reader and the audited
// prefixes (events about repositories outside them are stored and ignored).
func New(store *Store, reader drift.Reader, prefixes []snapshot.Prefix, exp *drift.Expected, opts ...Option) (*Server, error) {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	if len(prefixes) == 0 {
		return nil, errors.New("no registry prefix to audit")
	}
	if exp == nil {
		return nil, errors.New("no expected state")
	}
	for _, src := range []Source{SourceDistribution, SourcePubSub, SourceHarbor, SourceGeneric} {
		if o.auth[src] == nil && !o.allowAnon {
			return nil, fmt.Errorf("route %s has no authentication: give bearer tokens (or, for Pub/Sub, OIDC), or allow unauthenticated routes explicitly", src)
		}
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
	}
	o.reader, o.prefixes = reader, prefixes
	s := &Server{o: o, store: store, rel: drift.NewRelations(reader), wake: make(chan struct{}, 1), m: newAuditMetrics(o.registry)}
	s.exp.Store(exp)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST "+RouteDistribution, s.receive(SourceDistribution, func(r *http.Request, b []byte) ([]Event, error) { return ParseDistribution(b) }))
	s.mux.HandleFunc("POST "+RoutePubSub, s.receive(SourcePubSub, func(r *http.Request, b []byte) ([]Event, error) { return ParsePubSub(b) }))
	s.mux.HandleFunc("POST "+RouteHarbor, s.receive(SourceHarbor, func(r *http.Request, b []byte) ([]Event, error) { return ParseHarbor(r.Header, b) }))
	s.mux.HandleFunc("POST "+RouteGeneric, s.receive(SourceGeneric, func(r *http.Request, b []byte) ([]Event, error) { return ParseGeneric(b) }))
	s.mux.HandleFunc("GET "+RouteFindings, s.listFindings)
	s.mux.Handle("GET "+RouteMetrics, promhttp.HandlerFor(o.registry, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET "+RouteHealth, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	return s, nil
}

// ServeHTTP serves the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// SetExpected replaces the expected state (after the manifests changed).
// Events already judged are not judged again; the next reconcile compares
// everything with the new state.
func (s *Server) SetExpected(e *drift.Expected) { s.exp.Store(e) }

// Expected returns the expected state in force.
func (s *Server) Expected() *drift.Expected { return s.exp.Load() }

func (s *Server) expected() *drift.Expected { return s.exp.Load() }

// receive stores a route's events before answering. 5xx only when storing
// failed (the sender retries); 2xx for new events, duplicates and bodies
// that cannot be read (kept in the store for an operator): a 4xx answer
// would make Distribution retry the same body forever.
func (s *Server) receive(src Source, parse func(*http.Request, []byte) ([]Event, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a := s.o.auth[src]; a != nil {
			if err := a.Authenticate(r); err != nil {
				s.m.unauthorized.WithLabelValues(string(src)).Inc()
				s.o.logger.Warn("notification refused", "route", src, "remote", r.RemoteAddr, "error", err)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		evs, perr := parse(r, body)
		if perr != nil {
			if err := s.store.AddMalformed(r.Context(), src, perr, body); err != nil {
				s.storeFailed(w, src, err)
				return
			}
			s.m.malformed.WithLabelValues(string(src)).Inc()
			s.o.logger.Warn("notification not understood; kept in the store", "route", src, "error", perr)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		added, err := s.store.Add(r.Context(), evs)
		if err != nil {
			s.storeFailed(w, src, err)
			return
		}
		for _, e := range evs {
			s.m.events.WithLabelValues(string(src), string(e.Action)).Inc()
		}
		if dup := len(evs) - added; dup > 0 {
			s.m.duplicates.WithLabelValues(string(src)).Add(float64(dup))
		}
		s.m.pending.Add(float64(added))
		if added > 0 {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

func (s *Server) storeFailed(w http.ResponseWriter, src Source, err error) {
	s.m.storeErrors.Inc()
	s.o.logger.Error("storing a notification failed; the sender will retry", "route", src, "error", err)
	http.Error(w, "could not store the event", http.StatusServiceUnavailable)
}

// listFindings serves GET /v1/findings[?state=open|resolved|all].
func (s *Server) listFindings(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if state == "" {
		state = "open"
	}
	if state != "open" && state != "resolved" && state != "all" {
		http.Error(w, "state: want open, resolved or all", http.StatusBadRequest)
		return
	}
	all, err := s.store.Findings(r.Context(), state == "open")
	if err != nil {
		http.Error(w, "reading findings failed", http.StatusInternalServerError)
		return
	}
	out := []Finding{}
	for _, f := range all {
		if state == "resolved" && f.ResolvedAt == "" {
			continue
		}
		out = append(out, f)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(struct {
		Findings []Finding `json:"findings"`
	}{out})
}

// Run judges stored events (those left from before a restart first) and
// reconciles periodically, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := s.refreshGauges(ctx); err != nil {
		return err
	}
	if s.o.reconcile != nil {
		go s.reconcileLoop(ctx)
	}
	t := time.NewTicker(s.o.poll)
	defer t.Stop()
	for {
		if err := s.drain(ctx); err != nil && ctx.Err() == nil {
			s.o.logger.Warn("judging events failed; will retry", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(s.o.retryWait):
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-t.C:
		}
	}
}

// drain judges every event old enough, oldest first. An event whose
// judging fails (the registry did not answer) stops the batch and stays
// pending: events are never skipped. An event the registry does not show
// yet stays pending for a later pass.
func (s *Server) drain(ctx context.Context) error {
	var after int64
	for {
		cut := time.Now().Add(-s.o.settle).UTC().Format(timeLayout)
		evs, err := s.store.Pending(ctx, after, cut, 64)
		if err != nil || len(evs) == 0 {
			return err
		}
		for _, ev := range evs {
			after = ev.Seq
			v, err := s.judge(ctx, ev)
			if errors.Is(err, errNotYet) {
				continue
			}
			if err != nil {
				return fmt.Errorf("event %s/%s: %w", ev.Source, ev.ID, err)
			}
			s.o.logger.Debug("event judged", "source", ev.Source, "id", ev.ID, "action", ev.Action, "repository", ev.Repository,
				"tag", ev.Tag, "digest", ev.Digest, "findings", len(v.Findings), "clean", len(v.Clean))
			opened, err := s.store.Complete(ctx, ev.Seq, v)
			if errors.Is(err, ErrAlreadyProcessed) {
				continue
			}
			if err != nil {
				return err
			}
			s.m.pending.Dec()
			s.m.processed.Inc()
			s.logFindings(opened)
		}
		if err := s.refreshGauges(ctx); err != nil {
			return err
		}
	}
}

func (s *Server) logFindings(fs []Finding) {
	for _, f := range fs {
		s.o.findings.Warn("finding", "id", f.ID, "kind", string(f.Kind), "repository", f.Repository, "tag", f.Tag,
			"digest", f.Digest, "expected", f.Expected, "detail", f.Detail, "origin", f.Origin, "openedAt", f.OpenedAt)
	}
}

func (s *Server) refreshGauges(ctx context.Context) error {
	pending, open, err := s.store.Counts(ctx)
	if err != nil {
		return err
	}
	s.m.pending.Set(float64(pending))
	s.m.open.Reset()
	for _, k := range []Kind{drift.MissingTag, drift.MissingDigest, drift.MovedTag, drift.UnexpectedTag, drift.UnexpectedDigest, drift.UnexpectedRepository} {
		s.m.open.WithLabelValues(string(k)).Set(float64(open[k]))
	}
	return nil
}

func (s *Server) reconcileLoop(ctx context.Context) {
	for {
		if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.m.reconcileErrors.Inc()
			s.o.logger.Warn("reconcile failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.o.reconcileIv):
		}
	}
}

// Reconcile runs the drift check once and records its findings.
func (s *Server) Reconcile(ctx context.Context) error {
	if s.o.reconcile == nil {
		return errors.New("no reconcile check configured")
	}
	rep, err := s.o.reconcile(ctx)
	if err != nil {
		return err
	}
	found := make([]Finding, 0, len(rep.Findings))
	for _, f := range rep.Findings {
		found = append(found, Finding{Finding: f, Origin: "reconcile"})
	}
	prefixes := make([]string, 0, len(s.o.prefixes))
	for _, p := range s.o.prefixes {
		prefixes = append(prefixes, p.String())
	}
	opened, err := s.store.Reconcile(ctx, prefixes, found)
	if err != nil {
		return err
	}
	s.logFindings(opened)
	s.m.reconcileLast.SetToCurrentTime()
	return s.refreshGauges(ctx)
}

// auditMetrics are the server's metrics. No label carries an image, tag or
// repository name: cardinality stays fixed.
type auditMetrics struct {
	events          *prometheus.CounterVec
	duplicates      *prometheus.CounterVec
	malformed       *prometheus.CounterVec
	unauthorized    *prometheus.CounterVec
	storeErrors     prometheus.Counter
	processed       prometheus.Counter
	pending         prometheus.Gauge
	open            *prometheus.GaugeVec
	reconcileLast   prometheus.Gauge
	reconcileErrors prometheus.Counter
}

func newAuditMetrics(r prometheus.Registerer) *auditMetrics {
	m := &auditMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_audit_events_total",
			Help: "Registry notification events received, by source and action (duplicates included)."}, []string{"source", "action"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_audit_duplicate_events_total",
			Help: "Events received again (same source and event id): stored once."}, []string{"source"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_audit_malformed_total",
			Help: "Notification bodies that could not be read (kept in the store)."}, []string{"source"}),
		unauthorized: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promoter_audit_unauthorized_total",
			Help: "Notification requests refused for missing or wrong credentials."}, []string{"source"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "promoter_audit_store_errors_total",
			Help: "Notifications answered 503 because storing them failed."}),
		processed: prometheus.NewCounter(prometheus.CounterOpts{Name: "promoter_audit_events_processed_total",
			Help: "Events judged against the manifests."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promoter_audit_events_pending",
			Help: "Stored events not judged yet."}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promoter_audit_findings_open",
			Help: "Open findings, by kind."}, []string{"kind"}),
		reconcileLast: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promoter_audit_reconcile_last_success_timestamp_seconds",
			Help: "When the last periodic drift reconcile finished."}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "promoter_audit_reconcile_errors_total",
			Help: "Periodic drift reconciles that could not complete."}),
	}
	r.MustRegister(m.events, m.duplicates, m.malformed, m.unauthorized, m.storeErrors, m.processed, m.pending, m.open, m.reconcileLast, m.reconcileErrors)
	return m
}
