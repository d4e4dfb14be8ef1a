/* core/file.c: file readers and writers as native streams, and whole-file read, write and stat. */
#define _GNU_SOURCE
#include "file.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

/* Writes of at least this many bytes go out at once; smaller ones wait for the end of the loop
 * turn so that more can join them. */
#define FLUSH_NOW ((size_t)32 * 1024)
#define IOV_MAX_BATCH 64

static char *dupstr(const char *p) {
  size_t n = strlen(p) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, p, n);
  return d;
}

/* An error for s's file: code, syscall, and the path when there is one. */
static rill_err_t *file_err(int code, const char *syscall, const char *path) {
  return rill_err_new(code, syscall, path, NULL);
}

/* =============================== reader =============================== */

enum { K_REGULAR = 1, K_OTHER = 2 };

typedef struct {
  rill_stream_t *s;
  rill_loop_t *loop;
  char *path;
  int fd, own_fd;
  int kind;
  int nowait;       /* try preadv2(RWF_NOWAIT) on the loop thread first */
  int64_t off, end; /* next byte; end offset (exclusive) or -1 */
  int64_t opt_start, opt_stop;
  size_t chunk;
  int follow;
  unsigned poll_ms;
  uint64_t ino, dev; /* follow: the file being read, to notice rotation */
  size_t turn;       /* bytes read on the loop thread since the last yield */
  unsigned opening : 1, opened : 1, want : 1, inflight : 1, yielding : 1, destroying : 1,
      eof_pushed : 1, fast_eof : 1, timer_on : 1, timer_init : 1, timer_closing : 1, busy : 1,
      in_push : 1, asked : 1;
  uv_fs_t req;      /* the open, or the threadpool read in flight */
  rill_view_t rbuf; /* the slab the threadpool read fills */
  uv_timer_t timer; /* follow: growth checks */
  rill_handle_t th;
  rill_err_t *derr; /* destroy's error, held until destroy_done */
  void (*open_cb)(rill_stream_t *s, void *arg);
  void *open_arg;
  void (*cancel)(void *arg); /* while lent to the fast path */
  void *cancel_arg;
} reader_t;

static const rill_stream_impl_t reader_impl;

static void rd_pump(reader_t *r);
static void rd_maybe_destroyed(reader_t *r);

static void rd_fail(reader_t *r, int code, const char *syscall) {
  rill_err_t *e = file_err(code, syscall, r->path);
  rill_stream_destroy(r->s, e);
  rill_err_unref(e);
}

/* Resolves a string.sub position against size: 1-based, negative from the end. */
static int64_t sub_pos(int64_t i, int64_t size) {
  if (i < 0) {
    i = size + i + 1;
    if (i < 1) i = 1;
  } else if (i == 0) {
    i = 1;
  }
  return i;
}

/* The file is open: learn what it is and where to read. 0 or an error code. */
static int rd_setup(reader_t *r) {
  struct stat st;
  if (fstat(r->fd, &st) != 0) return -errno;
  if (S_ISDIR(st.st_mode)) return UV_EISDIR;
  r->ino = st.st_ino;
  r->dev = st.st_dev;
  if (S_ISREG(st.st_mode)) {
    r->kind = K_REGULAR;
    r->nowait = 1;
    int64_t base = r->own_fd ? 0 : lseek(r->fd, 0, SEEK_CUR);
    if (base < 0) base = 0;
    int64_t size = st.st_size - base;
    if (size < 0) size = 0;
    if (r->follow) {
      /* Following reads what there is and then what comes: positions are from the start. */
      r->off = base + (r->opt_start > 0 ? r->opt_start - 1 : 0);
      if (r->opt_start < 0) r->off = base + sub_pos(r->opt_start, size) - 1;
      r->end = r->opt_stop > 0 ? base + r->opt_stop : -1;
    } else {
      int64_t i = sub_pos(r->opt_start, size);
      int64_t j = r->opt_stop < 0 ? size + r->opt_stop + 1 : r->opt_stop;
      if (j > size) j = size;
      r->off = base + i - 1;
      r->end = j < i ? r->off : base + j;
    }
  } else {
    /* Pipes and devices have no positions: start must be 1 and only a positive stop counts. */
    r->kind = K_OTHER;
    r->nowait = 0;
    if (r->opt_start != 1 || r->opt_stop < -1) return UV_ESPIPE;
    r->off = 0;
    r->end = r->opt_stop > 0 ? r->opt_stop : -1;
  }
  return 0;
}

static void rd_call_open_cb(reader_t *r) {
  void (*cb)(rill_stream_t *, void *) = r->open_cb;
  r->open_cb = NULL;
  if (cb) cb(r->s, r->open_arg);
}

static void rd_opened(reader_t *r) {
  r->opened = 1;
  rd_call_open_cb(r);
  if (r->want && !r->destroying && !r->busy) rd_pump(r);
}

static void rd_open_done(uv_fs_t *req) {
  reader_t *r = RILL_CONTAINER_OF(req, reader_t, req);
  int res = (int)req->result;
  uv_fs_req_cleanup(req);
  r->opening = 0;
  r->inflight = 0;
  if (res >= 0) {
    r->fd = res;
    r->own_fd = 1;
  }
  if (r->destroying) {
    rd_maybe_destroyed(r);
    rd_call_open_cb(r); /* a waiter (the fast path) learns the stream is gone */
    rill_stream_unref(r->s);
    return;
  }
  int err = res < 0 ? res : rd_setup(r);
  if (err) {
    void (*cb)(rill_stream_t *, void *) = r->open_cb;
    r->open_cb = NULL;
    rd_fail(r, err, res < 0 ? "open" : err == UV_EISDIR ? "read" : "open");
    if (cb) cb(r->s, r->open_arg);
  } else {
    rd_opened(r);
  }
  rill_stream_unref(r->s);
}

