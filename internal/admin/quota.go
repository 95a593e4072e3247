package admin

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/gatehouse/gatehouse/internal/gateway"
)

// QuotaFunc reports the quota of a consumer or partner (kind "consumer" or
// "partner"); gateway.ErrNoQuota when none is configured.
type QuotaFunc func(ctx context.Context, kind, name string) (gateway.QuotaReport, error)

var probNoQuota = gateway.Problem{Type: gateway.ProblemBase + "no-quota", Title: "No quota configured", Status: http.StatusNotFound}

// quotaName is the config's name pattern for consumers and partners.
var quotaName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func (s *Server) routeQuota(fn QuotaFunc) {
	for _, kind := range []string{"consumer", "partner"} {
		s.mux.Handle("GET /v1/"+kind+"s/{name}/quota", s.authorized(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			if !quotaName.MatchString(name) {
				gateway.WriteProblem(w, probNoQuota, "No such "+kind+" with a quota.", "")
				return
			}
			rep, err := fn(r.Context(), kind, name)
			switch {
			case errors.Is(err, gateway.ErrNoQuota):
				gateway.WriteProblem(w, probNoQuota, "No such "+kind+" with a quota.", "")
			case err != nil:
				gateway.WriteProblem(w, gateway.ProbUnavailable, "Quota usage is temporarily unavailable.", "")
			default:
				writeJSON(w, http.StatusOK, rep)
			}
		})))
	}
}
