/* Editing a one-line text field (the filter and the file-name prompts) stored in the
 * locale's multibyte encoding, UTF-8 in the usual case, so that a typed character may
 * take several bytes and Backspace removes whole characters. */
#include "config.h"

#include <limits.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

#include "tui_impl.h"

bool
tui_line_append(char *line, size_t size, wchar_t ch)
{
	char bytes[MB_LEN_MAX];
	mbstate_t state;
	size_t n = strlen(line), length;

	if (!iswprint((wint_t)ch))
		return false;
	memset(&state, 0, sizeof(state));
	length = wcrtomb(bytes, ch, &state);
	/* A character the locale cannot encode, or one that no longer fits, is dropped
	 * whole. */
	if (length == (size_t)-1 || n + length >= size)
		return false;
	memcpy(line + n, bytes, length);
	line[n + length] = '\0';
	return true;
}

void
tui_line_erase_last(char *line)
{
	size_t n = strlen(line), offset = 0, last = 0;
	mbstate_t state;

	memset(&state, 0, sizeof(state));
	while (offset < n) {
		size_t length = mbrlen(line + offset, n - offset, &state);

		/* A byte that does not decode counts as one character, so it can be erased. */
		if (length == (size_t)-1 || length == (size_t)-2 || length == 0) {
			length = 1;
			memset(&state, 0, sizeof(state));
		}
		last = offset;
		offset += length;
	}
	line[last] = '\0';
}
