# Where `make install` puts everything besides the two binaries, and how `make uninstall` takes
# it back. Layout (PREFIX defaults to /usr/local; a distribution package uses PREFIX=/usr):
#
#   $(PREFIX)/sbin/keybrokerd, $(PREFIX)/bin/keybrokerctl      (top Makefile)
#   $(PREFIX)/lib/systemd/system/keybroker.{socket,service}    systemd searches /usr/local/lib
#   $(PREFIX)/lib/systemd/system/mariadb.service.d/keybroker.conf   and /usr/lib alike, so the
#   $(PREFIX)/lib/sysusers.d/keybroker.conf                     units work from either prefix
#   $(PREFIX)/lib/tmpfiles.d/keybroker.conf
#   /usr/share/selinux/packages/keybroker.pp                    fixed: where SELinux tools look
#   /usr/share/selinux/devel/include/contrib/keybroker.if
#   /etc/keybroker/keybroker.toml.example                       fixed: the unit reads /etc/keybroker
#   $(PREFIX)/share/doc/keybroker/*.md
#   $(PREFIX)/share/man/man{5,7,8}/…                            mk/man.mk
#
# Every directory can be overridden on the command line (e.g. SYSTEMD_UNIT_DIR=/lib/systemd/system).
# Nothing installed here holds a secret: the config names credentials, it does not contain them.

SBINDIR          = $(PREFIX)/sbin
SYSCONFDIR      ?= /etc
KB_CONFDIR      ?= $(SYSCONFDIR)/keybroker
DOCDIR          ?= $(PREFIX)/share/doc/keybroker
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
SYSUSERS_DIR    ?= $(PREFIX)/lib/sysusers.d
TMPFILES_DIR    ?= $(PREFIX)/lib/tmpfiles.d
SELINUX_PKG_DIR ?= /usr/share/selinux/packages
SELINUX_IF_DIR  ?= /usr/share/selinux/devel/include/contrib

# Each part appends its uninstall target here, so the pruning below runs after all of them
# (mk/plugin.mk: `UNINSTALL_PARTS += uninstall-plugin`, and its directory to INSTALL_DIRS).
UNINSTALL_PARTS += uninstall-config uninstall-docs
# Directories this tree installs into. A staged uninstall (DESTDIR set) removes each one and its
# parents below DESTDIR, deepest first, when empty; on a live system only keybroker's own go
# (an empty /usr/local/sbin is not ours to delete).
INSTALL_DIRS    += $(SBINDIR) $(PREFIX)/bin $(KB_CONFDIR) $(DOCDIR)
KB_OWN_DIRS     += $(KB_CONFDIR) $(DOCDIR)
# mk/plugin.mk (read after this file) installs into mariadbd's plugin directory.
ifneq ($(wildcard mk/plugin.mk),)
UNINSTALL_PARTS += uninstall-plugin
INSTALL_DIRS    += $(PLUGIN_DIR)
endif

KB_DOCS := $(wildcard docs/*.md)

.PHONY: install-config uninstall-config install-docs uninstall-docs uninstall-prune

install: install-config install-docs
uninstall: uninstall-prune

# Only the example is (re)installed; an existing keybroker.toml is never touched.
install-config:
	install -d -m 0755 $(DESTDIR)$(KB_CONFDIR)
	install -m 0644 etc/keybroker.toml.example $(DESTDIR)$(KB_CONFDIR)/keybroker.toml.example

uninstall-config:
	rm -f $(DESTDIR)$(KB_CONFDIR)/keybroker.toml.example

install-docs:
	install -d -m 0755 $(DESTDIR)$(DOCDIR)
	$(if $(KB_DOCS),install -m 0644 $(KB_DOCS) $(DESTDIR)$(DOCDIR)/)

uninstall-docs:
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(KB_DOCS)))

# The top Makefile removes the binaries in its own recipe, which runs after this prerequisite;
# removing them here as well lets their directories be pruned in the same run.
.SECONDEXPANSION:
uninstall-prune: $$(UNINSTALL_PARTS)
	rm -f $(DESTDIR)$(SBINDIR)/keybrokerd $(DESTDIR)$(PREFIX)/bin/keybrokerctl
	@for d in $(KB_OWN_DIRS); do rmdir --ignore-fail-on-non-empty "$(DESTDIR)$$d" 2>/dev/null || true; done
	@if [ -n "$(DESTDIR)" ]; then \
	  for d in $(INSTALL_DIRS); do \
	    while [ "$$d" != / ] && [ "$$d" != . ]; do echo "$$d"; d=$$(dirname "$$d"); done; \
	  done | sort -u | awk '{ print length($$0) " " $$0 }' | sort -rn | cut -d' ' -f2- | \
	  while read -r d; do rmdir "$(DESTDIR)$$d" 2>/dev/null || true; done; \
	fi
