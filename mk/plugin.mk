# The MariaDB plugin keybroker_key_management.so (plain C11, not a SwiftPM target), its install
# into the server's plugin directory, and `make demo`.

PLUGIN_SRC_DIR   := Sources/keybroker_key_management
PLUGIN_BUILD_DIR := build/plugin
PLUGIN_SO        := $(PLUGIN_BUILD_DIR)/keybroker_key_management.so
PLUGIN_SOURCES   := $(wildcard $(PLUGIN_SRC_DIR)/*.c)
PLUGIN_HEADERS   := $(wildcard $(PLUGIN_SRC_DIR)/*.h)
PLUGIN_OBJECTS   := $(patsubst $(PLUGIN_SRC_DIR)/%.c,$(PLUGIN_BUILD_DIR)/%.o,$(PLUGIN_SOURCES))

MARIADB_INCLUDE  ?= /usr/include/mariadb/server
PLUGIN_CC        ?= cc
# Without MYSQL_DYNAMIC_PLUGIN the plugin declares itself as built in and the server cannot find it.
PLUGIN_CFLAGS    ?= -O2 -g
PLUGIN_CFLAGS    += -std=c11 -Wall -Wextra -Werror -fPIC -pthread -fno-strict-aliasing \
                    -I$(MARIADB_INCLUDE) -DMYSQL_DYNAMIC_PLUGIN
# libmysqlservices.a holds the service pointers (my_print_error_service, ...) the server fills in.
PLUGIN_LDFLAGS   += -shared -pthread -Wl,-z,relro,-z,now -Wl,--no-undefined \
                    -Wl,--version-script=$(PLUGIN_SRC_DIR)/exports.map
PLUGIN_LDLIBS    += -lmysqlservices
# A distribution's hardening flags (debian/rules passes dpkg-buildflags' here), added to ours.
PACKAGE_CPPFLAGS ?=
PACKAGE_CFLAGS   ?=
PACKAGE_LDFLAGS  ?=

# mariadbd's own plugin directory, unless PLUGIN_DIR= is given.
PLUGIN_DIR       ?= $(shell mariadbd --verbose --help 2>/dev/null | awk '$$1 == "plugin-dir" { print $$2 }')

.PHONY: plugin install-plugin uninstall-plugin demo

build: plugin
install: install-plugin
uninstall: uninstall-plugin

plugin: $(PLUGIN_SO)

$(PLUGIN_BUILD_DIR)/%.o: $(PLUGIN_SRC_DIR)/%.c $(PLUGIN_HEADERS) mk/plugin.mk
	@mkdir -p $(PLUGIN_BUILD_DIR)
	$(PLUGIN_CC) $(PACKAGE_CPPFLAGS) $(PACKAGE_CFLAGS) $(PLUGIN_CFLAGS) -c $< -o $@

$(PLUGIN_SO): $(PLUGIN_OBJECTS) $(PLUGIN_SRC_DIR)/exports.map
	$(PLUGIN_CC) $(PACKAGE_LDFLAGS) $(PLUGIN_LDFLAGS) -o $@ $(PLUGIN_OBJECTS) $(PLUGIN_LDLIBS)

install-plugin: plugin
	@test -n "$(PLUGIN_DIR)" || { echo "install-plugin: cannot ask mariadbd for its plugin-dir; set PLUGIN_DIR=" >&2; exit 1; }
	install -d $(DESTDIR)$(PLUGIN_DIR)
	install -m 0644 $(PLUGIN_SO) $(DESTDIR)$(PLUGIN_DIR)/keybroker_key_management.so

uninstall-plugin:
	@test -n "$(PLUGIN_DIR)" || { echo "uninstall-plugin: cannot ask mariadbd for its plugin-dir; set PLUGIN_DIR=" >&2; exit 1; }
	rm -f $(DESTDIR)$(PLUGIN_DIR)/keybroker_key_management.so

demo: build
	@bash scripts/demo.sh "$(BIN_DIR)" "$(PLUGIN_BUILD_DIR)" "$(RUN_DIR)/demo"

# The plugin built twice more with sanitizers, for the concurrent stress that `make test` runs
# (the drivers that load them are test tools, mk/tools.mk): build/plugin-asan (AddressSanitizer
# and UBSan) and build/plugin-tsan (ThreadSanitizer).
SANITIZE_asan := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
SANITIZE_tsan := -fsanitize=thread
SANITIZED_PLUGINS := $(PLUGIN_BUILD_DIR)-asan/keybroker_key_management.so $(PLUGIN_BUILD_DIR)-tsan/keybroker_key_management.so

.PHONY: plugin-sanitized

plugin-sanitized: $(SANITIZED_PLUGINS)

define sanitized_plugin
$(PLUGIN_BUILD_DIR)-$(1)/%.o: $(PLUGIN_SRC_DIR)/%.c $(PLUGIN_HEADERS) mk/plugin.mk
	@mkdir -p $$(@D)
	$(PLUGIN_CC) $(PLUGIN_CFLAGS) -O1 $(SANITIZE_$(1)) -c $$< -o $$@

$(PLUGIN_BUILD_DIR)-$(1)/keybroker_key_management.so: $(patsubst $(PLUGIN_SRC_DIR)/%.c,$(PLUGIN_BUILD_DIR)-$(1)/%.o,$(PLUGIN_SOURCES)) $(PLUGIN_SRC_DIR)/exports.map
	$(PLUGIN_CC) $(PLUGIN_LDFLAGS) $(SANITIZE_$(1)) -o $$@ $$(filter %.o,$$^) $(PLUGIN_LDLIBS)
endef
$(eval $(call sanitized_plugin,asan))
$(eval $(call sanitized_plugin,tsan))
