package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

var alertTests = []test{{"save, list, ack", testAlerts}}

func testAlerts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a := store.Alert{ID: "al-1", Detector: "auth_failure_burst", Severity: "high", Subject: "ip:203.0.113.9",
		Summary: "20 failures", Evidence: `{"failures":20}`, Count: 1, FirstAt: at(0), LastAt: at(0), Response: "blocked ip"}
	mustNoErr(t, s.SaveAlert(ctx, a), "save")
	b := a
	b.ID, b.Subject, b.FirstAt, b.LastAt, b.Response = "al-2", "consumer:x", at(time.Minute), at(time.Minute), ""
	mustNoErr(t, s.SaveAlert(ctx, b), "save 2")
	// Folding another finding into al-1 updates it in place.
	a.Count, a.LastAt, a.RevertedAt = 3, at(2*time.Minute), at(3*time.Minute)
	mustNoErr(t, s.SaveAlert(ctx, a), "update")

	got, err := s.GetAlert(ctx, "al-1")
	mustNoErr(t, err, "get")
	if got.Count != 3 || got.Evidence != `{"failures":20}` || got.Response != "blocked ip" || got.Detector != "auth_failure_burst" {
		t.Fatalf("alert = %+v", got)
	}
	equalTime(t, "last_at", got.LastAt, want(at(2*time.Minute)))
	equalTime(t, "reverted_at", got.RevertedAt, want(at(3*time.Minute)))
	list, err := s.ListAlerts(ctx, false, 0)
	mustNoErr(t, err, "list")
	if len(list) != 2 || list[0].ID != "al-1" {
		t.Fatalf("list (most recent first) = %+v", list)
	}
	mustNoErr(t, s.AckAlert(ctx, "al-1", "alice", at(time.Hour)), "ack")
	mustNoErr(t, s.AckAlert(ctx, "al-1", "bob", at(2*time.Hour)), "ack again")
	got, _ = s.GetAlert(ctx, "al-1")
	if got.AckedBy != "alice" {
		t.Errorf("second ack replaced the first: %+v", got)
	}
	equalTime(t, "acked_at", got.AckedAt, want(at(time.Hour)))
	list, _ = s.ListAlerts(ctx, false, 0)
	if len(list) != 1 || list[0].ID != "al-2" {
		t.Errorf("unacknowledged = %+v", list)
	}
	list, _ = s.ListAlerts(ctx, true, 1)
	if len(list) != 1 {
		t.Errorf("limit 1 returned %d", len(list))
	}
	if err := s.AckAlert(ctx, "nope", "x", at(0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ack unknown: %v", err)
	}
	if _, err := s.GetAlert(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get unknown: %v", err)
	}
}
