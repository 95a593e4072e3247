package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
)

// ProbGone answers calls to a version past its sunset (RFC 8594 §1 suggests 410).
var ProbGone = Problem{Type: ProblemBase + "gone", Title: "API version retired", Status: http.StatusGone}

// lifecycle is what a deprecated (or to-be-deprecated) API version tells
// its callers, precomputed at compile time.
type lifecycle struct {
	version     string
	deprecation []string  // Deprecation header (RFC 9745), or nil
	sunset      time.Time // zero: no sunset
	sunsetValue []string  // Sunset header (RFC 8594), or nil
	link        []string  // Link header: successor-version and deprecation, or nil
	goneDetail  string
}

// newLifecycle returns nil for versions with nothing to announce, so the
// pipeline pays one nil check on every other route.
func newLifecycle(cfg *config.Config, ac config.API) *lifecycle {
	d := ac.Deprecation
	if ac.Lifecycle != "deprecated" && (ac.Lifecycle != "active" || d.On == "") {
		return nil
	}
	lc := &lifecycle{version: ac.Version}
	if on, err := config.ParseWhen(d.On); err == nil && d.On != "" {
		// A structured-field Date: "@" and Unix seconds.
		lc.deprecation = []string{"@" + strconv.FormatInt(on.Unix(), 10)}
	}
	if t, err := config.ParseWhen(d.Sunset); err == nil && d.Sunset != "" {
		lc.sunset = t
		lc.sunsetValue = []string{t.Format(http.TimeFormat)}
	}
	var links, successor string
	if d.Successor != "" {
		for _, s := range cfg.APIs {
			if s.Name == ac.Name && s.Version == d.Successor {
				successor = s.Route.BasePath
				if s.Route.Host != "" {
					successor = "https://" + s.Route.Host + successor
				}
			}
		}
		if successor != "" {
			links = "<" + successor + `>; rel="successor-version"`
		}
	}
	if d.Link != "" {
		if links != "" {
			links += ", "
		}
		links += "<" + d.Link + `>; rel="deprecation"; type="text/html"`
	}
	if links != "" {
		lc.link = []string{links}
	}
	lc.goneDetail = "Version " + ac.Version + " of this API reached its sunset"
	if !lc.sunset.IsZero() {
		lc.goneDetail += " on " + lc.sunset.Format(time.DateOnly)
	}
	if successor != "" {
		lc.goneDetail += "; use version " + d.Successor + " at " + successor
	}
	lc.goneDetail += "."
	return lc
}

// gone reports whether the sunset has passed at now.
func (lc *lifecycle) gone(now time.Time) bool {
	return !lc.sunset.IsZero() && !now.Before(lc.sunset)
}

// announce sets the deprecation headers on a response. The slices are
// shared read-only across requests; nothing downstream appends to them.
func (lc *lifecycle) announce(h http.Header) {
	if lc.deprecation != nil {
		h["Deprecation"] = lc.deprecation
	}
	if lc.sunsetValue != nil {
		h["Sunset"] = lc.sunsetValue
	}
	if lc.link != nil {
		h["Link"] = lc.link
	}
}
