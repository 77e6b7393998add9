# The C tools the integration tests run: the load generator (shared with `make bench`) and the
# plugin harness, which loads keybroker_key_management.so the way mariadbd does.

TOOLS_BUILD_DIR := build/tools
TEST_TOOLS      := $(TOOLS_BUILD_DIR)/kbload $(TOOLS_BUILD_DIR)/plugin_harness

.PHONY: test-tools

test-tools: $(TEST_TOOLS)

$(TOOLS_BUILD_DIR)/kbload: $(BENCH_BUILD_DIR)/kbload
	@mkdir -p $(TOOLS_BUILD_DIR)
	cp $< $@

$(TOOLS_BUILD_DIR)/plugin_harness: IntegrationTests/plugin/plugin_harness.c mk/tools.mk
	@mkdir -p $(TOOLS_BUILD_DIR)
	$(BENCH_CC) $(BENCH_CFLAGS) -I$(MARIADB_INCLUDE) -DMYSQL_DYNAMIC_PLUGIN $< -o $@ -ldl
