/* Loops split across the machine's cores with POSIX threads. The module owns the
 * thread count and no state between calls: each call starts its threads and joins
 * them before it returns.
 *
 * The split of a loop depends only on its length and its number of parts, never on
 * the thread count, so a caller that adds per-part sums in part order gets the same
 * bits on any machine.
 *
 * Parts may call BLAS and LAPACK, because OpenBLAS built with USE_THREAD=1 (as
 * Debian's libopenblas0-pthread is) locks its shared state. Such calls are slow,
 * though: they contend with OpenBLAS's own threads, and CAT blocks built in parts took
 * three times as long on 2 cores. Products belong outside the parts, where OpenBLAS
 * splits them across its threads itself. */
#ifndef CATSCOPE_PARALLEL_H
#define CATSCOPE_PARALLEL_H

#include <stdint.h>

/* Upper bound on threads per call and a good part count for element-wise passes:
 * enough parts to balance 2 to 16 cores, few enough that per-part sums stay cheap. */
#define PARALLEL_THREADS_MAX 64
#define PARALLEL_PARTS 16

/* Below this many elements of work a loop runs on the caller's thread, because
 * starting threads costs tens of microseconds. */
#define PARALLEL_MIN_ELEMENTS (1 << 16)

/* Runs one part: indices [begin, end) of the loop. */
typedef void (*parallel_fn)(void *ctx, int part, int64_t begin, int64_t end);

/* Threads a call uses: CATSCOPE_THREADS when set to 1..64, else the online cores
 * (at most 64). Read once. */
int parallel_threads(void);

/* Overrides parallel_threads (0 restores it); for tests and benchmarks, called before
 * other threads use the module. */
void parallel_set_threads(int threads);

/* The part count for a loop of n indices that touches elements values in all:
 * min(PARALLEL_PARTS, n), or 1 below PARALLEL_MIN_ELEMENTS. It depends on the sizes
 * only, so per-part sums added in part order give the same bits on any machine. */
int parallel_parts(int64_t n, int64_t elements);

/* Splits [0, n) into min(parts, n) contiguous parts of nearly equal length and runs
 * fn on each, the caller's thread included. Returns when every part has run. When a
 * thread cannot be started, its parts run on the caller's thread instead. */
void parallel_for(int64_t n, int parts, parallel_fn fn, void *ctx);

#endif
