package bench

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The data-hygiene targets (issue 5): request validation on a route with
// path, query and header parameters and a small JSON body (gatehouse-
// validate, POST), and response filtering in documented mode on a ~2 KB
// JSON body (gatehouse-filter). Each is paired with the bare proxy sending
// the same request, so the ratio is what validating or filtering costs.
const (
	TargetValidateThroughputRatio = 0.90
	TargetFilterThroughputRatio   = 0.80

	validateBasePath = "/validated"
	filterBasePath   = "/filtered"
	validateOpPath   = "/items/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e?limit=10&sort=asc"
	filterOpPath     = "/large/42"
	// ValidateBody is the request body of the validate target.
	ValidateBody = `{"name":"benchmark item","quantity":3,"price":{"amount":1999,"currency":"EUR"},"tags":["bench","fixed"],"email":"bench@example.com"}`
)

// LargeBody is what the upstream answers on /large/ paths: ~2 KB of JSON,
// some of whose fields (internal_notes, password_hash, cost) the filter
// spec does not document, as a leaky backend would send.
var LargeBody = func() string {
	type item struct {
		ID            string   `json:"id"`
		Name          string   `json:"name"`
		Price         int      `json:"price"`
		Cost          int      `json:"cost"`
		Tags          []string `json:"tags"`
		InternalNotes string   `json:"internal_notes"`
	}
	doc := struct {
		ID           string `json:"id"`
		Status       string `json:"status"`
		PasswordHash string `json:"password_hash"`
		Items        []item `json:"items"`
		Customer     struct {
			Name  string `json:"name"`
			Email string `json:"email"`
			SSN   string `json:"ssn"`
		} `json:"customer"`
	}{ID: "42", Status: "open", PasswordHash: "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"}
	for i := range 11 {
		doc.Items = append(doc.Items, item{ID: fmt.Sprintf("item-%02d", i), Name: "benchmark line item", Price: 1999 + i,
			Cost: 1200 + i, Tags: []string{"bench", "fixed"}, InternalNotes: "supplier 7, margin ok"})
	}
	doc.Customer.Name, doc.Customer.Email, doc.Customer.SSN = "Ann Example", "ann@example.com", "078-05-1120"
	b, _ := json.Marshal(doc)
	return string(b)
}()

const validateSpec = `openapi: 3.0.3
info: {title: gatehouse-bench validate, version: "1"}
paths:
  /items/{id}:
    post:
      operationId: putItem
      parameters:
        - {name: id, in: path, required: true, schema: {type: string, format: uuid}}
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: sort, in: query, schema: {type: string, enum: [asc, desc]}}
        - {name: X-Bench, in: header, schema: {type: string, maxLength: 32}}
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [name, quantity]
              properties:
                name: {type: string, maxLength: 64}
                quantity: {type: integer, minimum: 1}
                price:
                  type: object
                  properties:
                    amount: {type: integer}
                    currency: {type: string, enum: [EUR, USD]}
                tags: {type: array, maxItems: 8, items: {type: string}}
                email: {type: string, format: email}
      responses:
        "200": {description: the item}
`

const filterSpec = `openapi: 3.0.3
info: {title: gatehouse-bench filter, version: "1"}
paths:
  /large/{id}:
    get:
      operationId: getLarge
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "200":
          description: a large order
          content:
            application/json:
              schema:
                type: object
                properties:
                  id: {type: string}
                  status: {type: string}
                  items:
                    type: array
                    items:
                      type: object
                      properties:
                        id: {type: string}
                        name: {type: string}
                        price: {type: integer}
                        tags: {type: array, items: {type: string}}
                  customer:
                    type: object
                    properties:
                      name: {type: string}
                      email: {type: string}
`

