/* spec/c/test_workers.c: worker pool: input order under random durations, backpressure, shutdown
 * with jobs pending or running, teardown by the loop, views crossing threads, misuse. */
#include <stdatomic.h>
#include <time.h>

#include "buf.h"
#include "loop.h"
#include "test.h"
#include "workers.h"

typedef struct {
  rill_job_t job;
  unsigned input;
  unsigned delay_us;
  unsigned output;
  int finish_rank; /* order in which the workers finished it */
  rill_view_t in, out;
} tjob_t;

typedef struct {
  rill_loop_t loop;
  rill_workers_t *p;
  unsigned n, total, submitted, delivered, cancelled;
  int fini_calls;
  unsigned close_after; /* close from done after this many deliveries (0: never) */
  int with_views;
  size_t max_in_flight;
  atomic_int running, max_running, ran, finished;
  atomic_int per_worker[8];
  atomic_int gate; /* work waits while 0 (for tests that need jobs to stay busy) */
  atomic_int interrupts;
  int use_gate;
  unsigned rng;
} tctx_t;

static void sleep_us(unsigned us) {
  struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static unsigned next_rand(tctx_t *c) {
  c->rng = c->rng * 1103515245u + 12345u;
  return (c->rng >> 16) & 0x7fff;
}

static void t_work(rill_workers_t *p, rill_job_t *job, unsigned worker) {
  tctx_t *c = rill_workers_arg(p);
  tjob_t *j = RILL_CONTAINER_OF(job, tjob_t, job);
  int now = atomic_fetch_add(&c->running, 1) + 1;
  int max = atomic_load(&c->max_running);
  while (now > max && !atomic_compare_exchange_weak(&c->max_running, &max, now)) {
  }
  atomic_fetch_add(&c->ran, 1);
  if (worker < 8) atomic_fetch_add(&c->per_worker[worker], 1);
  if (c->use_gate) {
    while (!atomic_load(&c->gate)) sleep_us(100);
  }
  if (j->delay_us) sleep_us(j->delay_us);
  j->output = j->input * 2 + 1;
  if (c->with_views) {
    /* Read the input in this thread, make the output here, drop the input here. */
    CHECK_INT(rill_view_alloc(&j->out, j->in.len), 0);
    unsigned char *src = rill_view_data(&j->in), *dst = rill_view_data(&j->out);
    for (size_t i = 0; i < j->in.len; i++) dst[i] = (unsigned char)(src[i] ^ 0x20);
    rill_view_release(&j->in);
  }
  j->finish_rank = atomic_fetch_add(&c->finished, 1);
  atomic_fetch_sub(&c->running, 1);
}

static int pump(tctx_t *c);

static void t_done(rill_workers_t *p, rill_job_t *job, int status) {
  tctx_t *c = rill_workers_arg(p);
  tjob_t *j = RILL_CONTAINER_OF(job, tjob_t, job);
  if (status == 0) {
    /* In submission order, with the worker's result. */
    CHECK_INT(job->seq, c->delivered);
    CHECK_INT(j->input, c->delivered);
    CHECK_INT(j->output, j->input * 2 + 1);
    CHECK(job->worker < c->n);
    if (c->with_views) {
      CHECK_INT(j->out.len, RILL_SLAB_SIZE);
      unsigned char *d = rill_view_data(&j->out);
      CHECK_INT(d[0], (unsigned char)(('a' + j->input % 26) ^ 0x20));
      CHECK_INT(d[j->out.len - 1], (unsigned char)(('a' + j->input % 26) ^ 0x20));
    }
    c->delivered++;
  } else {
    CHECK_INT(status, UV_ECANCELED);
    c->cancelled++;
  }
  rill_view_release(&j->in);
  rill_view_release(&j->out);
  free(j);
  if (status == 0) {
    if (c->close_after && c->delivered == c->close_after) {
      rill_workers_close(p);
      CHECK_INT(pump(c), UV_ECANCELED);
      return;
    }
    pump(c);
  }
}

static void t_fini(rill_workers_t *p) {
  tctx_t *c = rill_workers_arg(p);
  c->fini_calls++;
  c->p = NULL;
}

static void t_interrupt(rill_workers_t *p, unsigned worker) {
  tctx_t *c = rill_workers_arg(p);
  atomic_fetch_add(&c->interrupts, 1);
  atomic_store(&c->gate, 1);
}

static const rill_workers_ops_t ops = {t_work, t_done, t_interrupt, t_fini};

/* Submits jobs while the pool has room; returns the last submit result. */
static int pump(tctx_t *c) {
  int r = 0;
  while (c->submitted < c->total) {
    tjob_t *j = calloc(1, sizeof *j);
    CHECK(j != NULL);
    j->input = c->submitted;
    j->delay_us = c->rng ? next_rand(c) % 300 : 0;
    if (c->with_views) {
      CHECK_INT(rill_view_alloc(&j->in, RILL_SLAB_SIZE), 0);
      memset(rill_view_data(&j->in), 'a' + (int)(j->input % 26), j->in.len);
    }
    r = rill_workers_submit(c->p, &j->job);
    if (r != 0) {
      rill_view_release(&j->in);
      free(j);
      break;
    }
    CHECK_INT(j->job.seq, c->submitted);
    c->submitted++;
    size_t f = rill_workers_in_flight(c->p);
    CHECK(f <= rill_workers_capacity(c->p));
    if (f > c->max_in_flight) c->max_in_flight = f;
  }
  return r;
}

static tctx_t *ctx_new(unsigned n, unsigned per_worker, unsigned total) {
  tctx_t *c = calloc(1, sizeof *c);
  CHECK(c != NULL);
  c->n = n;
  c->total = total;
  CHECK_INT(rill_loop_init(&c->loop, NULL), 0);
  CHECK_INT(rill_workers_new(&c->loop, n, per_worker, &ops, c, &c->p), 0);
  CHECK_INT(rill_workers_count(c->p), n);
  CHECK_INT(rill_workers_capacity(c->p), (size_t)n * per_worker);
  return c;
}

static void ctx_free(tctx_t *c) {
  rill_loop_free(&c->loop);
  CHECK_INT(c->fini_calls, 1);
  CHECK_INT(c->submitted, c->delivered + c->cancelled);
  free(c);
}

/* Random job durations: results still come back in submission order, the pool holds at most its
 * capacity, no more than n jobs run at once, and every worker takes part. */
static void test_order_random_durations(void) {
  tctx_t *c = ctx_new(3, 2, 3000);
  c->rng = 12345;
  pump(c);
  rill_loop_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_INT(c->delivered, 3000);
  CHECK_INT(c->cancelled, 0);
  CHECK_INT(c->max_in_flight, 6);
  CHECK(atomic_load(&c->max_running) <= 3);
  for (int i = 0; i < 3; i++) CHECK(atomic_load(&c->per_worker[i]) > 0);
  CHECK_INT(rill_workers_in_flight(c->p), 0);
  rill_workers_close(c->p);
  rill_loop_run(&c->loop, UV_RUN_DEFAULT); /* the pool frees itself */
  CHECK_INT(c->fini_calls, 1);
  ctx_free(c);
}

/* Job 0 is held until job 1 has finished: done still sees 0 then 1. */
static atomic_int second_done;
static void hold_work(rill_workers_t *p, rill_job_t *job, unsigned worker) {
  tjob_t *j = RILL_CONTAINER_OF(job, tjob_t, job);
  if (j->input == 0) {
    while (!atomic_load(&second_done)) sleep_us(100);
  }
  j->output = j->input * 2 + 1;
  if (j->input == 1) atomic_store(&second_done, 1);
}

static void test_finish_out_of_order(void) {
  static const rill_workers_ops_t hold_ops = {hold_work, t_done, NULL, t_fini};
  tctx_t *c = calloc(1, sizeof *c);
  c->n = 2;
  c->total = 2;
  CHECK_INT(rill_loop_init(&c->loop, NULL), 0);
  CHECK_INT(rill_workers_new(&c->loop, 2, 1, &hold_ops, c, &c->p), 0);
  pump(c);
  rill_loop_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_INT(c->delivered, 2);
  rill_workers_close(c->p);
  ctx_free(c);
}

/* A full pool refuses more work without side effects; done frees a slot. */
static void test_backpressure(void) {
  tctx_t *c = ctx_new(2, 2, 100);
  c->use_gate = 1;
  CHECK_INT(pump(c), UV_EBUSY);
  CHECK_INT(c->submitted, 4);
  tjob_t extra = {0};
  CHECK_INT(rill_workers_submit(c->p, &extra.job), UV_EBUSY);
  CHECK_INT(rill_workers_in_flight(c->p), 4);
  atomic_store(&c->gate, 1);
  rill_loop_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_INT(c->delivered, 100);
  CHECK_INT(c->max_in_flight, 4);
  rill_workers_close(c->p);
  ctx_free(c);
}

/* Close with both workers busy and jobs queued: the busy ones are interrupted, the queued ones
 * never run, every job comes back cancelled, the owner's fini runs once, the loop ends. */
static void test_close_with_jobs_pending(void) {
  tctx_t *c = ctx_new(2, 4, 8);
  c->use_gate = 1;
  pump(c);
  CHECK_INT(c->submitted, 8);
  /* Idle workers are woken from the loop (once per turn, for all the jobs queued): turn it. */
  while (atomic_load(&c->running) < 2) {
    rill_loop_run(&c->loop, UV_RUN_NOWAIT);
    sleep_us(100);
  }
  rill_workers_close(c->p);
  rill_workers_close(c->p); /* idempotent */
  tjob_t extra = {0};
  CHECK_INT(rill_workers_submit(c->p, &extra.job), UV_ECANCELED);
  rill_loop_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_INT(atomic_load(&c->interrupts), 2);
  CHECK_INT(atomic_load(&c->ran), 2);
  CHECK_INT(c->delivered, 0);
  CHECK_INT(c->cancelled, 8);
  CHECK_INT(c->fini_calls, 1);
  ctx_free(c);
}

/* Closing from inside done: no further delivery, the rest is cancelled. */
static void test_close_inside_done(void) {
  tctx_t *c = ctx_new(2, 3, 50);
  c->close_after = 5;
  pump(c);
  rill_loop_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_INT(c->delivered, 5);
  CHECK_INT(c->cancelled, c->submitted - 5);
  CHECK_INT(c->fini_calls, 1);
  ctx_free(c);
}

/* The loop is freed while jobs run and without close: the handle's close callback joins the
 * threads and cancels everything. */
static void test_loop_free_with_jobs_running(void) {
  tctx_t *c = ctx_new(2, 2, 4);
  c->use_gate = 1;
  pump(c);
  /* Idle workers are woken from the loop (once per turn, for all the jobs queued): turn it. */
  while (atomic_load(&c->running) < 2) {
    rill_loop_run(&c->loop, UV_RUN_NOWAIT);
    sleep_us(100);
  }
  /* ctx_free frees the loop: interrupt opens the gate, the running jobs return, then joined. */
  ctx_free(c);
}

/* 64 KiB views made on the loop thread are read and released by workers, whose outputs come
 * back: no copy of the input, no leak (valgrind), the workers' slab pools trimmed at exit. */
static void test_views_cross_threads(void) {
  tctx_t *c = ctx_new(2, 2, 64);
  c->with_views = 1;
  pump(c);
  rill_loop_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_INT(c->delivered, 64);
  rill_workers_close(c->p);
  ctx_free(c);
  rill_slab_pool_trim();
}

/* An idle pool does not keep the loop alive; closing it lets it free itself. */
static void test_idle_pool(void) {
  tctx_t *c = ctx_new(4, 1, 0);
  CHECK_INT(rill_loop_run(&c->loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(c->fini_calls, 0);
  rill_workers_close(c->p);
  rill_loop_run(&c->loop, UV_RUN_DEFAULT);
  CHECK_INT(c->fini_calls, 1);
  ctx_free(c);
}

static void test_misuse(void) {
  rill_loop_t l;
  rill_workers_t *p = NULL;
  static const rill_workers_ops_t no_work = {NULL, t_done, NULL, NULL};
  static const rill_workers_ops_t no_done = {t_work, NULL, NULL, NULL};
  CHECK_INT(rill_loop_init(&l, NULL), 0);
  CHECK_INT(rill_workers_new(&l, 0, 1, &ops, NULL, &p), UV_EINVAL);
  CHECK_INT(rill_workers_new(&l, RILL_WORKERS_MAX + 1, 1, &ops, NULL, &p), UV_EINVAL);
  CHECK_INT(rill_workers_new(&l, 1, 0, &ops, NULL, &p), UV_EINVAL);
  CHECK_INT(rill_workers_new(&l, 1, 1, NULL, NULL, &p), UV_EINVAL);
  CHECK_INT(rill_workers_new(&l, 1, 1, &no_work, NULL, &p), UV_EINVAL);
  CHECK_INT(rill_workers_new(&l, 1, 1, &no_done, NULL, &p), UV_EINVAL);
  CHECK_INT(rill_workers_new(NULL, 1, 1, &ops, NULL, &p), UV_EINVAL);
  CHECK_INT(rill_workers_new(&l, 1, 1, &ops, NULL, NULL), UV_EINVAL);
  CHECK(p == NULL);
  CHECK(rill_workers_default_count() >= 1);
  /* Nothing was opened: the loop closes clean. */
  rill_loop_free(&l);
}

int main(void) {
  RUN(test_misuse);
  RUN(test_order_random_durations);
  RUN(test_finish_out_of_order);
  RUN(test_backpressure);
  RUN(test_close_with_jobs_pending);
  RUN(test_close_inside_done);
  RUN(test_loop_free_with_jobs_running);
  RUN(test_views_cross_threads);
  RUN(test_idle_pool);
  return 0;
}
