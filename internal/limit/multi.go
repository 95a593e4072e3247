package limit

import "context"

// Verdict is the outcome of AllowAll.
type Verdict struct {
	// Allowed is true only if every check passed; then each consumed one
	// unit, otherwise none did.
	Allowed bool
	// Results holds one entry per check, in order (see AllowMulti).
	Results []Result
	// Binding is the index of the check that decided: when denied, the
	// denying check with the longest RetryAfter; when allowed, the check
	// with the fewest Remaining (the one the client will hit first).
	Binding int
}

// Result is the binding check's result with the overall Allowed: what a
// pipeline that reports a single limit puts in its response.
func (v Verdict) Result() Result {
	if len(v.Results) == 0 {
		return Result{Allowed: v.Allowed}
	}
	r := v.Results[v.Binding]
	r.Allowed = v.Allowed
	return r
}

// AllowAll decides every check of one request together: all must pass, and
// a request denied by one limit consumes no other limit's budget. No checks
// means allowed.
func AllowAll(ctx context.Context, lim MultiLimiter, checks []Check) (Verdict, error) {
	v := Verdict{Results: make([]Result, len(checks))}
	ok, err := lim.AllowMulti(ctx, checks, v.Results)
	if err != nil {
		return Verdict{Results: v.Results}, err
	}
	v.Allowed = ok
	v.Binding = Binding(ok, v.Results)
	return v, nil
}

// Binding picks the deciding result of a multi-check decision (see
// Verdict.Binding).
func Binding(allowed bool, results []Result) int {
	best := 0
	for i, r := range results {
		b := results[best]
		if allowed {
			if r.Remaining < b.Remaining || (r.Remaining == b.Remaining && r.ResetAfter > b.ResetAfter) {
				best = i
			}
			continue
		}
		if !r.Allowed && (b.Allowed || r.RetryAfter > b.RetryAfter) {
			best = i
		}
	}
	return best
}
