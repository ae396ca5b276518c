#include "config.h"

#include "catscope/jsonfile.h"
#include "catscope/mapfile.h"

json_t *
jsonfile_load(const char *path, size_t flags, struct error *err)
{
	const uint8_t *data;
	size_t size;
	json_error_t jerr;
	json_t *root;

	if (mapfile_open(path, &data, &size, err) != 0)
		return NULL;
	root = json_loadb(size ? (const char *)data : "", size, flags, &jerr);
	mapfile_close(data, size);
	if (root == NULL)
		error_set(err, "%s: invalid JSON at line %d, column %d: %s", path, jerr.line, jerr.column,
			  jerr.text);
	return root;
}
