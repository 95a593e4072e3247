package authz

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

var ordersOps = []string{"getOrder", "listOrders", "deleteOrder", "health", "getInvoice", "search", "headerOp", "typeOp", "createRefund"}

// ordersAPI is the quickstart's shape: partners acme and globex may call
// it; object-level (BOLA) and function-level (BFLA) rules included.
func ordersAPI() config.API {
	return config.API{
		Name: "orders", Version: "v2",
		AllowPartners: []string{"acme", "globex"},
		Policies: []config.Policy{
			{Operation: "getOrder", Scopes: []string{"orders:read"}, When: "request.path.customerId in principal.claims.customers"},
			{Operation: "listOrders", Scopes: []string{"orders:read"}},
			{Operation: "deleteOrder", Scopes: []string{"orders:read"}, Roles: []string{"admin", "support-lead"}},
			{Operation: "health", Public: true},
			{Operation: "getInvoice", Scopes: []string{"orders:read"}, When: "principal.claims.tier == 'gold'"},
			{Operation: "search", When: "principal.claims.items.all(x, principal.claims.items.exists(y, x == y))"},
			{Operation: "headerOp", When: `request.headers['x-tenant'] == principal.partner
				&& 'x-tenant' in request.headers && !has(request.headers.authorization)
				&& request.headers.exists(k, k == 'x-tenant')
				&& request.query.page == '1' && request.method == 'GET' && request.operation == 'headerOp'
				&& request.time > timestamp('2020-01-01T00:00:00Z')
				&& request.client_ip.startsWith('203.0.113.')
				&& principal.kind == 'jwt' && principal.subject == 'u-1' && 'reader' in principal.roles`},
			{Operation: "typeOp", When: "principal.claims.tier"}, // dyn: checked at run time
			// createRefund: no policy at all.
		},
	}
}

func mustCompile(t testing.TB, api config.API, ops []string) *APIPolicy {
	t.Helper()
	ap, probs := Compile(api, ops, "/apis/0")
	for _, p := range probs {
		if !p.Warning {
			t.Fatalf("unexpected problem: %s", p)
		}
	}
	return ap
}

var (
	// c-200's token: acme, read-only.
	acmeReader = &authn.Principal{
		Kind: authn.KindJWT, Consumer: "acme-billing", Partner: "acme", Subject: "u-1",
		Scopes: []string{"orders:read"}, Roles: []string{"reader"},
		Claims: map[string]any{"customers": []any{"c-200"}, "tier": "silver"},
	}
	acmeAdmin = &authn.Principal{
		Kind: authn.KindAPIKey, Consumer: "acme-ops", Partner: "acme",
		Scopes: []string{"orders:read", "orders:write"}, Roles: []string{"admin"},
		Claims: map[string]any{"customers": []any{"c-100", "c-200"}, "tier": "gold"},
	}
	globexNoScope = &authn.Principal{Consumer: "globex-app", Partner: "globex", Claims: map[string]any{"customers": []any{"c-300"}}}
	initech       = &authn.Principal{Consumer: "initech-app", Partner: "initech", Scopes: []string{"orders:read"}}
	noPartner     = &authn.Principal{Consumer: "internal-app", Scopes: []string{"orders:read"}}
	typedClaims   = &authn.Principal{Consumer: "globex-app", Partner: "globex", Scopes: []string{"orders:read"},
		Claims: map[string]any{"customers": []string{"c-400"}}} // set by Go code, not decoded JSON
	noClaims = &authn.Principal{Consumer: "acme-x", Partner: "acme", Scopes: []string{"orders:read"}}
)

func orderInput(op, customer string) *Input {
	return &Input{Method: "GET", Operation: op, PathParams: map[string]string{"customerId": customer, "orderId": "o-1"}}
}

func bigItems(n int) map[string]any {
	items := make([]any, n)
	for i := range items {
		items[i] = fmt.Sprintf("item-%d", i)
	}
	return map[string]any{"items": items}
}

