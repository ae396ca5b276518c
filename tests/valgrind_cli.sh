# Runs generate, eval and a damaged GGUF under valgrind's memcheck: no invalid read or
# write, no use of uninitialised memory and no definite leak may be reported.
# Skips when valgrind is not installed.
. "$srcdir/tests/lib.sh"

command -v valgrind >/dev/null 2>&1 || exit 77
# An AddressSanitizer build (make check-sanitize) cannot run under valgrind, and ASan
# already checks the same accesses there.
if grep -q __asan_init "$CATSCOPE"; then
	echo "skipped: $CATSCOPE is built with AddressSanitizer"
	exit 77
fi
require_data

# One BLAS thread keeps the run short under valgrind; OpenBLAS' thread pool leaks
# nothing definite either way.
export OPENBLAS_NUM_THREADS=1

# Status 3 is valgrind reporting an error; catscope itself exits with 0 or 1.
check_memory() {
	expected=$1
	shift
	valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
		--log-file="$scratch/valgrind.log" "$CATSCOPE" "$@" >"$scratch/out" 2>&1
	status=$?
	if [ -s "$scratch/valgrind.log" ] || [ "$status" -ne "$expected" ]; then
		cat "$scratch/valgrind.log" "$scratch/out"
		fail "catscope $* exited with $status under valgrind (expected $expected)"
	fi
	echo "clean: catscope $*"
}

head -c 8192 "$DATA/tinystories_train_sample.txt" >"$scratch/small.txt"
head -c 3000 "$MODEL" >"$scratch/truncated.gguf"

check_memory 0 generate "$MODEL" -n 20
check_memory 0 eval "$MODEL" "$scratch/small.txt" --ctx 64
check_memory 1 eval "$scratch/truncated.gguf" "$scratch/small.txt" --ctx 64
check_memory 1 generate "$scratch/truncated.gguf" -n 5
