# ods-keyguard: build, install, demo, tests and the Debian package.
PREFIX ?= /usr/local
DESTDIR ?=
# BUILD is where make build puts the binary (tests point it elsewhere).
BUILD ?= bin
SBINDIR = $(DESTDIR)$(PREFIX)/sbin
DOCDIR = $(DESTDIR)$(PREFIX)/share/doc/ods-keyguard
STATEDIR = $(DESTDIR)/var/lib/opendnssec/keyguard
DIST ?= dist
GO ?= go

.PHONY: all build setup demo test bench bench-backends bench-implementations bench-softhsm bench-ledger bench-hsm bench-review bench-publish install uninstall deb clean

all: build

# The package's version, which --version prints too.
build:
	$(GO) build -buildvcs=auto -ldflags "-X main.buildVersion=$$(./packaging/version.sh)" -o $(BUILD)/ods-keyguard .

setup:
	./scripts/setup.sh

# Runs the main job on a sandboxed SoftHSMv2 token and enforcer.
demo: setup
	$(GO) build -buildvcs=auto -ldflags "-X main.buildVersion=$$(./packaging/version.sh)" -o bin/ods-keyguard .
	$(GO) run ./internal/lab/demo bin/ods-keyguard

# CI=true turns a skip for a missing tool into a failure; the tag
# failpoint builds the steps the crash scripts kill ods-keyguard at into
# the test binary (never into a release: internal/failpoint). The scripts'
# package takes about six minutes on two idle cores: go test's default of
# ten minutes per package would fail it on a loaded machine, not a bug.
test: setup
	CI=true $(GO) test -timeout 30m -tags failpoint ./...

bench: setup build
	./scripts/bench.sh

# verify and check at about 1,000 keys, SQLite beside MySQL (MariaDB).
bench-backends: setup build
	$(GO) run ./internal/lab/bench -backends 1000 bin/ods-keyguard

# ledger verify over a log of 100,000 entries, state_dir and MySQL.
bench-ledger: setup build
	$(GO) run ./internal/lab/bench -ledger 100000 bin/ods-keyguard

bench-implementations: setup build
	$(GO) run ./internal/lab/bench -implementations 1000 bin/ods-keyguard

# SoftHSMv2 beside readers: 20 generations of ~150 keys by the enforcer per
# kind of reader, each reconciled with kasp.db (about half an hour).
bench-softhsm: setup build
	$(GO) run ./internal/lab/bench -race 20 -race-tag softhsm bin/ods-keyguard

# Network HSMs: check, verify and the DS hook through the lab's quirks
# module at 1,000 and 10,000 keys and 0, 1, 5 ms a PKCS#11 call, beside
# pkcs11-tool and the least PKCS#11 work each answer needs, five rounds at
# 0 ms (about 30 minutes).
bench-hsm: setup build
	$(GO) run ./internal/lab/bench -hsm 1000,10000 -runs 5 bin/ods-keyguard

# zonereview beside validns, ldns-verify-zone, kzonecheck and dnssec-verify
# on zones of 20,000 to 1,000,000 names signed by dnssec-signzone, into
# BENCHMARKS.md. The zones are kept in ~/.cache/ods-keyguard-bench; signing
# them the first time takes about an hour. QUICK=1: the 20,000-name zone only.
bench-review: setup
	$(GO) run ./internal/lab/zonebench $(if $(QUICK),-quick)

# The publish gate's fixed cost per call: 10,000 zones and keys in the
# enforcer's database, 200 of them run through the gate.
bench-publish: setup build
	$(GO) run ./internal/lab/bench -publish 10000 bin/ods-keyguard

# The binary beside OpenDNSSEC's admin tools, the hook names (and the
# signer's NotifyCommand, ods-keyguard-publish) as links to
# it, and state_dir, group-owned by opendnssec where that group exists.
install: build
	install -d $(SBINDIR) $(DOCDIR)
	install -m 0755 $(BUILD)/ods-keyguard $(SBINDIR)/ods-keyguard
	ln -sf ods-keyguard $(SBINDIR)/ods-keyguard-ds-submit
	ln -sf ods-keyguard $(SBINDIR)/ods-keyguard-ds-retract
	ln -sf ods-keyguard $(SBINDIR)/ods-keyguard-publish
	install -m 0644 conf.toml.example $(DOCDIR)/conf.toml.example
	install -d -m 2750 $(STATEDIR)
	-getent group opendnssec >/dev/null && chgrp opendnssec $(STATEDIR)

uninstall:
	rm -f $(SBINDIR)/ods-keyguard $(SBINDIR)/ods-keyguard-ds-submit $(SBINDIR)/ods-keyguard-ds-retract $(SBINDIR)/ods-keyguard-publish
	rm -f $(DOCDIR)/conf.toml.example
	-rmdir $(DOCDIR) 2>/dev/null

# dist/ods-keyguard_VERSION_ARCH.deb, built from a staged tree.
deb:
	DIST=$(DIST) GO=$(GO) ./packaging/build-deb.sh

clean:
	rm -rf bin dist
