/* core/uvstream.c: libuv stream handles (TCP sockets, pipes, TTYs) as native rill streams. */
#include "uvstream.h"

#include <stdlib.h>
#include <string.h>

/* A read slab is replaced once less than this is left in it. */
#define MIN_READ_ROOM 4096
#define BUFS_INLINE 16

typedef struct {
  rill_uvs_t pub;
  rill_handle_t h;
  rill_slab_t *slab; /* current read slab (one reference) */
  uint64_t nread, nwritten;
  unsigned ready : 1, want : 1, reading : 1, eof : 1, destroying : 1, closed : 1, writing : 1,
      write_pending : 1, final_pending : 1, shutting : 1, busy : 1, closing : 1, rbusy : 1;
  const rill_chunk_t *chunks; /* waiting for ready */
  size_t nchunks;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  uv_buf_t bufsml[BUFS_INLINE];
  uv_buf_t *bufs;
  size_t bufcap;
  size_t wbytes;
  rill_err_t *derr;
  void (*cancel)(void *arg); /* while the write side is lent to the fast path */
  void *cancel_arg;
  void (*rcancel)(void *arg); /* while the read side is lent to the fast path */
  void *rcancel_arg;
  void (*ready_cb)(rill_uvs_t *u, void *arg); /* rill__uvs_when_ready */
  void *ready_arg;
  _Alignas(max_align_t) unsigned char extra[];
} uvs_t;

static const rill_stream_impl_t uvs_impl;

#define UVS(p) ((uvs_t *)(p))

static void fail(uvs_t *u, int code, const char *syscall) {
  rill_err_t *e = rill_err_new(code, syscall, NULL, NULL);
  rill_stream_destroy(u->pub.s, e);
  rill_err_unref(e);
}

/* ---- reading ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  uvs_t *u = RILL_CONTAINER_OF(h->data, uvs_t, h);
  if (u->slab == NULL || u->slab->cap - u->slab->used < MIN_READ_ROOM) {
    rill_slab_unref(u->slab);
    u->slab = rill_slab_new(RILL_SLAB_SIZE);
    if (u->slab == NULL) {
      *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to read_cb */
      return;
    }
  }
  *buf =
      uv_buf_init((char *)u->slab->data + u->slab->used, (unsigned)(u->slab->cap - u->slab->used));
}

static void stop_reading(uvs_t *u) {
  if (u->reading) {
    uv_read_stop(&u->pub.u.stream);
    u->reading = 0;
  }
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  uvs_t *u = RILL_CONTAINER_OF(((uv_handle_t *)st)->data, uvs_t, h);
  if (n == 0) return;
  rill_stream_t *s = u->pub.s;
  rill_stream_ref(s);
  if (n > 0) {
    rill_view_t v = {u->slab, u->slab->used, (size_t)n};
    rill_slab_ref(u->slab);
    u->slab->used += (size_t)n;
    u->nread += (uint64_t)n;
    rill_chunk_t c;
    rill_chunk_from_view(&c, &v);
    if (rill_stream_push(s, &c) != 1) {
      u->want = 0;
      stop_reading(u);
    }
  } else if (n == UV_EOF) {
    stop_reading(u);
    u->eof = 1;
    u->want = 0;
    rill_stream_push(s, NULL);
  } else {
    stop_reading(u);
    fail(u, (int)n, "read");
  }
  rill_stream_unref(s);
}

static void start_reading(uvs_t *u) {
  if (u->reading || !u->ready || u->eof || u->destroying || u->closed || u->rbusy) return;
  int e = uv_read_start(&u->pub.u.stream, alloc_cb, read_cb);
  if (e) {
    fail(u, e, "read");
    return;
  }
  u->reading = 1;
}

static void uvs_read(rill_stream_t *s, size_t size) {
  uvs_t *u = rill_stream_data(s);
  u->want = 1;
  start_reading(u);
}

/* ---- writing ---- */

static void write_cb(uv_write_t *req, int status) {
  uvs_t *u = RILL_CONTAINER_OF(req, uvs_t, wreq);
  u->writing = 0;
  /* Canceled by the close: the core answers the abandoned writes itself at "close". */
  if (u->destroying || u->closed) return;
  if (status == 0) u->nwritten += u->wbytes;
  rill_stream_t *s = u->pub.s;
  rill_stream_ref(s);
  if (status) {
    rill_err_t *e = rill_err_new(status, "write", NULL, NULL);
    rill_stream_write_done(s, e);
    rill_err_unref(e);
  } else {
    rill_stream_write_done(s, NULL);
  }
  rill_stream_unref(s);
}

