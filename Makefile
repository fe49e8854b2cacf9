# apiops-worker. `make test` is what CI runs (.ci/run).
GO            ?= go
BIN           := $(CURDIR)/bin
STATICCHECK   := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
KUSTOMIZE     := $(BIN)/kustomize
KUSTOMIZE_VERSION := v5.8.1
PROMTOOL      := $(BIN)/promtool
# The version of github.com/prometheus/prometheus in go.mod, whose parser the Go test of
# the alerts uses (internal/programs/app/observability_test.go checks the two agree).
PROMTOOL_VERSION := v0.316.0
# The commit goes into the binaries (--version, the build-info metric), whatever a
# machine's go env says.
export GOFLAGS ?= -buildvcs=auto
SHELL         := bash
.SHELLFLAGS   := -o pipefail -c

# Checks that live with their part of the tree (Helm chart, example publishers): each
# mk/*.mk file adds its targets and appends those make test runs to TEST_CHECKS.
.DEFAULT_GOAL := all
TEST_CHECKS :=
-include mk/*.mk

.PHONY: all help build demo demo-plan demo-plan-fail run test unit isolation e2e chaos chaos-short lint vet staticcheck validate-samples schema fuzz clean check-deploy check-alerts container-images

all: build

## help: what each target does (this list).
help:
	@awk '/^## [a-z][a-z0-9-]*:/ { sub(/^## /, ""); print; next } /^## / { sub(/^## /, "    "); print }' $(MAKEFILE_LIST)

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## demo: the worker with embedded NATS (on DEMO_PORT, or a free port) and the APIOps
## simulator, the rotation scenario submitted.
demo: build
	./scripts/demo.sh

## demo-plan: the same worker, the 10-step rotation plan testdata/plans/rotation.json
## submitted with apiopsctl plan --json, its steps' table printed.
## demo-plan-fail: a variant whose third step sets the truststore of a credential that
## does not exist: the plan stops there, the later steps are skipped, the undo runs.
demo-plan: build
	./scripts/demo-plan.sh

demo-plan-fail: build
	PLAN=testdata/plans/rotation-fails.json EXPECT_STATUS=2 ./scripts/demo-plan.sh

## run: the worker with embedded NATS (127.0.0.1:4222, data in ./data) and the simulator,
## metrics on 127.0.0.1:9090; free ports where those are taken. NATS_PORT, HTTP_ADDR
## choose; ARGS adds flags, e.g. ARGS='--demo-dialect docs'.
run: build
	./scripts/run.sh $(ARGS)

## test: everything CI checks: formatting, vet, staticcheck, samples, the rendered
## Kubernetes manifests, the alerts (promtool), the container images, all tests with
## -race (the container tests skip, saying why, where no Docker engine runs), the
## hostile-tenant tests, and a short chaos run.
test: lint validate-samples check-deploy check-alerts container-images $(TEST_CHECKS) unit isolation e2e chaos-short

unit: $(PROMTOOL)
	PROMTOOL=$(PROMTOOL) $(GO) test -race -count=1 -skip '$(ISOLATION_TESTS)' $$($(GO) list ./... | grep -v -e /e2e -e /internal/testkit/chaos)

## isolation: the hostile-tenant tests, which time MyProject's command during each
## attack (within 3 s). Not under -race: the attack of 32 commands of 512 KiB makes
## three in-process NATS nodes copy 48 MiB, which the race detector slows tenfold
## (half the CPU of a profiled run went to its range checks), so a loaded machine
## measured the detector instead of the worker.
ISOLATION_TESTS := TestProjectIsolation
isolation:
	$(GO) test -count=1 -v -run '$(ISOLATION_TESTS)' ./internal/programs/app | grep -E '^(\s*--- |\s+\w+_test\.go|PASS|FAIL|ok)'

## chaos: the fleet's chaos tests at full length, printing their figures (about 7
## minutes): the random nemesis (3,000 commands, 21 faults) and the frozen holder that
## thaws (8 cycles); CHAOS_FLAGS adds flags, e.g. -chaos.seed N.
## chaos-short: the short runs in make test (600 commands and one fault of each kind;
## 2 cycles).
## Not under -race: three in-process NATS nodes under the race detector would distort
## the timing the test is about; the worker processes are ordinary builds.
CHAOS_FLAGS ?=
chaos:
	$(GO) test -count=1 -timeout 30m -v -run 'TestChaos|TestFrozenHolderThaws' ./internal/testkit/chaos -chaos.full $(CHAOS_FLAGS) | grep -v '^=== '

chaos-short:
	$(GO) test -count=1 -timeout 10m -v -run 'TestChaos|TestFrozenHolderThaws' ./internal/testkit/chaos $(CHAOS_FLAGS) | grep -v '^=== '

## e2e: the container tests, verbosely, so that a skip shows.
e2e:
	$(GO) test -count=1 -v ./e2e | grep -E '^(=== RUN|--- |\s+\w+_test\.go|PASS|FAIL|ok)'

lint: vet staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(KUSTOMIZE):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

## check-deploy: render the kustomize base (deploy/deploy_test.go checks its content).
check-deploy: $(KUSTOMIZE)
	$(KUSTOMIZE) build deploy/base > /dev/null

$(PROMTOOL):
	GOBIN=$(BIN) $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

## check-alerts: the alerts as Prometheus loads them, the Compose Prometheus's config,
## and the alerts' unit tests (deploy/observability/alerts_test.yml: each alert fires
## when it should and stays quiet when it should not). Building promtool the first
## time takes about 4 minutes.
check-alerts: $(PROMTOOL)
	$(PROMTOOL) check rules deploy/observability/alerts.rules.yml
	$(PROMTOOL) check config deploy/observability/prometheus.yml
	$(PROMTOOL) test rules deploy/observability/alerts_test.yml

## container-images: the images the container tests run, where a Docker engine runs.
container-images:
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory image nats-image; \
	else echo "no Docker engine: skipping the images; the container tests will skip"; fi

## validate-samples: check every example command and the rotation scenario.
validate-samples:
	cat testdata/commands/*.json testdata/sealed/keystore.create.sealed.json testdata/plans/*.json testdata/rotation.jsonl | $(GO) run ./cmd/apiopsctl validate -

## schema: regenerate messages/schema/*.json from the Go types.
schema:
	$(GO) test ./messages/schema -update

## fuzz: fuzz command decoding, and the reading of APIOps's answers, for FUZZTIME each
## (seeds from testdata/).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./messages -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./apiops -run '^$$' -fuzz FuzzReadSuccess -fuzztime $(FUZZTIME)

clean:
	rm -rf $(BIN) build

## image: the worker image (apiopsctl and apiops-sim inside too), FROM scratch, from
## static binaries built here: no base image is pulled.
## nats-image: a NATS server image from nats-server compiled here, for NATS_IMAGE where
## the official image cannot be pulled.
.PHONY: image nats-image
IMAGE ?= apiops-worker:latest
NATS_LOCAL_IMAGE ?= apiops-nats:local
STATIC := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w"

image:
	rm -rf build/image
	mkdir -p build/image/usr/local/bin build/image/usr/share/apiops-worker
	$(STATIC) -o build/image/usr/local/bin/ ./cmd/apiops-worker ./cmd/apiopsctl ./cmd/apiops-sim
	cp testdata/apiops-seed.json build/image/usr/share/apiops-worker/
	docker build -q -t $(IMAGE) .

nats-image:
	rm -rf build/nats
	mkdir -p build/nats
	$(STATIC) -o build/nats/nats-server github.com/nats-io/nats-server/v2
	docker build -q -t $(NATS_LOCAL_IMAGE) -f deploy/docker/nats/Dockerfile build/nats

## bench: the full benchmark (about 17 minutes): apiops-worker against a minimal
## baseline loop, each in its own process like nats-server and the simulator, under both
## durability settings, three interleaved runs each (medians); scenario 7 compares
## tracing off with every span exported over OTLP. BENCH_FLAGS adds flags (e.g.
## BENCH_FLAGS='--scenarios 2 --sync default --profile prof'); see bin/apiops-bench -h.
## bench-against: the same with the worker built from REF (a commit or tag) run too,
## interleaved, so that the worker÷against rows show what changed since REF.
## bench-quick: a smoke run with small sizes that checks the harness.
.PHONY: bench bench-against bench-quick bench-tools
BENCH_FLAGS ?=
BENCH := $(BIN)/apiops-bench --nats-server $(BIN)/nats-server --sim $(BIN)/apiops-sim --worker $(BIN)/apiops-worker

bench: bench-tools
	$(BENCH) $(BENCH_FLAGS)

REF ?= HEAD
bench-against: bench-tools
	rm -rf build/against && mkdir -p build/against
	git archive $(REF) | tar -x -C build/against
	cd build/against && $(GO) build -o $(BIN)/apiops-worker-against ./cmd/apiops-worker
	$(BENCH) --against $(BIN)/apiops-worker-against $(BENCH_FLAGS)

bench-quick: bench-tools
	$(BENCH) --quick $(BENCH_FLAGS)

bench-tools:
	$(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2
	$(GO) build -o $(BIN)/ ./cmd/apiops-sim ./cmd/apiops-bench ./cmd/apiops-worker
