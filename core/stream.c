/* core/stream.c: the readable/writable/duplex/transform state machines (Node.js semantics). */
#include "stream.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "pipe.h"

/* ---- small FIFO of chunks with callbacks (inline storage first, heap growth after) ---- */

typedef struct {
  rill_chunk_t c;
  rill_write_cb cb;
  void *arg;
  rill_err_t *err; /* late callbacks only: the error to pass (one reference) */
} qent_t;

#define Q_INLINE 4
typedef struct {
  qent_t *v;
  size_t head, count, cap;
  qent_t inl[Q_INLINE];
} queue_t;

static void q_init(queue_t *q) {
  q->v = q->inl;
  q->head = q->count = 0;
  q->cap = Q_INLINE;
}

static int q_push(queue_t *q, const qent_t *e) {
  if (q->count == q->cap) {
    size_t ncap = q->cap * 2;
    qent_t *n = malloc(ncap * sizeof *n);
    if (n == NULL) return UV_ENOMEM;
    for (size_t i = 0; i < q->count; i++) n[i] = q->v[(q->head + i) % q->cap];
    if (q->v != q->inl) free(q->v);
    q->v = n;
    q->head = 0;
    q->cap = ncap;
  }
  q->v[(q->head + q->count) % q->cap] = *e;
  q->count++;
  return 0;
}

static qent_t *q_peek(queue_t *q) {
  return q->count ? &q->v[q->head] : NULL;
}

static qent_t *q_last(queue_t *q) {
  return q->count ? &q->v[(q->head + q->count - 1) % q->cap] : NULL;
}

static int q_shift(queue_t *q, qent_t *out) {
  if (q->count == 0) return 0;
  *out = q->v[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  if (q->count == 0) q->head = 0;
  return 1;
}

static void q_free(queue_t *q) {
  if (q->v != q->inl) free(q->v);
  q_init(q);
}

/* ---- the object ---- */

struct cursor {
  rill_listener_t *next;
  struct cursor *up;
};

struct rill_stream_s {
  int refs;
  unsigned flags;
  rill_loop_t *loop;
  struct rill_stream_s *lprev, *lnext; /* the loop's live streams */
  const rill_stream_impl_t *impl;
  void *data;
  rill_stream_hook_cb hook;
  void *hook_arg;
  rill_listener_t lhead; /* sentinel of the internal listeners */
  size_t nlisteners;
  unsigned emit_serial;
  struct cursor *cursors; /* dispatches in progress, so unlisten can step them past a node */
  struct rill_pipe_s *pipes_out, *pipes_in;

  unsigned destroyed : 1, closed : 1, close_emitted : 1, error_emitted : 1, destroy_answered : 1,
      stopped : 1, dying : 1, destroy_ref : 1, freed : 1, in_error_emit : 1;
  rill_err_t *errored;
  size_t error_watchers;

  struct {
    queue_t buf;
    size_t length, hwm;
    signed char flowing; /* -1: null (not decided), 0: paused, 1: flowing */
    unsigned ended : 1, end_emitted : 1, reading : 1, sync : 1, need_readable : 1,
        emitted_readable : 1, readable_listening : 1, resume_scheduled : 1, paused : 1,
        data_emitted : 1, reading_more : 1;
    size_t data_watchers, readable_watchers;
    unsigned data_gen;
  } r;

  struct {
    queue_t buf;  /* written, not yet handed to the implementation */
    qent_t one;   /* the write in flight (single) */
    qent_t *infl; /* the writes in flight: &one, or vent[] for writev */
    size_t ninfl;
    qent_t *vent; /* writev storage (entries and their chunks), grown as needed */
    rill_chunk_t *vchunk;
    size_t vcap;
    size_t length, hwm, writelen;
    size_t pendingcb;
    unsigned ending : 1, ended : 1, finished : 1, writing : 1, sync : 1, buffer_processing : 1,
        need_drain : 1, final_called : 1, prefinished : 1, final_answered : 1, held : 1,
        after_scheduled : 1, late_scheduled : 1, errbuf_scheduled : 1, failed_scheduled : 1;
    size_t held_rlen;
    queue_t after;     /* completed writes whose callbacks run from the after-write tick */
    size_t after_nocb; /* completed writes without a callback waiting for that tick: counted,
                          not queued, so a long synchronous run keeps memory flat */
    queue_t onfinish;  /* end() callbacks */
    queue_t late;      /* callbacks with an error, run from the late tick */
    queue_t failed;    /* writes that failed synchronously, run from the onwrite-error tick */
  } w;
};

/* Static errors for out-of-memory paths (never freed). */
static rill_err_t enomem_err = {-1, UV_ENOMEM, NULL, NULL, NULL, NULL, 0, NULL};

/* ---- errors ---- */

static char *dupstr(const char *p) {
  if (p == NULL) return NULL;
  size_t n = strlen(p) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, p, n);
  return d;
}

rill_err_t *rill_err_new(int code, const char *syscall, const char *path, const char *message) {
  rill_err_t *e = calloc(1, sizeof *e);
  if (e == NULL) return &enomem_err;
  e->refs = 1;
  e->code = code;
  e->syscall = syscall;
  e->path = dupstr(path);
  e->message = dupstr(message);
  return e;
}

rill_err_t *rill_err_ref(rill_err_t *e) {
  if (e && e->refs > 0) e->refs++;
  return e;
}

void rill_err_unref(rill_err_t *e) {
  if (e == NULL || e->refs < 0) return;
  if (--e->refs > 0) return;
  if (e->release) e->release(e);
  free(e->path);
  free(e->message);
  free(e);
}

const char *rill_err_message(const rill_err_t *e) {
  return e->message ? e->message : rill_strerror(e->code);
}

/* ---- chunks ---- */

int rill_chunk_from_bytes(rill_chunk_t *c, const void *p, size_t len) {
  rill_view_t v = {NULL, 0, 0};
  if (len) {
    int r = rill_view_from(&v, p, len);
    if (r) return r;
  }
  rill_chunk_from_view(c, &v);
  return 0;
}

void rill_chunk_dup(rill_chunk_t *dst, const rill_chunk_t *src) {
  *dst = *src;
  if (src->ops) {
    dst->item = src->ops->dup(src->ops, src->item);
  } else if (src->view.slab) {
    rill_slab_ref(src->view.slab);
  }
}

void rill_chunk_release(rill_chunk_t *c) {
  if (c->ops) {
    c->ops->drop(c->ops, c->item);
  } else {
    rill_view_release(&c->view);
  }
  *c = RILL_CHUNK_EMPTY;
}

/* Size of a chunk on a side: bytes, or 1 in object mode. */
static size_t csize(const rill_chunk_t *c, int object) {
  return object ? 1 : c->view.len;
}

/* Makes c fit a byte-mode side: an item becomes its bytes. 0 or RILL_EINVALID_ARG_TYPE (c is
 * then untouched) with *msg set. */
static int to_bytes(rill_chunk_t *c, const char **msg) {
  if (c->ops == NULL) return 0;
  rill_view_t v = {NULL, 0, 0};
  *msg = NULL;
  if (c->ops->to_bytes == NULL) return RILL_EINVALID_ARG_TYPE;
  int r = c->ops->to_bytes(c->ops, c->item, &v, msg);
  if (r) return r;
  rill_chunk_release(c);
  rill_chunk_from_view(c, &v);
  return 0;
}

