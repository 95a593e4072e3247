package gateway

import (
	"strings"

	"github.com/gatehouse/gatehouse/internal/authz"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/registry"
)

// UnregisteredOperation is the operation ID of calls an observe_unregistered
// API forwards without a declared operation (metrics, logs, audit).
const UnregisteredOperation = "x-gatehouse-unregistered"

// passthroughRoute forwards undeclared paths under an API's base path.
//
// Why it is safe only under one "*" policy: whatever the gateway forwards,
// the upstream routes by its own rules, so an undeclared path may reach a
// declared operation under another spelling (a trailing slash, a suffix
// pattern, a case-insensitive router). If declared operations had policies
// of their own, that alias would be authorised by the weaker passthrough
// policy. With one non-public "*" policy for the whole API, an alias gains
// nothing, and deny by default still holds: no credential, 401; a
// credential without the policy's scopes or roles, 403.
type passthroughRoute struct {
	host string // canonical route host, "" default
	base string
	op   *Operation
}

// compilePassthrough checks an observe_unregistered API and builds its
// passthrough route, or reports why it cannot have one.
func (g *Gateway) compilePassthrough(rep *config.Reporter, cfg *config.Config, ptr string, ac config.API, api *registry.API, up *upstream, auth *apiAuth) *passthroughRoute {
	if len(ac.Policies) != 1 || ac.Policies[0].Operation != "*" || ac.Policies[0].Public {
		rep.Errorf(ptr+"/observe_unregistered", "observe_unregistered needs the API's only policy to be a non-public \"*\" policy: "+
			"forwarded paths may reach declared operations under other spellings, so every operation must be guarded alike")
		return nil
	}
	pols, _ := authz.Compile(ac, []string{UnregisteredOperation}, ptr) // problems were reported with the API's own
	base := strings.TrimSuffix(ac.Route.BasePath, "/")
	op := &Operation{API: api, ID: UnregisteredOperation, Method: "*", Template: base + "/{unregistered}",
		series: g.seriesFor(ac.Name, UnregisteredOperation), upstream: up, auth: auth, policy: pols.For(UnregisteredOperation)}
	// No schema documents these paths: header scrubbing, deny_fields and
	// 5xx replacement apply, documented filtering cannot.
	op.proxy = up.operationProxy(newResponsePlan(cfg, ac, nil, UnregisteredOperation, "*", base+"/{unregistered}", g.log))
	return &passthroughRoute{host: canonicalRouteHost(ac.Route.Host), base: base, op: op}
}

// passthroughFor returns the passthrough operation for a path no route
// matched, or nil. Hosts are chosen as the route table chooses them: a
// host with routes of its own uses only those, any other the default host.
func (rt *Runtime) passthroughFor(host, path string) *Operation {
	if len(rt.passthrough) == 0 {
		return nil
	}
	h := canonicalRouteHost(hostWithoutPort(host))
	if !rt.routeHosts[h] {
		h = ""
	}
	for _, p := range rt.passthrough {
		if p.host == h && (p.base == "" || path == p.base || strings.HasPrefix(path, p.base+"/")) {
			return p.op
		}
	}
	return nil
}

func canonicalRouteHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func hostWithoutPort(host string) string {
	if len(host) > 0 && host[0] == '[' {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		return host[:i]
	}
	return host
}
