/* core/pipe.c: pipe (Node's Readable.prototype.pipe), pipeline and finished, in C. */
#include "pipe.h"

#include "splice.h"

#include <stdlib.h>
#include <string.h>

struct rill_pipe_s {
  rill_stream_t *src, *dst;
  int end;
  int cleaned;
  int busy;     /* inside one of its listeners: free only when they return */
  int awaiting; /* paused because dst was full, since data generation await_gen */
  unsigned await_gen;
  rill_listener_t lsrc, ldst;
  struct rill_pipe_s *out_prev, *out_next; /* in src's list of destinations */
  struct rill_pipe_s *in_prev, *in_next;   /* in dst's list of sources */
};

static void link_pipe(rill_pipe_t *p) {
  rill_pipe_t *out = rill__stream_pipes_out(p->src), *in = rill__stream_pipes_in(p->src);
  p->out_next = out;
  p->out_prev = NULL;
  if (out) out->out_prev = p;
  rill__stream_set_pipes(p->src, p, in);
  out = rill__stream_pipes_out(p->dst);
  in = rill__stream_pipes_in(p->dst);
  p->in_next = in;
  p->in_prev = NULL;
  if (in) in->in_prev = p;
  rill__stream_set_pipes(p->dst, out, p);
}

static void unlink_pipe(rill_pipe_t *p) {
  if (p->out_prev) {
    p->out_prev->out_next = p->out_next;
  } else {
    rill__stream_set_pipes(p->src, p->out_next, rill__stream_pipes_in(p->src));
  }
  if (p->out_next) p->out_next->out_prev = p->out_prev;
  if (p->in_prev) {
    p->in_prev->in_next = p->in_next;
  } else {
    rill__stream_set_pipes(p->dst, rill__stream_pipes_out(p->dst), p->in_next);
  }
  if (p->in_next) p->in_next->in_prev = p->in_prev;
  p->out_prev = p->out_next = p->in_prev = p->in_next = NULL;
}

static int awaiting(const rill_pipe_t *p) {
  return p->awaiting && p->await_gen == rill__stream_data_gen(p->src);
}

static int any_awaiting(rill_stream_t *src) {
  for (rill_pipe_t *q = rill__stream_pipes_out(src); q; q = q->out_next)
    if (awaiting(q)) return 1;
  return 0;
}

static void pause_for(rill_pipe_t *p) {
  p->awaiting = 1;
  p->await_gen = rill__stream_data_gen(p->src);
  rill_stream_pause(p->src);
}

/* dst drained (or left): the source resumes unless another destination is still full. */
static void on_drain(rill_pipe_t *p) {
  p->awaiting = 0;
  if (!any_awaiting(p->src) && rill__stream_data_watchers(p->src) > 0) rill_stream_resume(p->src);
}

static void cleanup(rill_pipe_t *p) {
  if (p->cleaned) return;
  p->cleaned = 1;
  rill_stream_t *src = p->src, *dst = p->dst;
  int was_awaiting = awaiting(p);
  rill_stream_unlisten(&p->lsrc);
  rill_stream_unlisten(&p->ldst);
  unlink_pipe(p);
  if (rill__stream_pipes_out(src) == NULL) rill_stream_pause(src);
  rill_stream_watch(src, RILL_EV_DATA, -1);
  if (was_awaiting) on_drain(p);
  rill__stream_emit_peer(dst, RILL_EV_UNPIPE, src);
  if (p->busy == 0) free(p);
  rill_stream_unref(src);
  rill_stream_unref(dst);
}

static void enter(rill_pipe_t *p) {
  p->busy++;
}

/* Leaves a listener; returns 0 when the pipe was undone (and freed) meanwhile. */
static int leave(rill_pipe_t *p) {
  if (--p->busy == 0 && p->cleaned) {
    free(p);
    return 0;
  }
  return !p->cleaned;
}

