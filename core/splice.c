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

/* A job whose source is a pipe or socket holds a threadpool thread until that source ends, which
 * may be never (an idle connection). libuv's pool is small (4 by default) and file opens, stats
 * and DNS need it: one such job at a time in the process; further ones get the plain pipe. */
#define STREAM_JOBS_MAX 1
static atomic_int stream_jobs;

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
  rill_uvs_t *src_uvs;                /* the source's adapter (a pipe or socket), or NULL */
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
  if (j->src_uvs) atomic_fetch_sub(&stream_jobs, 1);
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

/* Waits until fd has events (POLLIN or POLLOUT); 0, or 1 when canceled. POLLHUP and POLLERR
 * count as ready: the next call reports them. */
static int wait_fd(job_t *j, int fd, short events) {
  while (!atomic_load(&j->cancel)) {
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, POLL_MS);
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return 0;
  }
  return 1;
}

static int is_fifo(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

/* Moves up to n bytes from in to out with splice(2) (one of them a pipe), without blocking:
 * > 0 bytes moved, 0 at the end of in, -1 with j->err set, or -2 when canceled. When splice
 * cannot serve this pair (EINVAL: an O_APPEND file, a socket type it refuses) before any byte
 * moved, -3: the caller copies by hand. */
static ssize_t splice_some(job_t *j, int in, int out, size_t n, int *write_side) {
  for (;;) {
    if (atomic_load(&j->cancel)) return -2;
    ssize_t k = splice(in, NULL, out, NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (k >= 0) return k;
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      /* Either side may be the one that would block: wait on out while it is full, else on
       * in (when in is readable and out writable, splice makes progress). */
      struct pollfd p = {out, POLLOUT, 0};
      int full = poll(&p, 1, 0) == 0;
      if (wait_fd(j, full ? out : in, full ? POLLOUT : POLLIN)) return -2;
      continue;
    }
    if ((e == EINVAL || e == ENOSYS) && j->moved == 0) return -3;
    /* Errors of the source descriptor are read errors; the rest belong to the destination. */
    *write_side = !(e == ECONNRESET || e == ETIMEDOUT || e == EIO) || in != j->in;
    j->err = -e;
    return -1;
  }
}

/* A pipe or socket source: splice(2) when one end is a pipe, through a pipe of our own when
 * neither is, a read/write loop with one buffer where splice does not apply. Runs to the end
 * of the source (the peer's end, or a pipe without writers). */
static void stream_copy(job_t *j) {
  int in_pipe = is_fifo(j->in), out_pipe = is_fifo(j->out), mid[2] = {-1, -1};
  int use_splice = 1;
  if (!in_pipe && !out_pipe && pipe2(mid, O_CLOEXEC | O_NONBLOCK) != 0) use_splice = 0;
  size_t held = 0; /* bytes in our pipe */
  char *buf = NULL;
  while (!atomic_load(&j->cancel)) {
    int write_side = 1;
    ssize_t k;
    if (use_splice && (in_pipe || out_pipe)) {
      k = splice_some(j, j->in, j->out, STEP_STREAM, &write_side);
      if (k == -3) {
        use_splice = 0;
        continue;
      }
      if (k > 0) j->moved += k;
    } else if (use_splice) {
      /* Socket to socket or file: in -> our pipe -> out. */
      if (held == 0) {
        k = splice_some(j, j->in, mid[1], STEP_STREAM, &write_side);
        if (k == -3) {
          use_splice = 0;
          continue;
        }
        if (k > 0) held = (size_t)k;
      } else {
        k = splice_some(j, mid[0], j->out, held, &write_side);
        if (k == 0) k = -1, j->err = UV_EPIPE; /* our own pipe cannot end */
        if (k > 0) {
          held -= (size_t)k;
          j->moved += k;
        }
      }
    } else {
      if (buf == NULL && (buf = malloc(LOOP_BUF)) == NULL) {
        j->err = UV_ENOMEM;
        j->syscall = "read";
        break;
      }
      k = read(j->in, buf, LOOP_BUF);
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (wait_fd(j, j->in, POLLIN)) break;
        continue;
      }
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) {
        j->err = -errno;
        j->syscall = "read";
        break;
      }
      size_t done = 0;
      while (done < (size_t)k && !j->err) {
        ssize_t w = write(j->out, buf + done, (size_t)k - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          if (wait_fd(j, j->out, POLLOUT)) break;
          continue;
        }
        if (w < 0) {
          j->err = -errno;
          j->err_write = 1;
          j->syscall = "write";
          break;
        }
        done += (size_t)w;
      }
      if (j->err || done < (size_t)k) break;
      j->moved += k;
    }
    if (k == -2 || j->err) {
      if (j->err && j->syscall == NULL) {
        j->err_write = write_side;
        j->syscall = write_side ? "write" : "read";
      }
      break;
    }
    if (k == 0 && held == 0) {
      j->eof = 1;
      break;
    }
  }
  free(buf);
  if (mid[0] >= 0) {
    close(mid[0]);
    close(mid[1]);
  }
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
  if (j->src_uvs) {
    stream_copy(j);
    return;
  }
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
  if (j->src_uvs) {
    rill__uvs_return_reads(j->src_uvs, (uint64_t)j->moved, j->eof && !j->err);
  } else {
    rill__file_return(j->src);
  }
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
  if (j->src_uvs == NULL) rill__file_reader_advance(src, j->moved, j->eof);
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
  rill_file_info_t in = {-1, 0, 0, -1};
  int out_fd = -1, out_regular = 0;
  int src_ok = j->src_uvs ? rill__uvs_fd_info(j->src_uvs, &in.fd, 0)
                          : rill__file_reader_info(src, &in) && in.regular;
  int ok = src_ok && !atomic_load(&j->cancel) && rill__stream_data_watchers(src) == 0 &&
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
    if (j->src_uvs) rill__uvs_return_reads(j->src_uvs, 0, 0);
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
  if (j->src_uvs == NULL) rill__file_lend(src, cancel_cb, j); /* a stream's reads are lent */
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

