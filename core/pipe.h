/* core/pipe.h: pipes with backpressure, pipelines with error propagation, and finished. */
#ifndef RILL_PIPE_H
#define RILL_PIPE_H

#include "stream.h"

/* A pipe moves the chunks of a readable into a writable entirely in C (internal listeners, no
 * owner hook involved), so a native-to-native pipe never calls into Lua. It follows Node's
 * Readable.prototype.pipe: a write that returns "full" pauses the source until the destination
 * drains; the source's end ends the destination (unless end == 0); the destination's finish,
 * close or destroy unpipes. A source may feed several destinations: the slowest sets the pace. */
typedef struct rill_pipe_s rill_pipe_t;

/* Pipes src into dst. The pipe holds a reference on both until it is undone. 0, or UV_EINVAL
 * (src has no readable side, dst no writable side). src may be dst (a duplex into itself, such
 * as a TCP echo). Piping a stream that has already closed does nothing. */
int rill_stream_pipe(rill_stream_t *src, rill_stream_t *dst, int end);
/* The pipe itself, without the native fast path (core/splice.c falls back to it). */
int rill__pipe_plain(rill_stream_t *src, rill_stream_t *dst, int end);
/* Undoes the pipe from src to dst (NULL: to every destination); emits "unpipe" on each. */
void rill_stream_unpipe(rill_stream_t *src, rill_stream_t *dst);
/* Number of destinations src is piped into. */
size_t rill_stream_pipe_count(rill_stream_t *src);

/* finished: cb(s, err, arg) runs once when s has closed: err is NULL when the watched sides
 * completed (readable: "end" emitted; writable: "finish" emitted; or the stream was stopped),
 * the stream's error when it failed, or ERR_STREAM_PREMATURE_CLOSE when it was destroyed
 * before. err is borrowed. On an already closed stream cb runs from the next tick. */
enum { RILL_FINISHED_READABLE = 1, RILL_FINISHED_WRITABLE = 2 };
typedef struct rill_finished_s rill_finished_t;
typedef void (*rill_finished_cb)(rill_stream_t *s, rill_err_t *err, void *arg);
/* which: RILL_FINISHED_* bits (0: every side the stream has). *out (optional) receives a
 * handle for rill_finished_cancel, valid until cb ran. 0 or UV_ENOMEM. */
int rill_stream_finished(rill_stream_t *s, unsigned which, rill_finished_cb cb, void *arg,
                         rill_finished_t **out);
/* Cancels a pending finished: cb will not run. */
void rill_finished_cancel(rill_finished_t *f);

/* pipeline: pipes streams[0] -> ... -> streams[n-1] (each takes a reference). On the first
 * error every stream is destroyed with it (a real error wins over a premature close); cb(err)
 * runs exactly once, after every stream has closed, with NULL on success. 0, UV_EINVAL (fewer
 * than 2 streams, a first stream that is not readable, a last that is not writable, a middle
 * one that is not a duplex) with nothing done, or UV_ENOMEM. */
typedef void (*rill_pipeline_cb)(rill_err_t *err, void *arg);
int rill_pipeline(rill_stream_t *const *streams, size_t n, rill_pipeline_cb cb, void *arg);

/* Stops every stream piped into s (rill_stream_stop on each): take(n) uses it once it has
 * enough, so that an endless source upstream stops and pipelines still succeed. */
void rill_stream_stop_sources(rill_stream_t *s);

#endif
