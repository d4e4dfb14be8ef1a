/* core/stream.h: readable, writable, duplex and transform state machines with Node.js semantics. */
#ifndef RILL_STREAM_H
#define RILL_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"
#include "loop.h"

/* How to write a stream (read this first)
 * ---------------------------------------
 * One object, rill_stream_t, has an optional readable side and an optional writable side. What
 * it does with its data is an implementation vtable (rill_stream_impl_t) of hooks that are
 * native C or the Lua binding's trampolines. The core runs Node's state machines around them:
 *
 *   readable side:  the core calls impl->read(s, size) when it wants data; the implementation
 *                   answers, now or later, with rill_stream_push(s, chunk) (NULL chunk = EOF).
 *                   push returns 1 while the buffer is below its high-water mark, 0 when the
 *                   implementation should stop until the next read call.
 *   writable side:  the core calls impl->write(s, chunk) one chunk at a time (or impl->writev
 *                   with every buffered chunk); the implementation calls
 *                   rill_stream_write_done(s, err) exactly once per call, now or later.
 *                   impl->final(s) runs once after the last write; answer with
 *                   rill_stream_final_done(s, err).
 *   transform:      impl->transform(s, chunk) pushes any number of outputs with
 *                   rill_stream_push and then calls rill_stream_write_done(s, err);
 *                   impl->flush(s) pushes the last outputs and calls rill_stream_final_done.
 *   destroy:        impl->destroy(s, err) releases resources (closes uv handles, ...) and calls
 *                   rill_stream_destroy_done(s, err) when they are gone, now or later. It runs
 *                   exactly once however many times the stream is destroyed.
 *
 * Consumers use rill_stream_write / rill_stream_end / rill_stream_read / rill_stream_resume /
 * rill_stream_pause / rill_stream_destroy, and core/pipe.h for pipes, pipelines and finished.
 * Events (data, end, readable, drain, finish, error, close, ...) reach the owner's hook and any
 * internal listeners; they are the same events, in the same order, as Node's.
 *
 * Rules that hold everywhere:
 * - Callbacks and events that a call schedules run after that call returns (from the loop's
 *   next-tick queue), never inside it, except where Node emits synchronously (a push into a
 *   flowing stream emits "data" at once, a write calls impl->write at once).
 * - No recursion per chunk: flowing data is moved by loops, so the C stack stays flat however
 *   many chunks pass.
 * - "error" is emitted at most once, "close" exactly once and last. After "close" nothing else
 *   is emitted, and every queued write callback has been called.
 * - An object that may be destroyed inside its own callback is kept alive by a dispatching
 *   reference: calling any function of this header from inside a hook or event is safe.
 *
 * Byte mode carries rill_view_t chunks; the high-water mark counts bytes (default 64 KiB:
 * larger than Node's 16 KiB because slabs are 64 KiB and fewer, larger chunks cost less).
 * Object mode carries opaque items (rill_item_ops_t supplies their dup/drop) and also accepts
 * views; the high-water mark counts chunks (default 16). */

typedef struct rill_stream_s rill_stream_t;
struct rill_pipe_s;

#define RILL_HWM_BYTES_DEFAULT ((size_t)64 * 1024)
#define RILL_HWM_OBJECTS_DEFAULT ((size_t)16)
#define RILL_HWM_DEFAULT SIZE_MAX /* in rill_stream_opts_t: use the mode's default */

/* ---- errors ---- */

/* A refcounted error: a code (UV_E* or RILL_E*) with optional details and an opaque payload of
 * the owner (the Lua binding keeps the original Lua error value there). */
typedef struct rill_err_s {
  int refs; /* < 0: a static error that is never freed */
  int code;
  const char *syscall; /* static string or NULL */
  char *path;          /* owned copy or NULL */
  char *message;       /* owned copy or NULL: overrides rill_strerror(code) */
  void *payload;       /* the owner's data; released by release() */
  intptr_t payload_id;
  void (*release)(struct rill_err_s *e); /* frees the payload when the last reference goes */
} rill_err_t;

/* Returns a new error (one reference). syscall must be static; path and message are copied
 * (either may be NULL). Never NULL: out of memory gives a static UV_ENOMEM error. */