/* Pushes n bytes of the view v (taking its reference) in chunks of at most r->chunk. Returns
 * the last push's answer (1: more wanted). */
static int rd_push(reader_t *r, rill_view_t *v) {
  int more = 1;
  size_t pos = 0, n = v->len;
  r->off += (int64_t)n;
  /* A "data" listener may ask for more while we push: remember it instead of reading inside
   * the push (that would deliver the next bytes before the rest of these). */
  r->in_push = 1;
  r->asked = 0;
  while (pos < n) {
    size_t k = n - pos < r->chunk ? n - pos : r->chunk;
    rill_chunk_t c;
    if (pos == 0 && k == n) {
      rill_chunk_from_view(&c, v);
    } else {
      rill_view_t piece;
      rill_view_slice(&piece, v, pos, k);
      rill_chunk_from_view(&c, &piece);
    }
    pos += k;
    more = rill_stream_push(r->s, &c) == 1;
  }
  rill_view_release(v);
  r->in_push = 0;
  return more || r->asked;
}

static void rd_timer_cb(uv_timer_t *t);

/* End of the data for now: end the stream, or (following) look again later. */
static void rd_eof(reader_t *r) {
  if (r->follow && !(r->end >= 0 && r->off >= r->end)) {
    if (!r->timer_init) {
      if (uv_timer_init(r->loop->uv, &r->timer) != 0) {
        rd_fail(r, UV_ENOMEM, "read");
        return;
      }
      rill_handle_track(r->loop, &r->th, (uv_handle_t *)&r->timer, NULL);
      r->timer_init = 1;
    }
    if (!r->timer_on) {
      r->timer_on = 1;
      uv_timer_start(&r->timer, rd_timer_cb, r->poll_ms, 0);
    }
    return;
  }
  r->eof_pushed = 1;
  rill_stream_push(r->s, NULL);
}

/* The size of the next read: a slab, or one chunk when chunks are larger than a slab. */
static size_t rd_size(reader_t *r) {
  size_t n = r->chunk > RILL_SLAB_SIZE ? r->chunk : RILL_SLAB_SIZE;
  if (r->end >= 0) {
    int64_t left = r->end - r->off;
    if (left < (int64_t)n) n = (size_t)(left > 0 ? left : 0);
  }
  return n;
}

static void rd_read_done(uv_fs_t *req);

/* One read through the threadpool into a fresh slab. */
static void rd_async(reader_t *r, size_t n) {
  if (rill_view_alloc(&r->rbuf, n) != 0) {
    rd_fail(r, UV_ENOMEM, "read");
    return;
  }
  uv_buf_t b = uv_buf_init((char *)rill_view_data(&r->rbuf), (unsigned)n);
  int e = uv_fs_read(r->loop->uv, &r->req, r->fd, &b, 1, r->kind == K_REGULAR ? r->off : -1,
                     rd_read_done);
  if (e) {
    rill_view_release(&r->rbuf);
    rd_fail(r, e, "read");
    return;
  }
  r->inflight = 1;
  rill_stream_ref(r->s);
}

static void rd_read_done(uv_fs_t *req) {
  reader_t *r = RILL_CONTAINER_OF(req, reader_t, req);
  ssize_t res = req->result;
  uv_fs_req_cleanup(req);
  r->inflight = 0;
  rill_view_t v = r->rbuf;
  r->rbuf = (rill_view_t){NULL, 0, 0};
  if (r->destroying) {
    rill_view_release(&v);
    rd_maybe_destroyed(r);
  } else if (res < 0) {
    rill_view_release(&v);
    rd_fail(r, (int)res, "read");
  } else if (res == 0) {
    rill_view_release(&v);
    rd_eof(r);
  } else {
    v.len = (size_t)res;
    r->want = rd_push(r, &v);
    if (r->want && !r->destroying) rd_pump(r);
  }
  rill_stream_unref(r->s);
}

static void rd_yield_cb(void *arg) {
  reader_t *r = arg;
  r->yielding = 0;
  r->turn = 0;
  if (r->want && !r->destroying && !r->busy && !r->loop->freeing) rd_pump(r);
  rill_stream_unref(r->s);
}

/* Reads while the stream wants data: from the page cache on this thread while it can, through
 * the threadpool otherwise, yielding to the loop after RILL_FILE_TURN_BYTES. */
static void rd_pump(reader_t *r) {
  while (r->want && !r->destroying && !r->busy && !r->inflight && !r->yielding && !r->eof_pushed) {
    if (r->fast_eof || (r->end >= 0 && r->off >= r->end)) {
      r->want = 0;
      r->eof_pushed = 1;
      rill_stream_push(r->s, NULL);
      return;
    }
    if (r->turn >= RILL_FILE_TURN_BYTES) {
      r->yielding = 1;
      rill_stream_ref(r->s);
      if (rill_loop_immediate(r->loop, rd_yield_cb, r) != 0) {
        r->yielding = 0;
        rill_stream_unref(r->s);
        r->turn = 0;
        continue;
      }
      return;
    }
    size_t n = rd_size(r);
    if (!r->nowait) {
      rd_async(r, n);
      return;
    }
    rill_view_t v;
    if (rill_view_alloc(&v, n) != 0) {
      rd_fail(r, UV_ENOMEM, "read");
      return;
    }
    struct iovec iov = {rill_view_data(&v), n};
    ssize_t got;
    do {
      got = preadv2(r->fd, &iov, 1, r->off, RWF_NOWAIT);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
      int e = errno;
      rill_view_release(&v);
      if (e == EAGAIN) {
        /* Not in the page cache: this read goes to the threadpool, the next tries again. */
        rd_async(r, n);
        return;
      }
      if (e == EOPNOTSUPP || e == EINVAL || e == ENOSYS) {
        r->nowait = 0; /* this file system cannot say "not cached": use the threadpool */
        continue;
      }
      rd_fail(r, -e, "read");
      return;
    }
    if (got == 0) {
      rill_view_release(&v);
      r->want = 0;
      rd_eof(r);
      return;
    }
    v.len = (size_t)got;
    r->turn += (size_t)got;
    r->want = rd_push(r, &v);
  }
}

