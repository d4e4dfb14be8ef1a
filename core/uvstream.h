/* core/uvstream.h: libuv stream handles (TCP sockets, pipes, TTYs) as native rill streams. */
#ifndef RILL_UVSTREAM_H
#define RILL_UVSTREAM_H

#include "stream.h"

/* The adapter turns one uv_stream_t into a rill_stream_t:
 * - reads go straight into pooled 64 KiB slabs (alloc_cb hands out the slab's free tail, so
 *   consecutive reads share a slab) and are pushed as views: no copy, no malloc per read;
 *   a push that reports a full buffer stops reading (uv_read_stop) until the core asks again;
 * - writes hand every queued chunk to one uv_write (writev), with small writes coalesced by
 *   the stream core; final shuts the write side down (uv_shutdown: half-close);
 * - destroy closes the handle; "close" follows its close callback.
 * Owners (core/tcp.c, core/proc.c, core/stdio.c) create the handle through this file, set it
 * up (connect, accept, spawn, open) and then call rill_uvs_ready. Until then reads and writes
 * wait. */

enum { RILL_UVS_TCP = 1, RILL_UVS_PIPE = 2, RILL_UVS_TTY = 3 };

typedef struct rill_uvs_s rill_uvs_t;

struct rill_uvs_s {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
  } u;
  rill_stream_t *s; /* the stream (borrowed: the stream owns this adapter) */
  rill_loop_t *loop;
  int kind;
  /* Owner hooks (optional): destroy starts (cancel what the owner has in flight; it must not
   * call back into the stream), and the adapter is being freed. */
  void (*on_destroy)(rill_uvs_t *u);
  void (*on_free)(rill_uvs_t *u);
  void *owner; /* the owner's data: rill_uvs_extra by default */
};

/* Creates a stream over a new, not yet connected handle of kind RILL_UVS_TCP or RILL_UVS_PIPE.
 * flags are rill_stream_opts_t flags (sides, RILL_STREAM_NO_HALF_OPEN); extra bytes of owner
 * data are allocated with it (rill_uvs_extra). *out gets a new reference; *uvs is borrowed and
 * lives as long as the stream. 0, UV_EINVAL or UV_ENOMEM. */
int rill_uvs_new(rill_loop_t *loop, int kind, unsigned flags, size_t extra, rill_uvs_t **uvs,
                 rill_stream_t **out);
/* Creates a ready stream over the open descriptor fd: a TTY, a pipe or a socket (whatever
 * uv_guess_handle says). fds 0-2 are never closed by libuv; others are. 0, UV_EINVAL (a file
 * or an unknown kind: use core/file.h), or a libuv error. */
int rill_uvs_open_fd(rill_loop_t *loop, int fd, unsigned flags, rill_uvs_t **uvs,
                     rill_stream_t **out);
/* The owner's extra bytes. */
void *rill_uvs_extra(rill_uvs_t *u);
/* The handle is connected (or accepted, spawned, opened): waiting reads and writes start. */
void rill_uvs_ready(rill_uvs_t *u);
/* The adapter of s, or NULL when s is not a libuv stream. */
rill_uvs_t *rill_uvs_of(rill_stream_t *s);
/* Bytes read and written so far. */
void rill_uvs_counts(const rill_uvs_t *u, uint64_t *read, uint64_t *written);

/* Fast path (core/splice.c): the descriptor, 1 when the adapter is idle on that side (ready;
 * for writing: not lent, no write in flight, nothing queued; for reading: not at its end,
 * nothing buffered, reads lent to the caller or not started), else 0. */
int rill__uvs_fd_info(rill_uvs_t *u, int *fd, int for_write);
/* Runs cb(u, arg) once the adapter is ready (at once if it is), or once it is destroyed before
 * (then cb sees it destroyed). One waiter at a time. */
void rill__uvs_when_ready(rill_uvs_t *u, void (*cb)(rill_uvs_t *u, void *arg), void *arg);
/* Lends the adapter's write side to the fast path: its own writes and final wait (reading goes
 * on), and a destroy calls cancel(arg) at once and closes only once it is given back. */
void rill__uvs_lend_writes(rill_uvs_t *u, void (*cancel)(void *arg), void *arg);
void rill__uvs_return_writes(rill_uvs_t *u);
/* Nonzero while the write side is lent or a ready waiter is set. */
int rill__uvs_claimed(rill_uvs_t *u);
/* The same for the read side: reading stops while it is lent (writing goes on), and a destroy
 * calls cancel(arg) at once and closes only once it is given back. Giving it back counts the n
 * bytes the fast path moved; eof: the source ended there (the stream's readable side ends). */
void rill__uvs_lend_reads(rill_uvs_t *u, void (*cancel)(void *arg), void *arg);
void rill__uvs_return_reads(rill_uvs_t *u, uint64_t n, int eof);
int rill__uvs_reads_claimed(rill_uvs_t *u);

#endif