/* ---- references and ticks ---- */

static void stream_free(rill_stream_t *s);

static void hook_plain(rill_stream_t *s, rill_stream_ev_t type) {
  if (s->hook) {
    rill_event_t ev = {type, NULL, NULL, NULL};
    s->hook(s, &ev, s->hook_arg);
  }
}

void rill_stream_ref(rill_stream_t *s) {
  if (++s->refs == 2) hook_plain(s, RILL_EV_BUSY);
}

void rill_stream_unref(rill_stream_t *s) {
  assert(s->refs > 0);
  if (--s->refs == 1) {
    hook_plain(s, RILL_EV_IDLE);
    return;
  }
  if (s->refs > 0) return;
  if (!s->close_emitted && !s->dying) {
    /* The last owner let go of a live stream: destroy it quietly, free it after "close". */
    s->dying = 1;
    s->refs = 1;
    rill_stream_destroy(s, NULL);
    if (--s->refs > 0) return;
    if (!s->close_emitted) return; /* leaked on purpose: something still runs (cannot happen) */
  }
  stream_free(s);
}

/* Every tick holds a reference on its stream, so the stream outlives its queued work. The
 * function pointer travels in a tiny static table: rill_loop_next_tick takes one argument. */
#define DEFINE_TICK(name, body_fn) \
  static void name(void *arg) {    \
    rill_stream_t *s = arg;        \
    body_fn(s);                    \
    rill_stream_unref(s);          \
  }

static void tick(rill_stream_t *s, rill_tick_cb thunk) {
  rill_stream_ref(s);
  if (rill_loop_next_tick(s->loop, thunk, s) != 0) {
    /* No memory for the queue: run it now rather than lose it. */
    thunk(s);
  }
}

/* ---- listeners and emit ---- */

static void emit(rill_stream_t *s, const rill_event_t *ev) {
  if (s->close_emitted && ev->type != RILL_EV_CLOSE) return; /* nothing after "close" */
  rill_stream_ref(s);
  if (s->hook) s->hook(s, ev, s->hook_arg);
  if (s->nlisteners) {
    unsigned serial = ++s->emit_serial;
    struct cursor c = {s->lhead.next, s->cursors};
    s->cursors = &c;
    while (c.next != &s->lhead) {
      rill_listener_t *l = c.next;
      c.next = l->next;
      if ((l->mask & RILL_EVBIT(ev->type)) && l->since < serial) l->cb(l, s, ev);
    }
    s->cursors = c.up;
  }
  rill_stream_unref(s);
}

static void emit_plain(rill_stream_t *s, rill_stream_ev_t type) {
  rill_event_t ev = {type, NULL, NULL, NULL};
  emit(s, &ev);
}

void rill_stream_listen(rill_stream_t *s, rill_listener_t *l) {
  assert(l->stream == NULL);
  l->stream = s;
  l->since = s->emit_serial;
  l->prev = s->lhead.prev;
  l->next = &s->lhead;
  s->lhead.prev->next = l;
  s->lhead.prev = l;
  s->nlisteners++;
}

void rill_stream_unlisten(rill_listener_t *l) {
  rill_stream_t *s = l->stream;
  if (s == NULL) return;
  for (struct cursor *c = s->cursors; c; c = c->up)
    if (c->next == l) c->next = l->next;
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->prev = l->next = NULL;
  l->stream = NULL;
  s->nlisteners--;
}

size_t rill_stream_listener_count(const rill_stream_t *s) {
  return s->nlisteners;
}

void rill_stream_set_hook(rill_stream_t *s, rill_stream_hook_cb cb, void *arg) {
  s->hook = cb;
  s->hook_arg = arg;
}

void *rill_stream_hook_arg(const rill_stream_t *s, rill_stream_hook_cb cb) {
  return s->hook == cb ? s->hook_arg : NULL;
}

static void waiter_cb(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  rill_waiter_t *w = RILL_CONTAINER_OF(l, rill_waiter_t, l);
  rill_stream_unlisten(l);
  w->cb(w, s, ev);
}

void rill_stream_wait(rill_stream_t *s, rill_waiter_t *w, unsigned mask,
                      void (*cb)(rill_waiter_t *w, rill_stream_t *s, const rill_event_t *ev),
                      void *arg) {
  memset(&w->l, 0, sizeof w->l);
  w->l.mask = mask;
  w->l.cb = waiter_cb;
  w->cb = cb;
  w->arg = arg;
  rill_stream_listen(s, &w->l);
}

/* ---- creation ---- */

/* rill_loop_free's last resort (loop.h): destroys the streams still alive once the loop has
 * nothing left to run. One at a time from the head: a destroy may free other streams. */
static int sweep(rill_loop_t *l) {
  int n = 0;
  for (;;) {
    rill_stream_t *s = l->streams;
    while (s && s->destroyed) s = s->lnext;
    if (s == NULL) return n;
    rill_stream_destroy(s, NULL);
    n++;
  }
}

