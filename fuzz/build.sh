#!/bin/sh
# Builds the libFuzzer targets: build.sh SRCDIR OUTDIR "LIBRARY SOURCES" TARGET...
# Environment: CLANG, FUZZ_CFLAGS, CPPFLAGS, DEP_CFLAGS, DEP_LIBS (set by fuzz/local.mk).
# Each library source is compiled once into OUTDIR/obj and again only when it, or a
# header, is newer than its object.
set -eu
srcdir=$1
outdir=$2
sources=$3
shift 3

mkdir -p "$outdir/obj"
newest_header=$(ls -t "$srcdir"/include/catscope/*.h "$srcdir"/src/*/*.h | head -n 1)
objects=""
rebuilt=no
for src in $sources; do
	obj="$outdir/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')"
	if [ ! -f "$obj" ] || [ "$srcdir/$src" -nt "$obj" ] || [ "$newest_header" -nt "$obj" ]; then
		echo "  FUZZCC   $src"
		# -fsanitize=fuzzer-no-link instruments the library without a second main().
		$CLANG $CPPFLAGS $DEP_CFLAGS -std=c11 \
			$(echo "$FUZZ_CFLAGS" | sed 's/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,/') \
			-c "$srcdir/$src" -o "$obj"
		rebuilt=yes
	fi
	objects="$objects $obj"
done
for target in "$@"; do
	binary="$outdir/$target"
	if [ "$rebuilt" = no ] && [ -f "$binary" ] && [ "$binary" -nt "$srcdir/fuzz/$target.c" ] &&
		[ "$binary" -nt "$srcdir/fuzz/fuzz_common.h" ] && [ "$binary" -nt "$newest_header" ]; then
		continue
	fi
	echo "  FUZZLD   fuzz/$target"
	$CLANG $CPPFLAGS $DEP_CFLAGS -std=c11 $FUZZ_CFLAGS "$srcdir/fuzz/$target.c" $objects \
		$DEP_LIBS -o "$binary"
done
