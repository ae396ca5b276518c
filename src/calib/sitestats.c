#include "config.h"

#include "catscope/sitestats.h"

const char *
site_kind_name(enum site_kind kind)
{
	static const char *const names[SITE_KIND_COUNT] = { "attn_in", "attn_out", "ffn_in",
							     "ffn_down" };

	return (unsigned)kind < SITE_KIND_COUNT ? names[kind] : "unknown";
}