rill_err_t *rill_err_new(int code, const char *syscall, const char *path, const char *message);
/* Takes one more reference; returns e. NULL is a no-op. */
rill_err_t *rill_err_ref(rill_err_t *e);
/* Drops one reference. NULL is a no-op. */
void rill_err_unref(rill_err_t *e);
/* The message to show: e->message, else rill_strerror(e->code). */
const char *rill_err_message(const rill_err_t *e);

/* ---- chunks ---- */

/* Object-mode items are opaque pointers owned through these hooks. An owner embeds the ops in
 * a larger struct to reach its context (RILL_CONTAINER_OF). */
typedef struct rill_item_ops_s {
  /* Returns a new reference to the same value (may be the same pointer). */
  void *(*dup)(const struct rill_item_ops_s *ops, void *item);
  /* Drops one reference. */
  void (*drop)(const struct rill_item_ops_s *ops, void *item);
  /* Fills *out with the item's bytes (new reference) when the item is bytes-like (a string, a
   * buffer); returns 0, or RILL_EINVALID_ARG_TYPE with a message in *msg (static or NULL). Lets
   * an object-mode stream feed a byte-mode one. May be NULL: no item is bytes-like. */
  int (*to_bytes)(const struct rill_item_ops_s *ops, void *item, rill_view_t *out,
                  const char **msg);
} rill_item_ops_t;

/* A chunk is a view (byte mode; object mode also accepts views, one item each) or an item. */
typedef struct {
  rill_view_t view; /* ops == NULL: the bytes, one reference */
  void *item;       /* ops != NULL: the item, one reference */
  const rill_item_ops_t *ops;
} rill_chunk_t;

#define RILL_CHUNK_EMPTY ((rill_chunk_t){{NULL, 0, 0}, NULL, NULL})

/* Fills *c with a view chunk, taking v's reference (*v is emptied). */
static inline void rill_chunk_from_view(rill_chunk_t *c, rill_view_t *v) {
  c->view = *v;
  c->item = NULL;
  c->ops = NULL;
  v->slab = NULL;
  v->off = v->len = 0;
}
/* Fills *c with an item chunk, taking the item's reference. */
static inline void rill_chunk_from_item(rill_chunk_t *c, void *item, const rill_item_ops_t *ops) {
  c->view.slab = NULL;
  c->view.off = c->view.len = 0;
  c->item = item;
  c->ops = ops;
}
/* Fills *c with a copy of p[0..len) as a view chunk; 0 or UV_ENOMEM. */
int rill_chunk_from_bytes(rill_chunk_t *c, const void *p, size_t len);
/* Fills *dst with a new reference to src's value. */
void rill_chunk_dup(rill_chunk_t *dst, const rill_chunk_t *src);
/* Drops the chunk's reference and empties it; idempotent. */
void rill_chunk_release(rill_chunk_t *c);

/* ---- events ---- */

typedef enum {
  RILL_EV_DATA, /* chunk: borrowed (dup it to keep it) */
  RILL_EV_END,
  RILL_EV_READABLE,
  RILL_EV_DRAIN,
  RILL_EV_PREFINISH,
  RILL_EV_FINISH,
  RILL_EV_ERROR, /* err: borrowed */
  RILL_EV_CLOSE,
  RILL_EV_PIPE,   /* peer: the source that was piped into this stream */
  RILL_EV_UNPIPE, /* peer: the source that was unpiped */
  RILL_EV_PAUSE,
  RILL_EV_RESUME,
  RILL_EV_BUSY, /* owner hook only: the core took a reference besides the owner's */
  RILL_EV_IDLE, /* owner hook only: the core dropped its last such reference */
  RILL_EV__COUNT
} rill_stream_ev_t;

#define RILL_EVBIT(ev) (1u << (ev))

typedef struct {
  rill_stream_ev_t type;
  const rill_chunk_t *chunk;
  rill_err_t *err;
  rill_stream_t *peer;
} rill_event_t;

/* The owner's hook gets every event of the stream (Lua listeners are dispatched from it). */
typedef void (*rill_stream_hook_cb)(rill_stream_t *s, const rill_event_t *ev, void *arg);

/* An internal listener, embedded in its owner (pipes, finished, waiters): native code listens
 * without any Lua. It may unlisten itself or others from inside its callback. */
typedef struct rill_listener_s {
  struct rill_listener_s *prev, *next;
  rill_stream_t *stream; /* set while listening */
  unsigned mask;         /* RILL_EVBIT()s of the events it wants */
  unsigned since;        /* internal: listeners added during an emit miss that emit */
  void (*cb)(struct rill_listener_s *l, rill_stream_t *s, const rill_event_t *ev);
} rill_listener_t;