func TestAuthorize(t *testing.T) {
	ap := mustCompile(t, ordersAPI(), ordersOps)
	headerIn := &Input{
		Method: "GET", Operation: "headerOp", ClientIP: "203.0.113.7",
		Query:  url.Values{"page": {"1", "2"}},
		Header: http.Header{"X-Tenant": {"acme"}},
		Time:   time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	}
	withAuth := *headerIn
	withAuth.Header = http.Header{"X-Tenant": {"acme"}, "Authorization": {"Bearer x"}}
	otherTenant := *headerIn
	otherTenant.Header = http.Header{"X-Tenant": {"globex"}}

	for _, tc := range []struct {
		name   string
		op     string
		p      *authn.Principal
		in     *Input
		allow  bool
		status int
		reason string
		scope  string
	}{
		// Object level (BOLA): customer c-200's token cannot read c-100's orders.
		{"bola/own customer", "getOrder", acmeReader, orderInput("getOrder", "c-200"), true, 0, ReasonGranted, ""},
		{"bola/other customer", "getOrder", acmeReader, orderInput("getOrder", "c-100"), false, 403, ReasonConditionFalse, ""},
		{"bola/case variant", "getOrder", acmeReader, orderInput("getOrder", "C-200"), false, 403, ReasonConditionFalse, ""},
		{"bola/padded", "getOrder", acmeReader, orderInput("getOrder", "c-200 "), false, 403, ReasonConditionFalse, ""},
		{"bola/empty", "getOrder", acmeReader, orderInput("getOrder", ""), false, 403, ReasonConditionFalse, ""},
		{"bola/typed claim list", "getOrder", typedClaims, orderInput("getOrder", "c-400"), true, 0, ReasonGranted, ""},
		{"bola/typed claim list, other", "getOrder", typedClaims, orderInput("getOrder", "c-200"), false, 403, ReasonConditionFalse, ""},
		{"bola/admin of both", "getOrder", acmeAdmin, orderInput("getOrder", "c-100"), true, 0, ReasonGranted, ""},
		{"bola/no claims", "getOrder", noClaims, orderInput("getOrder", "c-100"), false, 403, ReasonConditionError, ""},
		{"bola/no path param", "getOrder", acmeReader, &Input{}, false, 403, ReasonConditionError, ""},
		// Function level (BFLA): a read-only consumer cannot call admin operations.
		{"bfla/reader", "deleteOrder", acmeReader, orderInput("deleteOrder", "c-200"), false, 403, ReasonMissingRole, ""},
		{"bfla/admin", "deleteOrder", acmeAdmin, orderInput("deleteOrder", "c-200"), true, 0, ReasonGranted, ""},
		// Partners.
		{"partner/not allowed", "listOrders", initech, nil, false, 403, ReasonPartnerNotAllowed, ""},
		{"partner/none", "listOrders", noPartner, nil, false, 403, ReasonPartnerNotAllowed, ""},
		{"partner/allowed", "listOrders", acmeReader, nil, true, 0, ReasonGranted, ""},
		// Scopes.
		{"scope/missing", "listOrders", globexNoScope, nil, false, 403, ReasonInsufficientScope, "orders:read"},
		{"scope/before condition", "getOrder", globexNoScope, orderInput("getOrder", "c-300"), false, 403, ReasonInsufficientScope, "orders:read"},
		// Authentication.
		{"unauthenticated", "listOrders", nil, nil, false, 401, ReasonUnauthenticated, ""},
		{"public/anonymous", "health", nil, nil, true, 0, ReasonPublic, ""},
		{"public/partner not allowed still public", "health", initech, nil, true, 0, ReasonPublic, ""},
		// Deny by default.
		{"no policy", "createRefund", acmeAdmin, nil, false, 403, ReasonNoPolicy, ""},
		{"no policy/anonymous", "createRefund", nil, nil, false, 403, ReasonNoPolicy, ""},
		{"unknown operation", "dropTables", acmeAdmin, nil, false, 403, ReasonNoPolicy, ""},
		// Conditions failing never allow.
		{"condition/missing claim", "getInvoice", globexNoScope, nil, false, 403, ReasonInsufficientScope, "orders:read"},
		{"condition/claim absent", "getInvoice", noClaims, nil, false, 403, ReasonConditionError, ""},
		{"condition/claim false", "getInvoice", acmeReader, nil, false, 403, ReasonConditionFalse, ""},
		{"condition/claim true", "getInvoice", acmeAdmin, nil, true, 0, ReasonGranted, ""},
		{"condition/non-bool result", "typeOp", acmeReader, nil, false, 403, ReasonConditionError, ""},
		{"cost/small list", "search", &authn.Principal{Partner: "acme", Claims: bigItems(10)}, nil, true, 0, ReasonGranted, ""},
		{"cost/quadratic over a large claim", "search", &authn.Principal{Partner: "acme", Claims: bigItems(2000)}, nil, false, 403, ReasonConditionError, ""},
		// Request attributes.
		{"request/all attributes", "headerOp", acmeReader, headerIn, true, 0, ReasonGranted, ""},
		{"request/authorization present", "headerOp", acmeReader, &withAuth, false, 403, ReasonConditionFalse, ""},
		{"request/other tenant", "headerOp", acmeReader, &otherTenant, false, 403, ReasonConditionFalse, ""},
		// CEL's && is commutative over errors: the missing header errs, but
		// 'x-tenant' in request.headers is false, so the result is false.
		{"request/nil input", "headerOp", acmeReader, nil, false, 403, ReasonConditionFalse, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			d := ap.For(tc.op).Authorize(tc.p, tc.in)
			if d.Allow != tc.allow || d.Status != tc.status || d.Reason != tc.reason || d.Scope != tc.scope {
				t.Errorf("Authorize = %+v; want allow=%v status=%d reason=%s scope=%q", d, tc.allow, tc.status, tc.reason, tc.scope)
			}
			if d.Reason == ReasonConditionError && d.Detail == "" {
				t.Error("condition_error without a Detail for the log")
			}
			if took := time.Since(start); took > 100*time.Millisecond {
				t.Errorf("took %v: the cost limit should stop it long before", took)
			}
			t.Logf("%+v", d)
		})
	}
}

