# ods-keyguard: build, install, demo and tests.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
DOCDIR = $(DESTDIR)$(PREFIX)/share/doc/ods-keyguard
GO ?= go

.PHONY: all build setup demo test bench install uninstall clean

all: build

build:
	$(GO) build -buildvcs=auto -o bin/ods-keyguard .

setup:
	./scripts/setup.sh

# Runs the main job on a sandboxed SoftHSMv2 token and enforcer.
demo: setup build
	$(GO) run ./internal/demo bin/ods-keyguard

# CI=true turns a skip for a missing tool into a failure.
test: setup
	CI=true $(GO) test ./...

bench: setup build
	./scripts/bench.sh

install: build
	install -d $(BINDIR) $(DOCDIR)
	install -m 0755 bin/ods-keyguard $(BINDIR)/ods-keyguard
	ln -sf ods-keyguard $(BINDIR)/ods-keyguard-ds-submit
	ln -sf ods-keyguard $(BINDIR)/ods-keyguard-ds-retract
	install -m 0644 conf.toml.example $(DOCDIR)/conf.toml.example

uninstall:
	rm -f $(BINDIR)/ods-keyguard $(BINDIR)/ods-keyguard-ds-submit $(BINDIR)/ods-keyguard-ds-retract
	rm -f $(DOCDIR)/conf.toml.example
	-rmdir $(DOCDIR) 2>/dev/null

clean:
	rm -rf bin
