# slate — see README.md. `make demo` and `make test` do their own set-up.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export SLATE_CACHE ?= $(CURDIR)/.cache
LDFLAGS  := -s -w -X github.com/slateos/slate/internal/version.Version=$(VERSION)
BIN      := bin/slate

.PHONY: all build setup demo test test-short bench fuzz vet fmt clean FORCE

all: build

# A static binary: it becomes /init and PID 1 of every image.
$(BIN): FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/slate

build: $(BIN)

setup:
	scripts/setup.sh

demo: setup build
	$(BIN) build -c configs/default.yaml -o out/default
	$(BIN) vm run out/default/disk.raw --until 'SLATE-READY' --timeout 180s

# The linters are tool lines of go.mod (`go tool` builds them on first use);
# shellcheck comes from scripts/setup.sh. See .golangci.yml.
vet:
	$(GO) vet ./...
	test -z "$$(gofmt -l .)"
	$(GO) mod tidy -diff
	$(GO) tool staticcheck ./...
	$(GO) tool golangci-lint run
	shellcheck scripts/*.sh .ci/run

test: setup vet
	$(GO) test -count=1 -timeout 80m -parallel 2 ./...

# Unit and host tests only: -short skips every test that builds an image
# or boots a VM (e2e, and qemu's VM tests), CI or not; a few minutes.
test-short:
	$(GO) test -short -count=1 -timeout 15m ./...

bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

fuzz:
	scripts/fuzz.sh

clean:
	rm -rf bin out
