/* The text filter of the site table: typed after /, matched as a substring of the
 * site name or its transform, edited as line_edit.c describes. */
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
tui_filter_text(struct tui *t, wchar_t ch)
{
	if (!tui_line_append(t->filter, sizeof(t->filter), ch))
		return;
	t->selected = 0;
	t->top = 0;
}

void
tui_filter_key(struct tui *t, int key)
{
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
		tui_line_erase_last(t->filter);
		break;
	default:
		if (key >= 32 && key < 127)
			tui_line_append(t->filter, sizeof(t->filter), (wchar_t)key);
		break;
	}
	t->selected = 0;
	t->top = 0;
}