func TestCostLimitDetail(t *testing.T) {
	ap := mustCompile(t, ordersAPI(), ordersOps)
	d := ap.For("search").Authorize(&authn.Principal{Partner: "acme", Claims: bigItems(2000)}, nil)
	if !strings.Contains(d.Detail, "cost") {
		t.Errorf("Detail = %q; want it to name the cost limit", d.Detail)
	}
}

func TestWildcardPolicy(t *testing.T) {
	api := config.API{Policies: []config.Policy{
		{Operation: "*", Scopes: []string{"inventory:read"}},
		{Operation: "adjustStock", Scopes: []string{"inventory:write"}},
		{Operation: "ping", Public: true},
	}}
	ap := mustCompile(t, api, []string{"listItems", "getItem", "adjustStock", "ping"})
	reader := &authn.Principal{Consumer: "r", Scopes: []string{"inventory:read"}}
	for op, want := range map[string]string{
		"listItems":   ReasonGranted,
		"getItem":     ReasonGranted,
		"adjustStock": ReasonInsufficientScope, // its own policy, not "*"
		"ping":        ReasonPublic,
		"other":       ReasonNoPolicy, // not in the spec
	} {
		if d := ap.For(op).Authorize(reader, nil); d.Reason != want {
			t.Errorf("%s: reason %s, want %s", op, d.Reason, want)
		}
	}
	if d := ap.For("adjustStock").Authorize(reader, nil); d.Scope != "inventory:write" {
		t.Errorf("adjustStock: missing scope %q, want inventory:write", d.Scope)
	}
}

func TestNilSafety(t *testing.T) {
	var ap *APIPolicy
	if d := ap.For("x").Authorize(acmeAdmin, nil); d.Allow || d.Status != 403 || d.Reason != ReasonNoPolicy {
		t.Errorf("nil policy: %+v", d)
	}
	if ap.For("x").Condition() != "" {
		t.Error("nil Condition not empty")
	}
	ap, _ = Compile(config.API{}, []string{"a"}, "/apis/0")
	if d := ap.For("a").Authorize(acmeAdmin, nil); d.Reason != ReasonNoPolicy {
		t.Errorf("API without policies: %+v", d)
	}
}

