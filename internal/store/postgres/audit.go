package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/store"
)

// InsertAudit implements store.AuditStore.
func (s *Store) InsertAudit(ctx context.Context, entries []store.AuditEntry, pos store.AuditPosition) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, e := range entries {
			b.Queue(`INSERT INTO audit_records (log_id, seq, time, type, request_id, consumer, partner, credential_id, api,
				version, operation, method, path, client_ip, status, decision, stage, reason, latency_us, record)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) ON CONFLICT (log_id, seq) DO NOTHING`,
				pos.LogID, int64(e.Seq), ts(e.Time), e.Type, e.RequestID, e.Consumer, e.Partner, e.CredentialID, e.API, e.Version, e.Operation,
				e.Method, e.Path, e.ClientIP, e.Status, e.Decision, e.Stage, e.Reason, e.LatencyUS, e.Record)
		}
		b.Queue(`INSERT INTO audit_index_position (log_id, segment, byte_offset, seq) VALUES ($1, $2, $3, $4)
			ON CONFLICT (log_id) DO UPDATE SET segment = excluded.segment, byte_offset = excluded.byte_offset, seq = excluded.seq`,
			pos.LogID, pos.Segment, pos.Offset, int64(pos.Seq))
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("insert audit records: %w", err)
		}
		return nil
	})
}

// AuditPosition implements store.AuditStore.
func (s *Store) AuditPosition(ctx context.Context, logID string) (store.AuditPosition, error) {
	p := store.AuditPosition{LogID: logID}
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT segment, byte_offset, seq FROM audit_index_position WHERE log_id = $1`, logID).Scan(&p.Segment, &p.Offset, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.AuditPosition{LogID: logID}, nil
	}
	p.Seq = uint64(seq)
	return p, err
}

// QueryAudit implements store.AuditStore.
func (s *Store) QueryAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error) {
	var where []string
	var args []any
	add := func(col string, v any) {
		args = append(args, v)
		where = append(where, col+" $"+strconv.Itoa(len(args)))
	}
	if q.Consumer != "" {
		add("consumer =", q.Consumer)
	}
	if q.Partner != "" {
		add("partner =", q.Partner)
	}
	if q.API != "" {
		add("api =", q.API)
	}
	if q.Decision != "" {
		add("decision =", q.Decision)
	}
	if q.Status != 0 {
		add("status =", q.Status)
	}
	if !q.Since.IsZero() {
		add("time >=", ts(q.Since))
	}
	if !q.Until.IsZero() {
		add("time <", ts(q.Until))
	}
	query := `SELECT log_id, seq, time, type, request_id, consumer, partner, credential_id, api, operation, method, path,
		client_ip, status, decision, stage, reason, latency_us, record FROM audit_records`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, q.AuditLimit())
	query += " ORDER BY time DESC, seq DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var seq int64
		if err := rows.Scan(&e.LogID, &seq, &e.Time, &e.Type, &e.RequestID, &e.Consumer, &e.Partner, &e.CredentialID, &e.API, &e.Operation,
			&e.Method, &e.Path, &e.ClientIP, &e.Status, &e.Decision, &e.Stage, &e.Reason, &e.LatencyUS, &e.Record); err != nil {
			return nil, err
		}
		e.Seq, e.Time = uint64(seq), e.Time.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