static void src_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  rill_pipe_t *p = RILL_CONTAINER_OF(l, rill_pipe_t, lsrc);
  switch (ev->type) {
    case RILL_EV_DATA: {
      rill_chunk_t c;
      rill_chunk_dup(&c, ev->chunk);
      const char *msg = NULL;
      enter(p);
      int r = rill__stream_write_msg(p->dst, &c, &msg);
      /* The write may have undone this very pipe (the destination finished or stopped us). */
      if (!leave(p)) break;
      if (r == 1) {
        pause_for(p);
      } else if (r == RILL_ESTREAM_DESTROYED) {
        cleanup(p);
      } else if (r < 0) {
        /* Misuse through the pipe (write after end, a chunk the destination cannot take): the
         * destination fails, which unpipes at its close. */
        rill_err_t *e = rill_err_new(r, NULL, NULL, msg);
        rill_stream_destroy(p->dst, e);
        rill_err_unref(e);
      }
      break;
    }
    case RILL_EV_END: {
      rill_stream_t *dst = p->dst;
      int end = p->end;
      rill_stream_ref(dst);
      cleanup(p);
      if (end) rill_stream_end(dst, NULL, NULL, NULL);
      rill_stream_unref(dst);
      break;
    }
    case RILL_EV_CLOSE:
      cleanup(p);
      break;
    default:
      break;
  }
}

static void dst_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  rill_pipe_t *p = RILL_CONTAINER_OF(l, rill_pipe_t, ldst);
  switch (ev->type) {
    case RILL_EV_DRAIN:
      on_drain(p);
      break;
    case RILL_EV_FINISH:
    case RILL_EV_CLOSE:
      rill_stream_unpipe(p->src, p->dst);
      break;
    default:
      break;
  }
}

static void end_late(rill_stream_t *src, void *arg) {
  rill_stream_t *dst = arg;
  rill_stream_end(dst, NULL, NULL, NULL);
  rill_stream_unref(dst);
}

int rill_stream_pipe(rill_stream_t *src, rill_stream_t *dst, int end) {
  /* src == dst is allowed, as in Node: a duplex piped into itself (a TCP echo, sock:pipe(sock))
   * has its pipe in both of the stream's lists and two listeners on it. */
  if (!(rill_stream_flags(src) & RILL_STREAM_READABLE) ||
      !(rill_stream_flags(dst) & RILL_STREAM_WRITABLE))
    return UV_EINVAL;
  /* The native fast path (core/splice.h): a file into a file or socket moves in the kernel. */
  if (!((rill_stream_state(src) | rill_stream_state(dst)) & RILL_SS_CLOSED) &&
      rill__splice_try(src, dst, end))
    return 0;
  return rill__pipe_plain(src, dst, end);
}

int rill__pipe_plain(rill_stream_t *src, rill_stream_t *dst, int end) {
  if ((rill_stream_state(src) | rill_stream_state(dst)) & RILL_SS_CLOSED) return 0;
  if (rill_stream_state(src) & RILL_SS_END_EMITTED) {
    /* Node: a source that already ended ends the destination on the next tick. */
    if (end) {
      rill_stream_ref(dst);
      if (rill__stream_tick(src, end_late, dst) != 0) {
        rill_stream_unref(dst);
        return UV_ENOMEM;
      }
    }
    return 0;
  }
  rill_pipe_t *p = calloc(1, sizeof *p);
  if (p == NULL) return UV_ENOMEM;
  p->src = src;
  p->dst = dst;
  p->end = end;
  rill_stream_ref(src);
  rill_stream_ref(dst);
  p->lsrc.mask = RILL_EVBIT(RILL_EV_DATA) | RILL_EVBIT(RILL_EV_END) | RILL_EVBIT(RILL_EV_CLOSE);
  p->lsrc.cb = src_event;
  p->ldst.mask = RILL_EVBIT(RILL_EV_DRAIN) | RILL_EVBIT(RILL_EV_FINISH) | RILL_EVBIT(RILL_EV_CLOSE);
  p->ldst.cb = dst_event;
  link_pipe(p);
  rill_stream_listen(src, &p->lsrc);
  rill_stream_listen(dst, &p->ldst);
  rill_stream_ref(src);
  rill_stream_watch(src, RILL_EV_DATA, +1);
  enter(p);
  rill__stream_emit_peer(dst, RILL_EV_PIPE, src);
  if (leave(p)) {
    if (rill_stream_state(dst) & RILL_SS_NEED_DRAIN) {
      pause_for(p);
    } else if (!(rill_stream_state(src) & RILL_SS_FLOWING)) {
      rill_stream_resume(src);
    }
  }
  rill_stream_unref(src);
  return 0;
}

