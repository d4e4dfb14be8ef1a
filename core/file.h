/* core/file.h: files as native streams (reader, writer over a path or an fd) and whole-file ops. */
#ifndef RILL_FILE_H
#define RILL_FILE_H

#include <stdint.h>

#include "stream.h"

struct iovec;

/* How a file is read (DESIGN point 4: regular files are not sockets)
 * -------------------------------------------------------------------
 * A threadpool round trip per read costs more than copying 64 KiB out of the page cache, so a
 * regular file is read on the loop thread with preadv2(RWF_NOWAIT): the kernel copies what is
 * cached and answers EAGAIN instead of going to the disk. Only then does one read go to the
 * threadpool (and the next one tries the cache again). A file system without RWF_NOWAIT uses
 * the threadpool with one large read kept in flight ahead of the consumer. FIFOs and character
 * devices always use the threadpool: their reads may block for ever. The loop thread reads at
 * most RILL_FILE_TURN_BYTES per loop turn, then yields, so timers and sockets keep running.
 *
 * Writes copy nothing: the writer keeps the chunks the stream core hands it and writes them
 * with writev. Small writes are not written at once: they stay queued (the core coalesces them
 * into the tail slab) until the loop turn ends or enough bytes are waiting, so a script that
 * writes one line at a time makes one system call per 64 KiB, not one per line. A descriptor
 * that is non-blocking (a pipe) waits for room with a poll handle. */

#define RILL_FILE_TURN_BYTES ((size_t)1 << 20)

/* Byte range and behaviour of a reader. start and stop are string.sub positions: 1-based,
 * inclusive, negative counting from the end of the file (resolved when it is opened). */
typedef struct {
  int64_t start;     /* default 1 */
  int64_t stop;      /* default -1: to the end */
  size_t chunk_size; /* largest chunk pushed; 0: 64 KiB */
  int follow;        /* keep reading as the file grows, across truncation and rotation */
  unsigned poll_ms;  /* follow: how often to look for growth (0: 100 ms) */
  size_t hwm;        /* readable high-water mark (0: the default) */
} rill_file_read_opts_t;

#define RILL_FILE_READ_OPTS_INIT \
  { 1, -1, 0, 0, 0, 0 }

/* Creates a reader of path; *out gets a new reference. The file is opened in the background:
 * a failure to open (ENOENT, EACCES, ...) fails the stream with an error carrying the syscall
 * and the path; reading a directory fails with EISDIR. 0, UV_EINVAL (bad options) or
 * UV_ENOMEM. path is copied. */
int rill_file_reader_new(rill_loop_t *loop, const char *path, const rill_file_read_opts_t *o,
                         rill_stream_t **out);
/* Creates a reader of the open descriptor fd (borrowed unless own_fd: then closed with the
 * stream). A regular file is read from its current offset (plus start - 1). 0, UV_EINVAL,
 * UV_EBADF or UV_ENOMEM. */
int rill_file_reader_new_fd(rill_loop_t *loop, int fd, int own_fd, const rill_file_read_opts_t *o,
                            rill_stream_t **out);

typedef struct {
  int append;    /* O_APPEND instead of O_TRUNC */
  int mode;      /* permission bits for a new file (default 0666, minus the umask) */
  int exclusive; /* fail with EEXIST when the file exists */
  size_t hwm;    /* writable high-water mark (0: the default) */
} rill_file_write_opts_t;

#define RILL_FILE_WRITE_OPTS_INIT \
  { 0, 0666, 0, 0 }

/* Creates a writer of path (created or truncated); *out gets a new reference. Opening happens in
 * the background; writes made meanwhile wait for it. 0, UV_EINVAL or UV_ENOMEM. */
int rill_file_writer_new(rill_loop_t *loop, const char *path, const rill_file_write_opts_t *o,
                         rill_stream_t **out);
/* Creates a writer of the open descriptor fd (borrowed unless own_fd). A pipe or socket is made
 * non-blocking while the writer lives (its flags are restored by flush_sync or at destroy). */
int rill_file_writer_new_fd(rill_loop_t *loop, int fd, int own_fd, const rill_file_write_opts_t *o,
                            rill_stream_t **out);
/* Writes everything queued on the writer s (in flight and buffered in the stream) with blocking
 * writes, now: for stdout at exit. Returns 0 or the first write error (the stream is then
 * failed). Write callbacks run from the next tick, if the loop runs again. Does nothing for a
 * stream that is not a file writer. */
