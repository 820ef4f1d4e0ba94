# keypost build. `make` builds build/keypost; `make test` installs what is
# missing, builds and runs every test (also under ASan/UBSan); `make run`
# runs the loopback demo; `make install` installs keypost, its unit and its
# manual pages (see "install" below).
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation
CPPFLAGS += -Isrc -I/usr/include/postgresql
LIBS    := -levent_openssl -levent_core -levent_pthreads -lssl -lcrypto -lunbound -llmdb -lpq -lz -lpthread

SRC_LIB := $(filter-out src/main.c,$(wildcard src/*/*.c))
SRC     := src/main.c $(SRC_LIB)
HDR     := $(wildcard src/*/*.h src/*/*.def)

BUILD   ?= build
OBJ_LIB := $(SRC_LIB:src/%.c=$(BUILD)/obj/%.o)

.PHONY: all test run bench deps clean fuzz man-params man install uninstall

all: $(BUILD)/keypost

$(BUILD)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libkeypost.a: $(OBJ_LIB)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/keypost: $(BUILD)/obj/main.o $(BUILD)/libkeypost.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

# The PARAMETERS section of keypost.cf(5), generated from
# src/conf/params.def; the man rule below puts it into the page.
man-params: $(BUILD)/keypost.cf.parameters

$(BUILD)/keypost.cf.parameters: $(BUILD)/keypost
	$< conf --man > $@.tmp && mv $@.tmp $@

# The manual pages. keypost.cf(5) is man/keypost.cf.5.in with its marker
# line replaced by the generated PARAMETERS section: the manual can never
# document another parameter list than the one the binary accepts.
man: $(BUILD)/keypost.8 $(BUILD)/keypost.cf.5

$(BUILD)/keypost.8: man/keypost.8
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/keypost.cf.5: man/keypost.cf.5.in $(BUILD)/keypost.cf.parameters
	@grep -q '^\.\\" @PARAMETERS@$$' $< || { echo "$<: no @PARAMETERS@ marker" >&2; exit 1; }
	sed -e '/^\.\\" @PARAMETERS@$$/{r $(BUILD)/keypost.cf.parameters' -e 'd;}' $< > $@.tmp
	mv $@.tmp $@

# ---- install -----------------------------------------------------------------
# make install [PREFIX=/usr] [DESTDIR=] [SYSCONFDIR=/etc] [SENDMAIL_LINKS=yes]
# The configuration, the queue and the keypost user are never removed by
# `make uninstall`, and an existing keypost.cf is never overwritten. With
# DESTDIR set (packaging, a staging root) the user is not created and the
# queue stays root's: the commands to run on the target are printed, and
# `keypost serve` gives the queue to mail_owner when it starts.
PREFIX     ?= /usr
SYSCONFDIR ?= /etc
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/keypost
CONFDIR    ?= $(SYSCONFDIR)/keypost
SPOOLDIR   ?= /var/spool/keypost
# systemd looks in /lib/systemd/system (Debian's unit directory; /usr/lib
# on merged-/usr systems) and in /usr/local/lib/systemd/system.
UNITDIR    ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
KEYPOST_USER ?= keypost
SENDMAIL_LINKS ?= no
QUEUE_SUBDIRS := tmp active hold state
INSTALL    ?= install

$(BUILD)/keypost.service: etc/keypost.service.in
	@mkdir -p $(dir $@)
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@CONFDIR@|$(CONFDIR)|g' \
	    -e 's|@SPOOLDIR@|$(SPOOLDIR)|g' $< > $@.tmp
	mv $@.tmp $@

# Rebuilt every time: the paths come from this run's variables.
.PHONY: $(BUILD)/keypost.service

install: $(BUILD)/keypost man $(BUILD)/keypost.service
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(CONFDIR) \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -m 0755 $(BUILD)/keypost $(DESTDIR)$(SBINDIR)/keypost
	$(INSTALL) -m 0644 $(BUILD)/keypost.8 $(DESTDIR)$(MANDIR)/man8/keypost.8
	$(INSTALL) -m 0644 $(BUILD)/keypost.cf.5 $(DESTDIR)$(MANDIR)/man5/keypost.cf.5
	$(INSTALL) -m 0644 $(BUILD)/keypost.service $(DESTDIR)$(UNITDIR)/keypost.service
	$(INSTALL) -m 0644 etc/keypost.cf $(DESTDIR)$(CONFDIR)/keypost.cf.example
	$(INSTALL) -m 0755 contrib/certbot-deploy-hook $(DESTDIR)$(DOCDIR)/examples/certbot-deploy-hook
	@if [ -e $(DESTDIR)$(CONFDIR)/keypost.cf ]; then \
	    echo "install: keeping the existing $(DESTDIR)$(CONFDIR)/keypost.cf"; \
	else \
	    echo "$(INSTALL) -m 0644 etc/keypost.cf $(DESTDIR)$(CONFDIR)/keypost.cf"; \
	    $(INSTALL) -m 0644 etc/keypost.cf $(DESTDIR)$(CONFDIR)/keypost.cf; \
	fi
	@scripts/install-user.sh "$(DESTDIR)" "$(KEYPOST_USER)" "$(SPOOLDIR)" $(QUEUE_SUBDIRS)
	@if [ "$(SENDMAIL_LINKS)" = yes ]; then \
	    scripts/install-links.sh install "$(DESTDIR)" "$(SBINDIR)" "$(BINDIR)"; fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/keypost $(DESTDIR)$(MANDIR)/man8/keypost.8 \
	    $(DESTDIR)$(MANDIR)/man5/keypost.cf.5 $(DESTDIR)$(UNITDIR)/keypost.service \
	    $(DESTDIR)$(CONFDIR)/keypost.cf.example $(DESTDIR)$(DOCDIR)/examples/certbot-deploy-hook
	@rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	@scripts/install-links.sh uninstall "$(DESTDIR)" "$(SBINDIR)" "$(BINDIR)"
	@echo "uninstall: kept $(DESTDIR)$(CONFDIR) (the configuration), $(DESTDIR)$(SPOOLDIR)" \
	    "(the queue, with any mail still in it) and the user $(KEYPOST_USER); remove them by hand"

# Unit tests (cmocka): one binary per test file, linked against the library.
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libkeypost.a
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libkeypost.a $(LIBS) -lcmocka

unit: $(UNIT_BIN)

deps:
	@scripts/install-deps.sh

test: deps
	@scripts/run-tests.sh

run: deps all
	@scripts/demo.sh

bench: deps all
	@bench/run.sh

fuzz:
	@scripts/fuzz.sh

clean:
	rm -rf build build-asan build-fuzz
