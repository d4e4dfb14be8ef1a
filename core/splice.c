/* core/splice.c: the native fast path: a file piped into a file, a socket, a pipe or a device
 * moves in the kernel (copy_file_range, sendfile), never through the stream machinery. */
#define _GNU_SOURCE
#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "pipe.h"
#include "uvstream.h"

/* Bytes per system call: large for files (fewer calls), a pipe's worth for pipes and sockets
 * (a call never blocks long, so a cancel is seen soon). */
#define STEP_FILE ((size_t)16 << 20)
#define STEP_STREAM ((size_t)256 << 10)
#define POLL_MS 100
#define LOOP_BUF ((size_t)256 << 10)

static atomic_ulong copies;

#define MAX_SINKS 4
static const rill_splice_sink_ops_t *_Atomic sinks[MAX_SINKS];

void rill__splice_add_sink(const rill_splice_sink_ops_t *ops) {
  for (int i = 0; i < MAX_SINKS; i++) {
    const rill_splice_sink_ops_t *expected = NULL;
    if (atomic_load(&sinks[i]) == ops ||
        atomic_compare_exchange_strong(&sinks[i], &expected, ops) || expected == ops)
      return;
  }
}

/* The sink dst belongs to and its socket, or NULL. */
static const rill_splice_sink_ops_t *sink_of(rill_stream_t *dst, rill_stream_t **sock) {
  for (int i = 0; i < MAX_SINKS; i++) {
    const rill_splice_sink_ops_t *ops = atomic_load(&sinks[i]);
    if (ops == NULL) break;
    if ((*sock = ops->socket_of(dst)) != NULL) return ops;
  }
  return NULL;
}

typedef struct {
  rill_stream_t *src, *dst;
  int end;
  rill_uvs_t *dst_uvs;                /* the destination's adapter, or NULL for a file writer */
  const rill_splice_sink_ops_t *sink; /* dst lends the socket of dst_uvs (a reference) */
  char *prefix;                       /* sent before the file's bytes (sinks) */
  size_t prefix_len;
  int opened; /* streams whose open has been waited for */
  uv_work_t work;
  uv_timer_t token; /* engine teardown closes it: then the job cancels */
  rill_handle_t th;
  int refs; /* the job and the token */
  atomic_int cancel;
  /* the copy, filled on the loop thread, then used by the worker alone */
  int in, out;
  int out_regular, out_nonblock;
  int64_t off, stop; /* source offset and end (-1: to EOF) */
  /* the outcome */
  int64_t moved;
  int err, err_write; /* error code, and whether the write side failed */
  const char *syscall;
  int eof;
} job_t;

unsigned long rill_splice_count(void) {
  return atomic_load(&copies);
}

static int disabled(void) {
  const char *e = getenv("RILL_NO_FASTPATH");
  return e && *e && strcmp(e, "0") != 0;
}

static void job_free(job_t *j) {
  if (j->sink) rill_stream_unref(j->dst_uvs->s);
  free(j->prefix);
  free(j);
}

static void job_unref(job_t *j) {
  if (--j->refs > 0) return;
  job_free(j);
}

static void token_closed(rill_handle_t *h) {
  job_t *j = RILL_CONTAINER_OF(h, job_t, th);
  atomic_store(&j->cancel, 1); /* engine teardown: the worker stops at its next step */
  job_unref(j);
}

static void cancel_cb(void *arg) {
  job_t *j = arg;
  atomic_store(&j->cancel, 1);
}

/* ---- the worker ---- */

/* Waits until out can take more; 0, or 1 when canceled. */
static int wait_writable(job_t *j) {
  while (!atomic_load(&j->cancel)) {
    struct pollfd p = {j->out, POLLOUT, 0};
    int r = poll(&p, 1, POLL_MS);
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return 0; /* let the write report it */
  }
  return 1;
}

static size_t step_size(job_t *j) {
  size_t n = j->out_regular ? STEP_FILE : STEP_STREAM;
  if (j->stop >= 0 && (int64_t)n > j->stop - j->off) n = (size_t)(j->stop - j->off);
  return n;
}

/* Plain copy with one buffer, for destinations the kernel cannot splice into. */
static void copy_loop(job_t *j) {
  char *buf = malloc(LOOP_BUF);
  if (buf == NULL) {
    j->err = UV_ENOMEM;
    j->syscall = "read";
    return;
  }
  while (!atomic_load(&j->cancel)) {
    size_t n = step_size(j);
    if (n > LOOP_BUF) n = LOOP_BUF;
    if (n == 0) {
      j->eof = 1;
      break;
    }
    ssize_t k = pread(j->in, buf, n, j->off);
    if (k < 0) {
      if (errno == EINTR) continue;
      j->err = -errno;
      j->syscall = "read";
      break;
    }
    if (k == 0) {
      j->eof = 1;
      break;
    }
    size_t done = 0;
    while (done < (size_t)k) {
      ssize_t w = write(j->out, buf + done, (size_t)k - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && !wait_writable(j)) continue;
        j->err = errno == EAGAIN ? UV_ECANCELED : -errno;
        j->err_write = 1;
        j->syscall = "write";
        free(buf);
        return;
      }
      done += (size_t)w;
    }
    j->off += k;
    j->moved += k;
  }
  free(buf);
}

