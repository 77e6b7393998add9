# `make bench`: keybroker measured against its baselines in one run (bench/README.md). Uses the
# optimised daemon (`release`) and the plugin as installed (`plugin`); the C tools build here.

BENCH_SRC_DIR   := bench
BENCH_BUILD_DIR := build/bench
BENCH_CC        ?= cc
# The plugin's own optimisation level, so its client code runs as it does inside mariadbd.
BENCH_CFLAGS    ?= -O2 -g
BENCH_CFLAGS    += -std=c11 -Wall -Wextra -Werror -pthread
BENCH_TOOLS     := $(addprefix $(BENCH_BUILD_DIR)/,kbload floor_server keybench)
BENCH_ARGS      ?=

.PHONY: bench bench-tools

bench: deps release plugin bench-tools
	python3 $(BENCH_SRC_DIR)/run.py --bin-dir $(RELEASE_BIN_DIR) --plugin $(PLUGIN_SO) \
	  --tools $(BENCH_BUILD_DIR) $(BENCH_ARGS)

bench-tools: $(BENCH_TOOLS)

$(BENCH_BUILD_DIR)/kbload: $(BENCH_SRC_DIR)/kbload.c $(BENCH_SRC_DIR)/wire.h mk/bench.mk
	@mkdir -p $(BENCH_BUILD_DIR)
	$(BENCH_CC) $(BENCH_CFLAGS) $< -o $@

$(BENCH_BUILD_DIR)/floor_server: $(BENCH_SRC_DIR)/floor_server.c $(BENCH_SRC_DIR)/wire.h mk/bench.mk
	@mkdir -p $(BENCH_BUILD_DIR)
	$(BENCH_CC) $(BENCH_CFLAGS) $< -o $@

# The plugin's client (broker_client.c and its two companions) is compiled in unchanged: the
# round-trip row runs the plugin's real client code.
BENCH_CLIENT_SRC := $(addprefix $(PLUGIN_SRC_DIR)/,broker_client.c broker_error.c broker_requests.c)
$(BENCH_BUILD_DIR)/keybench: $(BENCH_SRC_DIR)/keybench.c $(BENCH_SRC_DIR)/wire.h $(BENCH_SRC_DIR)/mutex_key_table.c \
    $(BENCH_SRC_DIR)/mutex_key_table.h $(BENCH_SRC_DIR)/plugin_host.h $(BENCH_CLIENT_SRC) \
    $(PLUGIN_SRC_DIR)/broker_client.h $(PLUGIN_SRC_DIR)/broker_wire.h mk/bench.mk
	@mkdir -p $(BENCH_BUILD_DIR)
	$(BENCH_CC) $(BENCH_CFLAGS) -fno-strict-aliasing -I$(MARIADB_INCLUDE) -I$(PLUGIN_SRC_DIR) -DMYSQL_DYNAMIC_PLUGIN \
	  $(BENCH_SRC_DIR)/keybench.c $(BENCH_SRC_DIR)/mutex_key_table.c $(BENCH_CLIENT_SRC) -o $@ -ldl