/* ---- implementation ---- */

/* Every hook is optional. A stream without read still works: its owner pushes when it likes. */
typedef struct rill_stream_impl_s {
  /* Readable side: deliver up to about size bytes (or items) with rill_stream_push. */
  void (*read)(rill_stream_t *s, size_t size);
  /* Writable side: consume chunk (borrowed until rill_stream_write_done; dup it to keep it). */
  void (*write)(rill_stream_t *s, const rill_chunk_t *chunk);
  /* Writable side: consume n chunks at once (borrowed until rill_stream_write_done, called once
   * for all). Used when more than one chunk is buffered. */
  void (*writev)(rill_stream_t *s, const rill_chunk_t *chunks, size_t n);
  /* Writable side: after the last write; answer with rill_stream_final_done. */
  void (*final)(rill_stream_t *s);
  /* Transform: push outputs for chunk (borrowed), then rill_stream_write_done. */
  void (*transform)(rill_stream_t *s, const rill_chunk_t *chunk);
  /* Transform: push the last outputs, then rill_stream_final_done. */
  void (*flush)(rill_stream_t *s);
  /* Release resources, then rill_stream_destroy_done(s, err); err is borrowed. */
  void (*destroy)(rill_stream_t *s, rill_err_t *err);
  /* The core object is being freed: release impl data. Must not touch s's state. */
  void (*free)(rill_stream_t *s);
} rill_stream_impl_t;

enum {
  RILL_STREAM_READABLE = 1u << 0,     /* has a readable side */
  RILL_STREAM_WRITABLE = 1u << 1,     /* has a writable side */
  RILL_STREAM_OBJECT_READ = 1u << 2,  /* readable side in object mode */
  RILL_STREAM_OBJECT_WRITE = 1u << 3, /* writable side in object mode */
  RILL_STREAM_NO_HALF_OPEN = 1u << 4, /* duplex: end the writable side when the readable ends */
  RILL_STREAM_COALESCE = 1u << 5,     /* small byte writes may be merged into one chunk (only for
                                         sinks that do not care where chunks are cut) */
  RILL_STREAM_RECORDS = 1u << 6,      /* the readable side gives text records (lines) as views:
                                         a hint for owners (Lua shows them as strings) */
};
#define RILL_STREAM_DUPLEX (RILL_STREAM_READABLE | RILL_STREAM_WRITABLE)
#define RILL_STREAM_OBJECT (RILL_STREAM_OBJECT_READ | RILL_STREAM_OBJECT_WRITE)

typedef struct {
  unsigned flags;
  size_t read_hwm; /* RILL_HWM_DEFAULT: 64 KiB in byte mode, 16 in object mode */
  size_t write_hwm;
} rill_stream_opts_t;

/* Creates a stream on loop driven by impl (borrowed: it must outlive the stream) with the
 * implementation's data; *out gets a new reference. A transform (impl->transform set) is
 * always a duplex. 0, UV_EINVAL (no side at all), or UV_ENOMEM. */
int rill_stream_new(rill_loop_t *loop, const rill_stream_impl_t *impl, void *data,
                    const rill_stream_opts_t *opts, rill_stream_t **out);
/* Takes one more reference. */
void rill_stream_ref(rill_stream_t *s);
/* Drops one reference. When the last goes before "close", the stream is destroyed first
 * (silently: set the hook to NULL before, if its owner is gone) and freed after "close". */
void rill_stream_unref(rill_stream_t *s);
/* The implementation data given to rill_stream_new (borrowed). */
void *rill_stream_data(const rill_stream_t *s);
rill_loop_t *rill_stream_loop(const rill_stream_t *s);
const rill_stream_impl_t *rill_stream_impl(const rill_stream_t *s);

/* Sets the owner's hook (NULL: none). */
void rill_stream_set_hook(rill_stream_t *s, rill_stream_hook_cb cb, void *arg);
/* The hook's arg when the hook is cb, else NULL: lets an owner recognise its own streams. */
void *rill_stream_hook_arg(const rill_stream_t *s, rill_stream_hook_cb cb);
/* Adds an internal listener (l must stay valid while listening); removes it. Unlisten is
 * idempotent. */
