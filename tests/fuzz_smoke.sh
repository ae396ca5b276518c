# Runs every libFuzzer target that make check built (see fuzz/local.mk) for a few
# seconds on its seed corpus. Skips when clang could not link libFuzzer.
. "$srcdir/tests/lib.sh"

found=0
for target in "$builddir"/fuzz/fuzz_*; do
	[ -x "$target" ] || continue
	name=$(basename "$target")
	found=1
	# New inputs go to a scratch folder, so the seed corpus in the source tree stays as
	# committed. A crashing input is kept in fuzz/crashes/ of the build tree.
	# TMPDIR points into the scratch folder as well, because libFuzzer ends a target that
	# crashes or times out with _Exit. That skips the atexit handler that removes the
	# target's catscope-fuzz-* directory.
	mkdir -p "$scratch/$name" "$scratch/tmp" "$builddir/fuzz/crashes"
	echo "$name: 20000 runs or 15 seconds"
	if ! TMPDIR="$scratch/tmp" ASAN_OPTIONS=detect_leaks=1 "$target" -runs=20000 -max_total_time=15 \
		-rss_limit_mb=2048 -artifact_prefix="$builddir/fuzz/crashes/$name-" \
		"$scratch/$name" "$srcdir/fuzz/corpus/$name" >"$scratch/$name.log" 2>&1; then
		tail -n 40 "$scratch/$name.log"
		fail "$name found a crash; rerun it on the input named above"
	fi
	grep '^Done' "$scratch/$name.log"
done
[ "$found" -eq 1 ] || exit 77