static void rd_read(rill_stream_t *s, size_t size) {
  reader_t *r = rill_stream_data(s);
  r->want = 1;
  r->asked = 1;
  if (r->opened && !r->busy && !r->in_push) rd_pump(r);
}

/* ---- follow mode ---- */

static void rd_reopen(reader_t *r) {
  int fd = open(r->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return; /* not there (yet): keep looking */
  struct stat st;
  if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    close(fd);
    return;
  }
  if (r->own_fd) close(r->fd);
  r->fd = fd;
  r->own_fd = 1;
  r->ino = st.st_ino;
  r->dev = st.st_dev;
  r->off = 0;
  r->kind = S_ISREG(st.st_mode) ? K_REGULAR : K_OTHER;
  r->nowait = r->kind == K_REGULAR;
}

static void rd_timer_cb(uv_timer_t *t) {
  reader_t *r = RILL_CONTAINER_OF(t, reader_t, timer);
  r->timer_on = 0;
  if (r->destroying) return;
  struct stat st;
  if (fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode)) {
    if (st.st_size < r->off) r->off = 0; /* truncated: read it again from the start */
    if (st.st_size == r->off && r->path) {
      /* Everything of this file is read: if the path now names another file, it was
       * rotated; go on with the new one. */
      struct stat pst;
      if (stat(r->path, &pst) == 0 && (pst.st_ino != r->ino || pst.st_dev != r->dev)) rd_reopen(r);
    }
  }
  r->want = 1;
  rd_pump(r);
}

/* ---- destroy ---- */

static void rd_timer_closed(rill_handle_t *h) {
  reader_t *r = RILL_CONTAINER_OF(h, reader_t, th);
  r->timer_init = 0;
  r->timer_closing = 0;
  rd_maybe_destroyed(r);
  rill_stream_unref(r->s);
}

/* Answers destroy once nothing is in flight any more. */
static void rd_maybe_destroyed(reader_t *r) {
  if (!r->destroying || r->inflight || r->timer_init || r->busy) return;
  if (r->own_fd && r->fd >= 0) close(r->fd);
  r->fd = -1;
  r->own_fd = 0;
  rill_err_t *e = r->derr;
  r->derr = NULL;
  rill_stream_destroy_done(r->s, e);
  rill_err_unref(e);
}

static void rd_destroy(rill_stream_t *s, rill_err_t *err) {
  reader_t *r = rill_stream_data(s);
  r->destroying = 1;
  if (r->busy && r->cancel) r->cancel(r->cancel_arg);
  r->want = 0;
  r->derr = rill_err_ref(err);
  if (r->inflight) uv_cancel((uv_req_t *)&r->req); /* its callback answers, canceled or not */
  if (r->timer_init && !r->timer_closing) {
    r->timer_closing = 1;
    r->th.on_close = rd_timer_closed;
    rill_stream_ref(s);
    rill_handle_close(&r->th);
  }
  rd_maybe_destroyed(r);
}

static void rd_free(rill_stream_t *s) {
  reader_t *r = rill_stream_data(s);
  if (r->own_fd && r->fd >= 0) close(r->fd);
  rill_view_release(&r->rbuf);
  rill_err_unref(r->derr);
  free(r->path);
  free(r);
}

static const rill_stream_impl_t reader_impl = {
    .read = rd_read, .destroy = rd_destroy, .free = rd_free};

static int rd_check_opts(const rill_file_read_opts_t *o) {
  if (o->follow && o->poll_ms > 3600 * 1000) return UV_EINVAL;
  if (o->chunk_size > ((size_t)1 << 30)) return UV_EINVAL;
  return 0;
}

static int rd_new(rill_loop_t *loop, const rill_file_read_opts_t *o, reader_t **rp,
                  rill_stream_t **out) {
  rill_file_read_opts_t d = RILL_FILE_READ_OPTS_INIT;
  if (o == NULL) o = &d;
  int e = rd_check_opts(o);
  if (e) return e;
  reader_t *r = calloc(1, sizeof *r);
  if (r == NULL) return UV_ENOMEM;
  r->loop = loop;
  r->fd = -1;
  r->opt_start = o->start;
  r->opt_stop = o->stop;
  r->chunk = o->chunk_size ? o->chunk_size : RILL_SLAB_SIZE;
  r->follow = o->follow;
  r->poll_ms = o->poll_ms ? o->poll_ms : 100;
  rill_stream_opts_t so = {RILL_STREAM_READABLE, o->hwm ? o->hwm : RILL_HWM_DEFAULT,
                           RILL_HWM_DEFAULT};
  e = rill_stream_new(loop, &reader_impl, r, &so, &r->s);
  if (e) {
    free(r);
    return e;
  }
  *rp = r;
  *out = r->s;
  return 0;
}

