package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

var incidentTests = []test{
	{"lifecycle", testIncidentLifecycle},
	{"errors", testIncidentErrors},
	{"lift revocation", testLiftRevocation},
}

func testIncidentLifecycle(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	inc := store.Incident{ID: "inc-1", Scope: "partner", Subject: "acme", Reason: "leaked key", OpenedAt: at(0), OpenedBy: "alice",
		Events: []store.IncidentEvent{
			{At: at(0), Actor: "alice", Action: "opened", Detail: "leaked key"},
			{At: at(time.Second), Actor: "alice", Action: "revoked", Detail: "partner acme"},
		}}
	mustNoErr(t, s.CreateIncident(ctx, inc), "create")
	mustNoErr(t, s.CreateIncident(ctx, store.Incident{ID: "inc-2", Scope: "consumer", Subject: "x", OpenedAt: at(time.Hour), OpenedBy: "bob"}), "create 2")
	mustNoErr(t, s.AddIncidentEvent(ctx, "inc-1", store.IncidentEvent{At: at(time.Minute), Actor: "bob", Action: "note", Detail: "partner confirmed"}), "note")

	got, err := s.GetIncident(ctx, "inc-1")
	mustNoErr(t, err, "get")
	if got.Scope != "partner" || got.Subject != "acme" || got.Reason != "leaked key" || got.OpenedBy != "alice" || !got.ClosedAt.IsZero() {
		t.Fatalf("incident = %+v", got)
	}
	equalTime(t, "opened_at", got.OpenedAt, want(at(0)))
	if len(got.Events) != 3 || got.Events[0].Action != "opened" || got.Events[2].Action != "note" || got.Events[2].Detail != "partner confirmed" {
		t.Fatalf("timeline = %+v", got.Events)
	}
	equalTime(t, "event time", got.Events[1].At, want(at(time.Second)))

	list, err := s.ListIncidents(ctx, false)
	mustNoErr(t, err, "list")
	if len(list) != 2 || list[0].ID != "inc-2" || list[0].Events != nil {
		t.Fatalf("open incidents (newest first, no timelines) = %+v", list)
	}
	mustNoErr(t, s.CloseIncident(ctx, "inc-1", at(2*time.Hour), "carol", "rotated, partner re-onboarded"), "close")
	if err := s.CloseIncident(ctx, "inc-1", at(3*time.Hour), "carol", ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("closing twice: %v, want ErrConflict", err)
	}
	list, err = s.ListIncidents(ctx, false)
	mustNoErr(t, err, "list open")
	if len(list) != 1 || list[0].ID != "inc-2" {
		t.Fatalf("open after close = %+v", list)
	}
	list, err = s.ListIncidents(ctx, true)
	mustNoErr(t, err, "list all")
	if len(list) != 2 {
		t.Fatalf("all incidents = %+v", list)
	}
	got, err = s.GetIncident(ctx, "inc-1")
	mustNoErr(t, err, "get closed")
	equalTime(t, "closed_at", got.ClosedAt, want(at(2*time.Hour)))
	if last := got.Events[len(got.Events)-1]; last.Action != "closed" || last.Actor != "carol" || last.Detail != "rotated, partner re-onboarded" {
		t.Errorf("close event = %+v", last)
	}
}

func testIncidentErrors(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.CreateIncident(ctx, store.Incident{ID: "inc-x", Scope: "partner", Subject: "a", OpenedAt: at(0)}), "create")
	if err := s.CreateIncident(ctx, store.Incident{ID: "inc-x", Scope: "partner", Subject: "b", OpenedAt: at(0)}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate id: %v", err)
	}
	if _, err := s.GetIncident(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get unknown: %v", err)
	}
	if err := s.AddIncidentEvent(ctx, "nope", store.IncidentEvent{At: at(0), Action: "note"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("event on unknown: %v", err)
	}
	if err := s.CloseIncident(ctx, "nope", at(0), "x", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("close unknown: %v", err)
	}
}

// testLiftRevocation: lifting shortens an entry to the lift time, with a
// new Seq so pollers see it, and says who lifted it.
func testLiftRevocation(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.AddRevocation(ctx, store.Revocation{Kind: store.RevokePartner, Subject: "acme", Reason: "incident", CreatedAt: at(0), CreatedBy: "alice"}), "revoke")
	mustNoErr(t, s.AddRevocation(ctx, store.Revocation{Kind: store.RevokeNetwork, Subject: "203.0.113.0/24", CreatedAt: at(0), CreatedBy: "alice"}), "block")
	before, err := s.RevocationsSince(ctx, 0)
	mustNoErr(t, err, "since 0")
	if on, _ := s.IsRevoked(ctx, store.RevokePartner, "acme", at(time.Hour)); !on {
		t.Fatal("partner not revoked")
	}
	mustNoErr(t, s.LiftRevocation(ctx, store.RevokePartner, "acme", at(time.Hour), "bob", "lifted: incident inc-1 closed"), "lift")
	if on, _ := s.IsRevoked(ctx, store.RevokePartner, "acme", at(time.Hour+time.Second)); on {
		t.Error("partner still revoked after the lift")
	}
	after, err := s.RevocationsSince(ctx, before[len(before)-1].Seq)
	mustNoErr(t, err, "since last")
	if len(after) != 1 || after[0].Subject != "acme" || after[0].CreatedBy != "bob" || after[0].Reason != "lifted: incident inc-1 closed" {
		t.Fatalf("pollers see %+v after the lift", after)
	}
	equalTime(t, "lifted expiry", after[0].ExpiresAt, want(at(time.Hour)))
	if on, _ := s.IsRevoked(ctx, store.RevokeNetwork, "203.0.113.0/24", at(time.Hour)); !on {
		t.Error("lifting the partner lifted the network block too")
	}
	if err := s.LiftRevocation(ctx, store.RevokeConsumer, "ghost", at(0), "bob", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("lift unknown: %v", err)
	}
}
