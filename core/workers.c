/* core/workers.c: worker threads with a bounded job queue and in-order completion on the loop. */
#include "workers.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "buf.h"

enum { JOB_QUEUED, JOB_RUNNING, JOB_FINISHED };

typedef struct {
  rill_workers_t *pool;
  uv_thread_t tid;
  unsigned index;
  int started;
  rill_job_t *job; /* the job it runs, under the lock: close interrupts only busy workers */
} worker_t;

struct rill_workers_s {
  rill_loop_t *loop;
  const rill_workers_ops_t *ops;
  void *arg;
  unsigned n;
  size_t cap;
  rill_handle_t h;
  uv_async_t async;
  uv_mutex_t lock;
  uv_cond_t cond;
  /* Under the lock: shared with the workers. */
  rill_job_t *qhead, *qtail; /* jobs waiting for a worker */
  int stopping;
  unsigned exited; /* workers whose thread function returned */
  unsigned idle;   /* workers waiting for a job */
  /* Loop thread only. */
  rill_job_t *ohead, *otail; /* jobs between submit and done, in submission order */
  size_t in_flight;
  uint64_t next_seq;
  int closed; /* rill_workers_close was called (or the loop closed the handle) */
  int joined;
  int failed; /* rill_workers_new failed: free without calling the owner */
  int kick;   /* jobs were queued while workers were idle: wake them from async_cb */
  worker_t w[];
};

static void worker_main(void *arg) {
  worker_t *w = arg;
  rill_workers_t *p = w->pool;
  /* Signals are the loop thread's business (libuv's signal pipe, the REPL's interrupt): a
   * worker taking one would only interrupt its own system calls. */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  uv_mutex_lock(&p->lock);
  for (;;) {
    while (!p->stopping && p->qhead == NULL) {
      p->idle++;
      uv_cond_wait(&p->cond, &p->lock);
      p->idle--;
    }
    if (p->stopping) break;
    rill_job_t *job = p->qhead;
    p->qhead = job->next;
    if (p->qhead == NULL) p->qtail = NULL;
    job->state = JOB_RUNNING;
    job->worker = w->index;
    w->job = job;
    uv_mutex_unlock(&p->lock);
    p->ops->work(p, job, w->index);
    uv_mutex_lock(&p->lock);
    job->state = JOB_FINISHED;
    w->job = NULL;
    /* Sent under the lock so that the handle cannot be closed in between (it is closed only
     * after every worker has exited, which needs the lock). uv_async_send coalesces. */
    uv_async_send(&p->async);
  }
  p->exited++;
  uv_async_send(&p->async);
  uv_mutex_unlock(&p->lock);
  /* Slabs released here (the jobs' inputs) joined this thread's pool. */
  rill_slab_pool_trim();
}

/* The async handle keeps the loop alive only while the pool has work or is shutting down. */
static void update_ref(rill_workers_t *p) {
  if (p->in_flight > 0 || p->closed)
    uv_ref((uv_handle_t *)&p->async);
  else
    uv_unref((uv_handle_t *)&p->async);
}

/* Tells the workers to stop and interrupts the busy ones. Loop thread; idempotent. */
static void stop(rill_workers_t *p) {
  uv_mutex_lock(&p->lock);
  if (!p->stopping) {
    p->stopping = 1;
    p->qhead = p->qtail = NULL; /* queued jobs stay on the order list and are cancelled */
    for (unsigned i = 0; i < p->n; i++) {
      /* Under the lock the job cannot return, so interrupt never hits a later job. */
      if (p->w[i].job != NULL && p->ops->interrupt) p->ops->interrupt(p, i);
    }
    uv_cond_broadcast(&p->cond);
  }
  uv_mutex_unlock(&p->lock);
}

static void join(rill_workers_t *p) {
  if (p->joined) return;
  stop(p);
  for (unsigned i = 0; i < p->n; i++) {
    if (p->w[i].started) uv_thread_join(&p->w[i].tid);
  }
  p->joined = 1;
}

static void on_close(rill_handle_t *h) {
  rill_workers_t *p = RILL_CONTAINER_OF(h, rill_workers_t, h);
  p->closed = 1;
  /* Normally every thread has exited already; when the loop is being freed, this waits for the
   * jobs that still run (they were interrupted). */
  join(p);
  while (p->ohead != NULL) {
    rill_job_t *job = p->ohead;
    p->ohead = job->onext;
    p->in_flight--;
    p->ops->done(p, job, UV_ECANCELED);
  }
  p->otail = NULL;
  if (!p->failed && p->ops->fini) p->ops->fini(p);
  uv_cond_destroy(&p->cond);
  uv_mutex_destroy(&p->lock);
  free(p);
}

