package store

import (
	"fmt"
	"time"
)

// The helpers below hold the rules of the Store contract that every
// implementation must apply identically, so the sqlite and postgres stores
// cannot drift apart on them.

// TimePrecision is the resolution stores keep: PostgreSQL's timestamptz holds
// microseconds, so SQLite keeps the same and both return equal values.
const TimePrecision = time.Microsecond

// NormalizeTime returns t as a store returns it: in UTC, truncated to
// TimePrecision, without a monotonic clock reading. The zero time stays zero.
func NormalizeTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(TimePrecision)
}

// ExpiresLater reports whether an expiry of next outlasts one of prev, where
// the zero time means "never expires". It decides which entry AddRevocation
// keeps when the same (Kind, Subject) is added twice.
func ExpiresLater(prev, next time.Time) bool {
	switch {
	case prev.IsZero():
		return false
	case next.IsZero():
		return true
	default:
		return NormalizeTime(next).After(NormalizeTime(prev))
	}
}

// CheckUniqueAPIs returns an error wrapping ErrConflict when two records
// share a name and version: that pair identifies an API in a snapshot.
func CheckUniqueAPIs(apis []APIRecord) error {
	seen := make(map[[2]string]struct{}, len(apis))
	for _, a := range apis {
		k := [2]string{a.Name, a.Version}
		if _, dup := seen[k]; dup {
			return fmt.Errorf("api %s %s listed twice: %w", a.Name, a.Version, ErrConflict)
		}
		seen[k] = struct{}{}
	}
	return nil
}
