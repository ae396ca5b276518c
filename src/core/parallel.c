/* parallel_for on POSIX threads. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "catscope/parallel.h"

static pthread_once_t parallel_once = PTHREAD_ONCE_INIT;
static int parallel_default_threads = 1;
static int parallel_override;

static void
parallel_read_threads(void)
{
	const char *text = getenv("CATSCOPE_THREADS");
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	char *end;

	if (text != NULL && *text != '\0') {
		long n = strtol(text, &end, 10);

		if (*end == '\0' && n >= 1 && n <= PARALLEL_THREADS_MAX) {
			parallel_default_threads = (int)n;
			return;
		}
	}
	if (cores < 1)
		cores = 1;
	parallel_default_threads = cores > PARALLEL_THREADS_MAX ? PARALLEL_THREADS_MAX : (int)cores;
}

int
parallel_threads(void)
{
	pthread_once(&parallel_once, parallel_read_threads);
	return parallel_override > 0 ? parallel_override : parallel_default_threads;
}

void
parallel_set_threads(int threads)
{
	parallel_override = threads > PARALLEL_THREADS_MAX ? PARALLEL_THREADS_MAX : threads;
}

int
parallel_parts(int64_t n, int64_t elements)
{
	if (elements < PARALLEL_MIN_ELEMENTS || n < 2)
		return 1;
	return n < PARALLEL_PARTS ? (int)n : PARALLEL_PARTS;
}

struct parallel_job {
	parallel_fn fn;
	void *ctx;
	int64_t n;
	int parts;
	int stride;            /* thread t runs parts t, t + stride, ... */
};

struct parallel_worker {
	const struct parallel_job *job;
	int first;
	pthread_t thread;
};

static void
parallel_run_parts(const struct parallel_job *job, int first)
{
	for (int p = first; p < job->parts; p += job->stride) {
		int64_t begin = job->n * p / job->parts, end = job->n * (p + 1) / job->parts;

		job->fn(job->ctx, p, begin, end);
	}
}

static void *
parallel_worker_main(void *arg)
{
	struct parallel_worker *w = arg;

	parallel_run_parts(w->job, w->first);
	return NULL;
}

void
parallel_for(int64_t n, int parts, parallel_fn fn, void *ctx)
{
	struct parallel_worker workers[PARALLEL_THREADS_MAX];
	struct parallel_job job = { .fn = fn, .ctx = ctx, .n = n };
	int threads = parallel_threads(), started = 0;

	if (n <= 0)
		return;
	job.parts = parts < 1 ? 1 : parts;
	if (job.parts > n)
		job.parts = (int)n;
	job.stride = threads < job.parts ? threads : job.parts;
	for (int t = 1; t < job.stride; t++) {
		workers[t].job = &job;
		workers[t].first = t;
		if (pthread_create(&workers[t].thread, NULL, parallel_worker_main, &workers[t]) != 0)
			break;
		started = t;
	}
	/* Parts of threads that did not start run here, so every part runs once. */
	for (int t = 0; t < job.stride; t++)
		if (t == 0 || t > started)
			parallel_run_parts(&job, t);
	for (int t = 1; t <= started; t++)
		pthread_join(workers[t].thread, NULL);
}