int rill_file_writer_flush_sync(rill_stream_t *s);

/* Calls cb(s, code, arg) at once when a write of the writer s fails, before the stream learns
 * of it (its "error" event comes from a later tick): stdout uses it to stop the process on
 * EPIPE before any task runs again. Does nothing for a stream that is not a file writer. */
void rill__file_writer_on_error(rill_stream_t *s, void (*cb)(rill_stream_t *s, int code, void *arg),
                                void *arg);
/* Calls cb(s, iov, cnt, arg) right before each write system call of the writer s, with what
 * it is about to write: the REPL erases its prompt from the terminal first (core/stdfd.h). Such
 * a writer takes no part in the fast path (core/splice.h). Does nothing for a stream that is
 * not a file writer. */
void rill__file_writer_on_write(rill_stream_t *s,
                                void (*cb)(rill_stream_t *s, const struct iovec *iov, int cnt,
                                           void *arg),
                                void *arg);

/* Descriptor facts used by the native fast path (core/splice.c). */
typedef struct {
  int fd;
  int regular;    /* a regular file: positional I/O */
  int64_t offset; /* reader: next byte to read */
  int64_t end;    /* reader: end offset (exclusive), -1: to EOF */
} rill_file_info_t;

/* Fills *info when s is a file reader that can be handed to the fast path now (opened, not
 * following, nothing buffered, not reading); returns 1, else 0. */
int rill__file_reader_info(rill_stream_t *s, rill_file_info_t *info);
/* Same for a writer (opened, nothing queued). */
int rill__file_writer_info(rill_stream_t *s, rill_file_info_t *info);
/* The fast path moved n bytes out of the reader: advance it; eof: it reached the end (the
 * next read ends the stream). */
void rill__file_reader_advance(rill_stream_t *s, int64_t n, int eof);
/* Runs cb(s, arg) once the reader or writer s has opened its file (at once when it has, or when
 * it is not opening any more, e.g. failed). Returns 0, or UV_EINVAL if s is not a file stream. */
int rill__file_when_open(rill_stream_t *s, void (*cb)(rill_stream_t *s, void *arg), void *arg);
/* Lends a file stream to the fast path: its own reads or writes wait, and a destroy calls
 * cancel(arg) at once and completes only once the stream is given back. */
void rill__file_lend(rill_stream_t *s, void (*cancel)(void *arg), void *arg);
/* Gives it back: waiting reads or writes go on, or a waiting destroy completes. */
void rill__file_return(rill_stream_t *s);
/* Nonzero while a file stream is lent to the fast path or has an open waiter. */
int rill__file_claimed(rill_stream_t *s);
/* Nonzero when s is a file reader or writer made by this file. */
int rill__file_is_reader(const rill_stream_t *s);
int rill__file_is_writer(const rill_stream_t *s);

/* ---- whole-file operations ---- */

/* Stat result: the fields scripts use. */
typedef struct {
  uint64_t size, mode, uid, gid, nlink, ino, dev;
  double atime, mtime, ctime; /* seconds since the epoch */
  int type;                   /* 'f' file, 'd' directory, 'l' link, 'c' char dev, 'b' block dev,
                                 'p' FIFO, 's' socket, '?' */
} rill_stat_t;

/* Callbacks get err (borrowed: NULL on success; with syscall and path) and the result. */
typedef void (*rill_read_file_cb)(rill_err_t *err, rill_view_t *data, void *arg);
typedef void (*rill_write_file_cb)(rill_err_t *err, void *arg);
typedef void (*rill_stat_cb)(rill_err_t *err, const rill_stat_t *st, void *arg);

/* Reads the whole of path in the threadpool (one round trip); cb gets the bytes (borrowed: cb
 * takes the reference by moving *data out and emptying it) or the error. 0 or UV_ENOMEM (then
 * cb never runs). path is copied. */
int rill_fs_read_file(rill_loop_t *loop, const char *path, rill_read_file_cb cb, void *arg);
/* Writes data (borrowed: copied by reference, the caller may release it) to path, replacing it;
 * or appending when append. 0 or UV_ENOMEM. */
int rill_fs_write_file(rill_loop_t *loop, const char *path, const rill_view_t *data, int append,
                       rill_write_file_cb cb, void *arg);
/* Stats path (following links unless lstat). 0 or UV_ENOMEM. */
int rill_fs_stat(rill_loop_t *loop, const char *path, int lstat, rill_stat_cb cb, void *arg);

#endif
