/* bindings/lrill.h: helpers shared by every binding: the engine context, protected calls from
 * the loop, error values, tasks, and buffers crossing into Lua. */
#ifndef RILL_LRILL_H
#define RILL_LRILL_H

#include <lauxlib.h>
#include <lua.h>

#include "buf.h"
#include "error.h"
#include "loop.h"

#ifndef RILL_VERSION
#define RILL_VERSION "0.0.0"
#endif

/* Per-interpreter state, kept in the registry. One per engine (or per stock-lua state that
 * required "rill"). */
typedef struct rill_ctx_s {
  lua_State *L; /* the main state */
  rill_loop_t loop;
  int running; /* inside rill_loop_run: rill.run() is then a no-op */
  int failed;  /* an uncaught error is waiting in the registry (RILL_KEY_FAILED) */
  int exiting; /* rill.exit() was called: unwinding; exit_code holds the status */
  int closing; /* the Lua state is closing: queued work must not call into Lua */
  int exit_code;
  int live_tasks;
  /* The task being resumed now (the innermost), else NULL: the REPL's Ctrl-C handler arms its
   * interrupt hook there, as code spinning in a pooled callback task runs nowhere else. */
  lua_State *volatile task_now;
  lua_Integer tick_head, tick_tail; /* FIFO of Lua functions queued by rill.next_tick */
  lua_Integer imm_head, imm_tail;   /* FIFO of Lua functions queued by rill.immediate */
  int exit_hooks;                   /* registry ref of a table of C flushers run before exit */
  /* The engine's sandbox (include/rill.h), or NULL. A Lua state that runs code on behalf of this
   * one (a parallel worker) must call rill__sandbox_open with it, or the sandbox leaks. */
  const struct rill_options *sandbox;
} rill_ctx_t;

/* Creates the context of L over uv (NULL: a loop of its own) unless it exists; returns it. The
 * context is freed, with every handle it tracks closed, when L is closed. */
rill_ctx_t *rill__ctx_open(lua_State *L, uv_loop_t *uv);
/* Pushes the message of the uncaught error that stopped the loop, clears it, and returns it. */
const char *rill__take_failure(lua_State *L);
/* Runs the loop in mode; returns 0, or a RILL_ERRRUN / RILL_EXIT status (see rill.h). */
int rill__run(rill_ctx_t *ctx, uv_run_mode mode);

/* The context of L's interpreter; raises if rill was not opened in it. */
rill_ctx_t *rill__ctx(lua_State *L);
/* The context, or NULL: for callbacks that must not raise. */
rill_ctx_t *rill__ctx_or_null(lua_State *L);

/* Calls the function below nargs arguments on L in protected mode with a traceback handler.
 * Returns LUA_OK with nres results on the stack, or an error status with the error value on the
 * stack (a string error gets its traceback appended). Never raises. */
int rill__pcall(lua_State *L, int nargs, int nres);
/* Reports the value on top of L as an uncaught error (the "uncaught" hook, else stop the loop
 * and keep it for rill_run / rill.run to return) and pops it. */
void rill__uncaught(lua_State *L);
/* True if the value at idx is the unwinding marker raised by rill.exit (not an error). */
int rill__is_exit(lua_State *L, int idx);
/* For a callback the loop invokes: rill__pcall, and on error rill__uncaught; then drains the
 * tick queue. Leaves nothing on the stack; returns the call status. */
int rill__callback(lua_State *L, int nargs);
/* Pushes a traceback-carrying message of the error value at idx, for stderr. Never raises
 * for a bad __tostring (user code runs protected). */
const char *rill__errstring(lua_State *L, int idx);

/* Error values: a table {code=, message=, syscall=, path=} with metatable "rill.error".
 * Pushes one for err (a negative UV_E* or RILL_E* code); syscall and path may be NULL. */
void rill__pusherr(lua_State *L, int err, const char *syscall, const char *path);
/* Pushes nil and an error value; returns 2, for `return rill__fail(...)`. */
int rill__fail(lua_State *L, int err, const char *syscall, const char *path);
/* Raises an error value for err (misuse paths that must carry a code). */
int rill__raise(lua_State *L, int err, const char *fname);

/* Tasks. A task is a coroutine resumed by the loop. A waiting call checks with
 * rill__task_check, arranges to be woken, and returns rill__task_wait(L). The waker pushes the
 * results onto the task's stack and calls rill__task_wake; the task resumes at the next tick
 * (never inside the waker) and the waiting call returns those values. */
int rill__in_task(lua_State *L);
/* Raises "<fname>: must be called from a task" unless L is a task that may suspend. */
void rill__task_check(lua_State *L, const char *fname);
/* Suspends the calling task; `return rill__task_wait(L);` from a waiting C function. */
int rill__task_wait(lua_State *L);
/* Resumes the suspended task T with its top nres values as the waiting call's results. */
void rill__task_wake(lua_State *T, int nres);

/* Runs the function below nargs arguments as a task (up to its first wait). LUA_OK, or an error
 * status with the error (traceback included) pushed, when it failed before its first wait. */
int rill__task_start_main(lua_State *L, int nargs);

