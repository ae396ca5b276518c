# Fuzz targets (libFuzzer, clang only) and the sanitizer build of the test suite.
#
# Adding a fuzz target takes one file and one line:
#   1. write fuzz/fuzz_NAME.c defining LLVMFuzzerTestOneInput() (see fuzz/README);
#   2. add "FUZZ_TARGETS += fuzz_NAME" below, and put a few small valid seed files in
#      fuzz/corpus/fuzz_NAME/.
# "make fuzz" then builds it, and make check runs it briefly (tests/fuzz_smoke.sh).
FUZZ_TARGETS = fuzz_gguf
FUZZ_TARGETS += fuzz_tokenizer_json
FUZZ_TARGETS += fuzz_tokenizer_encode
FUZZ_TARGETS += fuzz_safetensors
FUZZ_TARGETS += fuzz_safetensors_index
FUZZ_TARGETS += fuzz_calib_cache
FUZZ_TARGETS += fuzz_hf_config
FUZZ_TARGETS += fuzz_session
FUZZ_TARGETS += fuzz_export_config

EXTRA_DIST += fuzz/README fuzz/build.sh fuzz/lsan.supp fuzz/corpus \
	$(FUZZ_TARGETS:%=fuzz/%.c) fuzz/fuzz_common.h
CS_SCRIPT_TESTS += tests/fuzz_smoke.sh tests/valgrind_cli.sh
EXTRA_DIST += tests/fuzz_smoke.sh tests/valgrind_cli.sh

FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer

# fuzz/build.sh compiles the library sources with clang into fuzz/obj (only the
# changed ones), then links each target; automake's own rules cannot build one
# source twice with two compilers.
fuzz:
	@if test -z "$(CLANG)"; then \
	  echo "make fuzz needs clang (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; fi
	@CLANG="$(CLANG)" FUZZ_CFLAGS="$(FUZZ_CFLAGS)" \
	  CPPFLAGS="-I$(abs_top_builddir) -I$(abs_top_srcdir)/include -I$(abs_top_srcdir)/src/model -D_GNU_SOURCE" \
	  DEP_CFLAGS="$(BLAS_CFLAGS) $(LAPACKE_CFLAGS) $(ZSTD_CFLAGS) $(CURSES_CFLAGS) $(JANSSON_CFLAGS) $(PCRE2_CFLAGS) $(UTF8PROC_CFLAGS)" \
	  DEP_LIBS="$(BLAS_LIBS) $(LAPACKE_LIBS) $(ZSTD_LIBS) $(CURSES_LIBS) $(JANSSON_LIBS) $(PCRE2_LIBS) $(UTF8PROC_LIBS) -lm -lpthread" \
	  $(SHELL) $(srcdir)/fuzz/build.sh "$(abs_top_srcdir)" "$(abs_top_builddir)/fuzz" \
	  "$(libcatscope_a_SOURCES)" $(FUZZ_TARGETS)

# make check builds the fuzz targets first when clang can link libFuzzer, so that
# tests/fuzz_smoke.sh finds them; FUZZ_ENABLED=no (as check-sanitize passes) skips it.
fuzz-if-enabled:
	@if test "$(FUZZ_ENABLED)" = yes; then $(MAKE) $(AM_MAKEFLAGS) fuzz; fi

clean-fuzz:
	rm -rf fuzz/obj $(FUZZ_TARGETS:%=fuzz/%)

# A second build of the whole test suite under AddressSanitizer, LeakSanitizer and
# UndefinedBehaviorSanitizer, in build-sanitize/. It configures a clean copy of the
# sources (make distdir), because configure refuses a VPATH build from a source tree
# that is itself configured.
SANITIZE_CFLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
check-sanitize:
	rm -rf build-sanitize && mkdir -p build-sanitize
	$(MAKE) $(AM_MAKEFLAGS) distdir distdir=build-sanitize/src
	mkdir -p build-sanitize/build
	cd build-sanitize/build && \
	  { ../src/configure -q CFLAGS="$(SANITIZE_CFLAGS)" \
	    CATSCOPE_DATA="$$(cd "$(CS_DATA_FOLDER)" && pwd)"; } && \
	  $(MAKE) $(AM_MAKEFLAGS) && \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
	  LSAN_OPTIONS=suppressions=$(abs_top_srcdir)/fuzz/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) $(AM_MAKEFLAGS) check FUZZ_ENABLED=no

clean-local: clean-fuzz
	rm -rf build-sanitize

.PHONY: fuzz fuzz-if-enabled clean-fuzz check-sanitize