int rill_file_reader_new(rill_loop_t *loop, const char *path, const rill_file_read_opts_t *o,
                         rill_stream_t **out) {
  if (loop == NULL || path == NULL || out == NULL) return UV_EINVAL;
  char *p = dupstr(path);
  if (p == NULL) return UV_ENOMEM;
  reader_t *r;
  int e = rd_new(loop, o, &r, out);
  if (e) {
    free(p);
    return e;
  }
  r->path = p;
  r->opening = 1;
  e = uv_fs_open(loop->uv, &r->req, p, O_RDONLY | O_CLOEXEC, 0, rd_open_done);
  if (e) {
    /* Cannot even start: report it as the stream's error, like a failed open. */
    r->opening = 0;
    rd_fail(r, e, "open");
    return 0;
  }
  r->inflight = 1;
  rill_stream_ref(r->s);
  return 0;
}

int rill_file_reader_new_fd(rill_loop_t *loop, int fd, int own_fd, const rill_file_read_opts_t *o,
                            rill_stream_t **out) {
  if (loop == NULL || out == NULL) return UV_EINVAL;
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) return UV_EBADF;
  reader_t *r;
  int e = rd_new(loop, o, &r, out);
  if (e) return e;
  r->fd = fd;
  r->own_fd = 0;
  e = rd_setup(r);
  if (e) {
    /* The stream exists and owns nothing yet: fail it like a failed open. */
    rd_fail(r, e, e == UV_EISDIR ? "read" : "fstat");
    if (own_fd) close(fd);
    r->fd = -1;
    return 0;
  }
  r->own_fd = own_fd;
  r->opened = 1;
  return 0;
}

/* ---- fast path support ---- */

int rill__file_is_reader(const rill_stream_t *s) {
  return rill_stream_impl(s) == &reader_impl;
}

int rill__file_reader_info(rill_stream_t *s, rill_file_info_t *info) {
  if (!rill__file_is_reader(s)) return 0;
  reader_t *r = rill_stream_data(s);
  if (!r->opened || r->follow || r->inflight || r->yielding || r->destroying || r->busy ||
      r->eof_pushed || r->fast_eof || rill_stream_readable_length(s) != 0)
    return 0;
  info->fd = r->fd;
  info->regular = r->kind == K_REGULAR;
  info->offset = r->off;
  info->end = r->end;
  return 1;
}

void rill__file_reader_advance(rill_stream_t *s, int64_t n, int eof) {
  reader_t *r = rill_stream_data(s);
  r->off += n;
  if (eof) r->fast_eof = 1;
}

/* =============================== writer =============================== */

typedef struct {
  rill_stream_t *s;
  rill_loop_t *loop;
  char *path;
  int fd, own_fd;
  int oflags, mode;
  int saved_fl;               /* descriptor flags to restore (-1: untouched) */
  const rill_chunk_t *chunks; /* in flight (borrowed from the core until write_done) */
  size_t n, idx, partial;
  unsigned opening : 1, opened : 1, inflight : 1, flush_queued : 1, poll_init : 1, polling : 1,
      poll_closing : 1, destroying : 1, syncing : 1, busy : 1, nonblock : 1, open_pending : 1;
  uv_fs_t req;
  uv_poll_t poll;
  rill_handle_t ph;
  rill_err_t *derr;
  void (*open_cb)(rill_stream_t *s, void *arg);
  void *open_arg;
  void (*err_cb)(rill_stream_t *s, int code, void *arg);
  void *err_arg;
  void (*write_cb)(rill_stream_t *s, const struct iovec *iov, int cnt, void *arg);
  void *write_arg;
  void (*cancel)(void *arg); /* while lent to the fast path */
  void *cancel_arg;
} writer_t;

static const rill_stream_impl_t writer_impl;

static void wr_flush(writer_t *w);
static void wr_maybe_destroyed(writer_t *w);

static size_t wr_pending_bytes(const writer_t *w) {
  size_t t = 0;
  for (size_t i = w->idx; i < w->n; i++) t += w->chunks[i].view.len;
  return t - w->partial;
}

static void wr_done(writer_t *w, rill_err_t *err) {
  w->inflight = 0;
  w->chunks = NULL;
  w->n = w->idx = w->partial = 0;
  rill_stream_write_done(w->s, err);
}

static void wr_poll_cb(uv_poll_t *p, int status, int events) {
  writer_t *w = RILL_CONTAINER_OF(p, writer_t, poll);
  uv_poll_stop(p);
  w->polling = 0;
  if (w->destroying) return;
  rill_stream_ref(w->s);
  wr_flush(w);
  rill_stream_unref(w->s);
}

/* Waits until the descriptor can take more (a non-blocking pipe or socket is full). */
static int wr_wait_writable(writer_t *w) {
  if (!w->poll_init) {
    int e = uv_poll_init(w->loop->uv, &w->poll, w->fd);
    if (e) return e;
    rill_handle_track(w->loop, &w->ph, (uv_handle_t *)&w->poll, NULL);
    w->poll_init = 1;
  }
  w->polling = 1;
  return uv_poll_start(&w->poll, UV_WRITABLE, wr_poll_cb);
}

