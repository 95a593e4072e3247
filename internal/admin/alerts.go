package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/gatehouse/gatehouse/internal/detect"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/store"
)

// routeAlerts serves the anomaly alerts: GET /v1/alerts[?all=true&limit=N],
// POST /v1/alerts/{id}/ack and POST /v1/alerts/{id}/revert (undo the
// automatic response). The body of ack and revert may name the operator:
// {"by": "alice"}.
func (s *Server) routeAlerts(m *detect.Manager) {
	s.mux.Handle("GET /v1/alerts", s.authorized(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		all := r.URL.Query().Get("all") == "true"
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		list, err := s.store.ListAlerts(r.Context(), all, min(max(limit, 0), 10_000))
		if err != nil {
			gateway.WriteProblem(w, gateway.ProbUnavailable, "The store is unavailable.", "")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"alerts": detect.AlertsJSON(list)})
	})))
	actor := func(r *http.Request) string {
		var body struct {
			By string `json:"by"`
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body)
		if body.By == "" {
			return "admin-api"
		}
		return "admin-api:" + body.By
	}
	s.mux.Handle("POST /v1/alerts/{id}/ack", s.authorized(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := m.Ack(r.Context(), r.PathValue("id"), actor(r))
		switch {
		case errors.Is(err, store.ErrNotFound):
			gateway.WriteProblem(w, gateway.ProbNotFound, "No such alert.", "")
		case err != nil:
			gateway.WriteProblem(w, gateway.ProbUnavailable, "The store is unavailable.", "")
		default:
			a, _ := s.store.GetAlert(r.Context(), r.PathValue("id"))
			writeJSON(w, http.StatusOK, detect.AlertsJSON([]store.Alert{a})[0])
		}
	})))
	s.mux.Handle("POST /v1/alerts/{id}/revert", s.authorized(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := m.Revert(r.Context(), r.PathValue("id"), actor(r))
		switch {
		case errors.Is(err, store.ErrNotFound):
			gateway.WriteProblem(w, gateway.ProbNotFound, "No such alert.", "")
		case err != nil:
			gateway.WriteProblem(w, gateway.Problem{Type: gateway.ProblemBase + "conflict", Title: "Nothing to revert", Status: http.StatusConflict},
				"This alert has no automatic response in force.", "")
		default:
			writeJSON(w, http.StatusOK, detect.AlertsJSON([]store.Alert{a})[0])
		}
	})))
}