static void submit(uvs_t *u, const rill_chunk_t *chunks, size_t n) {
  if (n > u->bufcap) {
    size_t cap = u->bufcap ? u->bufcap : BUFS_INLINE;
    while (cap < n) cap *= 2;
    uv_buf_t *b = malloc(cap * sizeof *b);
    if (b == NULL) {
      rill_err_t *e = rill_err_new(UV_ENOMEM, "write", NULL, NULL);
      rill_stream_write_done(u->pub.s, e);
      rill_err_unref(e);
      return;
    }
    if (u->bufs != u->bufsml) free(u->bufs);
    u->bufs = b;
    u->bufcap = cap;
  }
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    u->bufs[i] = uv_buf_init((char *)rill_view_data(&chunks[i].view), (unsigned)chunks[i].view.len);
    total += chunks[i].view.len;
  }
  u->wbytes = total;
  int e = uv_write(&u->wreq, &u->pub.u.stream, u->bufs, (unsigned)n, write_cb);
  if (e) {
    rill_err_t *err = rill_err_new(e, "write", NULL, NULL);
    rill_stream_write_done(u->pub.s, err);
    rill_err_unref(err);
    return;
  }
  u->writing = 1;
}

static void uvs_writev(rill_stream_t *s, const rill_chunk_t *chunks, size_t n) {
  uvs_t *u = rill_stream_data(s);
  if (!u->ready || u->busy) {
    u->chunks = chunks;
    u->nchunks = n;
    u->write_pending = 1;
    return;
  }
  submit(u, chunks, n);
}

static void uvs_write(rill_stream_t *s, const rill_chunk_t *chunk) {
  uvs_writev(s, chunk, 1);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  uvs_t *u = RILL_CONTAINER_OF(req, uvs_t, sreq);
  u->shutting = 0;
  if (u->destroying || u->closed) return;
  rill_stream_t *s = u->pub.s;
  rill_stream_ref(s);
  if (status && status != UV_ENOTCONN) {
    rill_err_t *e = rill_err_new(status, "shutdown", NULL, NULL);
    rill_stream_final_done(s, e);
    rill_err_unref(e);
  } else {
    rill_stream_final_done(s, NULL);
  }
  rill_stream_unref(s);
}

static void do_final(uvs_t *u) {
  if (u->pub.kind == RILL_UVS_TTY) {
    rill_stream_final_done(u->pub.s, NULL);
    return;
  }
  int e = uv_shutdown(&u->sreq, &u->pub.u.stream, shutdown_cb);
  if (e) {
    /* Nothing to shut down (the peer is gone, or not a socket): the end still succeeded. */
    rill_stream_final_done(u->pub.s, NULL);
    return;
  }
  u->shutting = 1;
}

static void uvs_final(rill_stream_t *s) {
  uvs_t *u = rill_stream_data(s);
  if (!u->ready || u->busy) {
    u->final_pending = 1;
    return;
  }
  do_final(u);
}

/* ---- readiness and lending ---- */

static void resume_waiting(uvs_t *u) {
  if (u->write_pending && !u->busy) {
    u->write_pending = 0;
    submit(u, u->chunks, u->nchunks);
  }
  if (u->final_pending && !u->destroying && !u->busy) {
    u->final_pending = 0;
    do_final(u);
  }
  if (u->want && !u->destroying) start_reading(u);
}

static void call_ready_cb(uvs_t *u) {
  void (*cb)(rill_uvs_t *, void *) = u->ready_cb;
  u->ready_cb = NULL;
  if (cb) cb(&u->pub, u->ready_arg);
}

void rill_uvs_ready(rill_uvs_t *pub) {
  uvs_t *u = UVS(pub);
  if (u->ready) return;
  u->ready = 1;
  if (u->destroying) return;
  rill_stream_ref(pub->s);
  call_ready_cb(u);
  resume_waiting(u);
  rill_stream_unref(pub->s);
}

void rill__uvs_when_ready(rill_uvs_t *pub, void (*cb)(rill_uvs_t *u, void *arg), void *arg) {
  uvs_t *u = UVS(pub);
  if (u->ready || u->destroying) {
    cb(pub, arg);
    return;
  }
  u->ready_cb = cb;
  u->ready_arg = arg;
}

