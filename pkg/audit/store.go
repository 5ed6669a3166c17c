package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver

	"github.com/imgpromoter/promoter/pkg/drift"
)

// Store keeps events and findings in a SQLite database in WAL mode. An event
// is stored before the sender is answered, unique on (source, id), so a
// replayed body adds nothing; it is marked processed in the same
// transaction that records what judging it found, so after a crash every
// stored event is processed exactly once.
type Store struct {
	db *sql.DB
}

// StoredEvent is an event with its place in the store.
type StoredEvent struct {
	Event
	Seq        int64  `json:"seq"`
	ReceivedAt string `json:"receivedAt"`
	// ProcessedAt is empty while the event waits to be judged.
	ProcessedAt string `json:"processedAt,omitempty"`
	// Processed counts the times the event was judged to completion: 0 or 1.
	Processed int `json:"processed"`
}

const schema = `
CREATE TABLE IF NOT EXISTS events (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	source       TEXT NOT NULL,
	event_id     TEXT NOT NULL,
	action       TEXT NOT NULL,
	repository   TEXT NOT NULL,
	tag          TEXT NOT NULL DEFAULT '',
	digest       TEXT NOT NULL DEFAULT '',
	blob         INTEGER NOT NULL DEFAULT 0,
	received_at  TEXT NOT NULL,
	processed_at TEXT,
	processed    INTEGER NOT NULL DEFAULT 0,
	UNIQUE (source, event_id)
);
CREATE INDEX IF NOT EXISTS events_pending ON events (seq) WHERE processed_at IS NULL;
CREATE TABLE IF NOT EXISTS malformed (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	source      TEXT NOT NULL,
	error       TEXT NOT NULL,
	body        BLOB NOT NULL,
	received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS findings (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	kind        TEXT NOT NULL,
	repository  TEXT NOT NULL,
	tag         TEXT NOT NULL DEFAULT '',
	digest      TEXT NOT NULL DEFAULT '',
	expected    TEXT NOT NULL DEFAULT '',
	detail      TEXT NOT NULL DEFAULT '',
	origin      TEXT NOT NULL,
	opened_at   TEXT NOT NULL,
	resolved_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS findings_open ON findings (kind, repository, tag, digest) WHERE resolved_at IS NULL;
`

