package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/imgpromoter/promoter/pkg/access"
	"github.com/imgpromoter/promoter/pkg/audit"
	"github.com/imgpromoter/promoter/pkg/drift"
	"github.com/imgpromoter/promoter/pkg/manifest"
	"github.com/imgpromoter/promoter/pkg/snapshot"
	"github.com/imgpromoter/promoter/pkg/validate"
)

// auditFlags are the flags of audit serve.
type auditFlags struct {
	in         inputFlags
	limits     promoteFlags // only its per-host limits
	registries []string
	listen     string
	db         string
	tokenFiles []string
	anonUnsafe bool
	oidcIss    string
	oidcAud    string
	oidcEmails []string
	oidcJWKS   string
	settle     time.Duration
	reconcile  time.Duration
	gitDir     string
	gitPull    time.Duration
	insecure   []string
	jobs       int
}

func newAuditCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Watch production registries for changes the manifests do not list",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAuditServeCmd(e))
	return cmd
}

func newAuditServeCmd(e *env) *cobra.Command {
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "serve --registry REGISTRY[/PREFIX] --db FILE [PATH...]",
		Short: "Receive registry notifications and report every change the manifests do not list",
		Long: `audit serve receives registry notifications (CNCF Distribution, Google Pub/Sub
push, Harbor webhooks, a generic JSON form), stores each event in a SQLite
database before answering, and judges it against the manifests: it re-reads the
tag or digest named in the registry. A delete of a listed tag or digest, and a
tag or digest that no manifest lists, is a finding: one JSON line on standard
output, GET /v1/findings, and the promoter_audit_findings_open metric. A
periodic drift check (--reconcile) catches changes whose events never arrived.

Routes: POST /v1/events/{distribution,pubsub,harbor,generic}, GET /v1/findings
(?state=open|resolved|all), GET /metrics, GET /healthz. See docs/audit.md.

With --git-dir the manifests' git work tree is refreshed with "git pull
--ff-only" every --git-pull-interval and on SIGHUP, and the manifests re-read.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.auditServe(cmd.Context(), &f, args)
		},
	}
	f.in.register(cmd)
	fl := cmd.Flags()
	fl.StringArrayVar(&f.registries, "registry", nil, "registry prefix to audit, as the manifests name it (repeatable; events that name no host are on the first one's host)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address to serve on")
	fl.StringVar(&f.db, "db", "", "SQLite database file for events and findings (created if absent)")
	fl.StringArrayVar(&f.tokenFiles, "token-file", nil, "file of bearer tokens accepted on every route, one per line (repeatable; several tokens allow rotation)")
	fl.BoolVar(&f.anonUnsafe, "allow-unauthenticated-unsafe", false, "accept events without credentials on routes that have none configured")
	fl.StringVar(&f.oidcIss, "pubsub-oidc-issuer", "", "Pub/Sub push: the OIDC token issuer to require")
	fl.StringVar(&f.oidcAud, "pubsub-oidc-audience", "", "Pub/Sub push: the audience the token must be for")
	fl.StringArrayVar(&f.oidcEmails, "pubsub-oidc-email", nil, "Pub/Sub push: the service-account email the token must name (repeatable)")
	fl.StringVar(&f.oidcJWKS, "pubsub-oidc-jwks", "", "Pub/Sub push: the issuer's JSON Web Key Set, a file or an https URL")
	fl.DurationVar(&f.settle, "settle", 5*time.Second, "judge an event once it is this old (a push arrives as several events)")
	fl.DurationVar(&f.reconcile, "reconcile", time.Hour, "run a full drift check this often (0: never)")
	fl.StringVar(&f.gitDir, "git-dir", "", "git work tree of the manifests, refreshed with git pull --ff-only")
	fl.DurationVar(&f.gitPull, "git-pull-interval", 5*time.Minute, "with --git-dir: how often to pull (SIGHUP pulls at once)")
	fl.StringArrayVar(&f.insecure, "insecure-registry", nil, "registry host to reach over plain HTTP (loopback hosts always are)")
	fl.IntVarP(&f.jobs, "jobs", "j", 8, "registry requests in flight for the reconcile")
	f.limits.registerLimits(cmd)
	return cmd
}

func (e *env) auditServe(ctx context.Context, f *auditFlags, args []string) error {
	if f.db == "" {
		return usageErr("--db FILE is required: events are stored before they are acknowledged")
	}
	prefixes, err := parsePrefixes(f.registries)
	if err != nil {
		return err
	}
	inputs, err := f.in.inputs(args)
	if err != nil {
		return err
	}
	log := e.logger()
	var opts []audit.Option
	if len(f.tokenFiles) > 0 {
		var toks []string
		for _, p := range f.tokenFiles {
			t, err := audit.ReadTokenFile(p)
			if err != nil {
				return usageErr("--token-file: %v", err)
			}
			toks = append(toks, t...)
		}
		a, err := audit.NewTokens(toks...)
		if err != nil {
			return usageErr("--token-file: %v", err)
		}
		for _, src := range []audit.Source{audit.SourceDistribution, audit.SourcePubSub, audit.SourceHarbor, audit.SourceGeneric} {
			opts = append(opts, audit.WithAuth(src, a))
		}
	}
	if f.oidcIss != "" || f.oidcAud != "" || len(f.oidcEmails) > 0 || f.oidcJWKS != "" {
		var keys audit.KeySet
		if f.oidcJWKS != "" {
			keys = audit.NewJWKS(f.oidcJWKS)
		}
		o, err := audit.NewOIDC(f.oidcIss, f.oidcAud, f.oidcEmails, keys)
		if err != nil {
			return usageErr("--pubsub-oidc-*: %v", err)
		}
		opts = append(opts, audit.WithAuth(audit.SourcePubSub, o))
	}
	if f.anonUnsafe {
		opts = append(opts, audit.WithUnauthenticatedRoutesUnsafe())
	}
	client, err := access.New(access.WithInsecureRegistries(f.insecure...), access.WithLogger(log),
		access.WithHostLimits(access.HostLimits{Concurrency: f.limits.hostConcurrency, Rate: f.limits.hostRate}), access.WithMaxRetryWait(f.limits.maxRetryWait))
	if err != nil {
		return usageErr("%v", err)
	}
	exp, err := loadExpected(inputs)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	store, err := audit.OpenStore(ctx, f.db)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	var srv *audit.Server
	opts = append(opts, audit.WithSettle(f.settle), audit.WithLogger(log), audit.WithMetrics(reg),
		audit.WithFindingLog(slog.New(slog.NewJSONHandler(e.stdout, nil))))
	if f.reconcile > 0 {
		opts = append(opts, audit.WithReconcile(f.reconcile, func(ctx context.Context) (*drift.Report, error) {
			return drift.Check(ctx, client, srvExpected(&srv), prefixes, drift.WithJobs(f.jobs), drift.WithLogger(log))
		}))
	}
	srv, err = audit.New(store, client, prefixes, exp, opts...)
	if err != nil {
		return usageErr("%v", err)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--listen: %w", err)}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.gitDir != "" {
		go e.refreshManifests(ctx, f, inputs, srv, log)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("audit server listening", "addr", ln.Addr().String(), "registries", f.registries)
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return <-errc
}

// srvExpected reads the server's current expected state (the reconcile
// check is built before the server).
func srvExpected(s **audit.Server) *drift.Expected { return (*s).Expected() }

func parsePrefixes(regs []string) ([]snapshot.Prefix, error) {
	if len(regs) == 0 {
		return nil, usageErr("--registry REGISTRY[/PREFIX] is required (repeatable)")
	}
	var out []snapshot.Prefix
	for _, r := range regs {
		p, err := snapshot.ParsePrefix(r)
		if err != nil {
			return nil, usageErr("--registry: %v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// loadExpected reads the manifests. Unreadable manifests are an error: an
// audit against part of the manifests would report the rest as drift.
func loadExpected(inputs manifest.Inputs) (*drift.Expected, error) {
	res := validate.Validate(manifest.Load(inputs))
	if res.Unreadable {
		return nil, errors.New("some manifests could not be read (see promoter validate)")
	}
	return drift.NewExpected(res.Groups), nil
}

// refreshManifests pulls the manifests' git work tree on a timer and on
// SIGHUP, and re-reads them. A failed pull or unreadable manifests keep the
// state in force.
func (e *env) refreshManifests(ctx context.Context, f *auditFlags, inputs manifest.Inputs, srv *audit.Server, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(f.gitPull)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-hup:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		out, err := exec.CommandContext(pctx, "git", "-C", f.gitDir, "pull", "--ff-only", "--quiet").CombinedOutput()
		cancel()
		if err != nil {
			log.Error("git pull failed; the manifests in force stay", "dir", f.gitDir, "error", err, "output", string(out))
			continue
		}
		exp, err := loadExpected(inputs)
		if err != nil {
			log.Error("re-reading the manifests failed; the manifests in force stay", "error", err)
			continue
		}
		srv.SetExpected(exp)
		log.Info("manifests re-read", "dir", f.gitDir)
	}
}
