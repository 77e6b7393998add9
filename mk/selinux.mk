# SELinux policy module: `make selinux` builds keybroker.pp with the distribution's policy
# headers (Debian/Ubuntu: selinux-policy-dev; RHEL/Fedora: selinux-policy-devel) in a build
# directory, so the tree stays clean. Install with `semodule -i` (see docs/setup.md).

SELINUX_DEVEL_MAKEFILE ?= /usr/share/selinux/devel/Makefile
SELINUX_SRC_DIR   ?= selinux
SELINUX_BUILD_DIR ?= build/selinux
KB_SELINUX_SRC     = $(addprefix $(SELINUX_SRC_DIR)/keybroker.,te if fc)

UNINSTALL_PARTS += uninstall-selinux
INSTALL_DIRS    += $(SELINUX_PKG_DIR) $(SELINUX_IF_DIR)

.PHONY: selinux install-selinux uninstall-selinux

# The policy Makefile is run with an empty MAKEFLAGS: it sets PREFIX, NAME and TYPE itself, and a
# PREFIX=… given to our make would otherwise point it at $(PREFIX)/bin/checkmodule.
selinux:
	@test -f $(SELINUX_DEVEL_MAKEFILE) || { echo "selinux: $(SELINUX_DEVEL_MAKEFILE) is missing; install selinux-policy-dev (make deps)" >&2; exit 1; }
	install -d $(SELINUX_BUILD_DIR)
	install -m 0644 $(KB_SELINUX_SRC) $(SELINUX_BUILD_DIR)/
	MAKEFLAGS= MAKEOVERRIDES= $(MAKE) --no-print-directory -C $(SELINUX_BUILD_DIR) -f $(SELINUX_DEVEL_MAKEFILE) keybroker.pp

install: install-selinux

install-selinux: selinux
	install -d -m 0755 $(DESTDIR)$(SELINUX_PKG_DIR) $(DESTDIR)$(SELINUX_IF_DIR)
	install -m 0644 $(SELINUX_BUILD_DIR)/keybroker.pp $(DESTDIR)$(SELINUX_PKG_DIR)/keybroker.pp
	install -m 0644 $(SELINUX_SRC_DIR)/keybroker.if $(DESTDIR)$(SELINUX_IF_DIR)/keybroker.if

uninstall-selinux:
	rm -f $(DESTDIR)$(SELINUX_PKG_DIR)/keybroker.pp $(DESTDIR)$(SELINUX_IF_DIR)/keybroker.if
