/* core/stdfd.c: the process's fd 0, 1 and 2 as streams, whatever they are (tty, pipe, file). */
#include "stdfd.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "file.h"
#include "uvstream.h"

static int stdin_flags = -1; /* fd 0's flags before libuv made it non-blocking */

static void (*guard_cb)(int fd, const struct iovec *iov, int cnt, void *arg);
static void *guard_arg;

void rill_stdio_guard(int fd, const struct iovec *iov, int cnt) {
  if (guard_cb && (fd == 1 || fd == 2) && isatty(fd)) guard_cb(fd, iov, cnt, guard_arg);
}

/* Before a write to a terminal on fd 1 or 2 (the fd is the writer's arg). */
static void tty_before_write(rill_stream_t *s, const struct iovec *iov, int cnt, void *arg) {
  (void)s;
  if (guard_cb) guard_cb((int)(intptr_t)arg, iov, cnt, guard_arg);
}

void rill_stdio_set_guard(void (*guard)(int fd, const struct iovec *iov, int cnt, void *arg),
                          void *arg) {
  guard_cb = guard;
  guard_arg = arg;
}

/* A sink over a closed descriptor: every write fails with EBADF. */
static void badfd_write(rill_stream_t *s, const rill_chunk_t *c) {
  rill_err_t *e = rill_err_new(UV_EBADF, "write", NULL, NULL);
  rill_stream_write_done(s, e);
  rill_err_unref(e);
}

static const rill_stream_impl_t badfd_impl = {.write = badfd_write};

int rill_stdio_open(rill_loop_t *loop, int fd, rill_stream_t **out) {
  if (loop == NULL || out == NULL || fd < 0 || fd > 2) return UV_EINVAL;
  int open = fcntl(fd, F_GETFD) >= 0;
  if (fd == 0) {
    if (!open) {
      rill_view_t empty = {NULL, 0, 0};
      return rill_stream_new_source(loop, &empty, 0, out);
    }
    uv_handle_type t = uv_guess_handle(fd);
    if (t == UV_TTY || t == UV_NAMED_PIPE || t == UV_TCP) {
      if (stdin_flags < 0) stdin_flags = fcntl(fd, F_GETFL);
      /* libuv reads a terminal through a descriptor of its own, reopened so that making it
       * non-blocking leaves the terminal's other users alone, but it puts that descriptor over
       * fd 0 too, close-on-exec: child processes would start without a stdin, and a read of
       * fd 0 (io.read) would fail with EAGAIN. fd 0 gets its own terminal back. */
      int keep = t == UV_TTY ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
      rill_uvs_t *u;
      int r = rill_uvs_open_fd(loop, fd, RILL_STREAM_READABLE, &u, out);
      uv_os_fd_t used = -1;
      if (keep >= 0 && r == 0 && uv_fileno(&u->u.handle, &used) == 0 && used != fd)
        (void)dup2(keep, fd);
      if (keep >= 0) close(keep);
      return r;
    }
    return rill_file_reader_new_fd(loop, fd, 0, NULL, out);
  }
  if (!open) {
    rill_stream_opts_t o = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
    return rill_stream_new(loop, &badfd_impl, NULL, &o, out);
  }
  int r = rill_file_writer_new_fd(loop, fd, 0, NULL, out);
  /* Only a terminal can show a prompt: pipes and files pay nothing. */
  if (r == 0 && isatty(fd))
    rill__file_writer_on_write(*out, tty_before_write, (void *)(intptr_t)fd);
  return r;
}

int rill_stdio_flush(rill_stream_t *s) {
  return rill_file_writer_flush_sync(s);
}

void rill_stdio_on_error(rill_stream_t *s, void (*cb)(rill_stream_t *s, int code, void *arg),
                         void *arg) {
  rill__file_writer_on_error(s, cb, arg);
}

void rill_stdio_restore(void) {
  if (stdin_flags >= 0) {
    (void)fcntl(0, F_SETFL, stdin_flags);
    stdin_flags = -1;
  }
}