/* Writes what is in flight; answers the core when all of it is out or a write failed. */
static void wr_flush(writer_t *w) {
  while (w->inflight && w->idx < w->n) {
    struct iovec iov[IOV_MAX_BATCH];
    int cnt = 0;
    for (size_t i = w->idx; i < w->n && cnt < IOV_MAX_BATCH; i++) {
      const rill_view_t *v = &w->chunks[i].view;
      size_t skip = i == w->idx ? w->partial : 0;
      if (v->len - skip == 0) continue;
      iov[cnt].iov_base = rill_view_data(v) + skip;
      iov[cnt].iov_len = v->len - skip;
      cnt++;
    }
    if (cnt == 0) {
      w->idx = w->n;
      break;
    }
    if (w->write_cb) w->write_cb(w->s, iov, cnt, w->write_arg);
    ssize_t k = writev(w->fd, iov, cnt);
    if (k < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        if (!w->syncing) {
          int pe = wr_wait_writable(w);
          if (pe == 0) return;
          e = -pe;
        } else {
          /* Blocking flush at exit: wait for room right here. */
          int fl = fcntl(w->fd, F_GETFL);
          if (fl >= 0 && fcntl(w->fd, F_SETFL, fl & ~O_NONBLOCK) == 0) continue;
        }
      }
      if (w->err_cb) w->err_cb(w->s, -e, w->err_arg);
      rill_err_t *err = file_err(-e, "write", w->path);
      wr_done(w, err);
      rill_err_unref(err);
      return;
    }
    /* Advance over what went out. */
    size_t left = (size_t)k;
    while (left > 0 && w->idx < w->n) {
      size_t avail = w->chunks[w->idx].view.len - w->partial;
      if (left >= avail) {
        left -= avail;
        w->idx++;
        w->partial = 0;
      } else {
        w->partial += left;
        left = 0;
      }
    }
    while (w->idx < w->n && w->chunks[w->idx].view.len == w->partial) {
      w->idx++;
      w->partial = 0;
    }
  }
  if (w->inflight) wr_done(w, NULL);
}

static void wr_flush_cb(void *arg) {
  writer_t *w = arg;
  w->flush_queued = 0;
  if (!w->destroying && !w->busy && w->opened && w->inflight && !w->polling) wr_flush(w);
  rill_stream_unref(w->s);
}

/* New chunks are in flight: write them now when there is enough, else at the turn's end. */
static void wr_start(writer_t *w) {
  if (!w->opened || w->busy || w->syncing) return;
  if (wr_pending_bytes(w) >= FLUSH_NOW) {
    wr_flush(w);
    return;
  }
  if (w->flush_queued) return;
  w->flush_queued = 1;
  rill_stream_ref(w->s);
  if (rill_loop_immediate(w->loop, wr_flush_cb, w) != 0) {
    w->flush_queued = 0;
    rill_stream_unref(w->s);
    wr_flush(w);
  }
}

static void wr_write(rill_stream_t *s, const rill_chunk_t *chunk) {
  writer_t *w = rill_stream_data(s);
  w->chunks = chunk;
  w->n = 1;
  w->idx = w->partial = 0;
  w->inflight = 1;
  wr_start(w);
}

static void wr_writev(rill_stream_t *s, const rill_chunk_t *chunks, size_t n) {
  writer_t *w = rill_stream_data(s);
  w->chunks = chunks;
  w->n = n;
  w->idx = w->partial = 0;
  w->inflight = 1;
  wr_start(w);
}

static void wr_final(rill_stream_t *s) {
  writer_t *w = rill_stream_data(s);
  if (!w->opened && w->opening) {
    /* Nothing was written and the file is still being opened: finish once it exists. */
    w->open_pending = 1;
    return;
  }
  rill_stream_final_done(s, NULL);
}

static void wr_restore_flags(writer_t *w) {
  if (w->saved_fl >= 0 && w->fd >= 0) {
    (void)fcntl(w->fd, F_SETFL, w->saved_fl);
    w->saved_fl = -1;
  }
}

static void wr_poll_closed(rill_handle_t *h) {
  writer_t *w = RILL_CONTAINER_OF(h, writer_t, ph);
  w->poll_init = 0;
  w->poll_closing = 0;
  wr_maybe_destroyed(w);
  rill_stream_unref(w->s);
}

static void wr_maybe_destroyed(writer_t *w) {
  if (!w->destroying || w->opening || w->poll_init || w->busy) return;
  wr_restore_flags(w);
  if (w->own_fd && w->fd >= 0) close(w->fd);
  w->fd = -1;
  w->own_fd = 0;
  rill_err_t *e = w->derr;
  w->derr = NULL;
  rill_stream_destroy_done(w->s, e);
  rill_err_unref(e);
}

static void wr_destroy(rill_stream_t *s, rill_err_t *err) {
  writer_t *w = rill_stream_data(s);
  w->destroying = 1;
  if (w->busy && w->cancel) w->cancel(w->cancel_arg);
  w->derr = rill_err_ref(err);
  if (w->opening) uv_cancel((uv_req_t *)&w->req);
  if (w->poll_init && !w->poll_closing) {
    w->poll_closing = 1;
    w->ph.on_close = wr_poll_closed;
    rill_stream_ref(s);
    rill_handle_close(&w->ph);
  }
  wr_maybe_destroyed(w);
}

static void wr_free(rill_stream_t *s) {
  writer_t *w = rill_stream_data(s);
  wr_restore_flags(w);
  if (w->own_fd && w->fd >= 0) close(w->fd);
  rill_err_unref(w->derr);
  free(w->path);
  free(w);
}

static const rill_stream_impl_t writer_impl = {.write = wr_write,
                                               .writev = wr_writev,
                                               .final = wr_final,
                                               .destroy = wr_destroy,
                                               .free = wr_free};

/* The descriptor is ready: pipes and sockets become non-blocking (a slow reader must not stop
 * the loop) unless the writer is the process's stdio. */
static void wr_setup(writer_t *w, int make_nonblocking) {
  struct stat st;
  w->saved_fl = -1;
  if (!make_nonblocking || fstat(w->fd, &st) != 0) return;
  if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
    int fl = fcntl(w->fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK) && fcntl(w->fd, F_SETFL, fl | O_NONBLOCK) == 0) {
      w->saved_fl = fl;
    }
    w->nonblock = 1;
  }
}

