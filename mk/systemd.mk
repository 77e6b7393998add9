# systemd units, sysusers.d and tmpfiles.d entries (see mk/install.mk for the layout).
# The units in systemd/ name /usr/sbin/keybrokerd and /usr/share/doc/keybroker, so they are valid
# as they stand (systemd-analyze reads them directly); install rewrites both for the PREFIX used.

KB_UNIT_SED = -e 's|/usr/sbin/keybrokerd|$(SBINDIR)/keybrokerd|g' -e 's|/usr/share/doc/keybroker|$(DOCDIR)|g'

UNINSTALL_PARTS += uninstall-systemd
INSTALL_DIRS    += $(SYSTEMD_UNIT_DIR)/mariadb.service.d $(SYSUSERS_DIR) $(TMPFILES_DIR)

.PHONY: install-systemd uninstall-systemd

install: install-systemd

install-systemd:
	install -d -m 0755 $(DESTDIR)$(SYSTEMD_UNIT_DIR) $(DESTDIR)$(SYSTEMD_UNIT_DIR)/mariadb.service.d \
	  $(DESTDIR)$(SYSUSERS_DIR) $(DESTDIR)$(TMPFILES_DIR)
	for u in keybroker.socket keybroker.service; do \
	  sed $(KB_UNIT_SED) systemd/$$u > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$u.tmp && \
	  chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$u.tmp && \
	  mv -f $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$u.tmp $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$u || exit 1; \
	done
	install -m 0644 systemd/mariadb-keybroker.conf $(DESTDIR)$(SYSTEMD_UNIT_DIR)/mariadb.service.d/keybroker.conf
	install -m 0644 systemd/keybroker.sysusers $(DESTDIR)$(SYSUSERS_DIR)/keybroker.conf
	install -m 0644 systemd/keybroker.tmpfiles $(DESTDIR)$(TMPFILES_DIR)/keybroker.conf

# The drop-in directory may hold the admin's own drop-ins: removed only when empty.
uninstall-systemd:
	rm -f $(DESTDIR)$(SYSTEMD_UNIT_DIR)/keybroker.socket $(DESTDIR)$(SYSTEMD_UNIT_DIR)/keybroker.service \
	  $(DESTDIR)$(SYSTEMD_UNIT_DIR)/mariadb.service.d/keybroker.conf \
	  $(DESTDIR)$(SYSUSERS_DIR)/keybroker.conf $(DESTDIR)$(TMPFILES_DIR)/keybroker.conf
	rmdir --ignore-fail-on-non-empty $(DESTDIR)$(SYSTEMD_UNIT_DIR)/mariadb.service.d 2>/dev/null || true
