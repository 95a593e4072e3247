package discover

import (
	"strings"

	"github.com/gatehouse/gatehouse/internal/registry"
	"github.com/gatehouse/gatehouse/internal/route"
)

// RegisteredOp is one operation the registry declares, as discovery sees it.
type RegisteredOp struct {
	API, Version, Lifecycle string
	OperationID             string
	Method                  string
	Host                    string // the API's route host, "" for the default host
	Template                string // base path + spec path
}

// Catalog matches learned templates against the registry's operations with
// the gateway's own router, so "registered" means exactly what the gateway
// would have routed. Retired APIs are included (the gateway gives them no
// routes; discovery needs them to name zombie traffic).
type Catalog struct {
	Ops []*RegisteredOp
	// hosts with at least one API: as in the gateway, a request naming one
	// of them is only routed among that host's APIs; any other host gets
	// the default-host APIs.
	hosts map[string]bool
	apis  []catalogAPI
}

type catalogAPI struct {
	host  string
	table *route.Table
}

// NewCatalog builds a Catalog from a compiled registry.
func NewCatalog(reg *registry.Registry) *Catalog {
	c := &Catalog{hosts: map[string]bool{}}
	if reg == nil {
		return c
	}
	for _, a := range reg.APIs {
		if a.Spec == nil {
			continue
		}
		ac := a.Config
		host := strings.TrimSuffix(strings.ToLower(ac.Route.Host), ".")
		var routes []route.Route
		for _, o := range a.Spec.Operations {
			op := &RegisteredOp{API: ac.Name, Version: ac.Version, Lifecycle: ac.Lifecycle, OperationID: o.ID,
				Method: o.Method, Host: host, Template: joinBase(ac.Route.BasePath, o.Path)}
			c.Ops = append(c.Ops, op)
			routes = append(routes, route.Route{Method: op.Method, Path: op.Template, Handler: op})
		}
		if host != "" {
			c.hosts[host] = true
		}
		if t, err := route.Compile(routes); err == nil {
			c.apis = append(c.apis, catalogAPI{host: host, table: t})
			continue
		}
		// A spec the gateway would refuse (only possible for a retired
		// API, which it never compiles): match its operations one by one.
		for _, r := range routes {
			if t, err := route.Compile([]route.Route{r}); err == nil {
				c.apis = append(c.apis, catalogAPI{host: host, table: t})
			}
		}
	}
	return c
}

func joinBase(base, p string) string {
	if base == "" || base == "/" {
		return p
	}
	return base + p
}

// MatchStatus says how a learned endpoint relates to the registry.
type MatchStatus uint8

const (
	Undeclared       MatchStatus = iota // no registered path matches
	MethodUndeclared                    // the path is registered, the method is not
	Declared                            // a registered operation matches
)

// Match finds the registered operation a learned (host, method, template)
// would be routed to. Parameters in the learned template match registered
// parameters; a learned literal matches a registered parameter too (the
// router would send it there).
func (c *Catalog) Match(host, method, template string) (*RegisteredOp, MatchStatus) {
	if method == "OTHER" {
		method = "-" // no registered method has this name
	}
	h := ""
	if c.hosts[host] {
		h = host
	}
	status := Undeclared
	var ps route.Params
	for _, a := range c.apis {
		if a.host != h {
			continue
		}
		res := a.table.Match("", method, template, &ps)
		switch res.Status {
		case route.Found:
			return res.Handler.(*RegisteredOp), Declared
		case route.MethodNotAllowed:
			status = MethodUndeclared
		}
	}
	return nil, status
}
