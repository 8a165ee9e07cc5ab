/*
 * pool.h: a fixed set of worker threads that run one parallel loop at a time.
 *
 *   struct pool *p = pool_create(nthreads);   // nthreads >= 1, includes caller
 *   pool_run(p, ntasks, fn, ctx);             // fn(ctx, task, tid) for every task
 *   pool_free(p);
 *
 * pool_run returns when every task is done. The caller's thread works too
 * (tid 0); tid < pool_threads(p) so callers can index per-thread scratch.
 * Tasks are handed out in any order: a task's result must not depend on
 * which thread ran it (the model relies on that for determinism).
 * One pool_run at a time per pool (the engine thread owns the pool).
 */
#ifndef KVS_POOL_H
#define KVS_POOL_H

#include "common/compat.h"

struct pool;
typedef void (*pool_fn)(void *ctx, int task, int tid);

struct pool *pool_create(int nthreads);
void pool_free(struct pool *p);
int pool_threads(const struct pool *p);
void pool_run(struct pool *p, int ntasks, pool_fn fn, void *ctx);

#endif
