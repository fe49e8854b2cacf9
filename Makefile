# apiops-worker. `make test` is what CI runs (.ci/run).
GO            ?= go
BIN           := $(CURDIR)/bin
STATICCHECK   := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
export GOFLAGS ?= -buildvcs=false

.PHONY: all build demo run test unit lint vet staticcheck validate-samples schema fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## demo: the worker with embedded NATS and the APIOps simulator, the rotation scenario submitted.
demo: build
	./scripts/demo.sh

## run: the worker with embedded NATS (127.0.0.1:4222, data in ./data) and the simulator.
run: build
	bin/apiops-worker --demo --log-format console

## test: everything CI checks: formatting, vet, staticcheck, samples, all tests with -race.
test: lint validate-samples unit

unit:
	$(GO) test -race -count=1 ./...

lint: vet staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## validate-samples: check every example command and the rotation scenario.
validate-samples:
	cat testdata/commands/*.json testdata/rotation.jsonl | $(GO) run ./cmd/apiopsctl validate -

## schema: regenerate messages/schema/*.json from the Go types.
schema:
	$(GO) test ./messages/schema -update

## fuzz: fuzz command decoding for FUZZTIME (seeds from testdata/).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./messages -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)

clean:
	rm -rf $(BIN)
