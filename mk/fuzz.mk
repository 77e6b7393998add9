# Hostile input (issue 6): `make fuzz` runs the libFuzzer target for the wire decoder for
# FUZZ_SECONDS; `make soak` runs the long forms of the fuzzer, the crash-safety kill loop and the
# hostile-client test. `make test` runs all three briefly (IntegrationTests/daemon/test_fuzz.py and friends).
#
# The fuzzer is not a SwiftPM product: SwiftPM builds BrokerProtocol and its NIOCore closure with
# --sanitize fuzzer --sanitize address into its own scratch path, then swiftc links
# fuzz/DecoderFuzzer.swift (@_cdecl LLVMFuzzerTestOneInput, -parse-as-library) against those
# objects; libFuzzer supplies main.

SWIFTC             ?= swiftc
FUZZ_BUILD_DIR     ?= .build-fuzz
FUZZ_PRODUCTS      := $(FUZZ_BUILD_DIR)/release
FUZZ_BIN           := $(FUZZ_BUILD_DIR)/keybroker-decoder-fuzzer
FUZZ_CORPUS        := fuzz/corpus
# New inputs libFuzzer finds go here, not into the committed corpus.
FUZZ_FINDINGS      := $(FUZZ_BUILD_DIR)/corpus
FUZZ_SECONDS       ?= 300
# 0 lets libFuzzer pick (and print) a seed; give one to repeat a run.
FUZZ_SEED          ?= 0
# One maximum frame (65536 + 4) and the start of the next.
FUZZ_FLAGS         ?= -max_len=65545 -timeout=10 -print_final_stats=1
SOAK_FUZZ_SECONDS  ?= 3600
SOAK_KILLS         ?= 2000
SOAK_HOSTILE_CONNECTIONS ?= 20000

.PHONY: fuzz fuzz-build soak

fuzz-build: $(FUZZ_BIN)

$(FUZZ_BIN): fuzz/DecoderFuzzer.swift $(wildcard Sources/BrokerProtocol/*.swift) Package.swift $(wildcard Package.resolved) mk/fuzz.mk
	$(SWIFT) build -c release --scratch-path $(FUZZ_BUILD_DIR) --target BrokerProtocol --sanitize fuzzer --sanitize address
	@# object names contain spaces ("Unmanaged extensions.swift.o"): pass them quoted in a response file
	find $(FUZZ_PRODUCTS)/ -name '*.o' | sed 's/.*/"&"/' > $(FUZZ_BUILD_DIR)/objects.rsp
	$(SWIFTC) -O -g -parse-as-library -sanitize=fuzzer,address -use-ld=lld \
		-module-cache-path $(FUZZ_BUILD_DIR)/ModuleCache -I $(FUZZ_PRODUCTS)/Modules \
		$$(ls $(FUZZ_PRODUCTS)/*.build/module.modulemap $(FUZZ_BUILD_DIR)/checkouts/*/Sources/*/include/module.modulemap \
		   | sed 's/^/-Xcc -fmodule-map-file=/') \
		fuzz/DecoderFuzzer.swift @$(FUZZ_BUILD_DIR)/objects.rsp -o $@

# A failure leaves its input in $(FUZZ_BUILD_DIR)/artifacts/; replay it with `$(FUZZ_BIN) FILE`.
fuzz: $(FUZZ_BIN)
	@mkdir -p $(FUZZ_FINDINGS) $(FUZZ_BUILD_DIR)/artifacts
	SWIFT_BACKTRACE=enable=no $(FUZZ_BIN) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) -seed=$(FUZZ_SEED) \
		-artifact_prefix=$(FUZZ_BUILD_DIR)/artifacts/ $(FUZZ_FINDINGS) $(FUZZ_CORPUS)

soak: deps build
	$(MAKE) fuzz FUZZ_SECONDS=$(SOAK_FUZZ_SECONDS)
	KEYBROKER_BIN_DIR=$(CURDIR)/$(BIN_DIR) KEYBROKER_KILLS=$(SOAK_KILLS) \
		$(PYTEST) -q -s -p no:cacheprovider IntegrationTests/daemon/test_crash_safety.py
	KEYBROKER_BIN_DIR=$(CURDIR)/$(BIN_DIR) KEYBROKER_HOSTILE_CONNECTIONS=$(SOAK_HOSTILE_CONNECTIONS) \
		$(PYTEST) -q -s -p no:cacheprovider IntegrationTests/daemon/test_hostile_clients.py
