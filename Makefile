# libloop — build, test, benchmark, install.
#
#   make              build/libloop.so (+ soname links) and build/libloop.a
#   make check        install missing Debian packages (scripts/deps), build with -Werror, run every
#                     test, build once more with clang, then run every test again under
#                     ASan+UBSan (the README's test command)
#   make valgrind     run the tests under memcheck
#   make bench        all benchmarks (bench-core, bench-io, bench-http, bench-pg, ...)
#   make soak         every client at once through fault proxies, SOAK_SECONDS (60) long
#   make demo         the main job: examples/demo
#   make install PREFIX=/usr/local
#
# Variants build into their own directory: `make BUILD=build/asan SAN=1 tests`.

# The version lives in include/libloop/version.h. While the major version is 0 every minor release
# may break the ABI, so the soname carries MAJOR.MINOR (libloop.so.0.2); from 1.0 on, MAJOR only.
version_part = $(shell sed -n 's/^\#define LL_VERSION_$(1) \([0-9]*\)$$/\1/p' include/libloop/version.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION_MINOR := $(call version_part,MINOR)
VERSION_PATCH := $(call version_part,PATCH)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
SOVERSION := $(if $(filter 0,$(VERSION_MAJOR)),$(VERSION_MAJOR).$(VERSION_MINOR),$(VERSION_MAJOR))
PREFIX ?= /usr/local
BUILD ?= build
CC ?= cc

ARCH_SRC := libloop/switch_x86_64.S libloop/switch_aarch64.S
CORE_SRC := $(sort $(wildcard libloop/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o) $(ARCH_SRC:%.S=$(BUILD)/%.o)
# Library code probes every page of a large frame, so that it faults in a task stack's guard region
# instead of stepping over it (libloop/stack.c; docs/core.md asks the same of task code).
STACK_CLASH := -fstack-clash-protection

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
OPT ?= -O2 -g
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) -fPIC -fvisibility=hidden \
               -Iinclude -Ilibloop $(EXTRA_CFLAGS)
ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS_SAN := -fsanitize=address,undefined
endif
ifeq ($(TSAN),1)
CFLAGS_BASE += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS_SAN := -fsanitize=thread
endif
ifeq ($(UCONTEXT),1)
CFLAGS_BASE += -DLL_USE_UCONTEXT
endif
LIBS := -lev -lcares -lssl -lcrypto -lz -lpthread -ldl

# tests: every tests/<module>/*.c is one program; tests/harness/*.c is linked into each
TEST_SRC := $(sort $(wildcard tests/arch/*.c tests/core/*.c tests/io/*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
HARNESS_SRC := $(sort $(wildcard tests/harness/*.c))
HARNESS_OBJ := $(HARNESS_SRC:%.c=$(BUILD)/%.o)
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)
DOC_EXAMPLE_SRC := $(sort $(wildcard docs/examples/*.c))
DOC_EXAMPLE_BIN := $(DOC_EXAMPLE_SRC:docs/examples/%.c=$(BUILD)/docs/examples/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# ---- clients: clients/<name>/*.c -> libloop-<name>.so/.a; tests/<name>/*.c link it ----
CLIENTS := $(notdir $(patsubst %/,%,$(sort $(dir $(wildcard clients/*/*.c)))))
LIBS_pg := -lpq
CFLAGS_pg := -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
LIBS_redis := -lhiredis
LIBS_http := -luriparser -lz -lpsl
LIBS_smtp := -luriparser
# llhttp: a system library found by pkg-config where one exists, else Debian's node-llhttp sources
LLHTTP_PC := $(shell pkg-config --exists libllhttp 2>/dev/null && echo yes)
ifeq ($(LLHTTP_PC),yes)
LIBS_http += $(shell pkg-config --libs libllhttp)
CFLAGS_http := $(shell pkg-config --cflags libllhttp)
LLHTTP_OBJ :=
else
CFLAGS_http := -I/usr/share/include/llhttp
LLHTTP_OBJ := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
endif
EXTRA_OBJ_http := $(LLHTTP_OBJ)

