/* The text filter of the site table: typed after /, matched as a substring of the
 * site name or its transform. */
#include "config.h"

#include <string.h>

#include <curses.h>

#include "tui_impl.h"

bool
tui_filter_match(const struct tui *t, const struct tui_row *row)
{
	if (t->filter[0] == '\0')
		return true;
	return strstr(row->name, t->filter) != NULL || strstr(row->spec, t->filter) != NULL;
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
			t->filter[n - 1] = '\0';
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
