/* core/workers.h: a pool of worker threads whose jobs complete on the loop thread in order. */
#ifndef RILL_WORKERS_H
#define RILL_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"

/* How it works
 * ------------
 * The owner embeds a rill_job_t in each job of its own and submits it on the loop thread. Any
 * free worker takes the oldest queued job and runs ops->work on it in its thread. Finished jobs
 * are handed back to the loop thread through one uv_async handle, and ops->done runs for each in
 * submission order: a job that finishes early waits for the ones submitted before it.
 *
 * Jobs queued while workers sleep start when the loop turns: the pool wakes its idle workers
 * once for all the jobs that the current callbacks queue, rather than once per job (a wake-up
 * per job costs more than a small job).
 *
 * Backpressure: the pool holds at most per_worker * n jobs between submit and done (queued,
 * running, or finished and waiting for an earlier one); submit says UV_EBUSY beyond that, so an
 * owner that waits for done before submitting more keeps memory bounded.
 *
 * Shutdown: rill_workers_close stops taking jobs, drops the queued ones, asks the busy workers
 * to return early (ops->interrupt), and lets the threads exit. Jobs that were running are
 * discarded when they return. Once every thread has exited the pool joins them (never blocking
 * the loop for a job that still runs), calls done with UV_ECANCELED for every job it still
 * holds, then ops->fini, and frees itself. If the loop is freed first (rill_loop_free), the same
 * happens from the handle's close callback, which then waits for running jobs to return. */

typedef struct rill_workers_s rill_workers_t;

/* One job, embedded in the owner's struct (reach it with RILL_CONTAINER_OF). The fields are the
 * pool's; the owner must not touch them while the job is in the pool. */
typedef struct rill_job_s {
  struct rill_job_s *next;  /* queue of jobs waiting for a worker (under the pool's lock) */
  struct rill_job_s *onext; /* every job in submission order (loop thread only) */
  uint64_t seq;             /* submission number, from 0 */
  int state;                /* internal: queued, running, finished */
  unsigned worker;          /* the worker that ran it (valid in work and done) */
} rill_job_t;

typedef struct rill_workers_ops_s {
  /* Runs in worker thread `worker` (0 <= worker < n). Jobs run one at a time per worker, so
   * per-worker data indexed by worker needs no lock. Required. */
  void (*work)(rill_workers_t *p, rill_job_t *job, unsigned worker);
  /* Runs on the loop thread in submission order, once per submitted job, which the pool no
   * longer uses afterwards. status 0: the job ran. UV_ECANCELED: the pool was closed before the
   * job was delivered (it may or may not have run); the owner may be gone, so done must then
   * only free the job, and must not call into an interpreter (this may run while the loop is
   * being freed). done may submit more jobs or close the pool. Required. */
  void (*done)(rill_workers_t *p, rill_job_t *job, int status);
  /* Optional. Runs on the loop thread from rill_workers_close for each worker that is running
   * a job, while that job cannot return: ask it to give up early (set a flag it polls, or
   * lua_sethook). The worker's later jobs are never run. */
  void (*interrupt)(rill_workers_t *p, unsigned worker);
  /* Optional. Runs on the loop thread once, after every thread was joined and every job handed
   * back, just before the pool is freed: release what the owner gave as arg. */
  void (*fini)(rill_workers_t *p);
} rill_workers_ops_t;

/* Starts n worker threads (1..RILL_WORKERS_MAX) on loop, with room for per_worker (>= 1) jobs
 * each; ops is borrowed (it must outlive the pool), arg is the owner's (see ops->fini). *out
 * gets the pool, which frees itself after rill_workers_close. 0, UV_EINVAL (bad arguments,
 * nothing done), UV_ENOMEM, or the error of thread creation (nothing is left running). */
#define RILL_WORKERS_MAX 1024
int rill_workers_new(rill_loop_t *loop, unsigned n, unsigned per_worker,
                     const rill_workers_ops_t *ops, void *arg, rill_workers_t **out);

/* Queues job (borrowed until its done call) and gives it the next sequence number. 0;
 * UV_EBUSY when the pool already holds its capacity of jobs (nothing done); UV_ECANCELED after
 * rill_workers_close (nothing done). */
int rill_workers_submit(rill_workers_t *p, rill_job_t *job);

/* Stops the pool (idempotent). No done call with status 0 happens after it returns; the pool is
 * freed later, from the loop, as described above. */
void rill_workers_close(rill_workers_t *p);

/* Jobs submitted and not yet handed to done; the pool's capacity (per_worker * n). */
size_t rill_workers_in_flight(const rill_workers_t *p);
size_t rill_workers_capacity(const rill_workers_t *p);
/* Number of worker threads; the owner's arg given to rill_workers_new. */
unsigned rill_workers_count(const rill_workers_t *p);
void *rill_workers_arg(const rill_workers_t *p);

/* One worker per core: what n = 0 means to callers (at least 1). */
unsigned rill_workers_default_count(void);

#endif
