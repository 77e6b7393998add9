# The C tools the integration tests run: the load generator and the C floor server (shared with
# `make bench`), the plugin harness and the plugin driver, which load keybroker_key_management.so
# the way mariadbd does (the driver also with sanitizers, beside the sanitized plugins of
# mk/plugin.mk), and the key cache's own test.

TOOLS_BUILD_DIR := build/tools
KEY_CACHE_SRC   := $(PLUGIN_SRC_DIR)/key_cache.c $(PLUGIN_SRC_DIR)/key_cache_write.c
PLUGIN_TESTS_DIR := IntegrationTests/plugin
TOOLS_CFLAGS    := -std=c11 -O1 -g -Wall -Wextra -Werror -pthread -I$(MARIADB_INCLUDE) -I$(BENCH_SRC_DIR) \
                   -I$(PLUGIN_SRC_DIR) -DMYSQL_DYNAMIC_PLUGIN
TEST_TOOLS      := $(TOOLS_BUILD_DIR)/kbload $(TOOLS_BUILD_DIR)/floor_server $(TOOLS_BUILD_DIR)/plugin_harness \
                   $(TOOLS_BUILD_DIR)/plugin_driver $(TOOLS_BUILD_DIR)/plugin_driver-asan $(TOOLS_BUILD_DIR)/plugin_driver-tsan \
                   $(TOOLS_BUILD_DIR)/key_cache_test $(TOOLS_BUILD_DIR)/key_cache_test-tsan $(SANITIZED_PLUGINS)

.PHONY: test-tools

test-tools: $(TEST_TOOLS)

$(TOOLS_BUILD_DIR)/kbload: $(BENCH_BUILD_DIR)/kbload
	@mkdir -p $(TOOLS_BUILD_DIR)
	cp $< $@

$(TOOLS_BUILD_DIR)/floor_server: $(BENCH_BUILD_DIR)/floor_server
	@mkdir -p $(TOOLS_BUILD_DIR)
	cp $< $@

# plugin_driver, plugin_driver-asan, plugin_driver-tsan: each with the flags of the plugin it loads.
define plugin_driver
$(TOOLS_BUILD_DIR)/plugin_driver$(1): $(PLUGIN_TESTS_DIR)/plugin_driver.c $(BENCH_SRC_DIR)/plugin_host.h mk/tools.mk
	@mkdir -p $(TOOLS_BUILD_DIR)
	$(BENCH_CC) $(TOOLS_CFLAGS) $(2) $$< -o $$@ -ldl
endef
$(eval $(call plugin_driver,,))
$(eval $(call plugin_driver,-asan,$(SANITIZE_asan)))
$(eval $(call plugin_driver,-tsan,$(SANITIZE_tsan)))

$(TOOLS_BUILD_DIR)/key_cache_test: $(PLUGIN_TESTS_DIR)/key_cache_test.c $(KEY_CACHE_SRC) $(PLUGIN_SRC_DIR)/key_cache.h $(PLUGIN_SRC_DIR)/key_cache_tables.h mk/tools.mk
	@mkdir -p $(TOOLS_BUILD_DIR)
	$(BENCH_CC) $(TOOLS_CFLAGS) -O2 $< $(KEY_CACHE_SRC) -o $@

$(TOOLS_BUILD_DIR)/key_cache_test-tsan: $(PLUGIN_TESTS_DIR)/key_cache_test.c $(KEY_CACHE_SRC) $(PLUGIN_SRC_DIR)/key_cache.h $(PLUGIN_SRC_DIR)/key_cache_tables.h mk/tools.mk
	@mkdir -p $(TOOLS_BUILD_DIR)
	$(BENCH_CC) $(TOOLS_CFLAGS) $(SANITIZE_tsan) $< $(KEY_CACHE_SRC) -o $@

$(TOOLS_BUILD_DIR)/plugin_harness: IntegrationTests/plugin/plugin_harness.c $(BENCH_SRC_DIR)/plugin_host.h mk/tools.mk
	@mkdir -p $(TOOLS_BUILD_DIR)
	$(BENCH_CC) $(BENCH_CFLAGS) -I$(MARIADB_INCLUDE) -I$(BENCH_SRC_DIR) -DMYSQL_DYNAMIC_PLUGIN $< -o $@ -ldl
