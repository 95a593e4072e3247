# Gatehouse — build, run the quickstart, test, benchmark.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/gatehouse/gatehouse/internal/cli.Version=$(VERSION)
TESTFLAGS ?=
FUZZTIME  ?= 10s

.PHONY: all build run test bench fuzz lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gatehouse ./cmd/gatehouse
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/demo-upstream ./examples/demo-upstream

# Start the quickstart: demo upstream on 127.0.0.1:9000, gateway on
# https://127.0.0.1:8443, admin on http://127.0.0.1:8444. Ctrl-C stops both.
run: build
	./examples/quickstart/run.sh

test:
	$(GO) test $(TESTFLAGS) ./...

# Compare Gatehouse with a bare httputil.ReverseProxy (see internal/bench):
# route micro-benchmarks, in-process per-request cost, then the cross-process
# load comparison (wrk if installed). BENCHFLAGS e.g. "-rounds 5 -json".
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/route/
	$(GO) test -run '^$$' -bench . -benchmem ./internal/bench/
	$(GO) test -run '^$$' -bench . -benchmem ./internal/validate/
	$(GO) run ./internal/bench/cmd/gatehouse-bench $(BENCHFLAGS)

# A short run of every fuzz target (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; else echo "staticcheck not installed; skipped"; fi

clean:
	rm -rf bin
