/* The text filter of the site table: typed after /, matched as a substring of the
 * site name or its transform. The filter is stored in the locale's multibyte
 * encoding (UTF-8 in the usual case), so a typed character may take several bytes. */
#include "config.h"

#include <limits.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

#include <curses.h>

#include "tui_impl.h"

bool
tui_filter_match(const struct tui *t, const struct tui_row *row)
{
	if (t->filter[0] == '\0')
		return true;
	return strstr(row->name, t->filter) != NULL || strstr(row->spec, t->filter) != NULL;
}

/* Returns the offset of the last character of s[0..n), which may be multibyte. */
static size_t
filter_last_char(const char *s, size_t n)
{
	mbstate_t state;
	size_t offset = 0;
	size_t last = 0;

	memset(&state, 0, sizeof(state));
	while (offset < n) {
		size_t length = mbrlen(s + offset, n - offset, &state);

		/* A byte that does not decode counts as one character, so it can be erased. */
		if (length == (size_t)-1 || length == (size_t)-2 || length == 0) {
			length = 1;
			memset(&state, 0, sizeof(state));
		}
		last = offset;
		offset += length;
	}
	return last;
}

void
tui_filter_text(struct tui *t, wchar_t ch)
{
	char bytes[MB_LEN_MAX];
	mbstate_t state;
	size_t n = strlen(t->filter);
	size_t length;

	if (!iswprint((wint_t)ch))
		return;
	memset(&state, 0, sizeof(state));
	length = wcrtomb(bytes, ch, &state);
	/* A character the locale cannot encode, or one that no longer fits, is dropped
	 * whole, as a printable ASCII key is when the filter is full. */
	if (length == (size_t)-1 || n + length >= sizeof(t->filter))
		return;
	memcpy(t->filter + n, bytes, length);
	t->filter[n + length] = '\0';
	t->selected = 0;
	t->top = 0;
}

void
tui_filter_key(struct tui *t, int key)
{
	size_t n = strlen(t->filter);

	switch (key) {
	case 27: /* Esc */
		t->filter[0] = '\0';
		t->editing_filter = false;
		break;
	case '\n':
	case '\r':
	case KEY_ENTER:
		t->editing_filter = false;
		break;
	case KEY_BACKSPACE:
	case 127:
	case 8:
		if (n > 0)
			t->filter[filter_last_char(t->filter, n)] = '\0';
		break;
	default:
		if (key >= 32 && key < 127 && n + 1 < sizeof(t->filter)) {
			t->filter[n] = (char)key;
			t->filter[n + 1] = '\0';
		}
		break;
	}
	t->selected = 0;
	t->top = 0;
}
