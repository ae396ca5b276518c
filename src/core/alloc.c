#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/log.h"

static void
alloc_fail(size_t count, size_t size)
{
	log_fatal("out of memory: failed to allocate %zu x %zu bytes", count, size);
}

void *
alloc_bytes(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		alloc_fail(1, size);
	return p;
}

void *
alloc_zeroed(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);

	if (p == NULL)
		alloc_fail(count, size);
	return p;
}

void *
alloc_array(size_t count, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(count, size, &total))
		alloc_fail(count, size);
	return alloc_bytes(total);
}

void *
alloc_resize(void *ptr, size_t count, size_t size)
{
	size_t total;
	void *p;

	if (__builtin_mul_overflow(count, size, &total))
		alloc_fail(count, size);
	p = realloc(ptr, total ? total : 1);
	if (p == NULL)
		alloc_fail(count, size);
	return p;
}

char *
alloc_strdup(const char *s)
{
	return alloc_strndup(s, strlen(s));
}

char *
alloc_strndup(const char *s, size_t n)
{
	char *p = alloc_bytes(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void *
alloc_aligned(size_t count, size_t size)
{
	size_t total;
	void *p = NULL;

	if (__builtin_mul_overflow(count, size, &total))
		alloc_fail(count, size);
	total = (total + 63) & ~(size_t)63;
	if (posix_memalign(&p, 64, total ? total : 64) != 0)
		alloc_fail(count, size);
	return p;
}