static void src_tick(rill_stream_t *s, void *arg) {
  opened_cb(s, arg);
}

int rill__splice_try(rill_stream_t *src, rill_stream_t *dst, int end) {
  if (disabled() || src == dst) return 0;
  rill_uvs_t *su = rill_uvs_of(src);
  if (su == NULL && !rill__file_is_reader(src)) return 0;
  if (su && (su->kind == RILL_UVS_TTY || rill__uvs_reads_claimed(su))) return 0;
  rill_uvs_t *du = rill_uvs_of(dst);
  const rill_splice_sink_ops_t *sink = NULL;
  if (du == NULL && !rill__file_is_writer(dst)) {
    rill_stream_t *sock = NULL;
    sink = sink_of(dst, &sock);
    du = sock ? rill_uvs_of(sock) : NULL;
    if (du == NULL || du->kind != RILL_UVS_TCP) return 0;
  }
  if (du && du->kind == RILL_UVS_TTY) return 0;
  if (su && sink) return 0; /* a sink's prefix and length limit are for file sources */
  /* One job per stream: another copy (or its wait) already holds one of them. */
  if ((!su && rill__file_claimed(src)) || (du ? rill__uvs_claimed(du) : rill__file_claimed(dst)))
    return 0;
  /* Quick refusals now; the rest is checked once the files are open. */
  if (rill__stream_data_watchers(src) != 0 || rill_stream_pipe_count(src) != 0 ||
      rill_stream_readable_length(src) != 0 || rill_stream_writable_length(dst) != 0 ||
      (rill_stream_state(src) | rill_stream_state(dst)) &
          (RILL_SS_DESTROYED | RILL_SS_READ_ENDED | RILL_SS_ENDING))
    return 0;
  if (su && atomic_fetch_add(&stream_jobs, 1) >= STREAM_JOBS_MAX) {
    atomic_fetch_sub(&stream_jobs, 1);
    return 0;
  }
  job_t *j = calloc(1, sizeof *j);
  if (j == NULL) {
    if (su) atomic_fetch_sub(&stream_jobs, 1);
    return 0;
  }
  j->src = src;
  j->dst = dst;
  j->end = end;
  j->src_uvs = su;
  j->dst_uvs = du;
  j->sink = sink;
  if (sink) rill_stream_ref(du->s);
  rill_stream_ref(src);
  rill_stream_ref(dst);
  /* Wait for the source's open and the destination's open or connection (each callback runs
   * at once when that is done already). */
  if (su) {
    /* Claimed at once (its reads wait), decided on the next tick: the code that piped it may
     * still give it another destination or a "data" listener, which the plain pipe serves. */
    rill__uvs_lend_reads(su, cancel_cb, j);
    if (rill__stream_tick(src, src_tick, j) != 0) {
      rill__uvs_return_reads(su, 0, 0);
      rill_stream_unref(src);
      rill_stream_unref(dst);
      job_free(j); /* (no sink with a stream source) */
      return 0;
    }
  } else {
    rill__file_when_open(src, opened_cb, j);
  }
  if (du) {
    rill__uvs_when_ready(du, ready_cb, j);
  } else {
    rill__file_when_open(dst, opened_cb, j);
  }
  return 1;
}
