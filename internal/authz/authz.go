// Package authz decides what an authenticated caller may do: deny by
// default, then required scopes, roles, allowed partners and CEL conditions
// over the principal and the request, per operation.
//
// Everything is compiled when the config loads (Compile); a request only
// looks up its operation's precompiled OperationPolicy (For) and runs it
// (Authorize). A denial is a Decision value with a stable reason code, never
// an error: conditions that fail to evaluate deny, they never allow.
package authz

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Stable reason codes of a Decision, for logs, audit and metrics.
const (
	ReasonPublic  = "public"  // allowed: the operation's policy is public
	ReasonGranted = "granted" // allowed: every requirement held

	ReasonNoPolicy          = "no_policy"           // 403: no (valid) policy names the operation
	ReasonUnauthenticated   = "unauthenticated"     // 401: no principal
	ReasonPartnerNotAllowed = "partner_not_allowed" // 403: the API's allow_partners excludes the caller
	ReasonInsufficientScope = "insufficient_scope"  // 403: a required scope is missing (Decision.Scope)
	ReasonMissingRole       = "missing_role"        // 403: none of the listed roles is held
	ReasonConditionFalse    = "condition_false"     // 403: the when condition is false
	ReasonConditionError    = "condition_error"     // 403: the condition failed (missing key, cost limit, type)
)

const (
	// wildcardOperation names the policy of every operation without one.
	wildcardOperation = "*"
	// maxConditionLen bounds a when expression, and with it the work of
	// the conditions that run without cost tracking.
	maxConditionLen = 4096
	// maxConditionDisplayWidth is the longest line a problem quotes.
	maxConditionDisplayWidth = 80
)

// Decision is the outcome of Authorize.
type Decision struct {
	Allow bool
	// Status is 401 or 403 for a denial, 0 when allowed.
	Status int
	// Reason is one of the Reason constants.
	Reason string
	// Scope is the missing scope when Reason is insufficient_scope, for
	// the WWW-Authenticate challenge (RFC 6750 §3.1).
	Scope string
	// Detail explains a condition_error for logs only (it may quote the
	// condition's runtime error); never send it to the client.
	Detail string
}

var (
	allowPublic     = Decision{Allow: true, Reason: ReasonPublic}
	allowGranted    = Decision{Allow: true, Reason: ReasonGranted}
	denyNoPolicy    = Decision{Status: http.StatusForbidden, Reason: ReasonNoPolicy}
	denyUnauth      = Decision{Status: http.StatusUnauthorized, Reason: ReasonUnauthenticated}
	denyPartner     = Decision{Status: http.StatusForbidden, Reason: ReasonPartnerNotAllowed}
	denyRole        = Decision{Status: http.StatusForbidden, Reason: ReasonMissingRole}
	denyCondFalse   = Decision{Status: http.StatusForbidden, Reason: ReasonConditionFalse}
	denyCondErrBase = Decision{Status: http.StatusForbidden, Reason: ReasonConditionError}
)

// Problem is one thing wrong with an API's policies, located by a JSON
// pointer into the config so the loader can report file:line.
type Problem struct {
	// Pointer is e.g. /apis/0/policies/2/when.
	Pointer string
	Message string
	// Line and Column locate a CEL error inside the when expression
	// (1-based; 0 when the problem is not inside an expression). Line is
	// relative to the expression's first line.
	Line, Column int
	// Warning marks a problem that leaves the config usable (an operation
	// that no policy names and so answers 403).
	Warning bool
}

func (p Problem) String() string { return p.Pointer + ": " + p.Message }

// Input is what a condition may read about the request. Fill it from the
// routed request; fields a condition does not use cost nothing.
type Input struct {
	Method    string
	Operation string // operationId
	// PathParams are the decoded path parameters of the route template.
	PathParams map[string]string
	// Query and Header are read lazily; a condition sees the first value
	// of each, headers under lower-case names. Client-controlled: a
	// condition trusting a header trusts the caller.
	Query    url.Values
	Header   http.Header
	ClientIP string
	// Time is the request time; zero means time.Now() at evaluation.
	Time time.Time
}

// emptyInput stands in for a nil *Input; conditions only read it.
var emptyInput Input

// APIPolicy is the compiled authorization of one API version.
type APIPolicy struct {
	ops map[string]*OperationPolicy
}

// OperationPolicy is the compiled policy of one operation. A nil
// *OperationPolicy denies every call with no_policy.
type OperationPolicy struct {
	public   bool
	broken   bool // failed to compile: denies as no_policy
	partners []string
	scopes   []string
	roles    []string
	when     string
	prog     cel.Program
}

// For returns the policy of operationID: its own, else the API's "*"
// policy, else nil (deny). It is nil-safe.
func (a *APIPolicy) For(operationID string) *OperationPolicy {
	if a == nil {
		return nil
	}
	return a.ops[operationID]
}

// Condition returns the policy's CEL condition source ("" if none), for logs.
func (o *OperationPolicy) Condition() string {
	if o == nil {
		return ""
	}
	return o.when
}

