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
  RILL_DENY_FS = 1 << 0,       /* rill.fs */
  RILL_DENY_PROCESS = 1 << 1,  /* rill.process */
  RILL_DENY_NET = 1 << 2,      /* rill.net and rill.udp */
  RILL_DENY_HTTP = 1 << 3,     /* rill.http */
  RILL_DENY_STDIO = 1 << 4,    /* rill.stdin, rill.stdout, rill.stderr (print stays) */
  RILL_DENY_SIGNAL = 1 << 5,   /* rill.on_signal: signals belong to the whole process */
  RILL_DENY_IO = 1 << 6,       /* Lua's io, dofile, loadfile, and require of Lua files on disk */
  RILL_DENY_OS = 1 << 7,       /* os.execute/remove/rename/exit/getenv/tmpname/setlocale, rill.env */
  RILL_DENY_CMODULES = 1 << 8, /* package.loadlib and require of C modules */
  RILL_DENY_BYTECODE = 1 << 9, /* loading binary (precompiled) chunks: load, loadfile, dofile */
  RILL_DENY_DEBUG = 1 << 10,   /* the debug library */
  /* Every rill module that reaches outside the process. */
  RILL_DENY_MODULES = RILL_DENY_FS | RILL_DENY_PROCESS | RILL_DENY_NET | RILL_DENY_HTTP |
                      RILL_DENY_STDIO | RILL_DENY_SIGNAL,
  /* Every part of Lua's own libraries that reaches the system or escapes the sandbox. */
  RILL_DENY_LUA = RILL_DENY_IO | RILL_DENY_OS | RILL_DENY_CMODULES | RILL_DENY_BYTECODE |
                  RILL_DENY_DEBUG,
  RILL_DENY_ALL = RILL_DENY_MODULES | RILL_DENY_LUA
};

/* Options of rill_new_ex. Zero-initialise it ({0}: no limits, nothing denied) and set what you
 * need; rill_new_ex copies it, so it may live on the caller's stack. */
typedef struct rill_options {
  unsigned deny;                   /* RILL_DENY_* bits */
  const char *const *deny_modules; /* more rill.X modules to leave out by name ("zlib"), in a
                                    * NULL-terminated array, or NULL */
  size_t max_memory;               /* bytes the engine's Lua heap may hold; 0: no cap */
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
/* Bytes the engine's Lua heap holds now. */
RILL_API size_t rill_memory(rill_engine *e);
/* Closes every handle the engine opened and frees everything; the host's loop stays usable and,
 * once the host closed its own handles, uv_loop_close on it succeeds. NULL is a no-op. Call it
 * outside the loop's callbacks (it turns a host loop once, without blocking, to finish closing). */
RILL_API void rill_free(rill_engine *e);

/* Opens rill in a Lua state the host made itself, as require "rill" does from stock lua5.4, and
 * returns the rill table; rill then runs its own loop (rill.run() drives it) and closes it with
 * the state. Use with luaL_requiref(L, "rill", luaopen_rill, 1). */
RILL_API int luaopen_rill(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