static void wr_open_done(uv_fs_t *req) {
  writer_t *w = RILL_CONTAINER_OF(req, writer_t, req);
  int res = (int)req->result;
  uv_fs_req_cleanup(req);
  w->opening = 0;
  if (res >= 0) {
    w->fd = res;
    w->own_fd = 1;
  }
  if (w->destroying) {
    wr_maybe_destroyed(w);
    void (*cb)(rill_stream_t *, void *) = w->open_cb;
    w->open_cb = NULL;
    if (cb) cb(w->s, w->open_arg); /* a waiter (the fast path) learns the stream is gone */
  } else if (res < 0) {
    void (*cb)(rill_stream_t *, void *) = w->open_cb;
    w->open_cb = NULL;
    rill_err_t *e = file_err(res, "open", w->path);
    if (w->inflight) {
      wr_done(w, e);
    }
    rill_stream_destroy(w->s, e);
    rill_err_unref(e);
    if (cb) cb(w->s, w->open_arg);
  } else {
    wr_setup(w, 1);
    w->opened = 1;
    if (w->open_cb) {
      void (*cb)(rill_stream_t *, void *) = w->open_cb;
      w->open_cb = NULL;
      cb(w->s, w->open_arg);
    }
    if (w->inflight && !w->busy) wr_start(w);
    if (w->open_pending) {
      w->open_pending = 0;
      rill_stream_final_done(w->s, NULL);
    }
  }
  rill_stream_unref(w->s);
}

static int wr_new(rill_loop_t *loop, const rill_file_write_opts_t *o, writer_t **wp,
                  rill_stream_t **out) {
  rill_file_write_opts_t d = RILL_FILE_WRITE_OPTS_INIT;
  if (o == NULL) o = &d;
  if (o->mode < 0 || o->mode > 07777) return UV_EINVAL;
  writer_t *w = calloc(1, sizeof *w);
  if (w == NULL) return UV_ENOMEM;
  w->loop = loop;
  w->fd = -1;
  w->saved_fl = -1;
  w->mode = o->mode;
  w->oflags = O_WRONLY | O_CREAT | O_CLOEXEC | (o->append ? O_APPEND : O_TRUNC) |
              (o->exclusive ? O_EXCL : 0);
  rill_stream_opts_t so = {RILL_STREAM_WRITABLE | RILL_STREAM_COALESCE, RILL_HWM_DEFAULT,
                           o->hwm ? o->hwm : RILL_HWM_DEFAULT};
  int e = rill_stream_new(loop, &writer_impl, w, &so, &w->s);
  if (e) {
    free(w);
    return e;
  }
  *wp = w;
  *out = w->s;
  return 0;
}

int rill_file_writer_new(rill_loop_t *loop, const char *path, const rill_file_write_opts_t *o,
                         rill_stream_t **out) {
  if (loop == NULL || path == NULL || out == NULL) return UV_EINVAL;
  char *p = dupstr(path);
  if (p == NULL) return UV_ENOMEM;
  writer_t *w;
  int e = wr_new(loop, o, &w, out);
  if (e) {
    free(p);
    return e;
  }
  w->path = p;
  w->opening = 1;
  e = uv_fs_open(loop->uv, &w->req, p, w->oflags, w->mode, wr_open_done);
  if (e) {
    w->opening = 0;
    rill_err_t *err = file_err(e, "open", p);
    rill_stream_destroy(w->s, err);
    rill_err_unref(err);
    return 0;
  }
  rill_stream_ref(w->s);
  return 0;
}

int rill_file_writer_new_fd(rill_loop_t *loop, int fd, int own_fd, const rill_file_write_opts_t *o,
                            rill_stream_t **out) {
  if (loop == NULL || out == NULL) return UV_EINVAL;
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) return UV_EBADF;
  writer_t *w;
  int e = wr_new(loop, o, &w, out);
  if (e) return e;
  w->fd = fd;
  w->own_fd = own_fd;
  /* stdio stays blocking, as Node's does on Linux: output is never lost at exit, and a
   * descriptor shared with other processes keeps its mode. */
  wr_setup(w, own_fd);
  w->opened = 1;
  return 0;
}

int rill_file_writer_flush_sync(rill_stream_t *s) {
  if (rill_stream_impl(s) != &writer_impl) return 0;
  writer_t *w = rill_stream_data(s);
  if (!w->opened || w->destroying || w->busy) return 0;
  rill_stream_ref(s);
  w->syncing = 1;
  if (w->polling) {
    uv_poll_stop(&w->poll);
    w->polling = 0;
  }
  int err = 0;
  /* Each write_done hands the next batch from the stream's buffer straight back to writev,
   * which only records it while syncing: the loop below writes it. */
  while (w->inflight && !w->destroying) {
    wr_flush(w);
    rill_err_t *e = rill_stream_error(s);
    if (e) {
      err = e->code;
      break;
    }
  }
  w->syncing = 0;
  rill_stream_unref(s);
  return err;
}

void rill__file_writer_on_error(rill_stream_t *s, void (*cb)(rill_stream_t *s, int code, void *arg),
                                void *arg) {
  if (rill_stream_impl(s) != &writer_impl) return;
  writer_t *w = rill_stream_data(s);
  w->err_cb = cb;
  w->err_arg = arg;
}

void rill__file_writer_on_write(rill_stream_t *s,
                                void (*cb)(rill_stream_t *s, const struct iovec *iov, int cnt,
                                           void *arg),
                                void *arg) {
  if (rill_stream_impl(s) != &writer_impl) return;
  writer_t *w = rill_stream_data(s);
  w->write_cb = cb;
  w->write_arg = arg;
}

int rill__file_is_writer(const rill_stream_t *s) {
  return rill_stream_impl(s) == &writer_impl;
}