// Authorize decides whether p may make the call described by in. The
// order is fixed: public policy → allow (even without a principal); no
// principal → 401; the API's allowed partners; every required scope; any
// one of the listed roles; the when condition. in may be nil when the
// policy has no condition.
func (o *OperationPolicy) Authorize(p *authn.Principal, in *Input) Decision {
	if o == nil || o.broken {
		return denyNoPolicy
	}
	if o.public {
		return allowPublic
	}
	if p == nil {
		return denyUnauth
	}
	if len(o.partners) > 0 && (p.Partner == "" || !slices.Contains(o.partners, p.Partner)) {
		return denyPartner
	}
	for _, s := range o.scopes {
		if !p.HasScope(s) {
			return Decision{Status: http.StatusForbidden, Reason: ReasonInsufficientScope, Scope: s}
		}
	}
	if len(o.roles) > 0 && !slices.ContainsFunc(o.roles, p.HasRole) {
		return denyRole
	}
	if o.prog != nil {
		return o.evaluate(p, in)
	}
	return allowGranted
}

func (o *OperationPolicy) evaluate(p *authn.Principal, in *Input) Decision {
	if in == nil {
		in = &emptyInput
	}
	out, _, err := o.prog.Eval(&activation{p: p, in: in})
	if err != nil {
		d := denyCondErrBase
		d.Detail = err.Error()
		return d
	}
	switch out {
	case types.True:
		return allowGranted
	case types.False:
		return denyCondFalse
	}
	d := denyCondErrBase
	d.Detail = fmt.Sprintf("condition returned %s, not a bool", out.Type().TypeName())
	return d
}

// Compile checks and compiles api's policies against the operationIds its
// spec declares. apiPtr is the API's JSON pointer (e.g. /apis/0); problems
// point below it. Even with problems the result is safe to use: whatever
// did not compile denies. Callers should still refuse a config with
// non-warning problems.
//
// Operations that no policy names answer 403; when the API has at least one
// policy each is reported as a warning (with none, the config loader's own
// "API has no policies" warning covers them).
func Compile(api config.API, operationIDs []string, apiPtr string) (*APIPolicy, []Problem) {
	var probs []Problem
	add := func(ptr, format string, args ...any) {
		probs = append(probs, Problem{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
	}
	env, err := conditionEnv()
	if err != nil {
		add(apiPtr, "internal error: condition environment: %v", err)
		return &APIPolicy{}, probs
	}
	known := make(map[string]bool, len(operationIDs))
	for _, id := range operationIDs {
		known[id] = true
	}
	partners := slices.Clone(api.AllowPartners)

	own := map[string]*OperationPolicy{}
	var wildcard *OperationPolicy
	for i, pol := range api.Policies {
		ptr := fmt.Sprintf("%s/policies/%d", apiPtr, i)
		before := len(probs)
		op := pol.Operation
		switch {
		case op == "":
			add(ptr+"/operation", `operation is required: an operationId of the API's spec, or "*" for every operation without a policy of its own`)
		case op != wildcardOperation && !known[op]:
			add(ptr+"/operation", "the API's spec has no operation with operationId %q%s", op, suggest(op, operationIDs))
		case op == wildcardOperation && wildcard != nil, own[op] != nil:
			add(ptr+"/operation", "operation %q already has a policy", op)
		}
		if pol.Public && (len(pol.Scopes) > 0 || len(pol.Roles) > 0 || pol.When != "") {
			add(ptr+"/public", "a public policy cannot also require scopes, roles or a condition")
		}
		for j, s := range pol.Scopes {
			if strings.TrimSpace(s) == "" {
				add(fmt.Sprintf("%s/scopes/%d", ptr, j), "empty scope")
			}
		}
		for j, r := range pol.Roles {
			if strings.TrimSpace(r) == "" {
				add(fmt.Sprintf("%s/roles/%d", ptr, j), "empty role")
			}
		}
		op2 := &OperationPolicy{
			public:   pol.Public,
			partners: partners,
			scopes:   slices.Clone(pol.Scopes),
			roles:    slices.Clone(pol.Roles),
			when:     pol.When,
		}
		if strings.TrimSpace(pol.When) != "" {
			prog, cprobs := compileCondition(env, pol.When, ptr+"/when")
			probs = append(probs, cprobs...)
			op2.prog = prog
		}
		if len(probs) > before {
			op2.broken = true
		}
		switch {
		case op == wildcardOperation && wildcard == nil:
			wildcard = op2
		case op != "" && own[op] == nil:
			own[op] = op2
		}
	}

	ap := &APIPolicy{ops: make(map[string]*OperationPolicy, len(operationIDs))}
	for _, id := range operationIDs {
		switch {
		case own[id] != nil:
			ap.ops[id] = own[id]
		case wildcard != nil:
			ap.ops[id] = wildcard
		case len(api.Policies) > 0:
			probs = append(probs, Problem{Pointer: apiPtr + "/policies", Warning: true,
				Message: fmt.Sprintf("operation %q has no policy: it answers 403 to everyone (deny by default); add a policy for it or a \"*\" policy", id)})
		}
	}
	return ap, probs
}

// suggest names the closest known operationId, for typos like getorder.
func suggest(op string, known []string) string {
	best, bestDist := "", len(op)/2+1
	for _, k := range known {
		if strings.EqualFold(k, op) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
		if d := editDistance(strings.ToLower(op), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