/* ---- destroy ---- */

static void closed_cb(rill_handle_t *h) {
  uvs_t *u = RILL_CONTAINER_OF(h, uvs_t, h);
  u->closed = 1;
  u->reading = 0;
  rill_slab_unref(u->slab);
  u->slab = NULL;
  /* Engine teardown closes handles of live streams too: only a destroy gets its answer (the
   * stream is then freed by its last owner; nothing may call into Lua here). */
  if (u->destroying) {
    rill_err_t *e = u->derr;
    u->derr = NULL;
    rill_stream_destroy_done(u->pub.s, e);
    rill_err_unref(e);
  }
}

static void close_now(uvs_t *u) {
  if (u->closing || u->busy || u->rbusy) return;
  u->closing = 1;
  if (u->closed) {
    closed_cb(&u->h);
    return;
  }
  rill_handle_close(&u->h);
}

static void uvs_destroy(rill_stream_t *s, rill_err_t *err) {
  uvs_t *u = rill_stream_data(s);
  u->destroying = 1;
  if (u->busy && u->cancel) u->cancel(u->cancel_arg);
  if (u->rbusy && u->rcancel) u->rcancel(u->rcancel_arg);
  call_ready_cb(u); /* a waiter learns that it never will be */
  u->derr = rill_err_ref(err);
  if (u->pub.on_destroy) u->pub.on_destroy(&u->pub);
  close_now(u);
}

static void uvs_free(rill_stream_t *s) {
  uvs_t *u = rill_stream_data(s);
  if (u->pub.on_free) u->pub.on_free(&u->pub);
  rill_slab_unref(u->slab);
  rill_err_unref(u->derr);
  if (u->bufs != u->bufsml) free(u->bufs);
  free(u);
}

static const rill_stream_impl_t uvs_impl = {.read = uvs_read,
                                            .write = uvs_write,
                                            .writev = uvs_writev,
                                            .final = uvs_final,
                                            .destroy = uvs_destroy,
                                            .free = uvs_free};

/* ---- creation ---- */

