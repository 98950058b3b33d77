# libloop — build, test, benchmark, install.
#
#   make              build/libloop.so (+ soname links) and build/libloop.a
#   make check        install missing Debian packages (scripts/deps), build with -Werror, run every
#                     test, then run them again under ASan+UBSan (the README's test command)
#   make valgrind     run the tests under memcheck
#   make bench        all benchmarks (bench-core, ...)
#   make demo         the main job: examples/demo
#   make install PREFIX=/usr/local
#
# Variants build into their own directory: `make BUILD=build/asan SAN=1 tests`.

VERSION_MAJOR := 0
VERSION := 0.1.0
PREFIX ?= /usr/local
BUILD ?= build
CC ?= cc

ARCH_SRC := libloop/switch_x86_64.S libloop/switch_aarch64.S
CORE_SRC := $(sort $(wildcard libloop/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o) $(ARCH_SRC:%.S=$(BUILD)/%.o)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
OPT ?= -O2 -g
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) -fPIC -fvisibility=hidden \
               -Iinclude -Ilibloop $(EXTRA_CFLAGS)
ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS_SAN := -fsanitize=address,undefined
endif
ifeq ($(UCONTEXT),1)
CFLAGS_BASE += -DLL_USE_UCONTEXT
endif
LIBS := -lev -lcares -lssl -lcrypto -lz -lpthread -ldl

# tests: every tests/<module>/*.c is one program; tests/harness/*.c is linked into each
TEST_SRC := $(sort $(wildcard tests/core/*.c tests/io/*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
HARNESS_SRC := $(sort $(wildcard tests/harness/*.c))
HARNESS_OBJ := $(HARNESS_SRC:%.c=$(BUILD)/%.o)
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)
DOC_EXAMPLE_SRC := $(sort $(wildcard docs/examples/*.c))
DOC_EXAMPLE_BIN := $(DOC_EXAMPLE_SRC:docs/examples/%.c=$(BUILD)/docs/examples/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all lib tests examples check check-plain check-asan valgrind bench bench-core demo \
        install clean deps exports clang

all: lib

lib: $(BUILD)/libloop.so $(BUILD)/libloop.a $(BUILD)/libloop.pc

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -c $< -o $@

$(BUILD)/libloop.so.$(VERSION): $(CORE_OBJ)
	$(CC) -shared -Wl,-soname,libloop.so.$(VERSION_MAJOR) -Wl,--no-undefined -o $@ $^ \
	  $(LDFLAGS_SAN) $(LIBS)

$(BUILD)/libloop.so: $(BUILD)/libloop.so.$(VERSION)
	ln -sf libloop.so.$(VERSION) $(BUILD)/libloop.so.$(VERSION_MAJOR)
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

$(BUILD)/examples/%: examples/%.c $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -rdynamic -o $@ $< $(BUILD)/libloop.a $(LDFLAGS_SAN) $(LIBS)

$(BUILD)/docs/examples/%: docs/examples/%.c $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -o $@ $< $(BUILD)/libloop.a $(LDFLAGS_SAN) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libloop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $< $(BUILD)/libloop.a $(LIBS)

tests: lib $(TEST_BIN) $(EXAMPLE_BIN) $(DOC_EXAMPLE_BIN)

examples: $(EXAMPLE_BIN) $(DOC_EXAMPLE_BIN)

exports: $(BUILD)/libloop.so
	scripts/check-exports $(BUILD)/libloop.so ll_

deps:
	scripts/deps

# The README's test command.
check: deps
	$(MAKE) check-plain
	$(MAKE) check-asan

check-plain:
	$(MAKE) tests
	$(MAKE) exports
	scripts/run-tests $(BUILD)/tests $(BUILD)/docs/examples

check-asan:
	$(MAKE) BUILD=build/asan SAN=1 OPT="-O1 -g" tests
	ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  scripts/run-tests build/asan/tests build/asan/docs/examples

valgrind: deps
	$(MAKE) BUILD=build/vg OPT="-O1 -g" tests
	LIBLOOP_VALGRIND=1 scripts/run-tests build/vg/tests build/vg/docs/examples

# gcc and clang must both build warning-free.
clang:
	$(MAKE) BUILD=build/clang CC=clang tests

bench: bench-core

bench-core: $(BUILD)/bench/bench_core
	bench/run-core $(BUILD)/bench/bench_core

demo:
	scripts/deps
	$(MAKE) $(BUILD)/examples/demo
	$(BUILD)/examples/demo

install: lib
	install -d $(DESTDIR)$(PREFIX)/include/libloop $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/libloop.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/libloop/*.h $(DESTDIR)$(PREFIX)/include/libloop/
	install -m 755 $(BUILD)/libloop.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libloop.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libloop.so.$(VERSION_MAJOR)
	ln -sf libloop.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libloop.so
	install -m 644 $(BUILD)/libloop.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(BUILD)/libloop.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
