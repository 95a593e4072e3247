package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// indexLine is the part of a record the store indexes.
type indexLine struct {
	Seq          uint64    `json:"seq"`
	Type         string    `json:"type"`
	Time         time.Time `json:"time"`
	RequestID    string    `json:"request_id"`
	Consumer     string    `json:"consumer"`
	Partner      string    `json:"partner"`
	CredentialID string    `json:"credential_id"`
	API          string    `json:"api"`
	Version      string    `json:"version"`
	Operation    string    `json:"operation"`
	Method       string    `json:"method"`
	Path         string    `json:"path"`
	ClientIP     string    `json:"client_ip"`
	Status       int       `json:"status"`
	Decision     string    `json:"decision"`
	Stage        string    `json:"stage"`
	Reason       string    `json:"reason"`
	LatencyUS    int64     `json:"latency_us"`
	Actor        string    `json:"actor"`
	Action       string    `json:"action"`
}

// IndexBatch bounds one InsertAudit call.
const IndexBatch = 500

// Index copies records from the log in dir into st, starting where st says
// the last run stopped, until it has caught up. Only complete lines are
// read, and the position moves in the same transaction as the records, so
// a store outage or crash resumes exactly where it left off. It returns
// the number of records indexed.
func Index(ctx context.Context, dir string, st store.AuditStore) (int, error) {
	logID, err := ReadLogID(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // no writer has opened this log yet
	}
	if err != nil {
		return 0, err
	}
	pos, err := st.AuditPosition(ctx, logID)
	if err != nil {
		return 0, fmt.Errorf("read audit index position: %w", err)
	}
	if pos.Segment == 0 {
		pos.Segment = 1
	}
	total := 0
	for ctx.Err() == nil {
		entries, next, err := readFrom(dir, pos, IndexBatch)
		if err != nil {
			return total, err
		}
		if next == pos {
			return total, nil
		}
		if err := st.InsertAudit(ctx, entries, next); err != nil {
			return total, fmt.Errorf("index audit records: %w", err)
		}
		total += len(entries)
		pos = next
	}
	return total, ctx.Err()
}

// readFrom reads up to max records after pos. At the end of a segment it
// moves to the next one once that exists (the writer never returns to a
// segment it has rotated away from).
func readFrom(dir string, pos store.AuditPosition, max int) ([]store.AuditEntry, store.AuditPosition, error) {
	f, err := os.Open(filepath.Join(dir, segmentName(pos.Segment)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, pos, nil
	}
	if err != nil {
		return nil, pos, err
	}
	defer f.Close()
	if _, err := f.Seek(pos.Offset, io.SeekStart); err != nil {
		return nil, pos, err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	var out []store.AuditEntry
	next := pos
	for len(out) < max {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, pos, fmt.Errorf("audit segment %d: line at offset %d too long; run 'gatehouse logs verify'", pos.Segment, next.Offset)
		}
		if err != nil { // EOF, possibly mid-line: that line is not complete yet
			if _, serr := os.Stat(filepath.Join(dir, segmentName(pos.Segment+1))); serr == nil && len(line) == 0 && len(out) == 0 {
				return nil, store.AuditPosition{LogID: pos.LogID, Segment: pos.Segment + 1, Seq: next.Seq}, nil
			}
			break
		}
		next.Offset += int64(len(line))
		body := line[:len(line)-1]
		if IsCheckpoint(body) {
			continue
		}
		var l indexLine
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, pos, fmt.Errorf("audit segment %d offset %d: %w; run 'gatehouse logs verify'", pos.Segment, next.Offset-int64(len(line)), err)
		}
		e := store.AuditEntry{LogID: pos.LogID, Seq: l.Seq, Time: l.Time, Type: l.Type, RequestID: l.RequestID, Consumer: l.Consumer,
			Partner: l.Partner, CredentialID: l.CredentialID, API: l.API, Version: l.Version, Operation: l.Operation, Method: l.Method,
			Path: l.Path, ClientIP: l.ClientIP, Status: l.Status, Decision: l.Decision, Stage: l.Stage, Reason: l.Reason,
			LatencyUS: l.LatencyUS, Record: string(body)}
		if l.Type == TypeAdmin {
			e.Consumer, e.Operation, e.Decision = l.Actor, l.Action, "admin"
		}
		next.Seq = l.Seq
		out = append(out, e)
	}
	return out, next, nil
}
