# Binary packages into dist/: `make deb` (debian/, dpkg-buildpackage -b) and `make rpm`
# (keybroker.spec, rpmbuild). Both build the release binaries through this Makefile, so a
# second package build reuses .build/release. The version is KB_VERSION (Makefile); the package
# revision DEB_REVISION / RPM_RELEASE (an upgrade of the same upstream version bumps it).

DIST_DIR     ?= dist
DEB_REVISION ?= 1
DEB_VERSION  := $(KB_VERSION)-$(DEB_REVISION)
DEB_ARCH      = $(shell dpkg --print-architecture)
RPM_RELEASE  ?= 1
RPM_BUILD_DIR ?= .build-rpm
# The changelog entry's date: the last commit's, so the same tree builds the same packages.
KB_SOURCE_DATE = $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

.PHONY: deb rpm

# debian/changelog is written here (and kept out of git) so that the version lives in one place.
deb: deps
	@mkdir -p $(DIST_DIR)
	printf '%s\n' "keybroker ($(DEB_VERSION)) unstable; urgency=medium" "" \
	  "  * keybroker $(KB_VERSION), package revision $(DEB_REVISION)." "" \
	  " -- $$(sed -n 's/^Maintainer: //p' debian/control)  $$(date -R -u -d @$(KB_SOURCE_DATE))" \
	  > debian/changelog
	KB_DEB_DESTDIR=$(abspath $(DIST_DIR)) dpkg-buildpackage -b --no-sign \
	  --buildinfo-file=$(abspath $(DIST_DIR))/keybroker_$(DEB_VERSION)_$(DEB_ARCH).buildinfo \
	  --changes-file=$(abspath $(DIST_DIR))/keybroker_$(DEB_VERSION)_$(DEB_ARCH).changes \
	  --buildinfo-option=-u$(abspath $(DIST_DIR)) --changes-option=-u$(abspath $(DIST_DIR))
	@ls -l $(DIST_DIR)/*_$(DEB_VERSION)_$(DEB_ARCH).deb

# rpmbuild on this tree in place (Debian's `rpm`); --nodeps: the BuildRequires name RHEL's
# packages, which a Debian host has under other names (make deps installs those).
rpm: deps
	@mkdir -p $(DIST_DIR) $(RPM_BUILD_DIR)
	rpmbuild -bb --build-in-place --nodeps keybroker.spec \
	  --define "_topdir $(abspath $(RPM_BUILD_DIR))" --define "_rpmdir $(abspath $(DIST_DIR))" \
	  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
	  --define "kb_version $(KB_VERSION)" --define "kb_release $(RPM_RELEASE)"
	@ls -l $(DIST_DIR)/*-$(KB_VERSION)-$(RPM_RELEASE).*.rpm