// hygieneConfigAPIs writes the two specs and returns the apis: entries.
func hygieneConfigAPIs(dir, upstream string) (string, error) {
	vs, fs := filepath.Join(dir, "validate-spec.yaml"), filepath.Join(dir, "filter-spec.yaml")
	if err := os.WriteFile(vs, []byte(validateSpec), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(fs, []byte(filterSpec), 0o600); err != nil {
		return "", err
	}
	return fmt.Sprintf(`  - name: validated
    version: v1
    owner: {team: bench}
    sensitivity: internal
    spec: %q
    upstream: %s
    route: {base_path: %s}
    validate: {mode: enforce, strict: true}
    policies:
      - {operation: "*", public: true}
  - name: filtered
    version: v1
    owner: {team: bench}
    sensitivity: confidential
    spec: %q
    upstream: %s
    route: {base_path: %s}
    response: {filter: documented}
    policies:
      - {operation: "*", public: true}
`, vs, upstream, validateBasePath, fs, upstream, filterBasePath), nil
}

// hygienePairs are the validate and filter comparisons.
func hygienePairs(bareHTTP target, ghHTTP string, gp *proc) []pairing {
	bareV, bareF := bareHTTP, bareHTTP
	bareV.name, bareV.url = "bare-http+validate", strings.TrimSuffix(bareHTTP.url, benchPath)+validateBasePath+validateOpPath
	bareV.method, bareV.body, bareV.extra = http.MethodPost, ValidateBody, []header{{"Content-Type", "application/json"}, {"X-Bench", "bench"}}
	bareV.check = checkBody(UpstreamBody)
	bareF.name, bareF.url = "bare-http+filter", strings.TrimSuffix(bareHTTP.url, benchPath)+filterBasePath+filterOpPath
	bareF.check = checkBody(LargeBody)
	ghV := target{name: "gatehouse-validate", proxy: "gatehouse", proto: "http", url: "http://" + ghHTTP + validateBasePath + validateOpPath,
		proc: gp, method: http.MethodPost, body: ValidateBody, extra: bareV.extra, check: checkBody(UpstreamBody)}
	ghF := target{name: "gatehouse-filter", proxy: "gatehouse", proto: "http", url: "http://" + ghHTTP + filterBasePath + filterOpPath,
		proc: gp, check: checkFiltered}
	return []pairing{{bareV, ghV}, {bareF, ghF}}
}

func checkBody(want string) func([]byte) error {
	return func(b []byte) error {
		if string(b) != want {
			return fmt.Errorf("body is not the upstream's: %.200s", b)
		}
		return nil
	}
}

// checkFiltered makes sure the filter target measures filtering: the
// undocumented fields are gone and the documented ones are there.
func checkFiltered(b []byte) error {
	for _, leak := range []string{"password_hash", "internal_notes", "ssn", `"cost"`} {
		if bytes.Contains(b, []byte(leak)) {
			return fmt.Errorf("filtered body still has %s: %.200s", leak, b)
		}
	}
	if !json.Valid(b) || !bytes.Contains(b, []byte(`"item-10"`)) || len(b) < 1000 {
		return fmt.Errorf("filtered body lost documented data: %.200s", b)
	}
	return nil
}

// probeRequest checks a target that sends a method, body or extra headers,
// or whose answer is not the small upstream body. A validate target must
// also refuse an invalid body, or it measures nothing.
func probeRequest(ctx context.Context, t target, roots *x509.CertPool, hdrs []header) error {
	client := probeClient(roots)
	defer client.CloseIdleConnections()
	do := func(body string) (int, []byte, error) {
		method := t.method
		if method == "" {
			method = http.MethodGet
		}
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, t.url, rd)
		if err != nil {
			return 0, nil, err
		}
		for _, h := range append(append([]header(nil), t.extra...), hdrs...) {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, b, err
	}
	var last error
	for range probeAttempts {
		status, b, err := do(t.body)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			last = err
			time.Sleep(200 * time.Millisecond)
			continue
		case status != http.StatusOK:
			return fmt.Errorf("%s %s: status %d: %.300s", t.method, t.url, status, b)
		}
		if t.check != nil {
			if err := t.check(b); err != nil {
				return err
			}
		}
		if t.proxy == "gatehouse" && t.body != "" {
			bad := strings.Replace(t.body, `"quantity":3`, `"quantity":3,"is_admin":true`, 1)
			if status, _, err := do(bad); err != nil || status != http.StatusBadRequest {
				return fmt.Errorf("%s accepts a body the spec forbids (status %d, %v): validation is not on", t.name, status, err)
			}
		}
		return nil
	}
	return fmt.Errorf("%s: %w", t.url, last)
}