void rill_stream_listen(rill_stream_t *s, rill_listener_t *l);
void rill_stream_unlisten(rill_listener_t *l);
/* Node's listener-count semantics, for the owner's and the pipes' listeners: a "data" listener
 * (delta +1) resumes a stream that was not explicitly paused; a "readable" listener switches to
 * paused mode with "readable" events; "error" listeners mark the error as handled. */
void rill_stream_watch(rill_stream_t *s, rill_stream_ev_t ev, int delta);
/* Number of internal listeners (for tests: pipe/unpipe must not leak them). */
size_t rill_stream_listener_count(const rill_stream_t *s);

/* ---- readable side ---- */

/* Delivers chunk (takes its reference, also on failure); NULL ends the stream. Returns 1 when
 * more may be pushed now, 0 when the buffer is at its high-water mark (wait for the next read
 * call), RILL_ESTREAM_PUSH_AFTER_EOF (the stream is failed with it), or
 * RILL_EINVALID_ARG_TYPE (an item that is not bytes-like on a byte-mode side; the stream is
 * failed). Pushing into a destroyed stream drops the chunk and returns 0. */
int rill_stream_push(rill_stream_t *s, rill_chunk_t *chunk);
/* Consumer pull (Node's read()): moves the next buffered chunk into *out and returns 0; or
 * UV_EAGAIN (nothing yet: the read hook was asked, wait for "readable"/"end"/"error"/"close");
 * UV_EOF at the end; the stream's error code when it failed (rill_stream_error gives it);
 * RILL_ESTREAM_PREMATURE_CLOSE when destroyed before its end. Emits "data" like Node. */
int rill_stream_read(rill_stream_t *s, rill_chunk_t *out);
/* Flowing and paused modes (Node's resume/pause). */
void rill_stream_resume(rill_stream_t *s);
void rill_stream_pause(rill_stream_t *s);

/* ---- writable side ---- */

/* Called once per write with NULL or the error (borrowed), after the write call returned. */
typedef void (*rill_write_cb)(rill_stream_t *s, rill_err_t *err, void *arg);

/* Queues chunk (takes its reference, also on failure) with an optional callback. Returns 0
 * when below the high-water mark, 1 when at or above it (accepted: wait for "drain"), or:
 * RILL_ESTREAM_WRITE_AFTER_END (misuse: nothing happens, cb is not called);
 * RILL_ESTREAM_DESTROYED (cb gets that error from the next tick);
 * RILL_EINVALID_ARG_TYPE (an item that is not bytes-like on a byte-mode side; nothing
 * happens); UV_EINVAL (no writable side). */
int rill_stream_write(rill_stream_t *s, rill_chunk_t *chunk, rill_write_cb cb, void *arg);
/* Copies p[0..len) and writes it; with RILL_STREAM_COALESCE it may join the last queued chunk.
 * Same results as rill_stream_write. */
int rill_stream_write_bytes(rill_stream_t *s, const void *p, size_t len, rill_write_cb cb,
                            void *arg);
/* Node's end([chunk][, cb]): writes chunk if not NULL (takes its reference), then ends the
 * writable side: final, "finish", "close". cb (optional) runs once at "finish", or with an
 * error (RILL_ESTREAM_ALREADY_FINISHED, RILL_ESTREAM_DESTROYED, the stream's error) from the
 * next tick. Calling it again only adds cb. Returns 0, or what rill_stream_write returned for
 * chunk when that failed (then nothing else happens). */
int rill_stream_end(rill_stream_t *s, rill_chunk_t *chunk, rill_write_cb cb, void *arg);

/* ---- implementation answers ---- */

/* Acknowledges the write (or writev) in flight. Returns 0, or RILL_EMULTIPLE_CALLBACK when
 * none is in flight (the stream is then failed with that error, unless it is destroyed).
 * A transform's acknowledgement is held while its readable side is full (backpressure). */
int rill_stream_write_done(rill_stream_t *s, rill_err_t *err);
/* Answers final (or flush: the core then ends the readable side). 0 or RILL_EMULTIPLE_CALLBACK. */
int rill_stream_final_done(rill_stream_t *s, rill_err_t *err);
/* Answers destroy: "error" (when err or the stream's error is set) and "close" follow from the
 * next tick. Later calls are ignored. */
void rill_stream_destroy_done(rill_stream_t *s, rill_err_t *err);

/* ---- both sides ---- */

/* Destroys the stream (idempotent: only the first call counts, later errors are ignored).
 * err is borrowed (NULL: no error). Pending write callbacks get ERR_STREAM_DESTROYED (or the
 * error) before "close". */
