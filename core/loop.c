/* core/loop.c: next-tick and immediate queues on top of one uv_loop_t. */
#include "loop.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static int tickq_push(rill_tickq_t *q, rill_tick_cb cb, void *arg) {
  if (q->count == q->cap) {
    size_t ncap = q->cap ? q->cap * 2 : 64;
    rill_tick_t *n = malloc(ncap * sizeof *n);
    if (n == NULL) return UV_ENOMEM;
    for (size_t i = 0; i < q->count; i++) n[i] = q->q[(q->head + i) % q->cap];
    free(q->q);
    q->q = n;
    q->head = 0;
    q->cap = ncap;
  }
  q->q[(q->head + q->count) % q->cap] = (rill_tick_t){cb, arg};
  q->count++;
  return 0;
}

static rill_tick_t tickq_shift(rill_tickq_t *q) {
  rill_tick_t t = q->q[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  return t;
}

static void idle_cb(uv_idle_t *h) {
  rill_loop_drain(h->data);
}

/* An active idle handle makes uv_run poll with a zero timeout (and keeps the loop alive), so
 * queued work is never stuck behind a blocking poll. */
static void update_idle(rill_loop_t *l) {
  if (l->freeing) return;
  int want = l->ticks.count || l->imms.count;
  int on = uv_is_active((uv_handle_t *)&l->idle);
  if (want && !on) uv_idle_start(&l->idle, idle_cb);
  if (!want && on) uv_idle_stop(&l->idle);
}

static void prepare_cb(uv_prepare_t *h) {
  rill_loop_drain(h->data);
}

static void check_cb(uv_check_t *h) {
  rill_loop_t *l = h->data;
  rill_loop_drain(l);
  /* Immediates queued by immediates run on the next turn, as in Node. */
  size_t n = l->imms.count;
  while (n-- > 0 && l->imms.count) {
    rill_tick_t t = tickq_shift(&l->imms);
    t.cb(t.arg);
    rill_loop_drain(l);
  }
  update_idle(l);
}

int rill_loop_init(rill_loop_t *l, uv_loop_t *uv) {
  memset(l, 0, sizeof *l);
  if (uv == NULL) {
    uv = malloc(sizeof *uv);
    if (uv == NULL) return UV_ENOMEM;
    int r = uv_loop_init(uv);
    if (r) {
      free(uv);
      return r;
    }
    l->own_uv = 1;
  }
  l->uv = uv;
  l->handles.next = l->handles.prev = &l->handles;
  uv_prepare_init(uv, &l->prepare);
  uv_check_init(uv, &l->check);
  uv_idle_init(uv, &l->idle);
  l->prepare.data = l->check.data = l->idle.data = l;
  uv_prepare_start(&l->prepare, prepare_cb);
  uv_check_start(&l->check, check_cb);
  /* The queues must not keep the loop alive by themselves: only idle does, while work waits. */
  uv_unref((uv_handle_t *)&l->prepare);
  uv_unref((uv_handle_t *)&l->check);
  return 0;
}

int rill_loop_next_tick(rill_loop_t *l, rill_tick_cb cb, void *arg) {
  int r = tickq_push(&l->ticks, cb, arg);
  update_idle(l);
  return r;
}

int rill_loop_immediate(rill_loop_t *l, rill_tick_cb cb, void *arg) {
  int r = tickq_push(&l->imms, cb, arg);
  update_idle(l);
  return r;
}

void rill_loop_drain(rill_loop_t *l) {
  if (l->draining) return;
  l->draining = 1;
  while (l->ticks.count) {
    rill_tick_t t = tickq_shift(&l->ticks);
    t.cb(t.arg);
  }
  l->draining = 0;
  update_idle(l);
}

int rill_loop_pending(const rill_loop_t *l) {
  return l->ticks.count || l->imms.count;
}

int rill_loop_run(rill_loop_t *l, uv_run_mode mode) {
  rill_loop_drain(l);
  int r = uv_run(l->uv, mode);
  rill_loop_drain(l);
  return r || rill_loop_pending(l);
}

void rill_handle_track(rill_loop_t *l, rill_handle_t *h, uv_handle_t *uv,
                       void (*on_close)(rill_handle_t *h)) {
  h->uv = uv;
  uv->data = h;
  h->on_close = on_close;
  h->next = l->handles.next;
  h->prev = &l->handles;
  l->handles.next->prev = h;
  l->handles.next = h;
}

static void handle_closed(uv_handle_t *uv) {
  rill_handle_t *h = uv->data;
  h->prev->next = h->next;
  h->next->prev = h->prev;
  h->prev = h->next = h;
  if (h->on_close) h->on_close(h);
}

void rill_handle_close(rill_handle_t *h) {
  if (h->uv == NULL || uv_is_closing(h->uv)) return;
  uv_close(h->uv, handle_closed);
}

/* At free time the check handle is gone, so immediates run here: each holds a reference (a
 * writer's deferred flush) that would otherwise leak. Callbacks see l->freeing and skip work
 * that would start new I/O. */
static void drain_all(rill_loop_t *l) {
  rill_loop_drain(l);
  while (l->imms.count) {
    rill_tick_t t = tickq_shift(&l->imms);
    t.cb(t.arg);
    rill_loop_drain(l);
  }
}

void rill_loop_free(rill_loop_t *l) {
  if (l->uv == NULL) return;
  /* Work already queued finishes (a destroyed stream's close runs from a tick and frees it);
   * close callbacks may queue more, hence the drain after each run below. */
  rill_loop_drain(l);
  for (rill_handle_t *h = l->handles.next; h != &l->handles; h = h->next) rill_handle_close(h);
  l->freeing = 1;
  uv_close((uv_handle_t *)&l->prepare, NULL);
  uv_close((uv_handle_t *)&l->check, NULL);
  uv_close((uv_handle_t *)&l->idle, NULL);
  if (l->own_uv) {
    /* Run until nothing is left: requests in flight (a file being closed) complete, and the
     * ticks they queue run. A pending uv_stop only cuts the first run short. */
    do {
      do {
        uv_run(l->uv, UV_RUN_DEFAULT);
        drain_all(l);
      } while (uv_loop_alive(l->uv) || rill_loop_pending(l));
    } while (l->sweep && l->sweep(l));
    int r = uv_loop_close(l->uv);
    (void)r;
    assert(r == 0 && "rill_loop_free: a handle outside the tracked list is still open");
    free(l->uv);
  } else {
    /* On a host's loop we cannot wait for the loop to go idle: a few non-blocking turns deliver
     * our close callbacks (the closing phase runs even in NOWAIT mode) and the ticks they
     * queue, until our handles are gone. */
    int swept = 0;
    do {
      for (int i = 0; i < 8 && (l->handles.next != &l->handles || l->ticks.count || i < 2); i++) {
        uv_run(l->uv, UV_RUN_NOWAIT);
        drain_all(l);
      }
      drain_all(l);
    } while (swept++ < 8 && l->sweep && l->sweep(l));
  }
  free(l->ticks.q);
  free(l->imms.q);
  l->uv = NULL;
}
