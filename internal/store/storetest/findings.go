package storetest

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

var findingTests = []test{
	{"lifecycle", testFindingLifecycle},
	{"duplicates and empty", testFindingDuplicates},
}

func finding(rule, subject, evidence string) store.Finding {
	return store.Finding{Rule: rule, Subject: subject, Severity: "high", Title: "t " + rule, Evidence: evidence, Fix: "fix it"}
}

// testFindingLifecycle: open, refresh, resolve and reopen across runs.
func testFindingLifecycle(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a := finding("GH-CRED-UNUSED", "credential:a", "unused 40 days")
	b := finding("GH-API-OWNER", "api:orders@v1", "no owner")
	opened, resolved, err := s.SyncFindings(ctx, at(0), []store.Finding{a, b})
	mustNoErr(t, err, "sync 1")
	if opened != 2 || resolved != 0 {
		t.Fatalf("run 1: opened %d resolved %d, want 2 0", opened, resolved)
	}
	// Run 2: a persists with new evidence, b is fixed.
	a.Evidence = "unused 41 days"
	opened, resolved, err = s.SyncFindings(ctx, at(24*time.Hour), []store.Finding{a})
	mustNoErr(t, err, "sync 2")
	if opened != 0 || resolved != 1 {
		t.Fatalf("run 2: opened %d resolved %d, want 0 1", opened, resolved)
	}
	open, err := s.ListFindings(ctx, false)
	mustNoErr(t, err, "list open")
	if len(open) != 1 || open[0].Subject != "credential:a" || open[0].Evidence != "unused 41 days" {
		t.Fatalf("open findings = %+v", open)
	}
	equalTime(t, "first_seen", open[0].FirstSeen, want(at(0)))
	equalTime(t, "last_seen", open[0].LastSeen, want(at(24*time.Hour)))
	if !open[0].ResolvedAt.IsZero() {
		t.Errorf("open finding has resolved_at %v", open[0].ResolvedAt)
	}
	all, err := s.ListFindings(ctx, true)
	mustNoErr(t, err, "list all")
	if len(all) != 2 || all[0].Rule != "GH-API-OWNER" {
		t.Fatalf("all findings (ordered by rule) = %+v", all)
	}
	equalTime(t, "resolved_at", all[0].ResolvedAt, want(at(24*time.Hour)))

	// Run 3: b comes back: reopened, first seen kept.
	opened, resolved, err = s.SyncFindings(ctx, at(48*time.Hour), []store.Finding{a, b})
	mustNoErr(t, err, "sync 3")
	if opened != 1 || resolved != 0 {
		t.Fatalf("run 3: opened %d resolved %d, want 1 0", opened, resolved)
	}
	open, err = s.ListFindings(ctx, false)
	mustNoErr(t, err, "list open 3")
	if len(open) != 2 || !open[0].ResolvedAt.IsZero() {
		t.Fatalf("after reopening: %+v", open)
	}
	equalTime(t, "reopened first_seen", open[0].FirstSeen, want(at(0)))
}

func testFindingDuplicates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a := finding("GH-X", "s", "e")
	opened, _, err := s.SyncFindings(ctx, at(0), []store.Finding{a, a})
	mustNoErr(t, err, "sync duplicates")
	if opened != 1 {
		t.Errorf("duplicates opened %d, want 1", opened)
	}
	_, resolved, err := s.SyncFindings(ctx, at(time.Hour), nil)
	mustNoErr(t, err, "sync empty")
	if resolved != 1 {
		t.Errorf("an empty run resolved %d, want 1", resolved)
	}
	open, err := s.ListFindings(ctx, false)
	mustNoErr(t, err, "list")
	if len(open) != 0 {
		t.Errorf("open after empty run: %+v", open)
	}
}