/* The sink's prefix (a response head): marked MSG_MORE when file bytes follow, so that head
 * and body leave in the same segments. 0, or 1 when canceled or failed. */
static int send_prefix(job_t *j) {
  size_t done = 0;
  int more = j->stop < 0 || j->stop > j->off ? MSG_MORE : 0;
  while (done < j->prefix_len) {
    if (atomic_load(&j->cancel)) return 1;
    ssize_t k = send(j->out, j->prefix + done, j->prefix_len - done, more | MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (wait_writable(j)) return 1;
        continue;
      }
      j->err = -errno;
      j->err_write = 1;
      j->syscall = "write";
      return 1;
    }
    done += (size_t)k;
  }
  return 0;
}

static void work_cb(uv_work_t *req) {
  job_t *j = RILL_CONTAINER_OF(req, job_t, work);
  int use_cfr = j->out_regular, use_sendfile = 1;
  if (j->prefix_len && send_prefix(j)) return;
  while (!atomic_load(&j->cancel)) {
    size_t n = step_size(j);
    if (n == 0) {
      j->eof = 1;
      return;
    }
    ssize_t k;
    if (use_cfr) {
      loff_t off = j->off;
      k = copy_file_range(j->in, &off, j->out, NULL, n, 0);
      if (k < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
                    errno == EBADF)) {
        use_cfr = 0; /* another file system, O_APPEND, ...: sendfile may still do it */
        continue;
      }
    } else if (use_sendfile) {
      off_t off = j->off;
      k = sendfile(j->out, j->in, &off, n);
      if (k < 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) && j->moved == 0) {
        use_sendfile = 0; /* a destination sendfile cannot write to: copy by hand */
        continue;
      }
    } else {
      copy_loop(j);
      return;
    }
    if (k < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        if (wait_writable(j)) return;
        continue;
      }
      /* EIO and friends on the file are read errors; the rest (ENOSPC, EPIPE, ECONNRESET,
       * EBADF of the destination) are write errors. */
      j->err = -e;
      j->err_write = !(e == EIO || e == EISDIR || e == EOVERFLOW);
      j->syscall = j->err_write ? "write" : "read";
      return;
    }
    if (k == 0) {
      j->eof = 1; /* the file ended (it was shorter than its stop) */
      return;
    }
    j->off += k;
    j->moved += k;
  }
}

/* ---- the loop side ---- */

static void give_back(job_t *j) {
  rill__file_return(j->src);
  if (j->dst_uvs) {
    rill__uvs_return_writes(j->dst_uvs);
  } else {
    rill__file_return(j->dst);
  }
}

static void after_cb(uv_work_t *req, int status) {
  job_t *j = RILL_CONTAINER_OF(req, job_t, work);
  rill_stream_t *src = j->src, *dst = j->dst;
  int torn_down = uv_is_closing((uv_handle_t *)&j->token);
  if (!torn_down) rill_handle_close(&j->th);
  rill__file_reader_advance(src, j->moved, j->eof);
  give_back(j);
  if (!torn_down && status == 0) {
    atomic_fetch_add(&copies, 1);
    if (j->err) {
      rill_err_t *e = rill_err_new(j->err, j->syscall, NULL, NULL);
      rill_stream_destroy(j->err_write ? dst : src, e);
      rill_err_unref(e);
    } else if (!atomic_load(&j->cancel)) {
      /* Done: the source ends (its next read finds EOF) and, as a pipe would, ends dst. */
      rill_stream_resume(src);
      if (j->end) rill_stream_end(dst, NULL, NULL, NULL);
    }
  }
  rill_stream_unref(src);
  rill_stream_unref(dst);
  job_unref(j);
}

