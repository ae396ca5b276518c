#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catscope/mapfile.h"

int
mapfile_open(const char *path, const uint8_t **data, size_t *size, struct error *err)
{
	struct stat st;
	int fd;

	*data = NULL;
	*size = 0;
	/* O_NONBLOCK keeps a FIFO from blocking the open, and the check below rejects it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return error_set(err, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return error_set(err, "%s: not a regular file", path);
	}
	if (st.st_size > 0) {
		void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (map == MAP_FAILED) {
			int saved = errno;

			close(fd);
			return error_set(err, "%s: cannot map the file: %s", path, strerror(saved));
		}
		*data = map;
		*size = (size_t)st.st_size;
	}
	close(fd);
	return 0;
}

void
mapfile_close(const uint8_t *data, size_t size)
{
	if (data != NULL)
		munmap((void *)data, size);
}
