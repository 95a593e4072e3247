// Package waf is Gatehouse's web application firewall: Coraza v3 running the
// OWASP Core Rule Set v4, embedded in the binary (no rule files at run time).
//
// A WAF is compiled once per distinct Config when the configuration loads
// (share them through Cache) and then inspects requests with Inspect, which
// runs only the request phases: phase 1 (URI, headers) and phase 2 (query
// arguments and the body, whatever its type). Responses are never
// inspected, so the CRS response rules are not even loaded. Inspect returns a
// Verdict value; the pipeline refuses a blocked request with a generic 403
// problem and records Verdict.RuleIDs and Verdict.Score in the audit record.
//
// # What Gatehouse changes in the CRS defaults
//
//   - PUT, PATCH and DELETE are allowed methods (CRS allows GET HEAD POST
//     OPTIONS only); the router decides which methods an operation takes.
//   - Every application/*+json media type is accepted and parsed as JSON
//     (CRS 920420 accepts only application/json among them).
//   - A JSON, XML or form body its parser rejects is refused with 400 (rule
//     200002, multipart: 200003), as in coraza.conf-recommended, except when
//     the body was cut at Config.BodyLimit.
//   - Bodies longer than Config.BodyLimit are inspected up to the limit
//     (ProcessPartial); the gateway refuses them (413) in block mode
//     before they get here, so padding cannot push a payload past the WAF.
//   - Verdicts of repeated bodyless requests are cached (verdictCache).
//   - Exclusions must name rules and tags that exist, and may not remove the
//     CRS setup or anomaly evaluation (that would turn blocking off silently).
//
// # Cost (measured on the 2-core build machine, Go 1.26, Coraza 3.8.1, CRS 4.25.0)
//
//   - New: 75-90 ms and 12.2 MiB of live heap for the first instance in a
//     process; 14-15 ms and 1.7 MiB for each further one, because Coraza
//     shares compiled expressions between instances (released by Close).
//     Off mode costs nothing. Startup (package init) adds about 3 ms.
//   - Inspect, paranoia 1: a GET with six typical API headers 0.83 ms
//     (0.47 ms/op with both cores busy); a 1 KiB JSON order with 35 fields
//     11 ms (6 ms/op on both cores). CRS evaluates its argument rules once per JSON leaf and scans
//     every byte many times, so cost grows with field count and value length:
//     about 0.2-0.3 ms per field, and about 5 µs per byte for a long value. A
//     single 120 KiB JSON string costs about 0.6 s of CPU, so the default
//     128 KiB BodyLimit lets one anonymous request burn over half a CPU
//     second: keep BodyLimit as small as the API allows and rate-limit by IP
//     in front of the WAF.
//   - Against Coraza's own http.WrapHandler with the full CRS, Inspect is
//     1.07-1.15× faster: nearly all the time is rule evaluation (Go regexp),
//     which no integration can skip at equal detection.
//
// Run the benchmarks with:
//
//	go test ./internal/waf -run '^$' -bench . -benchmem
package waf
