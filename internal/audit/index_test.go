package audit

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

// flakyStore fails every InsertAudit after the first ok calls, as a store
// outage would.
type flakyStore struct {
	store.AuditStore
	ok, calls int
}

func (f *flakyStore) InsertAudit(ctx context.Context, e []store.AuditEntry, p store.AuditPosition) error {
	f.calls++
	if f.calls > f.ok {
		return errors.New("store unavailable")
	}
	return f.AuditStore.InsertAudit(ctx, e, p)
}

// A store outage in the middle of indexing loses and duplicates nothing:
// the next run resumes from the position stored with the last batch.
func TestIndexResumesAfterStoreOutage(t *testing.T) {
	s, _ := testKeys(t, "idx")
	dir := t.TempDir()
	// 1200 records over several segments: more than two batches.
	w, err := Open(Options{Dir: dir, Mode: Buffered, Signer: s, SegmentMaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 1200; i++ {
		if err := w.WriteRequest(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	n, err := Index(ctx, dir, &flakyStore{AuditStore: st, ok: 1})
	if err == nil || n == 0 || n >= 1200 {
		t.Fatalf("first run: %d indexed, err %v; want a partial run ending in the outage", n, err)
	}
	id, _ := ReadLogID(dir)
	pos, _ := st.AuditPosition(ctx, id)
	if pos.Seq != uint64(n) {
		t.Fatalf("position %+v after %d records", pos, n)
	}
	m, err := Index(ctx, dir, st)
	if err != nil || n+m != 1200 {
		t.Fatalf("resume: %d more indexed (%d before), err %v", m, n, err)
	}
	all, err := st.QueryAudit(ctx, store.AuditQuery{Limit: 10000})
	if err != nil || len(all) != 1200 {
		t.Fatalf("indexed %d records, err %v; want 1200", len(all), err)
	}
	for i, e := range all {
		if e.Seq != uint64(1200-i) {
			t.Fatalf("record %d has seq %d", i, e.Seq)
		}
	}
	if again, err := Index(ctx, dir, st); err != nil || again != 0 {
		t.Fatalf("a caught-up index indexed %d more, err %v", again, err)
	}
}

// A failed write is cut back and the chain stays verifiable; the writer
// recovers when writes succeed again.
func TestWriterRecoversAfterWriteFailure(t *testing.T) {
	s, v := testKeys(t, "rec")
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, Mode: Durable, Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRequest(sampleRecord(1)); err != nil {
		t.Fatal(err)
	}
	// Swap the segment's file for a read-only handle: writes now fail.
	good := w.f
	ro, err := openReadOnly(good.Name())
	if err != nil {
		t.Fatal(err)
	}
	w.submitSync(func() { w.f = ro; w.bw.Reset(ro) })
	if err := w.WriteRequest(sampleRecord(2)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write to an unwritable segment: %v, want ErrUnavailable", err)
	}
	if w.Stats().Healthy {
		t.Fatal("writer still healthy after a failed write")
	}
	w.submitSync(func() { w.f = good; w.bw.Reset(good) })
	ro.Close()
	if err := w.WriteRequest(sampleRecord(3)); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	if !w.Stats().Healthy {
		t.Fatal("writer not healthy after a successful write")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, v)
	if err != nil || rep.Broken != nil || rep.Records != 2 {
		t.Fatalf("verify: %+v, %v; want 2 records, intact", rep, err)
	}
}