func TestCompileProblems(t *testing.T) {
	api := config.API{Policies: []config.Policy{
		/* 0 */ {Operation: "getOrdr", Scopes: []string{"orders:read"}},
		/* 1 */ {Operation: "listOrders", When: "principal.scopes + 1"},
		/* 2 */ {Operation: "getOrder", When: "principal.sopes.size() > 0"},
		/* 3 */ {Operation: "deleteOrder", When: "principal.consumer"},
		/* 4 */ {Operation: "health", Public: true, Scopes: []string{"x"}},
		/* 5 */ {Operation: "listOrders"},
		/* 6 */ {Operation: ""},
		/* 7 */ {Operation: "search", When: "principal.consumer == 'a' &&\n  principal.partner == "},
		/* 8 */ {Operation: "getInvoice", Scopes: []string{""}, Roles: []string{" "}},
		/* 9 */ {Operation: "headerOp", When: "gatehouse.Principal{consumer: 'x'} == principal"},
	}}
	ap, probs := Compile(api, ordersOps, "/apis/3")
	want := []struct {
		ptr, contains string
		line, col     int
		warning       bool
	}{
		{"/apis/3/policies/0/operation", `no operation with operationId "getOrdr" (did you mean "getOrder"?)`, 0, 0, false},
		{"/apis/3/policies/1/when", "found no matching overload for '_+_' applied to '(list(string), int)'", 1, 18, false},
		{"/apis/3/policies/2/when", "undefined field 'sopes'", 1, 10, false},
		{"/apis/3/policies/3/when", "must be a boolean expression, not string", 0, 0, false},
		{"/apis/3/policies/4/public", "public policy cannot also require", 0, 0, false},
		{"/apis/3/policies/5/operation", `operation "listOrders" already has a policy`, 0, 0, false},
		{"/apis/3/policies/6/operation", "operation is required", 0, 0, false},
		{"/apis/3/policies/7/when", "line 2, column", 2, 0, false},
		{"/apis/3/policies/8/scopes/0", "empty scope", 0, 0, false},
		{"/apis/3/policies/8/roles/0", "empty role", 0, 0, false},
		{"/apis/3/policies/9/when", "cannot construct objects", 1, 20, false},
		{"/apis/3/policies", `operation "typeOp" has no policy`, 0, 0, true},
		{"/apis/3/policies", `operation "createRefund" has no policy`, 0, 0, true},
	}
	for _, w := range want {
		found := false
		for _, p := range probs {
			if p.Pointer == w.ptr && strings.Contains(p.Message, w.contains) && p.Warning == w.warning &&
				(w.line == 0 || p.Line == w.line) && (w.col == 0 || p.Column == w.col) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no problem %s %q (line %d col %d warning %v)", w.ptr, w.contains, w.line, w.col, w.warning)
		}
	}
	for _, p := range probs {
		t.Logf("%s [line %d col %d warning %v]", p, p.Line, p.Column, p.Warning)
	}

	// Whatever did not compile denies; the rest still works.
	admin := &authn.Principal{Consumer: "a", Scopes: []string{"orders:read"}}
	for _, op := range []string{"listOrders", "getOrder", "deleteOrder", "health", "search", "getInvoice", "headerOp"} {
		if d := ap.For(op).Authorize(admin, orderInput(op, "c")); d.Allow || d.Reason != ReasonNoPolicy {
			t.Errorf("broken policy of %s: %+v, want deny no_policy", op, d)
		}
	}
}

