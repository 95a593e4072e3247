// Command demo-upstream is the quickstart's backend: a small in-memory
// "orders" API implementing examples/quickstart/specs/orders-v1.yaml, plus an
// undocumented /admin endpoint that Gatehouse must never let through.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"
)

type order struct {
	ID            string `json:"id"`
	CustomerID    string `json:"customer_id"`
	Item          string `json:"item"`
	Quantity      int    `json:"quantity"`
	Status        string `json:"status"`
	InternalNotes string `json:"internal_notes,omitempty"`
}

type shop struct {
	mu     sync.Mutex
	next   int
	orders map[string]*order
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	flag.Parse()
	s := &shop{next: 3, orders: map[string]*order{
		"1": {ID: "1", CustomerID: "c-100", Item: "widget", Quantity: 2, Status: "open", InternalNotes: "margin 43%"},
		"2": {ID: "2", CustomerID: "c-200", Item: "gadget", Quantity: 1, Status: "shipped"},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders", s.list)
	mux.HandleFunc("POST /orders", s.create)
	mux.HandleFunc("GET /orders/{id}", s.get)
	mux.HandleFunc("DELETE /orders/{id}", s.cancel)
	mux.HandleFunc("GET /customers/{cid}/orders", s.byCustomer)
	// Not in the spec: reachable directly, never through the gateway.
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"secret": "the admin panel"})
	})
	mux.HandleFunc("GET /debug/headers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, r.Header)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("demo upstream listening on http://%s", *addr)
	log.Fatal(srv.ListenAndServe())
}

func (s *shop) list(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*order{}
	for i := 1; i < s.next; i++ {
		if o, ok := s.orders[strconv.Itoa(i)]; ok {
			out = append(out, o)
		}
	}
	writeJSON(w, 200, map[string]any{"orders": out})
}

func (s *shop) byCustomer(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*order{}
	for i := 1; i < s.next; i++ {
		if o, ok := s.orders[strconv.Itoa(i)]; ok && o.CustomerID == r.PathValue("cid") {
			out = append(out, o)
		}
	}
	writeJSON(w, 200, map[string]any{"orders": out})
}

func (s *shop) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[r.PathValue("id")]
	if !ok {
		writeJSON(w, 404, map[string]string{"error": "no such order"})
		return
	}
	writeJSON(w, 200, o)
}

func (s *shop) create(w http.ResponseWriter, r *http.Request) {
	var in order
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil || in.Item == "" || in.Quantity < 1 {
		writeJSON(w, 400, map[string]string{"error": "want {customer_id, item, quantity}"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in.ID, in.Status = strconv.Itoa(s.next), "open"
	s.next++
	s.orders[in.ID] = &in
	writeJSON(w, 201, &in)
}

func (s *shop) cancel(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[r.PathValue("id")]
	if !ok {
		writeJSON(w, 404, map[string]string{"error": "no such order"})
		return
	}
	o.Status = "cancelled"
	w.WriteHeader(204)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