int rill__file_writer_info(rill_stream_t *s, rill_file_info_t *info) {
  if (!rill__file_is_writer(s)) return 0;
  writer_t *w = rill_stream_data(s);
  /* A writer with a watch before each write (the REPL's terminal) keeps its bytes where the
   * watch sees them: no fast path. */
  if (!w->opened || w->write_cb || w->inflight || w->destroying || w->busy || w->polling ||
      rill_stream_writable_length(s) != 0)
    return 0;
  struct stat st;
  if (fstat(w->fd, &st) != 0) return 0;
  info->fd = w->fd;
  info->regular = S_ISREG(st.st_mode);
  info->offset = -1;
  info->end = -1;
  return 1;
}

/* ---- shared by the fast path ---- */

int rill__file_when_open(rill_stream_t *s, void (*cb)(rill_stream_t *s, void *arg), void *arg) {
  if (rill__file_is_reader(s)) {
    reader_t *r = rill_stream_data(s);
    if (r->opened || !r->opening) {
      cb(s, arg);
    } else {
      r->open_cb = cb;
      r->open_arg = arg;
    }
    return 0;
  }
  if (rill__file_is_writer(s)) {
    writer_t *w = rill_stream_data(s);
    if (w->opened || !w->opening) {
      cb(s, arg);
    } else {
      w->open_cb = cb;
      w->open_arg = arg;
    }
    return 0;
  }
  return UV_EINVAL;
}

void rill__file_lend(rill_stream_t *s, void (*cancel)(void *arg), void *arg) {
  if (rill__file_is_reader(s)) {
    reader_t *r = rill_stream_data(s);
    r->busy = 1;
    r->cancel = cancel;
    r->cancel_arg = arg;
  } else if (rill__file_is_writer(s)) {
    writer_t *w = rill_stream_data(s);
    w->busy = 1;
    w->cancel = cancel;
    w->cancel_arg = arg;
  }
}

int rill__file_claimed(rill_stream_t *s) {
  if (rill__file_is_reader(s)) {
    reader_t *r = rill_stream_data(s);
    return r->busy || r->open_cb != NULL;
  }
  if (rill__file_is_writer(s)) {
    writer_t *w = rill_stream_data(s);
    return w->busy || w->open_cb != NULL;
  }
  return 0;
}

void rill__file_return(rill_stream_t *s) {
  rill_stream_ref(s);
  if (rill__file_is_reader(s)) {
    reader_t *r = rill_stream_data(s);
    r->busy = 0;
    r->cancel = NULL;
    if (r->destroying) {
      rd_maybe_destroyed(r);
    } else if (r->want) {
      rd_pump(r);
    }
  } else if (rill__file_is_writer(s)) {
    writer_t *w = rill_stream_data(s);
    w->busy = 0;
    w->cancel = NULL;
    if (w->destroying) {
      wr_maybe_destroyed(w);
    } else if (w->inflight) {
      wr_start(w);
    }
  }
  rill_stream_unref(s);
}

/* ======================== whole-file operations ======================== */

/* A threadpool job whose owner may vanish: engine teardown closes the token handle, and a job
 * that completes after that frees itself without calling back (the interpreter may be gone). */
typedef struct fsop_s {
  uv_work_t work;
  uv_timer_t token;
  rill_handle_t th;
  int refs;   /* the job and the token */
  int orphan; /* the token was closed: do not call back */
  int kind;
  char *path;
  rill_view_t data;
  int append, lstat;
  int err;
  const char *syscall;
  rill_stat_t st;
  void *cb;
  void *arg;
} fsop_t;

enum { OP_READ, OP_WRITE, OP_STAT };

static void fsop_unref(fsop_t *op) {
  if (--op->refs > 0) return;
  rill_view_release(&op->data);
  free(op->path);
  free(op);
}

static void fsop_token_closed(rill_handle_t *h) {
  fsop_t *op = RILL_CONTAINER_OF(h, fsop_t, th);
  op->orphan = 1;
  fsop_unref(op);
}

static void fill_stat(rill_stat_t *o, const struct stat *st) {
  o->size = (uint64_t)st->st_size;
  o->mode = st->st_mode & 07777;
  o->uid = st->st_uid;
  o->gid = st->st_gid;
  o->nlink = st->st_nlink;
  o->ino = st->st_ino;
  o->dev = st->st_dev;
  o->atime = (double)st->st_atim.tv_sec + st->st_atim.tv_nsec / 1e9;
  o->mtime = (double)st->st_mtim.tv_sec + st->st_mtim.tv_nsec / 1e9;
  o->ctime = (double)st->st_ctim.tv_sec + st->st_ctim.tv_nsec / 1e9;
  o->type = S_ISREG(st->st_mode)    ? 'f'
            : S_ISDIR(st->st_mode)  ? 'd'
            : S_ISLNK(st->st_mode)  ? 'l'
            : S_ISCHR(st->st_mode)  ? 'c'
            : S_ISBLK(st->st_mode)  ? 'b'
            : S_ISFIFO(st->st_mode) ? 'p'
            : S_ISSOCK(st->st_mode) ? 's'
                                    : '?';
}

