/* core/stdfd.h: the process's fd 0, 1 and 2 as streams, whatever they are (tty, pipe, file). */
/* (Not named stdio.h: core/ is on the include path and would shadow the C library header.) */
#ifndef RILL_STDFD_H
#define RILL_STDFD_H

#include "stream.h"

struct iovec;

/* stdin is read through libuv when it is a TTY, a pipe or a socket, and as a file otherwise
 * (core/file.h: a redirected regular file is read from the page cache). stdout and stderr are
 * file writers over the descriptor whatever it is: writes are direct and blocking, as Node's
 * are on Linux, so nothing written is ever lost at exit, a descriptor shared with other
 * processes keeps its mode, and small writes are still coalesced until the loop turn ends.
 * A descriptor that is closed gives a stream that ends at once (stdin) or whose writes fail
 * with EBADF (stdout, stderr). The descriptors themselves are never closed. */

/* Opens fd 0 (readable) or fd 1 or 2 (writable) as a new stream; *out gets a new reference.
 * 0, UV_EINVAL (another fd) or UV_ENOMEM. */
int rill_stdio_open(rill_loop_t *loop, int fd, rill_stream_t **out);
/* Writes whatever stdout or stderr still holds, blocking, and puts the descriptor's flags back
 * as they were: call at exit. 0 or the write error (EPIPE when the reader is gone). */
int rill_stdio_flush(rill_stream_t *s);
/* Calls cb(s, code, arg) at once when a write of stdout or stderr fails (before the stream's
 * "error" event, which comes from a later tick). */
void rill_stdio_on_error(rill_stream_t *s, void (*cb)(rill_stream_t *s, int code, void *arg),
                         void *arg);
/* Sets the terminal's output guard (NULL: none), one per process: while it is set, every
 * write system call of a stdout or stderr stream that is a terminal first calls
 * guard(fd, iov, cnt, arg) with what it is about to write. The REPL erases its prompt and line
 * there and draws them again before the loop next waits, so output from the loop does not
 * garble the line being typed. Streams over other descriptors never call it. */
void rill_stdio_set_guard(void (*guard)(int fd, const struct iovec *iov, int cnt, void *arg),
                          void *arg);
/* Calls the guard, if one is set and fd is 1 or 2 and a terminal: for code that writes to the
 * terminal itself (a progress bar), right before it does. */
void rill_stdio_guard(int fd, const struct iovec *iov, int cnt);
/* Puts fd 0's flags back as they were before rill_stdio_open made it non-blocking. */
void rill_stdio_restore(void);

#endif