void rill_stream_unpipe(rill_stream_t *src, rill_stream_t *dst) {
  rill_stream_ref(src);
  rill_pipe_t *p = rill__stream_pipes_out(src);
  while (p) {
    rill_pipe_t *next = p->out_next;
    if (dst == NULL || p->dst == dst) {
      cleanup(p);
      /* cleanup may have run listeners that removed other pipes: restart from the head. */
      next = rill__stream_pipes_out(src);
    }
    p = next;
    if (dst) break;
  }
  rill_stream_unref(src);
}

size_t rill_stream_pipe_count(rill_stream_t *src) {
  size_t n = 0;
  for (rill_pipe_t *p = rill__stream_pipes_out(src); p; p = p->out_next) n++;
  return n;
}

void rill_stream_stop_sources(rill_stream_t *s) {
  rill_pipe_t *p;
  while ((p = rill__stream_pipes_in(s)) != NULL) {
    rill_stream_t *src = p->src;
    rill_stream_ref(src);
    cleanup(p);
    rill_stream_stop(src);
    rill_stream_unref(src);
  }
}

/* ---- finished ---- */

struct rill_finished_s {
  rill_listener_t l;
  rill_stream_t *s;
  unsigned which;
  rill_finished_cb cb;
  void *arg;
  int cancelled;
};

static void finished_report(rill_finished_t *f) {
  rill_stream_t *s = f->s;
  unsigned st = rill_stream_state(s), fl = rill_stream_flags(s);
  rill_err_t *err = rill_stream_error(s), *own = NULL;
  if (err == NULL && !(st & RILL_SS_STOPPED)) {
    int premature = ((f->which & RILL_FINISHED_READABLE) && (fl & RILL_STREAM_READABLE) &&
                     !(st & RILL_SS_END_EMITTED)) ||
                    ((f->which & RILL_FINISHED_WRITABLE) && (fl & RILL_STREAM_WRITABLE) &&
                     !(st & RILL_SS_FINISHED));
    if (premature) err = own = rill_err_new(RILL_ESTREAM_PREMATURE_CLOSE, NULL, NULL, NULL);
  }
  if (!f->cancelled) f->cb(s, err, f->arg);
  rill_err_unref(own);
  rill_stream_unref(s);
  free(f);
}

static void finished_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  rill_finished_t *f = RILL_CONTAINER_OF(l, rill_finished_t, l);
  rill_stream_unlisten(l);
  finished_report(f);
}

static void finished_late(rill_stream_t *s, void *arg) {
  finished_report(arg);
}

int rill_stream_finished(rill_stream_t *s, unsigned which, rill_finished_cb cb, void *arg,
                         rill_finished_t **out) {
  rill_finished_t *f = calloc(1, sizeof *f);
  if (f == NULL) return UV_ENOMEM;
  f->s = s;
  f->which = which ? which : RILL_FINISHED_READABLE | RILL_FINISHED_WRITABLE;
  f->cb = cb;
  f->arg = arg;
  rill_stream_ref(s);
  if (rill_stream_state(s) & RILL_SS_CLOSED) {
    if (rill__stream_tick(s, finished_late, f) != 0) {
      rill_stream_unref(s);
      free(f);
      return UV_ENOMEM;
    }
  } else {
    f->l.mask = RILL_EVBIT(RILL_EV_CLOSE) | RILL_EVBIT(RILL_EV_ERROR);
    f->l.cb = finished_event;
    /* Listening for "error" marks it as handled; the report waits for "close". */
    f->l.mask = RILL_EVBIT(RILL_EV_CLOSE);
    rill_stream_listen(s, &f->l);
    rill_stream_watch(s, RILL_EV_ERROR, +1);
  }
  if (out) *out = f;
  return 0;
}

