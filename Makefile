# keybroker — `make run` starts a broker on the built-in default; `make test` runs every test.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT      ?= swift
BUILD_DIR  ?= .build
BIN_DIR    := $(BUILD_DIR)/debug
# What `make install` and `make bench` use: optimised, with the Swift runtime linked in, so the
# installed daemon needs nothing from /opt/swift (SELinux would not let a confined daemon load it).
RELEASE_BIN_DIR ?= $(BUILD_DIR)/release
PYTEST     ?= python3 -m pytest
RUN_DIR    := $(CURDIR)/.run
PREFIX     ?= /usr/local
DESTDIR    ?=
# keybroker's version, written once: the Swift constant the binaries report.
KB_VERSION_FILE := Sources/Broker/KeybrokerVersion.swift
KB_VERSION := $(shell sed -n 's/^ *public static let number = "\(.*\)"$$/\1/p' $(KB_VERSION_FILE))

.PHONY: all deps build swift-build release run test test-swift test-integration install uninstall clean

all: build

deps:
	@bash scripts/deps.sh

swift-build:
	$(SWIFT) build --scratch-path $(BUILD_DIR)

# Immediate binding and read-only relocations, as Debian builds every daemon (lintian checks both);
# no $ORIGIN run path, so an installed binary loads libraries only from the system's directories.
# Exclusivity is proven at compile time where the compiler can; the run-time checks it leaves
# (class properties, globals, escaping captures, many of them inside NIO's ByteBuffer) cost 30 % of
# the daemon's CPU per pipelined request (make bench row 3: 0.74 -> 0.52 us). They stay on in the
# debug build, which the unit and integration tests run, so a violation is still caught there.
release:
	$(SWIFT) build -c release --static-swift-stdlib --disable-local-rpath \
	  -Xswiftc -enforce-exclusivity=unchecked \
	  -Xlinker -z -Xlinker relro -Xlinker -z -Xlinker now --scratch-path $(BUILD_DIR)

# Other parts (the MariaDB plugin, systemd, SELinux, test tools, bench, fuzzing) add their
# prerequisites to these targets from their own mk/*.mk files, included at the end in this order.
build: swift-build

run: deps build
	@bash scripts/run.sh "$(BIN_DIR)" "$(RUN_DIR)"

test: deps build test-tools test-swift test-integration

test-swift:
	$(SWIFT) test --scratch-path $(BUILD_DIR)

test-integration:
	KEYBROKER_BIN_DIR=$(CURDIR)/$(BIN_DIR) $(PYTEST) -q -p no:cacheprovider IntegrationTests

install: release
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(RELEASE_BIN_DIR)/keybrokerd $(DESTDIR)$(PREFIX)/sbin/keybrokerd
	install -m 0755 $(RELEASE_BIN_DIR)/keybrokerctl $(DESTDIR)$(PREFIX)/bin/keybrokerctl

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/keybrokerd $(DESTDIR)$(PREFIX)/bin/keybrokerctl

clean:
	rm -rf $(BUILD_DIR) $(RUN_DIR)

# The plugin first (others name its sources and flags), then installation, which systemd and
# SELinux extend, then what builds on all of them.
include mk/plugin.mk
include mk/install.mk
include mk/systemd.mk
include mk/selinux.mk
include mk/man.mk
include mk/package.mk
include mk/bench.mk
include mk/tools.mk
include mk/fuzz.mk