$(BUILD)/llhttp/%.o: /usr/share/llhttp/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g -fPIC -fvisibility=hidden $(CFLAGS_http) $(filter -fsanitize%,$(CFLAGS_BASE)) -c $< -o $@

define CLIENT_template
$(1)_OBJ := $$(patsubst %.c,$$(BUILD)/%.o,$$(sort $$(wildcard clients/$(1)/*.c)))
$$($(1)_OBJ): CFLAGS_BASE += -Iclients/$(1) $$(CFLAGS_$(1)) $$(STACK_CLASH)
$$(BUILD)/libloop-$(1).so.$$(VERSION): $$($(1)_OBJ) $$(EXTRA_OBJ_$(1)) $$(BUILD)/libloop.so
	$$(CC) -shared -Wl,-soname,libloop-$(1).so.$$(SOVERSION) -Wl,--no-undefined -o $$@ \
	  $$($(1)_OBJ) $$(EXTRA_OBJ_$(1)) -L$$(BUILD) -lloop $$(LDFLAGS_SAN) $$(LIBS_$(1)) $$(LIBS)
$$(BUILD)/libloop-$(1).so: $$(BUILD)/libloop-$(1).so.$$(VERSION)
	ln -sf libloop-$(1).so.$$(VERSION) $$(BUILD)/libloop-$(1).so.$$(SOVERSION)
	ln -sf libloop-$(1).so.$$(VERSION) $$@
$$(BUILD)/libloop-$(1).a: $$($(1)_OBJ) $$(EXTRA_OBJ_$(1))
	rm -f $$@
	ar rcs $$@ $$^
$$(BUILD)/libloop-$(1).pc: scripts/libloop-$(1).pc.in
	sed -e 's|@PREFIX@|$$(PREFIX)|' -e 's|@VERSION@|$$(VERSION)|' $$< > $$@
$$(BUILD)/tests/$(1)/%: tests/$(1)/%.c $$(HARNESS_OBJ) $$(BUILD)/libloop-$(1).a $$(BUILD)/libloop.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_BASE) -Itests -Iclients/$(1) $$(CFLAGS_$(1)) -rdynamic -o $$@ $$< $$(HARNESS_OBJ) \
	  $$(BUILD)/libloop-$(1).a $$(BUILD)/libloop.a $$(LDFLAGS_SAN) $$(LIBS_$(1)) $$(LIBS) -lcmocka
CLIENT_LIBS += $$(BUILD)/libloop-$(1).so $$(BUILD)/libloop-$(1).a $$(BUILD)/libloop-$(1).pc
TEST_BIN += $$(patsubst tests/%.c,$$(BUILD)/tests/%,$$(sort $$(wildcard tests/$(1)/*.c)))
endef
$(foreach c,$(CLIENTS),$(eval $(call CLIENT_template,$(c))))

# ---- fuzzing (tests/fuzz, docs/reliability.md) ----
# tests/fuzz/fuzz_<client>_<what>.c is one target against libloop-<client>. Every build makes
# $(BUILD)/tests/fuzz/replay_<client>_<what>, which runs the target once over each file of
# tests/fuzz/corpus/<client>_<what>/ (make check runs it like any test). make fuzz builds the
# targets with libFuzzer (clang, ASan+UBSan) and runs each for FUZZ_SECONDS, one at a time.
FUZZ_SRC := $(sort $(wildcard $(foreach c,$(CLIENTS),tests/fuzz/fuzz_$(c)_*.c)))
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_SECONDS ?= 60
define FUZZ_template
$$(BUILD)/tests/fuzz/replay_$(1)_%: tests/fuzz/fuzz_$(1)_%.c tests/fuzz/replay.c tests/fuzz/fuzz.h \
  $$(BUILD)/libloop-$(1).a $$(BUILD)/libloop.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_BASE) -Itests/fuzz -Iclients/$(1) $$(CFLAGS_$(1)) -rdynamic \
	  -DFUZZ_CORPUS='"$$(CURDIR)/tests/fuzz/corpus/$(1)_$$*"' -o $$@ $$< tests/fuzz/replay.c \
	  $$(BUILD)/libloop-$(1).a $$(BUILD)/libloop.a $$(LDFLAGS_SAN) $$(LIBS_$(1)) $$(LIBS)
$$(BUILD)/fuzz/fuzz_$(1)_%: tests/fuzz/fuzz_$(1)_%.c tests/fuzz/fuzz.h $$(BUILD)/libloop-$(1).a \
  $$(BUILD)/libloop.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_BASE) -fsanitize=fuzzer -Itests/fuzz -Iclients/$(1) $$(CFLAGS_$(1)) -rdynamic -o $$@ $$< \
	  $$(BUILD)/libloop-$(1).a $$(BUILD)/libloop.a -fsanitize=fuzzer $$(LDFLAGS_SAN) $$(LIBS_$(1)) $$(LIBS)
endef
$(foreach c,$(CLIENTS),$(eval $(call FUZZ_template,$(c))))
TEST_BIN += $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/replay_%)
FUZZ_BUILD := build/fuzz
fuzz:
	scripts/deps
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang SAN=1 OPT="-O1 -g" EXTRA_CFLAGS=-fsanitize=fuzzer-no-link \
	  $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz/fuzz_%)
	scripts/fuzz-run $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_NAMES)

# ---- ThreadSanitizer (docs/reliability.md) ----
# The thread-facing parts built with clang -fsanitize=thread: the executor, thread-safe posts and
# ll_loop_free with posts in flight, a loop per thread, shutdown with jobs running, and the tests
# whose peers are threads (the fake DNS server, the fault proxy, process reaping).
TSAN_TESTS := tests/core/test_executor tests/core/test_loop tests/core/test_loop_free tests/core/test_loops \
              tests/core/test_shutdown tests/io/test_dns tests/io/test_faultproxy tests/io/test_process
check-tsan:
	scripts/deps
	$(MAKE) BUILD=build/tsan CC=clang TSAN=1 OPT="-O1 -g" $(TSAN_TESTS:%=build/tsan/%)
	@fail=""; for t in $(TSAN_TESTS); do echo "=== build/tsan/$$t"; \
	  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 timeout 600 build/tsan/$$t || fail="$$fail $$t"; \
	done; if [ -n "$$fail" ]; then echo "check-tsan: failed:$$fail"; exit 1; fi; echo "check-tsan: clean"

# examples link every client library that exists
EXAMPLE_LIBS := $(foreach c,$(CLIENTS),$(BUILD)/libloop-$(c).a) $(BUILD)/libloop.a
EXAMPLE_LDLIBS := $(foreach c,$(CLIENTS),$(LIBS_$(c)))


.PHONY: check-aarch64
.PHONY: check-headers check-docs check-install servers docs
.PHONY: fuzz check-tsan bench-smtp bench-loops check-cluster
.PHONY: all lib tests examples check check-plain check-asan valgrind bench bench-core bench-io bench-http bench-pg bench-redis demo \
        install clean deps exports clang

all: lib

$(CORE_OBJ): CFLAGS_BASE += $(STACK_CLASH)

lib: $(BUILD)/libloop.so $(BUILD)/libloop.a $(BUILD)/libloop.pc $(CLIENT_LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -c $< -o $@

$(BUILD)/libloop.so.$(VERSION): $(CORE_OBJ)
	$(CC) -shared -Wl,-soname,libloop.so.$(SOVERSION) -Wl,--no-undefined -o $@ $^ \
	  $(LDFLAGS_SAN) $(LIBS)

$(BUILD)/libloop.so: $(BUILD)/libloop.so.$(VERSION)
	ln -sf libloop.so.$(VERSION) $(BUILD)/libloop.so.$(SOVERSION)
	ln -sf libloop.so.$(VERSION) $@

$(BUILD)/libloop.a: $(CORE_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/libloop.pc: scripts/libloop.pc.in
	@mkdir -p $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# Tests and examples link the static library: one binary, no LD_LIBRARY_PATH; the exported symbol
# list of the shared library is checked separately (make exports).
$(BUILD)/tests/%: tests/%.c $(HARNESS_OBJ) $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -Itests -rdynamic -o $@ $< $(HARNESS_OBJ) $(BUILD)/libloop.a \
	  $(LDFLAGS_SAN) $(LIBS) -lcmocka

$(BUILD)/examples/%: examples/%.c $(EXAMPLE_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -rdynamic -o $@ $< $(EXAMPLE_LIBS) $(LDFLAGS_SAN) $(EXAMPLE_LDLIBS) $(LIBS)

# The demo starts throwaway servers with the test suite's harness (libc-only files).
# Every harness file but harness.c (the cmocka helpers) is libc-only and starts a server.
DEMO_HARNESS := $(patsubst %.c,$(BUILD)/%.o,$(filter-out tests/harness/harness.c,$(HARNESS_SRC)))
# Client sections of the demo live in examples/demo/<client>.c (declared in sections.h).
DEMO_PARTS := $(sort $(wildcard examples/demo/*.c))
$(BUILD)/examples/demo: examples/demo.c $(DEMO_PARTS) $(EXAMPLE_LIBS) $(DEMO_HARNESS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -Itests -Iexamples -rdynamic -o $@ $< $(DEMO_PARTS) $(DEMO_HARNESS) \
	  $(EXAMPLE_LIBS) $(LDFLAGS_SAN) $(EXAMPLE_LDLIBS) $(LIBS)

# Doc examples run against real servers: with-servers starts PostgreSQL and nginx for them.
WITH_SERVERS := $(BUILD)/tools/with-servers
$(WITH_SERVERS): tests/tools/with_servers.c $(DEMO_HARNESS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -Itests -o $@ $< $(DEMO_HARNESS) $(LDFLAGS_SAN)

# ---- soak (tests/soak, docs/reliability.md) ----
# Every client at once against the throwaway servers, each behind a fault proxy, for SOAK_SECONDS;
# checks at the end, a summary, sparklines, and $(BUILD)/soak/soak.svg (gnuplot). Built outside
# $(BUILD)/tests so that make check does not run the long version.
SOAK_SECONDS ?= 60
SOAK_SRC := $(sort $(wildcard tests/soak/*.c))
$(BUILD)/soak/soak: $(SOAK_SRC) tests/soak/soak.h $(EXAMPLE_LIBS) $(HARNESS_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -Itests -rdynamic -o $@ $(SOAK_SRC) $(HARNESS_OBJ) \
	  $(EXAMPLE_LIBS) $(LDFLAGS_SAN) $(EXAMPLE_LDLIBS) $(LIBS) -lcmocka
soak:
	scripts/deps soak
	$(MAKE) $(BUILD)/soak/soak
	$(BUILD)/soak/soak $(SOAK_SECONDS) $(BUILD)/soak; rc=$$?; \
	  tests/soak/soak-chart $(BUILD)/soak/soak.tsv $(BUILD)/soak/soak.svg; exit $$rc
# make check's short run: 20 s, every check but the RSS and descriptor trends (judged from 120 s on)
soak-smoke: $(BUILD)/soak/soak
	$(BUILD)/soak/soak 20 $(BUILD)/soak
.PHONY: soak soak-smoke

$(BUILD)/docs/examples/%: docs/examples/%.c $(EXAMPLE_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -o $@ $< $(EXAMPLE_LIBS) $(LDFLAGS_SAN) $(EXAMPLE_LDLIBS) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(BUILD)/libloop.a $(LIBS)

tests: lib $(TEST_BIN) $(EXAMPLE_BIN) $(DOC_EXAMPLE_BIN) $(WITH_SERVERS)

examples: $(EXAMPLE_BIN) $(DOC_EXAMPLE_BIN)

exports: lib
	scripts/check-exports $(BUILD)/libloop.so ll_
	for c in $(CLIENTS); do scripts/check-exports $(BUILD)/libloop-$$c.so ll_$$c || exit 1; done
	@# every function a public header declares is defined by one of the libraries
	@for l in $(BUILD)/libloop*.so; do nm -D --defined-only $$l; done | awk '{print $$3}' | sort -u \
	  > $(BUILD)/exported.txt
	@missing=$$(scripts/gen-functions --names | sort -u | comm -23 - $(BUILD)/exported.txt); \
	if [ -n "$$missing" ]; then echo "declared in a header, defined by no library:" $$missing; exit 1; fi
	@echo "exports: every function the headers declare is defined by a library"

deps:
	scripts/deps

# The README's test command.
check: deps
	$(MAKE) check-plain
	$(MAKE) clang
	$(MAKE) check-asan

check-plain:
	$(MAKE) tests
	$(MAKE) exports
	$(WITH_SERVERS) scripts/run-tests $(BUILD)/tests $(BUILD)/docs/examples
	$(MAKE) soak-smoke
	$(MAKE) check-headers check-docs check-install

# The user's side of the API (issue 9): every public header alone as C99/C11/C++17 (-pedantic),
# a C++ program against the shared libraries, the docs in step with the headers, and programs
# built with pkg-config only against `make install PREFIX=<tmp>`.
CXX ?= c++
$(BUILD)/cxx/cxx_smoke: tests/cxx/cxx_smoke.cpp $(BUILD)/libloop.so $(foreach c,$(CLIENTS),$(BUILD)/libloop-$(c).so)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -Wall -Wextra -pedantic -Werror -Iinclude $(filter -fsanitize%,$(CFLAGS_BASE)) \
	  -o $@ $< -L$(BUILD) $(foreach c,$(CLIENTS),-lloop-$(c)) -lloop $(LDFLAGS_SAN) \
	  -Wl,-rpath,$(abspath $(BUILD))
check-headers: $(BUILD)/cxx/cxx_smoke $(WITH_SERVERS)
	CC=$(CC) CXX=$(CXX) scripts/check-headers
	$(WITH_SERVERS) --quiet --only pg,http,redis $(BUILD)/cxx/cxx_smoke
check-docs:
	scripts/gen-functions --check
	scripts/check-readme
check-install: lib $(WITH_SERVERS)
	CC=$(CC) CXX=$(CXX) MAKE=$(MAKE) scripts/check-install $(BUILD) $(WITH_SERVERS)

# Throwaway PostgreSQL, nginx, ... on free loopback ports until Ctrl-C (docs: README "Try it").
servers: $(WITH_SERVERS)
	$(WITH_SERVERS)

check-asan:
	$(MAKE) BUILD=build/asan SAN=1 OPT="-O1 -g" tests
	ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  build/asan/tools/with-servers scripts/run-tests build/asan/tests build/asan/docs/examples

valgrind: deps
	$(MAKE) BUILD=build/vg OPT="-O1 -g" tests
	LIBLOOP_VALGRIND=1 build/vg/tools/with-servers scripts/run-tests build/vg/tests build/vg/docs/examples

# The aarch64 context switch, cross-compiled and run under qemu (scripts/deps aarch64 installs
# the cross compiler and qemu-user); the same self-test runs natively in every make check.
check-aarch64:
	scripts/deps aarch64
	@mkdir -p $(BUILD)/aarch64
	aarch64-linux-gnu-gcc -std=c11 -D_GNU_SOURCE $(WARN) -O2 -static -Ilibloop \
	  -o $(BUILD)/aarch64/switch_selftest tests/arch/switch_selftest.c libloop/switch.c \
	  libloop/switch_aarch64.S
	qemu-aarch64 $(BUILD)/aarch64/switch_selftest

# gcc and clang must both build warning-free.
clang:
	$(MAKE) BUILD=build/clang CC=clang tests

bench: bench-core bench-io bench-http bench-pg bench-redis bench-smtp

# BASELINE=path/to/an/older/bench_core runs it in the same rounds, for before/after figures
bench-core: $(BUILD)/bench/bench_core
	scripts/deps bench
	bench/run-core $(BUILD)/bench/bench_core $(BASELINE)

# I/O: loopback echo, libloop next to libuv, asyncio streams (and uvloop) and a plain blocking C client
bench-io: $(BUILD)/bench/bench_io $(BUILD)/bench/bench_io_blocking $(BUILD)/bench/bench_io_libuv
	scripts/deps bench
	bench/run-io $(BUILD)/bench/bench_io $(BUILD)/bench/bench_io_blocking $(BUILD)/bench/bench_io_libuv

# the same echo pair on libuv, the C anchor (scripts/deps bench installs libuv1-dev)
$(BUILD)/bench/bench_io_libuv: bench/bench_io_libuv.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< -luv

# HTTP: libloop next to wrk, a libcurl multi program and aiohttp (scripts/deps bench installs them)
$(BUILD)/bench/bench_http: bench/bench_http.c $(BUILD)/libloop-http.a $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(BUILD)/libloop-http.a $(BUILD)/libloop.a $(LIBS_http) $(LIBS)
$(BUILD)/bench/bench_http_curl: bench/bench_http_curl.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< -lcurl
bench-http:
	scripts/deps bench
	$(MAKE) $(BUILD)/bench/bench_http $(BUILD)/bench/bench_http_curl
	bench/run-http $(BUILD)/bench/bench_http $(BUILD)/bench/bench_http_curl

# PostgreSQL: libloop next to pgbench, asyncpg (asyncio and uvloop) and psql, on a throwaway server
$(BUILD)/bench/bench_pg: bench/bench_pg.c $(BUILD)/libloop-pg.a $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(BUILD)/libloop-pg.a $(BUILD)/libloop.a $(LIBS_pg) $(LIBS)
bench-pg:
	scripts/deps bench
	$(MAKE) $(BUILD)/bench/bench_pg
	bench/run-pg $(BUILD)/bench/bench_pg

# Redis: libloop next to redis-benchmark (-P 1 and -P 16) and redis-py (asyncio, uvloop)
$(BUILD)/bench/bench_redis: bench/bench_redis.c $(BUILD)/libloop-redis.a $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(BUILD)/libloop-redis.a $(BUILD)/libloop.a $(LIBS_redis) $(LIBS)
bench-redis:
	scripts/deps bench
	$(MAKE) $(BUILD)/bench/bench_redis
	bench/run-redis $(BUILD)/bench/bench_redis

# Redis Cluster (6 nodes) and Sentinel topologies alone (make check runs them with tests/redis)
check-cluster: $(BUILD)/tests/redis/test_redis_cluster $(BUILD)/tests/redis/test_redis_sentinel
	$(BUILD)/tests/redis/test_redis_cluster && $(BUILD)/tests/redis/test_redis_sentinel

# One loop per core: 1 loop against 2 loops (ll_loop_group), a client-bound mix and Redis SET/GET
$(BUILD)/bench/bench_loops: bench/bench_loops.c $(BUILD)/libloop-redis.a $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(BUILD)/libloop-redis.a $(BUILD)/libloop.a $(LIBS_redis) $(LIBS)
bench-loops:
	scripts/deps bench
	$(MAKE) $(BUILD)/bench/bench_loops
	bench/run-loops $(BUILD)/bench/bench_loops

# SMTP: libloop next to Postfix's smtp-source and aiosmtplib (asyncio, uvloop), against smtp-sink
$(BUILD)/bench/bench_smtp: bench/bench_smtp.c $(BUILD)/libloop-smtp.a $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(BUILD)/libloop-smtp.a $(BUILD)/libloop.a $(LIBS_smtp) $(LIBS)
bench-smtp:
	scripts/deps bench
	$(MAKE) $(BUILD)/bench/bench_smtp
	bench/run-smtp $(BUILD)/bench/bench_smtp

demo:
	scripts/deps
	$(MAKE) $(BUILD)/examples/demo
	$(BUILD)/examples/demo

install: lib
	install -d $(DESTDIR)$(PREFIX)/include/libloop $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/libloop.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/libloop/*.h $(DESTDIR)$(PREFIX)/include/libloop/
	install -m 755 $(BUILD)/libloop.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libloop.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libloop.so.$(SOVERSION)
	ln -sf libloop.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libloop.so
	install -m 644 $(BUILD)/libloop.a $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' scripts/libloop.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libloop.pc
	for c in $(CLIENTS); do \
	  install -m 755 $(BUILD)/libloop-$$c.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/ && \
	  ln -sf libloop-$$c.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libloop-$$c.so.$(SOVERSION) && \
	  ln -sf libloop-$$c.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libloop-$$c.so && \
	  install -m 644 $(BUILD)/libloop-$$c.a $(DESTDIR)$(PREFIX)/lib/ && \
	  sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' scripts/libloop-$$c.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libloop-$$c.pc || exit 1; done

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