// OpenStore opens (creating if needed) the database at path.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	// busy_timeout: the HTTP handlers and the worker write concurrently;
	// synchronous(FULL): a stored event survives a power cut, not only a
	// process kill, before the sender is answered.
	dsn := "file:" + abs + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	// One writer at a time is what SQLite allows; one connection makes
	// that explicit instead of a busy error.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating the schema in %s: %w", path, err)
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		db.Close()
		return nil, fmt.Errorf("%s: WAL mode not in force (%q, %v)", path, mode, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Add stores events in one transaction and returns how many were new (the
// rest were duplicates of stored events).
func (s *Store) Add(ctx context.Context, evs []Event) (added int, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	at := now()
	for _, e := range evs {
		res, err := tx.ExecContext(ctx, `INSERT INTO events (source, event_id, action, repository, tag, digest, blob, received_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, event_id) DO NOTHING`,
			e.Source, e.ID, e.Action, e.Repository, e.Tag, e.Digest, e.Blob, at)
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		added += int(n)
	}
	return added, tx.Commit()
}

// AddMalformed keeps a body that could not be read, for an operator to look
// at.
func (s *Store) AddMalformed(ctx context.Context, src Source, cause error, body []byte) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO malformed (source, error, body, received_at) VALUES (?, ?, ?, ?)`, src, cause.Error(), body, now())
	return err
}

const eventColumns = `seq, source, event_id, action, repository, tag, digest, blob, received_at, COALESCE(processed_at, ''), processed`

func scanEvent(sc interface{ Scan(...any) error }) (StoredEvent, error) {
	var e StoredEvent
	err := sc.Scan(&e.Seq, &e.Source, &e.ID, &e.Action, &e.Repository, &e.Tag, &e.Digest, &e.Blob, &e.ReceivedAt, &e.ProcessedAt, &e.Processed)
	return e, err
}

// Pending returns up to limit unprocessed events after sequence number
// after, received at or before before (a stored time), oldest first.
func (s *Store) Pending(ctx context.Context, after int64, before string, limit int) ([]StoredEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE processed_at IS NULL AND seq > ? AND received_at <= ? ORDER BY seq LIMIT ?`, after, before, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Events returns every stored event, oldest first.
func (s *Store) Events(ctx context.Context) ([]StoredEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM events ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ErrAlreadyProcessed says Complete found the event processed already.
var ErrAlreadyProcessed = errors.New("event already processed")

// Complete marks an event processed and records the findings judging it
// gave, and resolves the open findings about the subjects it found in
// order, in one transaction. It returns the findings that were opened (a
// finding already open is not opened twice).
func (s *Store) Complete(ctx context.Context, seq int64, v Verdict) ([]Finding, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	at := now()
	res, err := tx.ExecContext(ctx, `UPDATE events SET processed_at = ?, processed = processed + 1 WHERE seq = ? AND processed_at IS NULL`, at, seq)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n == 0 {
		return nil, ErrAlreadyProcessed
	}
	opened, err := record(ctx, tx, v, at)
	if err != nil {
		return nil, err
	}
	return opened, tx.Commit()
}

// record opens v's findings and resolves the open findings about v's clean
// subjects.
func record(ctx context.Context, tx *sql.Tx, v Verdict, at string) ([]Finding, error) {
	for _, sub := range v.Clean {
		if _, err := tx.ExecContext(ctx, `UPDATE findings SET resolved_at = ? WHERE resolved_at IS NULL AND repository = ? AND tag = ? AND (? != '' OR digest = ?)`,
			at, sub.Repository, sub.Tag, sub.Tag, sub.Digest); err != nil {
			return nil, err
		}
	}
	var opened []Finding
	for _, f := range v.Findings {
		res, err := tx.ExecContext(ctx, `INSERT INTO findings (kind, repository, tag, digest, expected, detail, origin, opened_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, repository, tag, digest) WHERE resolved_at IS NULL DO NOTHING`,
			f.Kind, f.Repository, f.Tag, f.Digest, f.Expected, f.Detail, f.Origin, at)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			id, _ := res.LastInsertId()
			f.ID, f.OpenedAt = id, at
			opened = append(opened, f)
		}
	}
	return opened, nil
}

// Reconcile records a full drift result for the repositories under the
// given prefixes: it opens the findings not open yet and resolves every open
// finding under those prefixes that the drift result no longer has.
func (s *Store) Reconcile(ctx context.Context, prefixes []string, found []Finding) ([]Finding, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	at := now()
	keep := map[string]bool{}
	for _, f := range found {
		keep[f.key()] = true
	}
	open, err := queryFindings(ctx, tx, true)
	if err != nil {
		return nil, err
	}
	for _, f := range open {
		// An untagged manifest is seen by the drift check only where the
		// registry lists untagged manifests: a finding about one is
		// resolved by an event (its delete), not by a reconcile.
		if keep[f.key()] || !underAny(f.Repository, prefixes) || f.Kind == drift.UnexpectedDigest {
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE findings SET resolved_at = ? WHERE id = ?`, at, f.ID); err != nil {
			return nil, err
		}
	}
	opened, err := record(ctx, tx, Verdict{Findings: found}, at)
	if err != nil {
		return nil, err
	}
	return opened, tx.Commit()
}

func underAny(repo string, prefixes []string) bool {
	for _, p := range prefixes {
		if repo == p || strings.HasPrefix(repo, p+"/") {
			return true
		}
	}
	return false
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryFindings(ctx context.Context, q querier, openOnly bool) ([]Finding, error) {
	query := `SELECT id, kind, repository, tag, digest, expected, detail, origin, opened_at, COALESCE(resolved_at, '') FROM findings`
	if openOnly {
		query += ` WHERE resolved_at IS NULL`
	}
	rows, err := q.QueryContext(ctx, query+` ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Finding
	for rows.Next() {
		var f Finding
		if err := rows.Scan(&f.ID, &f.Kind, &f.Repository, &f.Tag, &f.Digest, &f.Expected, &f.Detail, &f.Origin, &f.OpenedAt, &f.ResolvedAt); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// Findings returns the findings, open ones only when openOnly, in the order
// they were opened.
func (s *Store) Findings(ctx context.Context, openOnly bool) ([]Finding, error) {
	return queryFindings(ctx, s.db, openOnly)
}

// Counts returns the number of pending events and of open findings by kind.
func (s *Store) Counts(ctx context.Context) (pending int, open map[Kind]int, err error) {
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE processed_at IS NULL`).Scan(&pending); err != nil {
		return 0, nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT kind, COUNT(*) FROM findings WHERE resolved_at IS NULL GROUP BY kind`)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	open = map[Kind]int{}
	for rows.Next() {
		var k Kind
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return 0, nil, err
		}
		open[k] = n
	}
	return pending, open, rows.Err()
}