void rill_stream_destroy(rill_stream_t *s, rill_err_t *err);
/* Destroys with an error made from a code (convenience). */
void rill_stream_destroy_code(rill_stream_t *s, int code);
/* Stops a stream whose consumer needs nothing more (take(n) upstream): unpipes it, destroys it
 * and every stream piped into it, and lets rill_stream_finished treat them as done, not as a
 * premature close. */
void rill_stream_stop(rill_stream_t *s);

/* ---- state (read-only) ---- */

enum {
  RILL_SS_DESTROYED = 1u << 0,
  RILL_SS_CLOSED = 1u << 1, /* "close" was emitted */
  RILL_SS_ERRORED = 1u << 2,
  RILL_SS_READ_ENDED = 1u << 3, /* EOF was pushed */
  RILL_SS_END_EMITTED = 1u << 4,
  RILL_SS_FLOWING = 1u << 5,
  RILL_SS_PAUSED = 1u << 6, /* explicitly paused */
  RILL_SS_ENDING = 1u << 7, /* end() was called */
  RILL_SS_FINISHED = 1u << 8,
  RILL_SS_NEED_DRAIN = 1u << 9,
  RILL_SS_STOPPED = 1u << 10,
  RILL_SS_WRITING = 1u << 11,
};
/* The RILL_SS_* bits of s. */
unsigned rill_stream_state(const rill_stream_t *s);
/* RILL_STREAM_* flags given at creation (READABLE/WRITABLE/OBJECT_*). */
unsigned rill_stream_flags(const rill_stream_t *s);
/* The stream's error (borrowed), or NULL. */
rill_err_t *rill_stream_error(const rill_stream_t *s);
/* Buffered bytes (or items) on the readable side, and queued plus in-flight on the writable. */
size_t rill_stream_readable_length(const rill_stream_t *s);
size_t rill_stream_writable_length(const rill_stream_t *s);
size_t rill_stream_readable_hwm(const rill_stream_t *s);
size_t rill_stream_writable_hwm(const rill_stream_t *s);
/* Nonzero while "error" is emitted with nobody handling it (no "error" watcher and no internal
 * listener for it): the owner may report it as uncaught. */
int rill_stream_error_unhandled(const rill_stream_t *s);

/* ---- in-memory helpers ---- */

/* A byte-mode readable of v's bytes (takes a reference on v's slab) in chunks of at most
 * chunk bytes (0: 64 KiB), as views of the same memory: no copy. */
int rill_stream_new_source(rill_loop_t *loop, const rill_view_t *v, size_t chunk,
                           rill_stream_t **out);

/* One-shot waiter: cb runs (once) at the first of the events in mask, then w is unlistened. */
typedef struct rill_waiter_s {
  rill_listener_t l;
  void (*cb)(struct rill_waiter_s *w, rill_stream_t *s, const rill_event_t *ev);
  void *arg;
} rill_waiter_t;
void rill_stream_wait(rill_stream_t *s, rill_waiter_t *w, unsigned mask,
                      void (*cb)(rill_waiter_t *w, rill_stream_t *s, const rill_event_t *ev),
                      void *arg);

/* ---- internals shared with core/pipe.c ---- */
struct rill_pipe_s *rill__stream_pipes_out(rill_stream_t *s);
struct rill_pipe_s *rill__stream_pipes_in(rill_stream_t *s);
void rill__stream_set_pipes(rill_stream_t *s, struct rill_pipe_s *out, struct rill_pipe_s *in);
/* Generation of emitted data: a pipe waiting for drain since this generation still waits. */
unsigned rill__stream_data_gen(const rill_stream_t *s);
size_t rill__stream_data_watchers(const rill_stream_t *s);
/* rill_stream_write that also gives the reason of a RILL_EINVALID_ARG_TYPE (static string). */
int rill__stream_write_msg(rill_stream_t *s, rill_chunk_t *chunk, const char **msg);
/* Emits a "pipe" or "unpipe" event on s with peer. */
void rill__stream_emit_peer(rill_stream_t *s, rill_stream_ev_t type, rill_stream_t *peer);
/* Runs cb(arg) from the next tick while holding a reference on s. 0 or UV_ENOMEM. */
int rill__stream_tick(rill_stream_t *s, void (*cb)(rill_stream_t *s, void *arg), void *arg);

#endif
