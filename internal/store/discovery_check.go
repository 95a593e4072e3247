package store

import (
	"errors"
	"fmt"
)

// CheckDiscovered reports the first entry UpsertDiscovery must refuse.
func CheckDiscovered(entries []DiscoveredEndpoint) error {
	for i, e := range entries {
		switch {
		case e.Method == "" || e.Template == "":
			return fmt.Errorf("entry %d: empty method or template", i)
		case e.Count <= 0:
			return fmt.Errorf("entry %d (%s %s): count must be positive", i, e.Method, e.Template)
		case e.FirstSeen.IsZero() || e.LastSeen.IsZero():
			return fmt.Errorf("entry %d (%s %s): first and last seen times are required", i, e.Method, e.Template)
		}
		for _, c := range e.Callers {
			if c.Count <= 0 || c.LastSeen.IsZero() {
				return errors.New("caller with no count or time")
			}
		}
	}
	return nil
}
