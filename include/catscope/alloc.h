/* Allocation that either succeeds or ends the program with a message.
 *
 * Sizes that come from files must be checked against the file's real size before
 * they reach these functions: they guard against arithmetic overflow, not against
 * hostile sizes. */
#ifndef CATSCOPE_ALLOC_H
#define CATSCOPE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *alloc_bytes(size_t size);
/* Allocates count * size zeroed bytes; ends the program if the product overflows. */
void *alloc_zeroed(size_t count, size_t size);
/* Allocates count * size bytes, uninitialised; ends the program if the product overflows. */
void *alloc_array(size_t count, size_t size);
void *alloc_resize(void *ptr, size_t count, size_t size);
char *alloc_strdup(const char *s);
char *alloc_strndup(const char *s, size_t n);
/* Allocates with 64-byte alignment for BLAS buffers; free with free(). */
void *alloc_aligned(size_t count, size_t size);

/* Stores a * b in *out and returns true unless the product overflows. */
static inline bool
alloc_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

#endif
