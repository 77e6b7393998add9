# Man pages: keybrokerd(8), keybrokerctl(8), keybroker.toml(5), keybroker_key_management(7).
# One scdoc source per page in man/, rendered into build/man at build time with the version of
# Sources/Broker/KeybrokerVersion.swift; `make install` and both packages install them.
# IntegrationTests/packaging/test_man_pages.py keeps them in step with the code.

SCDOC         ?= scdoc
MAN_SRC_DIR   := man
MAN_BUILD_DIR := build/man
MAN_PAGES     := $(patsubst $(MAN_SRC_DIR)/%.scd,$(MAN_BUILD_DIR)/%,$(wildcard $(MAN_SRC_DIR)/*.scd))
MANDIR        ?= $(PREFIX)/share/man
MAN_SECTIONS  := $(sort $(foreach p,$(MAN_PAGES),$(subst .,,$(suffix $(p)))))

UNINSTALL_PARTS += uninstall-man
INSTALL_DIRS    += $(foreach s,$(MAN_SECTIONS),$(MANDIR)/man$(s))

.PHONY: man install-man uninstall-man

build: man
install: install-man

man: $(MAN_PAGES)

$(MAN_BUILD_DIR)/%: $(MAN_SRC_DIR)/%.scd $(KB_VERSION_FILE) mk/man.mk
	@mkdir -p $(@D)
	sed 's/@VERSION@/$(KB_VERSION)/g' $< | $(SCDOC) > $@.tmp
	mv -f $@.tmp $@

install-man: man
	for p in $(MAN_PAGES); do \
	  s=$${p##*.}; install -d -m 0755 $(DESTDIR)$(MANDIR)/man$$s && \
	  install -m 0644 $$p $(DESTDIR)$(MANDIR)/man$$s/ || exit 1; \
	done

uninstall-man:
	rm -f $(foreach p,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(p)))/$(notdir $(p)))
