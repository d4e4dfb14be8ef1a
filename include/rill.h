/* rill.h: the embedding API of rill, a Lua-scriptable stream engine. */
#ifndef RILL_H
#define RILL_H

#include <stddef.h>

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RILL_BUILDING)
#define RILL_API __attribute__((visibility("default")))
#else
#define RILL_API
#endif

/* An engine: one Lua state with rill open in it, running on one uv loop. An engine belongs to
 * the thread that made it; several engines may live in one process, in one or several threads
 * (engines in different threads must not share a loop). */
typedef struct rill_engine_s rill_engine;

enum { RILL_RUN_DEFAULT = 0, RILL_RUN_ONCE = 1, RILL_RUN_NOWAIT = 2 };

/* Error codes returned by rill_dostring, rill_dofile and rill_run. */
enum { RILL_OK = 0, RILL_ERRSYNTAX = 1, RILL_ERRRUN = 2, RILL_ERRFILE = 3, RILL_EXIT = 4 };

/* Parts of rill and of Lua's own libraries that a sandboxed engine leaves out (rill_options.deny).
 * Using a denied part raises an error whose message is "<name>: denied by the engine's sandbox"
 * (an error value with code "ERR_ACCESS_DENIED" for rill's parts). */
enum {
  RILL_DENY_FS = 1 << 0,      /* rill.fs */
  RILL_DENY_PROCESS = 1 << 1, /* rill.process */
  RILL_DENY_NET = 1 << 2,     /* rill.net and rill.udp */
  RILL_DENY_HTTP = 1 << 3,    /* rill.http */
  RILL_DENY_STDIO = 1 << 4,   /* rill.stdin/stdout/stderr, the REPL terminal (print stays) */
  RILL_DENY_SIGNAL = 1 << 5,  /* rill.on_signal: signals belong to the whole process */
  RILL_DENY_IO = 1 << 6,      /* Lua's io, dofile, loadfile, and require of Lua files on disk */
  RILL_DENY_OS = 1 << 7,      /* os.execute/remove/rename/exit/getenv/tmpname/setlocale, rill.env */
  RILL_DENY_CMODULES = 1 << 8, /* package.loadlib and require of C modules */
  RILL_DENY_BYTECODE = 1 << 9, /* loading binary (precompiled) chunks: load, loadfile, dofile */
  RILL_DENY_DEBUG = 1 << 10,   /* the debug library, but for debug.traceback */
  /* Every rill module that reaches outside the process. */
  RILL_DENY_MODULES = RILL_DENY_FS | RILL_DENY_PROCESS | RILL_DENY_NET | RILL_DENY_HTTP |
                      RILL_DENY_STDIO | RILL_DENY_SIGNAL,
  /* Every part of Lua's own libraries that reaches the system or escapes the sandbox. */
  RILL_DENY_LUA =
      RILL_DENY_IO | RILL_DENY_OS | RILL_DENY_CMODULES | RILL_DENY_BYTECODE | RILL_DENY_DEBUG,
  RILL_DENY_ALL = RILL_DENY_MODULES | RILL_DENY_LUA
};

/* Options of rill_new_ex. Zero-initialise it ({0}: no limits, nothing denied) and set what you
 * need; rill_new_ex copies it, so it may live on the caller's stack. */
typedef struct rill_options {
  unsigned deny;                   /* RILL_DENY_* bits */
  const char *const *deny_modules; /* more rill.X modules to leave out by name ("zlib"), in a
                                    * NULL-terminated array, or NULL */
  size_t max_memory;               /* bytes the engine may hold (its Lua heap and its buffers);
                                    * 0: no cap */
  unsigned long max_instructions;  /* Lua VM instructions that scripts may run in one turn of the
                                    * loop (between two returns to the loop); 0: no cap */
} rill_options;

/* Makes an engine on loop (NULL: a loop of its own) with a Lua state that has rill preloaded;
 * NULL when out of memory. The host keeps ownership of loop, which must outlive the engine. */
RILL_API rill_engine *rill_new(uv_loop_t *loop);
/* rill_new with options (NULL: none); NULL when out of memory, when opts has unknown deny bits,
 * or when opts->max_memory is too small to open the engine. */
RILL_API rill_engine *rill_new_ex(uv_loop_t *loop, const rill_options *opts);
/* The engine's interpreter (borrowed; valid until rill_free). */
RILL_API lua_State *rill_lua(rill_engine *e);
/* The loop the engine runs on (borrowed; the host's loop, or the engine's own). */
RILL_API uv_loop_t *rill_loop(rill_engine *e);
/* Runs code as a task (up to its first wait); 0, or an error code with rill_errmsg set. */
RILL_API int rill_dostring(rill_engine *e, const char *code);
/* Runs the file at path (NULL: stdin) as a task, as rill_dostring does. */
RILL_API int rill_dofile(rill_engine *e, const char *path);
/* Runs the loop in mode; 0 when the run ended cleanly, RILL_ERRRUN on an uncaught error,
 * RILL_EXIT after rill.exit() (see rill_exit_code). Not from inside a callback of the loop. */