int rill_stream_new(rill_loop_t *loop, const rill_stream_impl_t *impl, void *data,
                    const rill_stream_opts_t *opts, rill_stream_t **out) {
  static const rill_stream_impl_t none = {0};
  rill_stream_opts_t o = {RILL_STREAM_DUPLEX, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  if (opts) o = *opts;
  if (impl == NULL) impl = &none;
  if (impl->transform) o.flags |= RILL_STREAM_DUPLEX;
  if (loop == NULL || !(o.flags & RILL_STREAM_DUPLEX)) return UV_EINVAL;
  rill_stream_t *s = calloc(1, sizeof *s);
  if (s == NULL) return UV_ENOMEM;
  s->refs = 1;
  s->flags = o.flags;
  s->loop = loop;
  s->impl = impl;
  s->data = data;
  s->lhead.next = s->lhead.prev = &s->lhead;
  q_init(&s->r.buf);
  q_init(&s->w.buf);
  q_init(&s->w.after);
  q_init(&s->w.onfinish);
  q_init(&s->w.late);
  q_init(&s->w.failed);
  s->r.flowing = -1;
  s->r.hwm = o.read_hwm != RILL_HWM_DEFAULT        ? o.read_hwm
             : (o.flags & RILL_STREAM_OBJECT_READ) ? RILL_HWM_OBJECTS_DEFAULT
                                                   : RILL_HWM_BYTES_DEFAULT;
  s->w.hwm = o.write_hwm != RILL_HWM_DEFAULT        ? o.write_hwm
             : (o.flags & RILL_STREAM_OBJECT_WRITE) ? RILL_HWM_OBJECTS_DEFAULT
                                                    : RILL_HWM_BYTES_DEFAULT;
  /* A transform's readable side is fed from writes, not from a read loop (Node sets sync off). */
  s->r.sync = impl->transform ? 0 : 1;
  s->r.need_readable = 0;
  s->lnext = loop->streams;
  if (s->lnext) s->lnext->lprev = s;
  loop->streams = s;
  loop->sweep = sweep;
  *out = s;
  return 0;
}

static void release_queue(queue_t *q) {
  qent_t e;
  while (q_shift(q, &e)) {
    rill_chunk_release(&e.c);
    rill_err_unref(e.err);
  }
  q_free(q);
}

static void stream_free(rill_stream_t *s) {
  assert(!s->freed);
  s->freed = 1;
  if (s->lprev) {
    s->lprev->lnext = s->lnext;
  } else {
    s->loop->streams = s->lnext;
  }
  if (s->lnext) s->lnext->lprev = s->lprev;
  while (s->lhead.next != &s->lhead) rill_stream_unlisten(s->lhead.next);
  release_queue(&s->r.buf);
  release_queue(&s->w.buf);
  release_queue(&s->w.after);
  release_queue(&s->w.onfinish);
  release_queue(&s->w.late);
  release_queue(&s->w.failed);
  for (size_t i = 0; s->w.infl && i < s->w.ninfl; i++) rill_chunk_release(&s->w.infl[i].c);
  free(s->w.vent);
  free(s->w.vchunk);
  rill_err_unref(s->errored);
  if (s->impl->free) s->impl->free(s);
  free(s);
}

void *rill_stream_data(const rill_stream_t *s) {
  return s->data;
}

rill_loop_t *rill_stream_loop(const rill_stream_t *s) {
  return s->loop;
}

const rill_stream_impl_t *rill_stream_impl(const rill_stream_t *s) {
  return s->impl;
}

/* ---- destroy (Node's destroy.js) ---- */

static void error_or_destroy(rill_stream_t *s, rill_err_t *err) {
  if (s->destroyed) return;
  rill_stream_destroy(s, err);
}

static void error_or_destroy_code(rill_stream_t *s, int code) {
  if (s->destroyed) return;
  rill_err_t *e = rill_err_new(code, NULL, NULL, NULL);
  rill_stream_destroy(s, e);
  rill_err_unref(e);
}

static void set_error(rill_stream_t *s, rill_err_t *err) {
  if (err && s->errored == NULL) s->errored = rill_err_ref(err);
}

static void error_buffer(rill_stream_t *s, int abort_inflight);

static void errbuf_body(rill_stream_t *s) {
  s->w.errbuf_scheduled = 0;
  error_buffer(s, 0);
}
DEFINE_TICK(errbuf_tick, errbuf_body)

void rill_stream_destroy(rill_stream_t *s, rill_err_t *err) {
  if (s->destroyed) return;
  rill_stream_ref(s);
  if ((s->flags & RILL_STREAM_WRITABLE) && (s->w.buf.count || s->w.onfinish.count) &&
      !s->w.errbuf_scheduled) {
    s->w.errbuf_scheduled = 1;
    tick(s, errbuf_tick);
  }
  set_error(s, err);
  s->destroyed = 1;
  /* Held until the implementation answers: the stream must survive an asynchronous destroy. */
  s->destroy_ref = 1;
  rill_stream_ref(s);
  if (s->impl->destroy) {
    s->impl->destroy(s, err);
  } else {
    rill_stream_destroy_done(s, err);
  }
  rill_stream_unref(s);
}

void rill_stream_destroy_code(rill_stream_t *s, int code) {
  if (s->destroyed) return;
  rill_err_t *e = rill_err_new(code, NULL, NULL, NULL);
  rill_stream_destroy(s, e);
  rill_err_unref(e);
}

static void emit_error_close(rill_stream_t *s) {
  /* Writes that never completed end here: every callback runs before "close". */
  error_buffer(s, 1);
  if (s->errored && !s->error_emitted) {
    s->error_emitted = 1;
    rill_event_t ev = {RILL_EV_ERROR, NULL, s->errored, NULL};
    s->in_error_emit = 1;
    emit(s, &ev);
    s->in_error_emit = 0;
  }
  s->close_emitted = 1;
  /* Nothing can be read or written any more: let the memory go before the listeners run. */
  release_queue(&s->r.buf);
  s->r.length = 0;
  emit_plain(s, RILL_EV_CLOSE);
  while (s->lhead.next != &s->lhead) rill_stream_unlisten(s->lhead.next);
}
DEFINE_TICK(close_tick, emit_error_close)

void rill_stream_destroy_done(rill_stream_t *s, rill_err_t *err) {
  if (s->destroy_answered || !s->destroyed) return;
  s->destroy_answered = 1;
  set_error(s, err);
  s->closed = 1;
  /* Node emits "error" only when the destroy callback passes one; the stored error (a failed
   * write, a raised callback) is what destroy was called with, so it is the same value. */
  if (err == NULL && s->errored && !s->error_emitted) {
    /* destroy(err) whose implementation answered without it: Node drops the event; keep the
     * error for finished/pipeline but emit only "close". */
    s->error_emitted = 1;
  }
  tick(s, close_tick);
  if (s->destroy_ref) {
    s->destroy_ref = 0;
    rill_stream_unref(s);
  }
}

void rill_stream_stop(rill_stream_t *s) {
  if (s->stopped) return;
  rill_stream_ref(s);
  s->stopped = 1;
  /* Upstream first: the sources feeding s have nobody left to feed. */
  rill_stream_stop_sources(s);
  rill_stream_unpipe(s, NULL);
  rill_stream_destroy(s, NULL);
  rill_stream_unref(s);
}

/* ---- readable side (Node's readable.js) ---- */

static void flow(rill_stream_t *s);
static void transform_read(rill_stream_t *s);
static int read_(rill_stream_t *s, int want, rill_chunk_t *out);

static void emit_readable_body(rill_stream_t *s) {
  if (!s->destroyed && !s->errored && (s->r.length || s->r.ended)) {
    emit_plain(s, RILL_EV_READABLE);
    s->r.emitted_readable = 0;
  }
  s->r.need_readable = s->r.flowing != 1 && !s->r.ended && s->r.length <= s->r.hwm;
  flow(s);
}
DEFINE_TICK(emit_readable_tick, emit_readable_body)

static void emit_readable(rill_stream_t *s) {
  s->r.need_readable = 0;
  if (!s->r.emitted_readable) {
    s->r.emitted_readable = 1;
    tick(s, emit_readable_tick);
  }
}

static void maybe_read_more_body(rill_stream_t *s) {
  while (!s->r.reading && !s->r.ended && !s->destroyed &&
         (s->r.length < s->r.hwm || (s->r.flowing == 1 && s->r.length == 0))) {
    size_t len = s->r.length;
    read_(s, 0, NULL);
    if (len == s->r.length) break;
  }
  s->r.reading_more = 0;
}
DEFINE_TICK(maybe_read_more_tick, maybe_read_more_body)

static void maybe_read_more(rill_stream_t *s) {
  if (!s->r.reading_more) {
    s->r.reading_more = 1;
    tick(s, maybe_read_more_tick);
  }
}

static void end_writable_body(rill_stream_t *s) {
  if (!s->w.ending && !s->destroyed) rill_stream_end(s, NULL, NULL, NULL);
}
DEFINE_TICK(end_writable_tick, end_writable_body)

static void end_readable_body(rill_stream_t *s) {
  if (s->errored || s->close_emitted || s->r.end_emitted || s->r.length != 0) return;
  if (s->destroyed) return; /* destroyed before the end: no "end" (Node: no end after destroy) */
  s->r.end_emitted = 1;
  emit_plain(s, RILL_EV_END);
  if (s->flags & RILL_STREAM_WRITABLE) {
    if ((s->flags & RILL_STREAM_NO_HALF_OPEN) && !s->w.ending) tick(s, end_writable_tick);
    if (s->w.finished) rill_stream_destroy(s, NULL);
  } else {
    rill_stream_destroy(s, NULL);
  }
}
DEFINE_TICK(end_readable_tick, end_readable_body)

static void end_readable(rill_stream_t *s) {
  if (!s->r.end_emitted) {
    s->r.ended = 1;
    tick(s, end_readable_tick);
  }
}

/* How much one read takes: the first chunk (or item), or 0. */
static size_t how_much(rill_stream_t *s, int want) {
  if (!want || (s->r.length == 0 && s->r.ended)) return 0;
  qent_t *e = q_peek(&s->r.buf);
  if (e == NULL) return 0;
  return (s->flags & RILL_STREAM_OBJECT_READ) ? 1 : (e->c.view.len ? e->c.view.len : 1);
}

/* Node's read(): want = 0 is read(0) (refill only), want = 1 takes one chunk into *out.
 * Returns 1 when a chunk was taken (and "data" emitted). */
static int read_(rill_stream_t *s, int want, rill_chunk_t *out) {
  if (want) s->r.emitted_readable = 0;
  if (!want && s->r.need_readable &&
      ((s->r.hwm != 0 ? s->r.length >= s->r.hwm : s->r.length > 0) || s->r.ended)) {
    if (s->r.length == 0 && s->r.ended) {
      end_readable(s);
    } else {
      emit_readable(s);
    }
    return 0;
  }
  size_t n = how_much(s, want);
  if (n == 0 && s->r.ended) {
    if (s->r.length == 0) end_readable(s);
    return 0;
  }
  int do_read = s->r.need_readable;
  if (s->r.length == 0 || s->r.length - (n > s->r.length ? s->r.length : n) < s->r.hwm) do_read = 1;
  if (s->r.ended || s->r.reading || s->destroyed || s->errored) {
    do_read = 0;
  } else if (do_read) {
    s->r.reading = 1;
    s->r.sync = 1;
    if (s->r.length == 0) s->r.need_readable = 1;
    if (s->impl->transform) {
      transform_read(s);
    } else if (s->impl->read) {
      s->impl->read(s, s->r.hwm);
    }
    s->r.sync = 0;
    if (!s->r.reading) n = how_much(s, want);
  }
  int got = 0;
  rill_chunk_t c = RILL_CHUNK_EMPTY;
  if (n > 0 && !s->destroyed) {
    qent_t e;
    q_shift(&s->r.buf, &e);
    c = e.c;
    s->r.length -= csize(&c, s->flags & RILL_STREAM_OBJECT_READ);
    s->r.data_gen++;
    got = 1;
  } else {
    s->r.need_readable = s->r.length <= s->r.hwm;
  }
  if (s->r.length == 0) {
    if (!s->r.ended) s->r.need_readable = 1;
    if (want && s->r.ended) end_readable(s);
  }
  if (got) {
    if (!s->error_emitted && !s->close_emitted) {
      s->r.data_emitted = 1;
      rill_event_t ev = {RILL_EV_DATA, &c, NULL, NULL};
      emit(s, &ev);
    }
    if (out) {
      *out = c;
    } else {
      rill_chunk_release(&c);
    }
  }
  return got;
}

static void flow(rill_stream_t *s) {
  rill_chunk_t c;
  while (s->r.flowing == 1 && !s->destroyed && read_(s, 1, &c)) rill_chunk_release(&c);
}

static void on_eof(rill_stream_t *s) {
  if (s->r.ended) return;
  s->r.ended = 1;
  if (s->r.sync) {
    emit_readable(s);
  } else {
    s->r.need_readable = 0;
    s->r.emitted_readable = 1;
    emit_readable_body(s);
  }
}

static void add_chunk(rill_stream_t *s, rill_chunk_t *c) {
  int object = s->flags & RILL_STREAM_OBJECT_READ;
  if (s->r.flowing == 1 && s->r.length == 0 && !s->r.sync && s->r.data_watchers > 0) {
    s->r.data_gen++;
    s->r.data_emitted = 1;
    rill_event_t ev = {RILL_EV_DATA, c, NULL, NULL};
    emit(s, &ev);
    rill_chunk_release(c);
  } else {
    qent_t e = {*c, NULL, NULL, NULL};
    if (q_push(&s->r.buf, &e) != 0) {
      rill_chunk_release(c);
      error_or_destroy_code(s, UV_ENOMEM);
      return;
    }
    s->r.length += csize(c, object);
    *c = RILL_CHUNK_EMPTY;
    if (s->r.need_readable) emit_readable(s);
  }
  maybe_read_more(s);
}

int rill_stream_push(rill_stream_t *s, rill_chunk_t *chunk) {
  if (!(s->flags & RILL_STREAM_READABLE)) {
    if (chunk) rill_chunk_release(chunk);
    return UV_EINVAL;
  }
  int ret;
  rill_stream_ref(s);
  if (chunk == NULL) {
    s->r.reading = 0;
    on_eof(s);
    ret = 0;
    goto out;
  }
  if (!(s->flags & RILL_STREAM_OBJECT_READ)) {
    const char *msg;
    int r = to_bytes(chunk, &msg);
    if (r) {
      rill_chunk_release(chunk);
      if (!s->destroyed) {
        rill_err_t *e = rill_err_new(r, NULL, NULL, msg);
        rill_stream_destroy(s, e);
        rill_err_unref(e);
      }
      ret = r;
      goto out;
    }
  }
  if ((s->flags & RILL_STREAM_OBJECT_READ) || chunk->view.len > 0) {
    if (s->r.ended) {
      rill_chunk_release(chunk);
      error_or_destroy_code(s, RILL_ESTREAM_PUSH_AFTER_EOF);
      ret = RILL_ESTREAM_PUSH_AFTER_EOF;
      goto out;
    }
    if (s->destroyed || s->errored) {
      rill_chunk_release(chunk);
      ret = 0;
      goto out;
    }
    s->r.reading = 0;
    add_chunk(s, chunk);
  } else {
    rill_chunk_release(chunk);
    s->r.reading = 0;
    maybe_read_more(s);
  }
  ret = !s->r.ended && (s->r.length < s->r.hwm || s->r.length == 0);
out:
  rill_stream_unref(s);
  return ret;
}

int rill_stream_read(rill_stream_t *s, rill_chunk_t *out) {
  *out = RILL_CHUNK_EMPTY;
  if (!(s->flags & RILL_STREAM_READABLE)) return UV_EINVAL;
  if (s->errored) return s->errored->code;
  if (s->r.ended && s->r.length == 0) {
    if (!s->destroyed) end_readable(s);
    return UV_EOF;
  }
  if (s->destroyed) return s->stopped ? UV_EOF : RILL_ESTREAM_PREMATURE_CLOSE;
  rill_stream_ref(s);
  int got = read_(s, 1, out);
  int r = got ? 0 : UV_EAGAIN;
  if (!got) {
    if (s->errored) {
      r = s->errored->code;
    } else if (s->r.ended && s->r.length == 0) {
      r = UV_EOF;
    } else if (s->destroyed) {
      r = s->stopped ? UV_EOF : RILL_ESTREAM_PREMATURE_CLOSE;
    }
  }
  rill_stream_unref(s);
  return r;
}

static void resume_body(rill_stream_t *s) {
  if (!s->r.reading) read_(s, 0, NULL);
  s->r.resume_scheduled = 0;
  emit_plain(s, RILL_EV_RESUME);
  flow(s);
  if (s->r.flowing == 1 && !s->r.reading) read_(s, 0, NULL);
}
DEFINE_TICK(resume_tick, resume_body)

void rill_stream_resume(rill_stream_t *s) {
  if (!(s->flags & RILL_STREAM_READABLE)) return;
  if (s->r.flowing != 1) {
    s->r.flowing = s->r.readable_listening ? 0 : 1;
    if (!s->r.resume_scheduled) {
      s->r.resume_scheduled = 1;
      tick(s, resume_tick);
    }
  }
  s->r.paused = 0;
}

void rill_stream_pause(rill_stream_t *s) {
  if (!(s->flags & RILL_STREAM_READABLE)) return;
  rill_stream_ref(s);
  if (s->r.flowing != 0) {
    s->r.flowing = 0;
    emit_plain(s, RILL_EV_PAUSE);
  }
  s->r.paused = 1;
  rill_stream_unref(s);
}

static void read0_body(rill_stream_t *s) {
  read_(s, 0, NULL);
}
DEFINE_TICK(read0_tick, read0_body)

static void update_readable_listening_body(rill_stream_t *s) {
  s->r.readable_listening = s->r.readable_watchers > 0;
  if (s->r.resume_scheduled && !s->r.paused) {
    s->r.flowing = 1;
  } else if (s->r.data_watchers > 0) {
    rill_stream_resume(s);
  } else if (!s->r.readable_listening) {
    s->r.flowing = -1;
  }
}
DEFINE_TICK(update_readable_listening_tick, update_readable_listening_body)

void rill_stream_watch(rill_stream_t *s, rill_stream_ev_t ev, int delta) {
  switch (ev) {
    case RILL_EV_DATA:
      if (!(s->flags & RILL_STREAM_READABLE)) return;
      if (delta < 0) {
        if (s->r.data_watchers) s->r.data_watchers--;
        return;
      }
      s->r.data_watchers++;
      s->r.readable_listening = s->r.readable_watchers > 0;
      if (s->r.flowing != 0) rill_stream_resume(s);
      return;
    case RILL_EV_READABLE:
      if (!(s->flags & RILL_STREAM_READABLE)) return;
      if (delta < 0) {
        if (s->r.readable_watchers) s->r.readable_watchers--;
        tick(s, update_readable_listening_tick);
        return;
      }
      s->r.readable_watchers++;
      if (!s->r.end_emitted && !s->r.readable_listening) {
        s->r.readable_listening = s->r.need_readable = 1;
        s->r.flowing = 0;
        s->r.emitted_readable = 0;
        if (s->r.length) {
          emit_readable(s);
        } else if (!s->r.reading) {
          tick(s, read0_tick);
        }
      }
      return;
    case RILL_EV_ERROR:
      if (delta < 0) {
        if (s->error_watchers) s->error_watchers--;
      } else {
        s->error_watchers++;
      }
      return;
    default:
      return;
  }
}

int rill_stream_error_unhandled(const rill_stream_t *s) {
  if (!s->in_error_emit || s->error_watchers) return 0;
  for (const rill_listener_t *l = s->lhead.next; l != &s->lhead; l = l->next)
    if (l->mask & RILL_EVBIT(RILL_EV_ERROR)) return 0;
  return 1;
}

/* ---- writable side (Node's writable.js) ---- */

static void clear_buffer(rill_stream_t *s);
static void finish_maybe(rill_stream_t *s, int sync);

static int need_finish(const rill_stream_t *s) {
  return s->w.ending && !s->destroyed && s->w.length == 0 && !s->errored && s->w.buf.count == 0 &&
         !s->w.finished && !s->w.writing && !s->error_emitted && !s->close_emitted;
}

static void call_cb(rill_stream_t *s, rill_write_cb cb, void *arg, rill_err_t *err) {
  if (cb) cb(s, err, arg);
}

/* Calls every callback queued in q with err. */
static void call_all(rill_stream_t *s, queue_t *q, rill_err_t *err) {
  qent_t e;
  while (q_shift(q, &e)) {
    rill_chunk_release(&e.c);
    call_cb(s, e.cb, e.arg, err);
  }
}

static void late_body(rill_stream_t *s) {
  s->w.late_scheduled = 0;
  qent_t e;
  while (q_shift(&s->w.late, &e)) {
    call_cb(s, e.cb, e.arg, e.err);
    rill_err_unref(e.err);
  }
}
DEFINE_TICK(late_tick, late_body)

/* Queues cb(err) for the next tick (takes a reference on err). */
static void late_cb(rill_stream_t *s, rill_write_cb cb, void *arg, rill_err_t *err) {
  if (cb == NULL) return;
  qent_t e = {RILL_CHUNK_EMPTY, cb, arg, rill_err_ref(err)};
  if (q_push(&s->w.late, &e) != 0) {
    call_cb(s, cb, arg, err);
    rill_err_unref(err);
    return;
  }
  if (!s->w.late_scheduled) {
    s->w.late_scheduled = 1;
    tick(s, late_tick);
  }
}

/* Fails every buffered write (and the end callbacks) with the stream's error or
 * ERR_STREAM_DESTROYED. With abort_inflight (at close) the write in flight is abandoned too:
 * its late answer is then ignored. */
static void error_buffer(rill_stream_t *s, int abort_inflight) {
  if (!(s->flags & RILL_STREAM_WRITABLE)) return;
  if (s->w.writing && !abort_inflight) return;
  rill_err_t *err = s->errored;
  rill_err_t *own = NULL;
  if (err == NULL) err = own = rill_err_new(RILL_ESTREAM_DESTROYED, NULL, NULL, NULL);
  if (s->w.writing) {
    s->w.writing = 0;
    s->w.held = 0;
    qent_t *infl = s->w.infl;
    size_t n = s->w.ninfl;
    s->w.infl = NULL;
    s->w.ninfl = 0;
    s->w.length -= s->w.writelen;
    s->w.writelen = 0;
    for (size_t i = 0; i < n; i++) {
      rill_chunk_release(&infl[i].c);
      call_cb(s, infl[i].cb, infl[i].arg, err);
    }
  }
  /* Completed writes still waiting for their tick succeeded: they keep their success. */
  if (abort_inflight) {
    s->w.pendingcb -= s->w.after_nocb;
    s->w.after_nocb = 0;
  }
  if (abort_inflight && s->w.after.count) {
    qent_t e;
    while (q_shift(&s->w.after, &e)) call_cb(s, e.cb, e.arg, NULL);
  }
  qent_t e;
  while (q_shift(&s->w.buf, &e)) {
    s->w.length -= csize(&e.c, s->flags & RILL_STREAM_OBJECT_WRITE);
    rill_chunk_release(&e.c);
    call_cb(s, e.cb, e.arg, err);
  }
  rill_err_t *ferr = err;
  rill_err_t *own2 = NULL;
  if (s->errored == NULL) {
    ferr = own2 = rill_err_new(RILL_ESTREAM_DESTROYED, NULL, NULL, NULL);
  }
  call_all(s, &s->w.onfinish, ferr);
  if (abort_inflight) {
    while (q_shift(&s->w.failed, &e)) {
      call_cb(s, e.cb, e.arg, e.err);
      rill_err_unref(e.err);
    }
    late_body(s);
  }
  rill_err_unref(own);
  rill_err_unref(own2);
}

static void do_write(rill_stream_t *s);

static int write_or_buffer(rill_stream_t *s, rill_chunk_t *chunk, rill_write_cb cb, void *arg) {
  size_t len = csize(chunk, s->flags & RILL_STREAM_OBJECT_WRITE);
  qent_t e = {*chunk, cb, arg, NULL};
  *chunk = RILL_CHUNK_EMPTY;
  if (s->w.writing || s->errored) {
    if (q_push(&s->w.buf, &e) != 0) {
      rill_chunk_release(&e.c);
      return UV_ENOMEM;
    }
    s->w.length += len;
    s->w.pendingcb++;
  } else {
    s->w.length += len;
    s->w.pendingcb++;
    s->w.one = e;
    s->w.infl = &s->w.one;
    s->w.ninfl = 1;
    s->w.writelen = len;
    s->w.writing = 1;
    s->w.sync = 1;
    do_write(s);
    s->w.sync = 0;
  }
  int ret = s->w.length < s->w.hwm;
  if (!ret) s->w.need_drain = 1;
  return ret && !s->errored && !s->destroyed ? 0 : 1;
}

static int check_write(rill_stream_t *s, rill_chunk_t *chunk, rill_write_cb cb, void *arg,
                       const char **msg) {
  if (!(s->flags & RILL_STREAM_WRITABLE)) return UV_EINVAL;
  if (s->w.ending) return RILL_ESTREAM_WRITE_AFTER_END;
  if (s->destroyed) {
    rill_err_t *e = rill_err_new(RILL_ESTREAM_DESTROYED, NULL, NULL, NULL);
    late_cb(s, cb, arg, e);
    rill_err_unref(e);
    return RILL_ESTREAM_DESTROYED;
  }
  if (!(s->flags & RILL_STREAM_OBJECT_WRITE)) {
    int r = to_bytes(chunk, msg);
    if (r) return r;
  }
  return 0;
}

static int write_msg(rill_stream_t *s, rill_chunk_t *chunk, rill_write_cb cb, void *arg,
                     const char **msg) {
  rill_stream_ref(s);
  int r = check_write(s, chunk, cb, arg, msg);
  if (r == 0) r = write_or_buffer(s, chunk, cb, arg);
  rill_chunk_release(chunk);
  rill_stream_unref(s);
  return r;
}

int rill_stream_write(rill_stream_t *s, rill_chunk_t *chunk, rill_write_cb cb, void *arg) {
  const char *msg = NULL;
  return write_msg(s, chunk, cb, arg, &msg);
}

int rill__stream_write_msg(rill_stream_t *s, rill_chunk_t *chunk, const char **msg) {
  *msg = NULL;
  return write_msg(s, chunk, NULL, NULL, msg);
}

void rill__stream_emit_peer(rill_stream_t *s, rill_stream_ev_t type, rill_stream_t *peer) {
  rill_event_t ev = {type, NULL, NULL, peer};
  emit(s, &ev);
}

int rill_stream_write_bytes(rill_stream_t *s, const void *p, size_t len, rill_write_cb cb,
                            void *arg) {
  if ((s->flags & RILL_STREAM_COALESCE) && !(s->flags & RILL_STREAM_OBJECT_WRITE) && s->w.writing &&
      !s->w.ending && !s->destroyed && cb == NULL && len > 0) {
    /* Append into the tail chunk's slab when it is ours alone and has room: many small writes
     * become one chunk without a new allocation. */
    qent_t *t = q_last(&s->w.buf);
    if (t && t->cb == NULL && t->c.ops == NULL && t->c.view.slab) {
      rill_slab_t *sl = t->c.view.slab;
      if (atomic_load(&sl->refs) == 1 && t->c.view.off + t->c.view.len == sl->used &&
          sl->used + len <= sl->cap) {
        memcpy(sl->data + sl->used, p, len);
        sl->used += len;
        t->c.view.len += len;
        s->w.length += len;
        int ret = s->w.length < s->w.hwm;
        if (!ret) s->w.need_drain = 1;
        return ret ? 0 : 1;
      }
    }
  }
  rill_chunk_t c;
  rill_view_t v = {NULL, 0, 0};
  if (len && len < RILL_SLAB_SIZE / 4 && (s->flags & RILL_STREAM_COALESCE)) {
    /* A pooled slab with spare room that later small writes can fill. */
    v.slab = rill_slab_new(RILL_SLAB_SIZE);
    if (v.slab == NULL) return UV_ENOMEM;
    memcpy(v.slab->data, p, len);
    v.slab->used = v.len = len;
  } else if (len && rill_view_from(&v, p, len) != 0) {
    return UV_ENOMEM;
  }
  rill_chunk_from_view(&c, &v);
  return rill_stream_write(s, &c, cb, arg);
}

static void do_write(rill_stream_t *s) {
  if (s->impl->transform) {
    s->w.held_rlen = s->r.length;
    s->impl->transform(s, &s->w.infl[0].c);
  } else if (s->w.ninfl > 1) {
    s->impl->writev(s, s->w.vchunk, s->w.ninfl);
  } else if (s->impl->write) {
    s->impl->write(s, &s->w.infl[0].c);
  } else {
    /* No write hook: a sink that discards (useful for tests and /dev/null-like streams). */
    rill_stream_write_done(s, NULL);
  }
}

static void after_write(rill_stream_t *s, qent_t *done, size_t n) {
  int need_drain = !s->w.ending && !s->destroyed && s->w.length == 0 && s->w.need_drain;
  if (need_drain) {
    s->w.need_drain = 0;
    emit_plain(s, RILL_EV_DRAIN);
  }
  for (size_t i = 0; i < n; i++) {
    s->w.pendingcb--;
    call_cb(s, done[i].cb, done[i].arg, NULL);
  }
  if (s->destroyed) error_buffer(s, 0);
  finish_maybe(s, 0);
}

static void after_body(rill_stream_t *s) {
  s->w.after_scheduled = 0;
  /* Callbacks may write (and so queue more after-write entries): take the batch first. */
  size_t n = s->w.after.count;
  int need_drain = !s->w.ending && !s->destroyed && s->w.length == 0 && s->w.need_drain;
  if (need_drain) {
    s->w.need_drain = 0;
    emit_plain(s, RILL_EV_DRAIN);
  }
  s->w.pendingcb -= s->w.after_nocb;
  s->w.after_nocb = 0;
  qent_t e;
  while (n-- > 0 && q_shift(&s->w.after, &e)) {
    s->w.pendingcb--;
    call_cb(s, e.cb, e.arg, NULL);
  }
  if (s->destroyed) error_buffer(s, 0);
  finish_maybe(s, 0);
}
DEFINE_TICK(after_tick, after_body)

static void onwrite_error(rill_stream_t *s, qent_t *failed, size_t n, rill_err_t *err) {
  for (size_t i = 0; i < n; i++) {
    s->w.pendingcb--;
    call_cb(s, failed[i].cb, failed[i].arg, err);
  }
  error_buffer(s, 0);
  error_or_destroy(s, err);
}

static void onwrite_error_body(rill_stream_t *s) {
  /* The failed writes were parked in w.failed with their error. */
  s->w.failed_scheduled = 0;
  qent_t e;
  rill_err_t *err = NULL;
  while (q_shift(&s->w.failed, &e)) {
    if (e.cb) {
      s->w.pendingcb--;
      call_cb(s, e.cb, e.arg, e.err);
    }
    if (err == NULL) {
      err = e.err;
    } else {
      rill_err_unref(e.err);
    }
  }
  error_buffer(s, 0);
  if (err) error_or_destroy(s, err);
  rill_err_unref(err);
}
DEFINE_TICK(onwrite_error_tick, onwrite_error_body)

static int real_write_done(rill_stream_t *s, rill_err_t *err) {
  int sync = s->w.sync;
  size_t n = s->w.ninfl;
  /* Copy the finished entries out first: clear_buffer below reuses the in-flight storage. */
  qent_t local[8], *done = local;
  if (n > 8) {
    done = malloc(n * sizeof *done);
    if (done == NULL) {
      /* No memory for the copy: answer these callbacks right away (still after the write). */
      done = local;
      for (size_t i = 0; i < n; i++) {
        rill_chunk_release(&s->w.infl[i].c);
        s->w.pendingcb--;
        call_cb(s, s->w.infl[i].cb, s->w.infl[i].arg, err);
      }
      n = 0;
    }
  }
  if (n) memcpy(done, s->w.infl, n * sizeof *done);
  s->w.writing = 0;
  s->w.infl = NULL;
  s->w.ninfl = 0;
  s->w.length -= s->w.writelen;
  s->w.writelen = 0;
  for (size_t i = 0; i < n; i++) rill_chunk_release(&done[i].c);
  if (err) {
    set_error(s, err);
    if (sync) {
      /* Park the callbacks with the error; they run from the next tick. */
      for (size_t i = 0; i < n; i++) {
        qent_t e = {RILL_CHUNK_EMPTY, done[i].cb, done[i].arg, rill_err_ref(err)};
        if (q_push(&s->w.failed, &e) != 0) {
          s->w.pendingcb--;
          call_cb(s, e.cb, e.arg, err);
          rill_err_unref(err);
        }
      }
      if (!s->w.failed_scheduled) {
        s->w.failed_scheduled = 1;
        tick(s, onwrite_error_tick);
      }
    } else {
      onwrite_error(s, done, n, err);
    }
  } else {
    if (s->w.buf.count && !s->w.buffer_processing) clear_buffer(s);
    if (sync) {
      for (size_t i = 0; i < n; i++) {
        qent_t e = {RILL_CHUNK_EMPTY, done[i].cb, done[i].arg, NULL};
        if (e.cb == NULL) {
          s->w.after_nocb++;
        } else if (q_push(&s->w.after, &e) != 0) {
          s->w.pendingcb--;
          call_cb(s, e.cb, e.arg, NULL);
        }
      }
      if (!s->w.after_scheduled) {
        s->w.after_scheduled = 1;
        tick(s, after_tick);
      }
    } else {
      after_write(s, done, n);
    }
  }
  if (done != local) free(done);
  return 0;
}

int rill_stream_write_done(rill_stream_t *s, rill_err_t *err) {
  if (s->close_emitted || (s->destroyed && !s->w.writing)) return 0; /* abandoned at close */
  rill_stream_ref(s);
  int r = 0;
  if (!s->w.writing || s->w.held) {
    r = RILL_EMULTIPLE_CALLBACK;
    error_or_destroy_code(s, r);
  } else if (s->impl->transform && err == NULL && !s->w.ended && s->r.length != s->w.held_rlen &&
             s->r.length >= s->r.hwm) {
    /* Transform backpressure: the readable side is full, so the write completes only when the
     * consumer asks for more (Node's kCallback). */
    s->w.held = 1;
  } else {
    r = real_write_done(s, err);
  }
  rill_stream_unref(s);
  return r;
}

static void clear_buffer(rill_stream_t *s) {
  if (s->w.buffer_processing || s->destroyed) return;
  s->w.buffer_processing = 1;
again:;
  size_t count = s->w.buf.count;
  if (count > 1 && s->impl->writev && !s->impl->transform) {
    if (count > 1024) count = 1024;
    if (s->w.vcap < count) {
      qent_t *ve = malloc(count * sizeof *ve);
      rill_chunk_t *vc = malloc(count * sizeof *vc);
      if (ve == NULL || vc == NULL) {
        free(ve);
        free(vc);
        count = 1;
        goto single;
      }
      free(s->w.vent);
      free(s->w.vchunk);
      s->w.vent = ve;
      s->w.vchunk = vc;
      s->w.vcap = count;
    }
    size_t len = 0;
    for (size_t i = 0; i < count; i++) {
      q_shift(&s->w.buf, &s->w.vent[i]);
      s->w.vchunk[i] = s->w.vent[i].c;
      len += csize(&s->w.vent[i].c, s->flags & RILL_STREAM_OBJECT_WRITE);
    }
    s->w.infl = s->w.vent;
    s->w.ninfl = count;
    s->w.writelen = len;
    s->w.writing = 1;
    s->w.sync = 1;
    do_write(s);
    s->w.sync = 0;
    /* A batch is at most 1024 chunks: when it completed at once, its write_done could not
     * start the next batch (buffer_processing), so this loop does, or the rest would wait for
     * a write_done that never comes. */
    if (!s->w.writing && s->w.buf.count && !s->destroyed) goto again;
    s->w.buffer_processing = 0;
    return;
  }
single:
  while (s->w.buf.count && !s->w.writing && !s->destroyed) {
    q_shift(&s->w.buf, &s->w.one);
    s->w.infl = &s->w.one;
    s->w.ninfl = 1;
    s->w.writelen = csize(&s->w.one.c, s->flags & RILL_STREAM_OBJECT_WRITE);
    s->w.writing = 1;
    s->w.sync = 1;
    do_write(s);
    s->w.sync = 0;
  }
  s->w.buffer_processing = 0;
}

static void finish(rill_stream_t *s) {
  s->w.pendingcb--;
  s->w.finished = 1;
  call_all(s, &s->w.onfinish, NULL);
  emit_plain(s, RILL_EV_FINISH);
  if (!(s->flags & RILL_STREAM_READABLE) || s->r.end_emitted) rill_stream_destroy(s, NULL);
}

static void finish_body(rill_stream_t *s) {
  if (need_finish(s)) {
    finish(s);
  } else {
    s->w.pendingcb--;
  }
}
DEFINE_TICK(finish_tick, finish_body)

static void call_final(rill_stream_t *s) {
  s->w.sync = 1;
  s->w.pendingcb++;
  if (s->impl->transform) {
    if (s->impl->flush) {
      s->impl->flush(s);
    } else {
      rill_stream_final_done(s, NULL);
    }
  } else {
    s->impl->final(s);
  }
  s->w.sync = 0;
}

static void prefinish(rill_stream_t *s) {
  if (s->w.prefinished || s->w.final_called) return;
  if ((s->impl->final || s->impl->transform) && !s->destroyed) {
    s->w.final_called = 1;
    call_final(s);
  } else {
    s->w.prefinished = 1;
    emit_plain(s, RILL_EV_PREFINISH);
  }
}

static void finish_maybe(rill_stream_t *s, int sync) {
  if (!need_finish(s)) return;
  prefinish(s);
  if (s->w.pendingcb == 0) {
    if (sync) {
      s->w.pendingcb++;
      tick(s, finish_tick);
    } else if (need_finish(s)) {
      s->w.pendingcb++;
      finish(s);
    }
  }
}

int rill_stream_final_done(rill_stream_t *s, rill_err_t *err) {
  if (s->close_emitted) return 0;
  rill_stream_ref(s);
  int r = 0;
  if (!s->w.final_called || s->w.final_answered) {
    r = RILL_EMULTIPLE_CALLBACK;
    if (err) {
      error_or_destroy(s, err);
    } else {
      error_or_destroy_code(s, r);
    }
    goto out;
  }
  s->w.final_answered = 1;
  s->w.pendingcb--;
  if (err == NULL && s->impl->transform) {
    /* A transform's flush ended: its readable side ends too. */
    rill_stream_push(s, NULL);
  }
  if (err) {
    call_all(s, &s->w.onfinish, err);
    error_or_destroy(s, err);
  } else if (need_finish(s)) {
    s->w.prefinished = 1;
    emit_plain(s, RILL_EV_PREFINISH);
    s->w.pendingcb++;
    tick(s, finish_tick);
  }
out:
  rill_stream_unref(s);
  return r;
}

int rill_stream_end(rill_stream_t *s, rill_chunk_t *chunk, rill_write_cb cb, void *arg) {
  if (!(s->flags & RILL_STREAM_WRITABLE)) {
    if (chunk) rill_chunk_release(chunk);
    return UV_EINVAL;
  }
  rill_stream_ref(s);
  int r = 0;
  rill_err_t *err = NULL;
  if (chunk) {
    r = rill_stream_write(s, chunk, NULL, NULL);
    /* Misuse (write after end, a wrong chunk): nothing else happens. A destroyed stream is
     * not misuse: cb below gets the error. */
    if (r < 0 && r != RILL_ESTREAM_DESTROYED) goto out;
    r = 0;
  }
  if (!s->errored && !s->w.ending) {
    s->w.ending = 1;
    finish_maybe(s, 1);
    s->w.ended = 1;
  } else if (s->w.finished) {
    err = rill_err_new(RILL_ESTREAM_ALREADY_FINISHED, NULL, NULL, NULL);
  } else if (s->destroyed) {
    err = rill_err_ref(s->errored);
    if (err == NULL) err = rill_err_new(RILL_ESTREAM_DESTROYED, NULL, NULL, NULL);
  }
  if (cb) {
    if (err || s->w.finished) {
      late_cb(s, cb, arg, err);
    } else {
      qent_t e = {RILL_CHUNK_EMPTY, cb, arg, NULL};
      if (q_push(&s->w.onfinish, &e) != 0) late_cb(s, cb, arg, &enomem_err);
    }
  }
  rill_err_unref(err);
out:
  rill_stream_unref(s);
  return r;
}

/* Transform: the consumer asked for more, so a held write may complete (Node's _read). */
static void transform_read(rill_stream_t *s) {
  if (s->w.held) {
    s->w.held = 0;
    real_write_done(s, NULL);
  }
}

/* ---- state ---- */

unsigned rill_stream_state(const rill_stream_t *s) {
  unsigned st = 0;
  if (s->destroyed) st |= RILL_SS_DESTROYED;
  if (s->close_emitted) st |= RILL_SS_CLOSED;
  if (s->errored) st |= RILL_SS_ERRORED;
  if (s->r.ended) st |= RILL_SS_READ_ENDED;
  if (s->r.end_emitted) st |= RILL_SS_END_EMITTED;
  if (s->r.flowing == 1) st |= RILL_SS_FLOWING;
  if (s->r.paused) st |= RILL_SS_PAUSED;
  if (s->w.ending) st |= RILL_SS_ENDING;
  if (s->w.finished) st |= RILL_SS_FINISHED;
  if (s->w.need_drain) st |= RILL_SS_NEED_DRAIN;
  if (s->stopped) st |= RILL_SS_STOPPED;
  if (s->w.writing) st |= RILL_SS_WRITING;
  return st;
}

unsigned rill_stream_flags(const rill_stream_t *s) {
  return s->flags;
}

rill_err_t *rill_stream_error(const rill_stream_t *s) {
  return s->errored;
}

size_t rill_stream_readable_length(const rill_stream_t *s) {
  return s->r.length;
}

size_t rill_stream_writable_length(const rill_stream_t *s) {
  return s->w.length;
}

size_t rill_stream_readable_hwm(const rill_stream_t *s) {
  return s->r.hwm;
}

size_t rill_stream_writable_hwm(const rill_stream_t *s) {
  return s->w.hwm;
}

struct rill_pipe_s *rill__stream_pipes_out(rill_stream_t *s) {
  return s->pipes_out;
}

struct rill_pipe_s *rill__stream_pipes_in(rill_stream_t *s) {
  return s->pipes_in;
}

void rill__stream_set_pipes(rill_stream_t *s, struct rill_pipe_s *out, struct rill_pipe_s *in) {
  s->pipes_out = out;
  s->pipes_in = in;
}

unsigned rill__stream_data_gen(const rill_stream_t *s) {
  return s->r.data_gen;
}

size_t rill__stream_data_watchers(const rill_stream_t *s) {
  return s->r.data_watchers;
}

struct gen_tick {
  rill_stream_t *s;
  void (*cb)(rill_stream_t *s, void *arg);
  void *arg;
};

static void gen_tick_run(void *p) {
  struct gen_tick *t = p;
  t->cb(t->s, t->arg);
  rill_stream_unref(t->s);
  free(t);
}

int rill__stream_tick(rill_stream_t *s, void (*cb)(rill_stream_t *s, void *arg), void *arg) {
  struct gen_tick *t = malloc(sizeof *t);
  if (t == NULL) return UV_ENOMEM;
  t->s = s;
  t->cb = cb;
  t->arg = arg;
  rill_stream_ref(s);
  if (rill_loop_next_tick(s->loop, gen_tick_run, t) != 0) {
    rill_stream_unref(s);
    free(t);
    return UV_ENOMEM;
  }
  return 0;
}

/* ---- in-memory source ---- */

typedef struct {
  rill_view_t v;
  size_t pos, chunk;
} source_t;

static void source_read(rill_stream_t *s, size_t size) {
  source_t *src = rill_stream_data(s);
  for (;;) {
    if (src->pos >= src->v.len) {
      rill_view_release(&src->v);
      rill_stream_push(s, NULL);
      return;
    }
    size_t n = src->v.len - src->pos;
    if (n > src->chunk) n = src->chunk;
    rill_chunk_t c;
    rill_view_t sl;
    rill_view_slice(&sl, &src->v, src->pos, n);
    src->pos += n;
    rill_chunk_from_view(&c, &sl);
    if (rill_stream_push(s, &c) != 1) return;
  }
}

static void source_free(rill_stream_t *s) {
  source_t *src = rill_stream_data(s);
  rill_view_release(&src->v);
  free(src);
}

static const rill_stream_impl_t source_impl = {.read = source_read, .free = source_free};

int rill_stream_new_source(rill_loop_t *loop, const rill_view_t *v, size_t chunk,
                           rill_stream_t **out) {
  source_t *src = calloc(1, sizeof *src);
  if (src == NULL) return UV_ENOMEM;
  if (v->len) rill_view_slice(&src->v, v, 0, v->len);
  src->chunk = chunk ? chunk : RILL_HWM_BYTES_DEFAULT;
  rill_stream_opts_t o = {RILL_STREAM_READABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  int r = rill_stream_new(loop, &source_impl, src, &o, out);
  if (r) {
    rill_view_release(&src->v);
    free(src);
  }
  return r;
}
