package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gatehouse/gatehouse/internal/validate"
)

// ProblemBase prefixes every problem type URI. Types are stable: clients may
// switch on them.
const ProblemBase = "https://gatehouse.dev/problems/"

// Problem is an RFC 9457 problem details object. Detail is written for the
// client and never carries internal messages, addresses or stack traces.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Errors lists request validation failures, one per violation.
	Errors []validate.Violation `json:"errors,omitempty"`
}

// Stable problem kinds, with their status and title.
var (
	ProbNotFound         = Problem{Type: ProblemBase + "not-found", Title: "No such API operation", Status: http.StatusNotFound}
	ProbMethodNotAllowed = Problem{Type: ProblemBase + "method-not-allowed", Title: "Method not allowed on this path", Status: http.StatusMethodNotAllowed}
	ProbBadPath          = Problem{Type: ProblemBase + "bad-path", Title: "Malformed request path", Status: http.StatusBadRequest}
	ProbBadRequest       = Problem{Type: ProblemBase + "bad-request", Title: "Malformed request", Status: http.StatusBadRequest}
	ProbHeaderTooLarge   = Problem{Type: ProblemBase + "headers-too-large", Title: "Request headers too large", Status: http.StatusRequestHeaderFieldsTooLarge}
	ProbBodyTooLarge     = Problem{Type: ProblemBase + "body-too-large", Title: "Request body too large", Status: http.StatusRequestEntityTooLarge}
	ProbBadGateway       = Problem{Type: ProblemBase + "upstream-unavailable", Title: "Upstream unavailable", Status: http.StatusBadGateway}
	ProbGatewayTimeout   = Problem{Type: ProblemBase + "upstream-timeout", Title: "Upstream timed out", Status: http.StatusGatewayTimeout}
	ProbUnavailable      = Problem{Type: ProblemBase + "unavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable}
	ProbInternal         = Problem{Type: ProblemBase + "internal", Title: "Internal error", Status: http.StatusInternalServerError}
)

// WriteProblem writes p as application/problem+json. The request ID ties
// the response to the gateway's logs without revealing anything else.
func WriteProblem(w http.ResponseWriter, p Problem, detail, requestID string) {
	p.Detail = detail
	p.RequestID = requestID
	body, err := json.Marshal(p)
	if err != nil { // only strings and ints: cannot happen
		body = []byte(`{"type":"` + ProblemBase + `internal","title":"Internal error","status":500}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}