RILL_API int rill_run(rill_engine *e, int mode);
/* What stopped the engine while the host drove the loop itself (uv_run on its own loop: an
 * uncaught error calls uv_stop): 0, RILL_ERRRUN with rill_errmsg set (once), or RILL_EXIT. */
RILL_API int rill_status(rill_engine *e);
/* Nonzero while the engine has work that keeps its loop alive (timers, I/O, queued callbacks). */
RILL_API int rill_alive(rill_engine *e);
/* The last error message with its traceback (borrowed; valid until the next call), or NULL. */
RILL_API const char *rill_errmsg(rill_engine *e);
/* The status passed to rill.exit(), once rill_run returned RILL_EXIT. */
RILL_API int rill_exit_code(rill_engine *e);
/* Sets rill.argv (and the global arg): argv[0] is the script, then its arguments; copies them. */
RILL_API void rill_set_argv(rill_engine *e, int argc, char **argv);
/* Bytes the engine holds now: its Lua heap plus the buffer memory charged to it. */
RILL_API size_t rill_memory(rill_engine *e);
/* Closes every handle the engine opened and frees everything; the host's loop stays usable and,
 * once the host closed its own handles, uv_loop_close on it succeeds. NULL is a no-op. Call it
 * outside the loop's callbacks (it turns a host loop once, without blocking, to finish closing). */
RILL_API void rill_free(rill_engine *e);

/* ---- native transforms ----
 * A transform written in C that Lua uses in pipelines like any other stream: after
 * rill_register_transform(e, &def), rill.native.<name>([options]) in e makes a byte-mode
 * transform stream. Its hooks run on the engine's thread and must not call into its Lua state. */
typedef struct rill_xform_s rill_xform;

typedef struct rill_transform_def {
  const char *name;  /* rill.native[name]: letters, digits and _ */
  size_t state_size; /* bytes of zeroed state that each instance gets (rill_xform_state) */
  void *arg;         /* the host's data for every instance (rill_xform_arg) */
  /* Optional: sets up an instance from the Lua options at index opts of L (nil when none); may
   * raise Lua errors (luaL_check*). 0, or a negative error code: the constructor raises. */
  int (*init)(rill_xform *x, lua_State *L, int opts);
  /* Required: consumes data[0..len) (borrowed until it returns), pushing any number of outputs.
   * 0, or a negative error code: the stream fails with that error. */
  int (*transform)(rill_xform *x, const unsigned char *data, size_t len);
  /* Optional: at the end of the input, pushes the last outputs. 0 or a negative error code. */
  int (*flush)(rill_xform *x);
  /* Optional: releases what the state holds; runs once per instance (after init, whatever it
   * returned), when the stream is freed. */
  void (*free)(rill_xform *x);
} rill_transform_def;

/* Makes def (copied) available as rill.native[def->name] in e; 0, or UV_EINVAL (no
 * transform, a bad or taken name), UV_ENOMEM. */
RILL_API int rill_register_transform(rill_engine *e, const rill_transform_def *def);
/* The instance's state: def->state_size bytes, zeroed at creation, owned by the stream. */
RILL_API void *rill_xform_state(rill_xform *x);
/* def->arg of the instance's definition. */
RILL_API void *rill_xform_arg(rill_xform *x);
/* Pushes bytes [off, off + len) of the input being transformed as an output that shares its
 * memory (no copy). Only inside transform. 0, or UV_EINVAL (out of range, or not in transform). */
RILL_API int rill_xform_push_input(rill_xform *x, size_t off, size_t len);
/* Inside transform or flush: returns len (> 0) writable bytes for the next output (no copy:
 * rill_xform_commit pushes them), or NULL when out of memory (or over the engine's memory cap).
 * A new reservation drops an uncommitted one; the hook's return drops it too. */
RILL_API unsigned char *rill_xform_reserve(rill_xform *x, size_t len);
/* Pushes the first n bytes of the reservation; 0, or UV_EINVAL (no reservation, n too big). */
RILL_API int rill_xform_commit(rill_xform *x, size_t n);
/* Inside transform or flush: pushes a copy of p[0..len); 0, UV_ENOMEM, or UV_EINVAL (outside). */
RILL_API int rill_xform_push(rill_xform *x, const void *p, size_t len);
/* Sets the message (copied) of the error that the running hook is about to return; without
 * one, the message is the error code's. */
RILL_API void rill_xform_set_error(rill_xform *x, const char *message);

/* Opens rill in a Lua state the host made itself, as require "rill" does from stock lua5.4, and
 * returns the rill table; rill then runs its own loop (rill.run() drives it) and closes it with
 * the state. Use with luaL_requiref(L, "rill", luaopen_rill, 1). */
RILL_API int luaopen_rill(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
