#include "config.h"

#include <stdint.h>

#include "catscope/utf8.h"

size_t
utf8_char_length(const char *s, size_t length)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n;
	uint32_t cp;

	if (length == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n > length)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool
utf8_is_valid(const char *s, size_t length)
{
	size_t i = 0;

	while (i < length) {
		size_t n = utf8_char_length(s + i, length - i);

		if (n == 0)
			return false;
		i += n;
	}
	return true;
}