/* Both streams are open (or failed): copy in the kernel if they qualify, else the plain pipe. */
static void start(job_t *j) {
  rill_stream_t *src = j->src, *dst = j->dst;
  rill_file_info_t in;
  int out_fd = -1, out_regular = 0;
  int ok = rill__file_reader_info(src, &in) && in.regular && rill__stream_data_watchers(src) == 0 &&
           rill_stream_pipe_count(src) == 0 &&
           !(rill_stream_state(dst) & (RILL_SS_DESTROYED | RILL_SS_ENDING));
  rill_splice_sink_t si = {NULL, 0, -1};
  if (ok && j->dst_uvs) {
    ok = rill__uvs_fd_info(j->dst_uvs, &out_fd, 1);
    /* Last: a sink that says yes has committed (its head is in the prefix). */
    if (ok && j->sink) ok = j->sink->socket_of(dst) == j->dst_uvs->s && j->sink->begin(dst, &si);
  } else if (ok) {
    rill_file_info_t o;
    ok = rill__file_writer_info(dst, &o);
    out_fd = o.fd;
    out_regular = o.regular;
  }
  if (!ok) {
    /* Not for the kernel after all (a FIFO, a stream already in use, a failed open): the
     * plain pipe does what Node would do, including nothing for closed streams. */
    rill__pipe_plain(src, dst, j->end);
    rill_stream_unref(src);
    rill_stream_unref(dst);
    job_free(j);
    return;
  }
  rill_loop_t *loop = rill_stream_loop(src);
  j->in = in.fd;
  j->out = out_fd;
  j->out_regular = out_regular;
  j->off = in.offset;
  j->stop = in.end;
  j->prefix = si.prefix;
  j->prefix_len = si.prefix_len;
  if (si.max >= 0 && (j->stop < 0 || j->stop - j->off > si.max)) j->stop = j->off + si.max;
  j->refs = 2;
  rill__file_lend(src, cancel_cb, j);
  if (j->dst_uvs) {
    rill__uvs_lend_writes(j->dst_uvs, cancel_cb, j);
  } else {
    rill__file_lend(dst, cancel_cb, j);
  }
  uv_timer_init(loop->uv, &j->token);
  uv_unref((uv_handle_t *)&j->token);
  rill_handle_track(loop, &j->th, (uv_handle_t *)&j->token, token_closed);
  /* The pipe event, as the plain pipe emits it (Lua "pipe" listeners). */
  rill__stream_emit_peer(dst, RILL_EV_PIPE, src);
  int e = uv_queue_work(loop->uv, &j->work, work_cb, after_cb);
  if (e) {
    j->err = e;
    j->syscall = "read";
    j->refs--;
    rill_handle_close(&j->th);
    give_back(j);
    rill_err_t *err = rill_err_new(e, "read", NULL, NULL);
    rill_stream_destroy(src, err);
    rill_err_unref(err);
    rill_stream_unref(src);
    rill_stream_unref(dst);
  }
}

static void opened_cb(rill_stream_t *s, void *arg) {
  job_t *j = arg;
  if (++j->opened < 2) return;
  start(j);
}

static void ready_cb(rill_uvs_t *u, void *arg) {
  opened_cb(u->s, arg);
}

int rill__splice_try(rill_stream_t *src, rill_stream_t *dst, int end) {
  if (disabled() || !rill__file_is_reader(src)) return 0;
  rill_uvs_t *du = rill_uvs_of(dst);
  const rill_splice_sink_ops_t *sink = NULL;
  if (du == NULL && !rill__file_is_writer(dst)) {
    rill_stream_t *sock = NULL;
    sink = sink_of(dst, &sock);
    du = sock ? rill_uvs_of(sock) : NULL;
    if (du == NULL || du->kind != RILL_UVS_TCP) return 0;
  }
  if (du && du->kind == RILL_UVS_TTY) return 0;
  /* One job per stream: another copy (or its wait) already holds one of them. */
  if (rill__file_claimed(src) || (du ? rill__uvs_claimed(du) : rill__file_claimed(dst))) return 0;
  /* Quick refusals now; the rest is checked once the files are open. */
  if (rill__stream_data_watchers(src) != 0 || rill_stream_pipe_count(src) != 0 ||
      rill_stream_readable_length(src) != 0 || rill_stream_writable_length(dst) != 0 ||
      (rill_stream_state(src) | rill_stream_state(dst)) &
          (RILL_SS_DESTROYED | RILL_SS_READ_ENDED | RILL_SS_ENDING))
    return 0;
  job_t *j = calloc(1, sizeof *j);
  if (j == NULL) return 0;
  j->src = src;
  j->dst = dst;
  j->end = end;
  j->dst_uvs = du;
  j->sink = sink;
  if (sink) rill_stream_ref(du->s);
  rill_stream_ref(src);
  rill_stream_ref(dst);
  /* Wait for the source's open and the destination's open or connection (each callback runs
   * at once when that is done already). */
  rill__file_when_open(src, opened_cb, j);
  if (du) {
    rill__uvs_when_ready(du, ready_cb, j);
  } else {
    rill__file_when_open(dst, opened_cb, j);
  }
  return 1;
}