/* In the threadpool: the whole file in one job. Every path closes its descriptor. */
static void op_read(fsop_t *op) {
  int fd = open(op->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    op->err = -errno;
    op->syscall = "open";
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    op->err = -errno;
    op->syscall = "fstat";
    close(fd);
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    op->err = UV_EISDIR;
    op->syscall = "read";
    close(fd);
    return;
  }
  size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 64 * 1024;
  size_t len = 0;
  rill_slab_t *slab = rill_slab_new(cap);
  if (slab == NULL) {
    op->err = UV_ENOMEM;
    op->syscall = "read";
    close(fd);
    return;
  }
  for (;;) {
    if (len == cap) {
      size_t ncap = cap * 2;
      rill_slab_t *n = rill_slab_new(ncap);
      if (n == NULL) {
        rill_slab_unref(slab);
        op->err = UV_ENOMEM;
        op->syscall = "read";
        close(fd);
        return;
      }
      memcpy(n->data, slab->data, len);
      rill_slab_unref(slab);
      slab = n;
      cap = ncap;
    }
    ssize_t k = read(fd, slab->data + len, cap - len);
    if (k < 0) {
      if (errno == EINTR) continue;
      op->err = -errno;
      op->syscall = "read";
      rill_slab_unref(slab);
      close(fd);
      return;
    }
    if (k == 0) break;
    len += (size_t)k;
  }
  close(fd);
  /* Released on the loop thread (even when empty): a slab freed here would join this worker
   * thread's pool, which nobody trims. */
  slab->used = len;
  op->data.slab = slab;
  op->data.off = 0;
  op->data.len = len;
}

static void op_write(fsop_t *op) {
  int fd = open(op->path, O_WRONLY | O_CREAT | O_CLOEXEC | (op->append ? O_APPEND : O_TRUNC), 0666);
  if (fd < 0) {
    op->err = -errno;
    op->syscall = "open";
    return;
  }
  const unsigned char *p = rill_view_data(&op->data);
  size_t left = op->data.len;
  while (left > 0) {
    ssize_t k = write(fd, p, left);
    if (k < 0) {
      if (errno == EINTR) continue;
      op->err = -errno;
      op->syscall = "write";
      close(fd);
      return;
    }
    p += k;
    left -= (size_t)k;
  }
  if (close(fd) != 0 && errno != EINTR) {
    op->err = -errno;
    op->syscall = "close";
  }
}

static void op_work(uv_work_t *req) {
  fsop_t *op = RILL_CONTAINER_OF(req, fsop_t, work);
  if (op->kind == OP_READ) {
    op_read(op);
  } else if (op->kind == OP_WRITE) {
    op_write(op);
  } else {
    struct stat st;
    int r = op->lstat ? lstat(op->path, &st) : stat(op->path, &st);
    if (r != 0) {
      op->err = -errno;
      op->syscall = op->lstat ? "lstat" : "stat";
    } else {
      fill_stat(&op->st, &st);
    }
  }
}

static void op_after(uv_work_t *req, int status) {
  fsop_t *op = RILL_CONTAINER_OF(req, fsop_t, work);
  /* Teardown closes the token before it runs the loop that delivers this callback. */
  if (!op->orphan && !uv_is_closing((uv_handle_t *)&op->token)) {
    rill_err_t *e = NULL;
    if (status) {
      e = file_err(status, op->syscall ? op->syscall : "open", op->path);
    } else if (op->err) {
      e = file_err(op->err, op->syscall, op->path);
    }
    if (op->kind == OP_READ) {
      rill_view_t v = op->data;
      op->data = (rill_view_t){NULL, 0, 0};
      if (e) rill_view_release(&v);
      ((rill_read_file_cb)op->cb)(e, e ? NULL : &v, op->arg);
      rill_view_release(&v);
    } else if (op->kind == OP_WRITE) {
      ((rill_write_file_cb)op->cb)(e, op->arg);
    } else {
      ((rill_stat_cb)op->cb)(e, e ? NULL : &op->st, op->arg);
    }
    rill_err_unref(e);
    rill_handle_close(&op->th);
  }
  fsop_unref(op);
}

static int op_start(rill_loop_t *loop, int kind, const char *path, void *cb, void *arg,
                    fsop_t **opp) {
  if (loop == NULL || path == NULL || cb == NULL) return UV_EINVAL;
  fsop_t *op = calloc(1, sizeof *op);
  if (op == NULL) return UV_ENOMEM;
  op->path = dupstr(path);
  if (op->path == NULL) {
    free(op);
    return UV_ENOMEM;
  }
  op->kind = kind;
  op->cb = cb;
  op->arg = arg;
  op->refs = 2;
  *opp = op;
  return 0;
}

static int op_queue(rill_loop_t *loop, fsop_t *op) {
  uv_timer_init(loop->uv, &op->token);
  uv_unref((uv_handle_t *)&op->token);
  rill_handle_track(loop, &op->th, (uv_handle_t *)&op->token, fsop_token_closed);
  int e = uv_queue_work(loop->uv, &op->work, op_work, op_after);
  if (e) {
    op->refs--; /* the job never runs */
    rill_handle_close(&op->th);
    return e;
  }
  return 0;
}

int rill_fs_read_file(rill_loop_t *loop, const char *path, rill_read_file_cb cb, void *arg) {
  fsop_t *op;
  int e = op_start(loop, OP_READ, path, (void *)cb, arg, &op);
  if (e) return e;
  return op_queue(loop, op);
}

int rill_fs_write_file(rill_loop_t *loop, const char *path, const rill_view_t *data, int append,
                       rill_write_file_cb cb, void *arg) {
  if (data == NULL) return UV_EINVAL;
  fsop_t *op;
  int e = op_start(loop, OP_WRITE, path, (void *)cb, arg, &op);
  if (e) return e;
  if (data->len) rill_view_slice(&op->data, data, 0, data->len);
  op->append = append;
  return op_queue(loop, op);
}

int rill_fs_stat(rill_loop_t *loop, const char *path, int lstat_, rill_stat_cb cb, void *arg) {
  fsop_t *op;
  int e = op_start(loop, OP_STAT, path, (void *)cb, arg, &op);
  if (e) return e;
  op->lstat = lstat_;
  return op_queue(loop, op);
}