/* Buffers (bindings/lbuffer.c). Metatable "rill.buffer". */
/* Pushes a new buffer userdata over v, taking v's reference (*v is emptied). */
void rill__pushbuffer(lua_State *L, rill_view_t *v);
/* The view of the buffer at idx (borrowed), or NULL if it is not a buffer. */
rill_view_t *rill__tobuffer(lua_State *L, int idx);
/* The view of the buffer at idx (borrowed); raises an argument error otherwise. */
rill_view_t *rill__checkbuffer(lua_State *L, int idx);
/* Bytes of a string or buffer at idx (borrowed), or NULL if it is neither. */
const char *rill__tobytes(lua_State *L, int idx, size_t *len);
/* Bytes of a string or buffer at idx (borrowed); raises an argument error otherwise. */
const char *rill__checkbytes(lua_State *L, int idx, size_t *len);

/* Sandbox (bindings/sandbox.c): leaves out of L the rill modules and the parts of Lua's libraries
 * that opts denies; each denied use raises "<name>: denied by the engine's sandbox". Call it after
 * the standard libraries and rill are open in L. Raises on memory errors. */
struct rill_options;
void rill__sandbox_open(lua_State *L, const struct rill_options *opts);

/* Module openers, one per binding file; each returns the module table. */
int rill__open_core(lua_State *L);   /* bindings/lrill.c: loop, timers, tasks, signals, exit */
int rill__open_buffer(lua_State *L); /* bindings/lbuffer.c */
int rill__open_timer(lua_State *L);  /* bindings/ltimer.c: timers and signals, onto the table */
int rill__open_task(lua_State *L); /* bindings/ltask.c: adds spawn and sleep to the table on top */
int rill__open_repl(lua_State *L); /* bindings/lrepl.c: the REPL's terminal, as rill._repl */
int rill__open_stream(lua_State *L);   /* bindings/lstream.c: stream userdata, as rill._stream */
int rill__open_parallel(lua_State *L); /* bindings/lparallel.c: stream.parallel */
int rill__open_zlib(lua_State *L);     /* bindings/lzlib.c: gzip, gunzip, deflate, inflate */
int rill__open_http(lua_State *L);     /* bindings/lhttp.c: the native HTTP server, as rill._http */
int rill__open_fs(lua_State *L);       /* bindings/lfs.c: rill.fs */
int rill__open_net(lua_State *L);      /* bindings/lnet.c: rill.net (TCP) */
int rill__open_udp(lua_State *L);      /* bindings/ludp.c: rill.udp */
int rill__open_process(lua_State *L);  /* bindings/lprocess.c: rill.process */
int rill__open_stdio(lua_State *L); /* bindings/lstdio.c: rill.stdio (rill.stdin/stdout/stderr) */
int rill__open_progress(lua_State *L); /* bindings/lprogress.c: rill._progress (stream.progress) */

/* Helpers of the I/O bindings (bindings/lio.c). */
/* Makes sure the stream binding is open (rill.stream if present, else rill._stream) and that
 * SIGPIPE is ignored (a closed pipe is an EPIPE error, not death). */
void rill__require_streams(lua_State *L);
/* Fields of an options table at idx (none or nil: def); a wrong type raises naming the field. */
lua_Integer rill__opt_int(lua_State *L, int idx, const char *k, lua_Integer def);
/* rill__opt_int within [lo, hi], else an argument error naming the option and the range. */
lua_Integer rill__opt_range(lua_State *L, int idx, const char *k, lua_Integer def, lua_Integer lo,
                            lua_Integer hi);
int rill__opt_bool(lua_State *L, int idx, const char *k, int def);
const char *rill__opt_str(lua_State *L, int idx, const char *k, const char *def);

/* Streams (bindings/lstream.c). Metatable "rill.stream". Needs rill._stream opened in L (the
 * rill.stream module does it; so does rill__pushstream). */
struct rill_stream_s;
struct rill_err_s;
/* Pushes a new Lua stream over a native core stream s (takes the caller's reference): events
 * reach Lua listeners, chunks become buffers (strings for RILL_STREAM_RECORDS streams). */
void rill__pushstream(lua_State *L, struct rill_stream_s *s);
/* The core stream of the stream userdata at idx (borrowed), or NULL / an argument error. */
struct rill_stream_s *rill__tostream(lua_State *L, int idx);
struct rill_stream_s *rill__checkstream(lua_State *L, int idx);
/* Pushes the Lua value of a core error: the original Lua value when a Lua callback raised it,
 * else an error value made by rill__pusherr (with the error's message). */
void rill__pushstreamerr(lua_State *L, struct rill_err_s *e);
/* Gives the native stream at idx extra read-only fields (and methods): pops a table whose keys
 * its __index answers after the stream's own (sockets: remote_address, remote_port; UDP: send). */
void rill__setstreamfields(lua_State *L, int idx);
/* Native object-mode items: how Lua sees items made with ops (UDP messages become tables).
 * push pushes one value for item (borrowed). Without one, such items show as light userdata. */
struct rill_item_ops_s;
typedef void (*rill_item_push_fn)(lua_State *L, void *item);
void rill__register_item(const struct rill_item_ops_s *ops, rill_item_push_fn push);

#endif
