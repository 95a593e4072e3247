package store

import (
	"errors"
	"fmt"
)

// ErrInvalidQuotaTake means a TakeQuota call is malformed.
var ErrInvalidQuotaTake = errors.New("store: invalid quota take")

// CheckQuotaTakes validates a TakeQuota call; implementations call it first.
func CheckQuotaTakes(takes []QuotaTake) error {
	for i, t := range takes {
		if t.Key == "" || t.N < 1 || t.Limit < 0 {
			return fmt.Errorf("%w: take %d: want a key, n >= 1 and limit >= 0", ErrInvalidQuotaTake, i)
		}
		for _, u := range takes[:i] {
			if u.Key == t.Key && u.WindowStart.Equal(t.WindowStart) {
				return fmt.Errorf("%w: counter %q named twice", ErrInvalidQuotaTake, t.Key)
			}
		}
	}
	return nil
}

// QuotaFits reports whether every take could fit on its own before any
// store round trip: a take larger than its limit never does.
func QuotaFits(takes []QuotaTake) bool {
	for _, t := range takes {
		if t.N > t.Limit {
			return false
		}
	}
	return true
}