static void async_cb(uv_async_t *a) {
  rill_handle_t *h = a->data;
  rill_workers_t *p = RILL_CONTAINER_OF(h, rill_workers_t, h);
  if (p->kick) {
    p->kick = 0;
    uv_mutex_lock(&p->lock);
    if (p->qhead != NULL) uv_cond_broadcast(&p->cond);
    uv_mutex_unlock(&p->lock);
  }
  /* One job per lock: done may submit (appends at the tail) or close the pool. */
  while (!p->closed && p->ohead != NULL) {
    rill_job_t *job = p->ohead;
    uv_mutex_lock(&p->lock);
    int finished = job->state == JOB_FINISHED;
    uv_mutex_unlock(&p->lock);
    if (!finished) break;
    p->ohead = job->onext;
    if (p->ohead == NULL) p->otail = NULL;
    p->in_flight--;
    update_ref(p);
    p->ops->done(p, job, 0);
  }
  if (p->closed && !p->joined) {
    uv_mutex_lock(&p->lock);
    int all_exited = p->exited == p->n;
    uv_mutex_unlock(&p->lock);
    if (all_exited) {
      join(p); /* the threads have returned: this does not block */
      rill_handle_close(&p->h);
    }
  }
}

unsigned rill_workers_default_count(void) {
  unsigned n = uv_available_parallelism();
  return n > 0 ? n : 1;
}

int rill_workers_new(rill_loop_t *loop, unsigned n, unsigned per_worker,
                     const rill_workers_ops_t *ops, void *arg, rill_workers_t **out) {
  if (loop == NULL || ops == NULL || ops->work == NULL || ops->done == NULL || out == NULL ||
      n < 1 || n > RILL_WORKERS_MAX || per_worker < 1 || per_worker > SIZE_MAX / n)
    return UV_EINVAL;
  rill_workers_t *p = calloc(1, sizeof *p + n * sizeof(worker_t));
  if (p == NULL) return UV_ENOMEM;
  p->loop = loop;
  p->ops = ops;
  p->arg = arg;
  p->n = n;
  p->cap = (size_t)per_worker * n;
  int r = uv_mutex_init(&p->lock);
  if (r) goto fail_mutex;
  r = uv_cond_init(&p->cond);
  if (r) goto fail_cond;
  r = uv_async_init(loop->uv, &p->async, async_cb);
  if (r) goto fail_async;
  rill_handle_track(loop, &p->h, (uv_handle_t *)&p->async, on_close);
  update_ref(p);
  for (unsigned i = 0; i < n; i++) {
    p->w[i].pool = p;
    p->w[i].index = i;
    r = uv_thread_create(&p->w[i].tid, worker_main, &p->w[i]);
    if (r) {
      /* The threads already started are stopped and joined; the pool frees itself from the
       * handle's close callback, without calling the owner's fini (the owner keeps arg). */
      p->failed = 1;
      p->closed = 1;
      join(p);
      rill_handle_close(&p->h);
      return r;
    }
    p->w[i].started = 1;
  }
  *out = p;
  return 0;

fail_async:
  uv_cond_destroy(&p->cond);
fail_cond:
  uv_mutex_destroy(&p->lock);
fail_mutex:
  free(p);
  return r;
}

int rill_workers_submit(rill_workers_t *p, rill_job_t *job) {
  if (p->closed) return UV_ECANCELED;
  if (p->in_flight >= p->cap) return UV_EBUSY;
  job->seq = p->next_seq++;
  job->state = JOB_QUEUED;
  job->worker = 0;
  job->next = job->onext = NULL;
  if (p->otail)
    p->otail->onext = job;
  else
    p->ohead = job;
  p->otail = job;
  p->in_flight++;
  update_ref(p);
  uv_mutex_lock(&p->lock);
  if (p->qtail)
    p->qtail->next = job;
  else
    p->qhead = job;
  p->qtail = job;
  /* Idle workers are woken once for the jobs that this turn of the loop queues, not once per
   * job: the async handle runs async_cb after the current callbacks, which wakes them all (a
   * busy worker takes the next job without being woken). Waking a worker per job costs a
   * futex call and two context switches per item, more than a small job itself. */
  int wake = p->idle > 0 && !p->kick;
  if (wake) p->kick = 1;
  uv_mutex_unlock(&p->lock);
  if (wake) uv_async_send(&p->async);
  return 0;
}

void rill_workers_close(rill_workers_t *p) {
  if (p->closed) return;
  p->closed = 1;
  stop(p);
  update_ref(p); /* the loop runs until the threads have exited and the pool is freed */
  /* The workers each send on exit; this covers a pool whose workers have all exited already. */
  uv_async_send(&p->async);
}

size_t rill_workers_in_flight(const rill_workers_t *p) {
  return p->in_flight;
}

size_t rill_workers_capacity(const rill_workers_t *p) {
  return p->cap;
}

unsigned rill_workers_count(const rill_workers_t *p) {
  return p->n;
}

void *rill_workers_arg(const rill_workers_t *p) {
  return p->arg;
}
