package validate

import (
	"errors"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

var errFormat = errors.New("invalid format")

type formatFunc func(string) bool

func (f formatFunc) Validate(s string) error {
	if !f(s) {
		return errFormat
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
var hostnameRE = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// stringFormats are the formats checked on top of kin-openapi's built-in
// date, date-time and byte. They are passed per validation rather than
// registered globally, so no other package's validators change.
var stringFormats = map[string]openapi3.StringFormatValidator{
	"uuid": formatFunc(uuidRE.MatchString),
	"email": formatFunc(func(s string) bool {
		// A bare address only: "Name <a@b>" parses too, but is not an
		// email in the JSON Schema sense.
		a, err := mail.ParseAddress(s)
		return err == nil && a.Address == s && len(s) <= 254
	}),
	"ipv4": formatFunc(func(s string) bool {
		a, err := netip.ParseAddr(s)
		return err == nil && a.Is4()
	}),
	"ipv6": formatFunc(func(s string) bool {
		a, err := netip.ParseAddr(s)
		return err == nil && a.Is6() && a.Zone() == ""
	}),
	"uri": formatFunc(func(s string) bool {
		u, err := url.Parse(s)
		return err == nil && u.Scheme != "" && !strings.ContainsAny(s, " \t\r\n")
	}),
	"hostname": formatFunc(func(s string) bool { return len(s) <= 253 && hostnameRE.MatchString(s) }),
}
