/* core/splice.h: the native fast path: a file piped into a file, a socket, a pipe or a device
 * moves in the kernel (copy_file_range, sendfile), never through the stream machinery. */
#ifndef RILL_SPLICE_H
#define RILL_SPLICE_H

#include "stream.h"

/* When it applies
 * ---------------
 * rill_stream_pipe (and so pipeline) asks here first. The fast path takes the pipe when the
 * source is a file reader (core/file.h) of a regular file, not following, with nothing read yet
 * and no "data" listener or other destination, and the destination is a file writer or a
 * libuv stream (TCP socket, pipe) with nothing queued and no other source. Then no chunk exists:
 * a threadpool job moves the bytes with copy_file_range (file to file), sendfile (file to
 * socket, pipe, /dev/null, or file when copy_file_range cannot), or a pread/write loop with one
 * buffer where the kernel can do neither (e.g. /dev/full: its ENOSPC still arrives). Afterwards
 * the source ends ("end", "close") and the destination is ended (end != 0), exactly as the plain
 * pipe would leave them; errors fail the stream they belong to (read errors the source, write
 * errors the destination), so pipeline's callback gets them. A destroy of either stream during
 * the copy cancels it within a fraction of a second. Opening files is asynchronous: the decision
 * waits until both are open; a source that turns out not to be a regular file (a FIFO) gets the
 * plain pipe instead.
 *
 * A libuv stream source (a pipe such as stdin, a TCP socket; not a terminal) qualifies too, into
 * the same destinations: its reads are claimed at once and the decision is taken on the next
 * tick, so that a second destination or a "data" listener added by the same code gets the plain
 * pipe (for all of them). The job then moves bytes with splice(2) when either end is a pipe,
 * through a pipe of its own when neither is (socket to socket or file), or with a read/write loop
 * where splice refuses; it runs until the source ends (its readable side then ends as it would
 * have) or fails (ECONNRESET and friends fail the source, the rest the destination).
 *
 * RILL_NO_FASTPATH=1 in the environment turns the fast path off (for measurements and tests). */

/* Destinations that end in a TCP socket without being one (an HTTP response with a known
 * length, core/http.c) lend their socket to the fast path through these hooks, registered once
 * with rill__splice_add_sink. */
typedef struct {
  char *prefix;      /* bytes to send before the file's (malloc'd; the fast path frees it) */
  size_t prefix_len; /* or NULL, 0 */
  int64_t max;       /* bytes the destination takes at most (-1: no limit) */
} rill_splice_sink_t;

typedef struct {
  /* The socket behind dst (borrowed) when dst is one of the sink's streams and could take the
   * copy now, else NULL. No side effects. */
  rill_stream_t *(*socket_of)(rill_stream_t *dst);
  /* Both ends are open and the socket is idle: 1 and *out filled when dst commits to the copy
   * (its head, if any, becomes the prefix), 0 for the plain pipe (nothing changed). */
  int (*begin)(rill_stream_t *dst, rill_splice_sink_t *out);
} rill_splice_sink_ops_t;

/* Registers a sink (idempotent; a handful at most, static storage). */
void rill__splice_add_sink(const rill_splice_sink_ops_t *ops);

/* Takes the pipe src -> dst if the fast path may apply (1), else 0 (nothing happened: pipe the
 * plain way). */
int rill__splice_try(rill_stream_t *src, rill_stream_t *dst, int end);
/* Number of copies that went through the kernel (or the loop fallback) since start: for tests. */
unsigned long rill_splice_count(void);

#endif
