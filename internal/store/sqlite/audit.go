package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse/gatehouse/internal/store"
)

// InsertAudit implements store.AuditStore.
func (s *Store) InsertAudit(ctx context.Context, entries []store.AuditEntry, pos store.AuditPosition) error {
	return s.inWriteTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_records (log_id, seq, time, type, request_id, consumer, partner,
			credential_id, api, version, operation, method, path, client_ip, status, decision, stage, reason, latency_us, record)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (log_id, seq) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("prepare audit insert: %w", err)
		}
		defer stmt.Close()
		for _, e := range entries {
			if _, err := stmt.ExecContext(ctx, pos.LogID, int64(e.Seq), micros(e.Time), e.Type, e.RequestID, e.Consumer, e.Partner,
				e.CredentialID, e.API, e.Version, e.Operation, e.Method, e.Path, e.ClientIP, e.Status, e.Decision, e.Stage, e.Reason,
				e.LatencyUS, e.Record); err != nil {
				return fmt.Errorf("insert audit record %d: %w", e.Seq, err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_index_position (log_id, segment, byte_offset, seq) VALUES (?, ?, ?, ?)
			ON CONFLICT (log_id) DO UPDATE SET segment = excluded.segment, byte_offset = excluded.byte_offset, seq = excluded.seq`,
			pos.LogID, pos.Segment, pos.Offset, int64(pos.Seq))
		return err
	})
}

// AuditPosition implements store.AuditStore.
func (s *Store) AuditPosition(ctx context.Context, logID string) (store.AuditPosition, error) {
	p := store.AuditPosition{LogID: logID}
	var seq int64
	err := s.read.QueryRowContext(ctx, `SELECT segment, byte_offset, seq FROM audit_index_position WHERE log_id = ?`, logID).Scan(&p.Segment, &p.Offset, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuditPosition{LogID: logID}, nil
	}
	p.Seq = uint64(seq)
	return p, err
}

// QueryAudit implements store.AuditStore.
func (s *Store) QueryAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if q.Consumer != "" {
		add("consumer = ?", q.Consumer)
	}
	if q.Partner != "" {
		add("partner = ?", q.Partner)
	}
	if q.API != "" {
		add("api = ?", q.API)
	}
	if q.Decision != "" {
		add("decision = ?", q.Decision)
	}
	if q.Status != 0 {
		add("status = ?", q.Status)
	}
	if !q.Since.IsZero() {
		add("time >= ?", micros(q.Since))
	}
	if !q.Until.IsZero() {
		add("time < ?", micros(q.Until))
	}
	query := `SELECT log_id, seq, time, type, request_id, consumer, partner, credential_id, api, operation, method, path,
		client_ip, status, decision, stage, reason, latency_us, record FROM audit_records`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY time DESC, seq DESC LIMIT ?"
	args = append(args, q.AuditLimit())
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var seq, t int64
		if err := rows.Scan(&e.LogID, &seq, &t, &e.Type, &e.RequestID, &e.Consumer, &e.Partner, &e.CredentialID, &e.API, &e.Operation,
			&e.Method, &e.Path, &e.ClientIP, &e.Status, &e.Decision, &e.Stage, &e.Reason, &e.LatencyUS, &e.Record); err != nil {
			return nil, err
		}
		e.Seq, e.Time = uint64(seq), fromMicros(t)
		out = append(out, e)
	}
	return out, rows.Err()
}
