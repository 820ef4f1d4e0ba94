# keypost build. `make` builds build/keypost; `make test` installs what is
# missing, builds and runs every test (also under ASan/UBSan); `make run`
# runs the loopback demo.
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

.PHONY: all test run bench deps clean fuzz man-params

all: $(BUILD)/keypost

$(BUILD)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libkeypost.a: $(OBJ_LIB)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/keypost: $(BUILD)/obj/main.o $(BUILD)/libkeypost.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

# The PARAMETERS section of keypost.cf(5), for the manual page to include
# (.so), generated from src/conf/params.def.
man-params: $(BUILD)/keypost.cf.parameters

$(BUILD)/keypost.cf.parameters: $(BUILD)/keypost
	$< conf --man > $@.tmp && mv $@.tmp $@

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
