#include "common/util.h"

#include <pthread.h>
#include <stdatomic.h>

#include "pool.h"
#include "common/banned.h"

struct pool {
	int n;
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	uint64_t gen;         /* bumped for every pool_run */
	int busy;             /* workers still in the current run */
	bool quit;
	pool_fn fn;
	void *ctx;
	int ntasks;
	atomic_int next;
};

struct worker_arg {
	struct pool *p;
	int tid;
};

static void run_tasks(struct pool *p, int tid)
{
	for (;;) {
		int t = atomic_fetch_add(&p->next, 1);
		if (t >= p->ntasks)
			break;
		p->fn(p->ctx, t, tid);
	}
}

static void *worker(void *arg)
{
	struct worker_arg *wa = arg;
	struct pool *p = wa->p;
	int tid = wa->tid;
	uint64_t seen = 0;

	free(wa);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->quit && p->gen == seen)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->quit)
			break;
		seen = p->gen;
		pthread_mutex_unlock(&p->mu);
		run_tasks(p, tid);
		pthread_mutex_lock(&p->mu);
		if (--p->busy == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct pool *pool_create(int nthreads)
{
	struct pool *p = xcalloc(1, sizeof(*p));

	p->n = nthreads < 1 ? 1 : nthreads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->th = xcalloc((size_t)p->n, sizeof(*p->th));
	for (int i = 1; i < p->n; i++) {
		struct worker_arg *wa = xmalloc(sizeof(*wa));
		wa->p = p;
		wa->tid = i;
		if (pthread_create(&p->th[i], NULL, worker, wa))
			kv_die(3, "pool: cannot start a thread");
	}
	return p;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->th);
	free(p);
}

int pool_threads(const struct pool *p)
{
	return p->n;
}

void pool_run(struct pool *p, int ntasks, pool_fn fn, void *ctx)
{
	if (ntasks <= 0)
		return;
	if (p->n == 1 || ntasks == 1) {
		for (int t = 0; t < ntasks; t++)
			fn(ctx, t, 0);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->ctx = ctx;
	p->ntasks = ntasks;
	atomic_store(&p->next, 0);
	p->busy = p->n - 1;
	p->gen++;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	run_tasks(p, 0);
	pthread_mutex_lock(&p->mu);
	while (p->busy > 0)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}