void rill_finished_cancel(rill_finished_t *f) {
  f->cancelled = 1;
  if (f->l.stream) {
    rill_stream_unlisten(&f->l);
    rill_stream_watch(f->s, RILL_EV_ERROR, -1);
    rill_stream_unref(f->s);
    free(f);
  }
}

/* ---- pipeline ---- */

typedef struct {
  size_t n, remaining;
  rill_err_t *err;
  rill_pipeline_cb cb;
  void *arg;
  int destroying;
  rill_stream_t *streams[];
} pipeline_t;

static void stage_done(rill_stream_t *s, rill_err_t *err, void *arg) {
  pipeline_t *p = arg;
  if (err) {
    if (p->err == NULL || (p->err->code == RILL_ESTREAM_PREMATURE_CLOSE &&
                           err->code != RILL_ESTREAM_PREMATURE_CLOSE)) {
      rill_err_unref(p->err);
      p->err = rill_err_ref(err);
    }
    if (!p->destroying) {
      p->destroying = 1;
      for (size_t i = 0; i < p->n; i++) rill_stream_destroy(p->streams[i], p->err);
    }
  }
  if (--p->remaining > 0) return;
  p->cb(p->err, p->arg);
  rill_err_unref(p->err);
  for (size_t i = 0; i < p->n; i++) rill_stream_unref(p->streams[i]);
  free(p);
}

int rill_pipeline(rill_stream_t *const *streams, size_t n, rill_pipeline_cb cb, void *arg) {
  if (n < 2 || cb == NULL) return UV_EINVAL;
  for (size_t i = 0; i < n; i++) {
    unsigned need = i == 0       ? RILL_STREAM_READABLE
                    : i == n - 1 ? RILL_STREAM_WRITABLE
                                 : RILL_STREAM_DUPLEX;
    if ((rill_stream_flags(streams[i]) & need) != need) return UV_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (streams[j] == streams[i]) return UV_EINVAL;
  }
  pipeline_t *p = calloc(1, sizeof *p + n * sizeof p->streams[0]);
  if (p == NULL) return UV_ENOMEM;
  p->n = p->remaining = n;
  p->cb = cb;
  p->arg = arg;
  for (size_t i = 0; i < n; i++) {
    p->streams[i] = streams[i];
    rill_stream_ref(streams[i]);
  }
  /* Watch first, pipe next: a stage that fails while being piped is still seen. */
  for (size_t i = 0; i < n; i++) {
    unsigned which = i == 0       ? RILL_FINISHED_READABLE
                     : i == n - 1 ? RILL_FINISHED_WRITABLE
                                  : RILL_FINISHED_READABLE | RILL_FINISHED_WRITABLE;
    if (rill_stream_finished(streams[i], which, stage_done, p, NULL) != 0) {
      /* Out of memory half-way: fail the whole pipeline; the stages already watched report. */
      p->remaining -= n - i;
      rill_err_t *e = rill_err_new(UV_ENOMEM, NULL, NULL, NULL);
      p->err = e;
      p->destroying = 1;
      for (size_t k = 0; k < n; k++) rill_stream_destroy(streams[k], e);
      if (p->remaining == 0) {
        /* Nothing watched at all: report from here (after the call, as promised, is not
         * possible without memory; this is the one synchronous path). */
        cb(e, arg);
        rill_err_unref(e);
        for (size_t k = 0; k < n; k++) rill_stream_unref(streams[k]);
        free(p);
      }
      return 0;
    }
  }
  for (size_t i = 0; i + 1 < n; i++) rill_stream_pipe(streams[i], streams[i + 1], 1);
  return 0;
}