// TestConditionVariables checks every declared field resolves as documented.
func TestConditionVariables(t *testing.T) {
	p := &authn.Principal{
		Kind: authn.KindJWT, Consumer: "c", Partner: "pa", Subject: "s", Issuer: "https://idp", CredentialID: "ck_1",
		Scopes: []string{"a", "b"}, Roles: []string{"r"}, Claims: map[string]any{"n": 3.0, "nested": map[string]any{"k": "v"}},
	}
	in := &Input{
		Method: "POST", Operation: "op", ClientIP: "192.0.2.1",
		PathParams: map[string]string{"id": "a/b"},
		Query:      url.Values{"q": {"x"}, "empty": {}},
		Header:     http.Header{"X-Request-Id": {"rid"}, "Content-Type": {"application/json"}},
		Time:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	for _, cond := range []string{
		"principal.kind == 'jwt' && principal.consumer == 'c' && principal.partner == 'pa'",
		"principal.subject == 's' && principal.issuer == 'https://idp' && principal.credential_id == 'ck_1'",
		"principal.scopes == ['a', 'b'] && 'r' in principal.roles && size(principal.scopes) == 2",
		"principal.claims.n == 3.0 && principal.claims.nested.k == 'v' && has(principal.claims.nested)",
		"!has(principal.claims.absent) && has(principal.partner)",
		"request.method == 'POST' && request.operation == 'op' && request.client_ip == '192.0.2.1'",
		"request.path.id == 'a/b' && request.path == {'id': 'a/b'}",
		"request.query.q == 'x' && !('empty' in request.query) && size(request.query) == 2",
		"request.headers['x-request-id'] == 'rid' && request.headers['X-Request-Id'] == 'rid'",
		"request.headers.all(k, k == 'x-request-id' || k == 'content-type') && request.headers.exists(k, k == 'content-type')",
		"request.headers == {'x-request-id': 'rid', 'content-type': 'application/json'}",
		"request.time == timestamp('2026-01-02T03:04:05Z') && request.time.getFullYear() == 2026",
		"type(principal) == gatehouse.Principal && principal == principal",
	} {
		t.Run(cond, func(t *testing.T) {
			ap := mustCompile(t, config.API{Policies: []config.Policy{{Operation: "op", When: cond}}}, []string{"op"})
			if d := ap.For("op").Authorize(p, in); !d.Allow {
				t.Errorf("%+v", d)
			}
		})
	}
	// A request without a time sees the current one.
	ap := mustCompile(t, config.API{Policies: []config.Policy{{Operation: "op",
		When: "request.time > timestamp('2025-01-01T00:00:00Z')"}}}, []string{"op"})
	if d := ap.For("op").Authorize(p, &Input{}); !d.Allow {
		t.Errorf("zero Input.Time: %+v", d)
	}
}

func TestConcurrentAuthorize(t *testing.T) {
	ap := mustCompile(t, ordersAPI(), ordersOps)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 200 {
				cust := "c-200"
				if i%2 == 1 {
					cust = "c-100"
				}
				d := ap.For("getOrder").Authorize(acmeReader, orderInput("getOrder", cust))
				if d.Allow != (cust == "c-200") {
					t.Errorf("customer %s: %+v", cust, d)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestScopeCheckDoesNotAllocate(t *testing.T) {
	ap := mustCompile(t, ordersAPI(), ordersOps)
	op := ap.For("listOrders")
	if n := testing.AllocsPerRun(1000, func() { op.Authorize(acmeReader, nil) }); n != 0 {
		t.Errorf("scope-only Authorize allocates %.1f times", n)
	}
}

func BenchmarkAuthorize(b *testing.B) {
	api := ordersAPI()
	api.Policies = append(api.Policies, config.Policy{Operation: "tenantOp", Scopes: []string{"orders:read"},
		When: "request.headers['x-tenant'] == principal.partner && request.query.page == '1'"})
	ap := mustCompile(b, api, append(ordersOps, "tenantOp"))
	headerIn := &Input{
		Method: "GET", Operation: "headerOp", ClientIP: "203.0.113.7",
		Query:  url.Values{"page": {"1"}},
		Header: http.Header{"X-Tenant": {"acme"}, "Accept": {"*/*"}, "User-Agent": {"bench"}},
		Time:   time.Now(),
	}
	for _, bc := range []struct {
		name string
		op   string
		in   *Input
	}{
		{"scopes", "listOrders", nil},
		{"scopes+roles/deny", "deleteOrder", orderInput("deleteOrder", "c-200")},
		{"cel/bola", "getOrder", orderInput("getOrder", "c-200")},
		{"cel/claim-compare", "getInvoice", nil},
		{"cel/header-and-query", "tenantOp", headerIn},
		{"cel/request-attributes+comprehension", "headerOp", headerIn},
	} {
		op := ap.For(bc.op)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				op.Authorize(acmeReader, bc.in)
			}
		})
	}
}