static int make(rill_loop_t *loop, unsigned flags, size_t extra, uvs_t **up, rill_stream_t **out) {
  if (loop == NULL || out == NULL || !(flags & RILL_STREAM_DUPLEX)) return UV_EINVAL;
  uvs_t *u = calloc(1, sizeof *u + extra);
  if (u == NULL) return UV_ENOMEM;
  u->pub.loop = loop;
  u->pub.owner = u->extra;
  u->bufs = u->bufsml;
  u->bufcap = BUFS_INLINE;
  rill_stream_opts_t so = {
      (flags & (RILL_STREAM_DUPLEX | RILL_STREAM_NO_HALF_OPEN)) | RILL_STREAM_COALESCE,
      RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  int e = rill_stream_new(loop, &uvs_impl, u, &so, &u->pub.s);
  if (e) {
    free(u);
    return e;
  }
  *up = u;
  return 0;
}

static void track(uvs_t *u) {
  rill_handle_track(u->pub.loop, &u->h, &u->pub.u.handle, closed_cb);
}

int rill_uvs_new(rill_loop_t *loop, int kind, unsigned flags, size_t extra, rill_uvs_t **uvs,
                 rill_stream_t **out) {
  if (kind != RILL_UVS_TCP && kind != RILL_UVS_PIPE) return UV_EINVAL;
  uvs_t *u;
  int e = make(loop, flags, extra, &u, out);
  if (e) return e;
  e = kind == RILL_UVS_TCP ? uv_tcp_init(loop->uv, &u->pub.u.tcp)
                           : uv_pipe_init(loop->uv, &u->pub.u.pipe, 0);
  if (e) {
    rill_stream_set_hook(u->pub.s, NULL, NULL);
    u->closed = 1; /* nothing to close: destroy answers at once */
    rill_stream_unref(u->pub.s);
    return e;
  }
  u->pub.kind = kind;
  track(u);
  *uvs = &u->pub;
  *out = u->pub.s;
  return 0;
}

int rill_uvs_open_fd(rill_loop_t *loop, int fd, unsigned flags, rill_uvs_t **uvs,
                     rill_stream_t **out) {
  uv_handle_type t = uv_guess_handle(fd);
  if (t != UV_TTY && t != UV_NAMED_PIPE && t != UV_TCP) return UV_EINVAL;
  uvs_t *u;
  int e = make(loop, flags, 0, &u, out);
  if (e) return e;
  if (t == UV_TTY) {
    e = uv_tty_init(loop->uv, &u->pub.u.tty, fd, (flags & RILL_STREAM_READABLE) != 0);
    u->pub.kind = RILL_UVS_TTY;
  } else if (t == UV_NAMED_PIPE) {
    e = uv_pipe_init(loop->uv, &u->pub.u.pipe, 0);
    u->pub.kind = RILL_UVS_PIPE;
  } else {
    e = uv_tcp_init(loop->uv, &u->pub.u.tcp);
    u->pub.kind = RILL_UVS_TCP;
  }
  if (e) {
    u->closed = 1;
    rill_stream_unref(u->pub.s);
    return e;
  }
  track(u);
  if (t == UV_NAMED_PIPE) e = uv_pipe_open(&u->pub.u.pipe, fd);
  if (t == UV_TCP) e = uv_tcp_open(&u->pub.u.tcp, fd);
  if (e) {
    /* The handle exists: close it through the stream (it never owned fd, as it failed). */
    rill_stream_unref(u->pub.s);
    return e;
  }
  u->ready = 1;
  *uvs = &u->pub;
  *out = u->pub.s;
  return 0;
}

void *rill_uvs_extra(rill_uvs_t *u) {
  return UVS(u)->extra;
}

rill_uvs_t *rill_uvs_of(rill_stream_t *s) {
  return rill_stream_impl(s) == &uvs_impl ? &UVS(rill_stream_data(s))->pub : NULL;
}

void rill_uvs_counts(const rill_uvs_t *pub, uint64_t *read, uint64_t *written) {
  const uvs_t *u = (const uvs_t *)pub;
  if (read) *read = u->nread;
  if (written) *written = u->nwritten;
}

int rill__uvs_fd_info(rill_uvs_t *pub, int *fd, int for_write) {
  uvs_t *u = UVS(pub);
  if (!u->ready || u->destroying || u->closed || (for_write && u->busy)) return 0;
  if (for_write &&
      (u->writing || u->write_pending || u->shutting || rill_stream_writable_length(pub->s) != 0))
    return 0;
  if (!for_write && (u->eof || rill_stream_readable_length(pub->s) != 0)) return 0;
  uv_os_fd_t f;
  if (uv_fileno(&pub->u.handle, &f) != 0) return 0;
  *fd = f;
  return 1;
}

void rill__uvs_lend_writes(rill_uvs_t *pub, void (*cancel)(void *arg), void *arg) {
  uvs_t *u = UVS(pub);
  u->busy = 1;
  u->cancel = cancel;
  u->cancel_arg = arg;
}

int rill__uvs_claimed(rill_uvs_t *pub) {
  uvs_t *u = UVS(pub);
  return u->busy || u->ready_cb != NULL;
}

int rill__uvs_reads_claimed(rill_uvs_t *pub) {
  uvs_t *u = UVS(pub);
  return u->rbusy || u->ready_cb != NULL;
}

void rill__uvs_lend_reads(rill_uvs_t *pub, void (*cancel)(void *arg), void *arg) {
  uvs_t *u = UVS(pub);
  stop_reading(u);
  u->rbusy = 1;
  u->rcancel = cancel;
  u->rcancel_arg = arg;
}

void rill__uvs_return_reads(rill_uvs_t *pub, uint64_t n, int eof) {
  uvs_t *u = UVS(pub);
  u->rbusy = 0;
  u->rcancel = NULL;
  u->nread += n;
  rill_stream_ref(pub->s);
  if (u->destroying) {
    close_now(u);
  } else if (eof) {
    u->eof = 1;
    u->want = 0;
    rill_stream_push(pub->s, NULL);
  } else {
    resume_waiting(u);
  }
  rill_stream_unref(pub->s);
}

void rill__uvs_return_writes(rill_uvs_t *pub) {
  uvs_t *u = UVS(pub);
  u->busy = 0;
  u->cancel = NULL;
  rill_stream_ref(pub->s);
  if (u->destroying) {
    close_now(u);
  } else {
    resume_waiting(u);
  }
  rill_stream_unref(pub->s);
}
