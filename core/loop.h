/* core/loop.h: the engine's loop: one uv_loop_t plus Node's next-tick and immediate queues. */
#ifndef RILL_LOOP_H
#define RILL_LOOP_H

#include <stddef.h>
#include <uv.h>

typedef void (*rill_tick_cb)(void *arg);

typedef struct {
  rill_tick_cb cb;
  void *arg;
} rill_tick_t;

/* A growable ring of deferred calls; the hot path reuses its storage and never mallocs. */
typedef struct {
  rill_tick_t *q;
  size_t head, count, cap;
} rill_tickq_t;

struct rill_loop_s;

/* Every uv handle the engine opens is tracked, so that freeing the engine closes exactly its own
 * handles (a host's loop has handles of its own we must not touch). Embed one in the owning
 * struct and close the handle only through rill_handle_close. uv->data belongs to the tracker
 * (it points at the rill_handle_t): reach the owner with RILL_CONTAINER_OF. */
#define RILL_CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))
typedef struct rill_handle_s {
  struct rill_handle_s *prev, *next;
  uv_handle_t *uv;
  /* Runs after libuv's close callback: frees the owner. It must not call into Lua (it may run
   * while the interpreter is being closed). */
  void (*on_close)(struct rill_handle_s *h);
} rill_handle_t;

typedef struct rill_loop_s {
  uv_loop_t *uv;
  int own_uv;         /* the loop was made here and is closed by rill_loop_free */
  rill_tickq_t ticks; /* next_tick: before any further I/O or timer */
  rill_tickq_t imms;  /* immediate: after this turn's I/O */
  int draining;
  int freeing;           /* rill_loop_free runs: its own handles are closing */
  uv_prepare_t prepare;  /* drains ticks before the loop blocks */
  uv_check_t check;      /* runs immediates after I/O */
  uv_idle_t idle;        /* keeps poll from blocking while work is queued */
  rill_handle_t handles; /* sentinel of the list of tracked handles */
  /* The live streams (core/stream.c keeps the list and sets sweep). Once the loop has nothing
   * left to run, rill_loop_free destroys those still alive: nothing can end them any more (a
   * pipe from a source that never ends, a Lua hook that will never answer). sweep returns how
   * many it destroyed. */
  struct rill_stream_s *streams;
  int (*sweep)(struct rill_loop_s *l);
} rill_loop_t;

/* Initialises l over uv, or over a loop of its own when uv is NULL; 0 or a UV_E* code. */
int rill_loop_init(rill_loop_t *l, uv_loop_t *uv);
/* Queues cb(arg) to run before any further I/O; 0 or UV_ENOMEM. */
int rill_loop_next_tick(rill_loop_t *l, rill_tick_cb cb, void *arg);
/* Queues cb(arg) to run after the I/O of this loop turn; 0 or UV_ENOMEM. */
int rill_loop_immediate(rill_loop_t *l, rill_tick_cb cb, void *arg);
/* Runs queued ticks, including those they queue, until none is left. Re-entrant calls return. */
void rill_loop_drain(rill_loop_t *l);
/* Runs the uv loop in mode (ticks drained around it); returns uv_run's result. */
int rill_loop_run(rill_loop_t *l, uv_run_mode mode);
/* Nonzero while any tick or immediate is queued. */
int rill_loop_pending(const rill_loop_t *l);
/* Tracks h, whose uv handle uv is initialised on l; on_close frees the owner after closing. */
void rill_handle_track(rill_loop_t *l, rill_handle_t *h, uv_handle_t *uv,
                       void (*on_close)(rill_handle_t *h));
/* Closes a tracked handle (idempotent); its on_close runs from libuv's close callback. */
void rill_handle_close(rill_handle_t *h);
/* Closes every tracked handle and the loop's own, runs the loop until their close callbacks ran
 * (on a host loop: one non-blocking turn), and closes the uv loop if it owns it. Ticks still
 * queued are dropped. */
void rill_loop_free(rill_loop_t *l);

#endif
