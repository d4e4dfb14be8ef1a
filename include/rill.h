/* rill.h: the embedding API of rill, a Lua-scriptable stream engine. */
#ifndef RILL_H
#define RILL_H

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

typedef struct rill_engine_s rill_engine;

enum { RILL_RUN_DEFAULT = 0, RILL_RUN_ONCE = 1, RILL_RUN_NOWAIT = 2 };

/* Error codes returned by rill_dostring, rill_dofile and rill_run. */
enum { RILL_OK = 0, RILL_ERRSYNTAX = 1, RILL_ERRRUN = 2, RILL_ERRFILE = 3, RILL_EXIT = 4 };

/* Makes an engine on loop (NULL: a loop of its own) with a Lua state that has rill preloaded. */
RILL_API rill_engine *rill_new(uv_loop_t *loop);
/* The engine's interpreter (borrowed; valid until rill_free). */
RILL_API lua_State *rill_lua(rill_engine *e);
/* Runs code as a task (up to its first wait); 0, or an error code with rill_errmsg set. */
RILL_API int rill_dostring(rill_engine *e, const char *code);
/* Runs the file at path as a task, as rill_dostring does. */
RILL_API int rill_dofile(rill_engine *e, const char *path);
/* Runs the loop in mode; 0 when the run ended cleanly, RILL_ERRRUN on an uncaught error,
 * RILL_EXIT after rill.exit() (see rill_exit_code). */
RILL_API int rill_run(rill_engine *e, int mode);
/* The last error message with its traceback, or NULL. */
RILL_API const char *rill_errmsg(rill_engine *e);
/* The status passed to rill.exit(), once rill_run returned RILL_EXIT. */
RILL_API int rill_exit_code(rill_engine *e);
/* Sets rill.argv: argv[0] is the script, then its arguments. */
RILL_API void rill_set_argv(rill_engine *e, int argc, char **argv);
/* Closes every handle the engine opened and frees everything; the host's loop stays usable. */
RILL_API void rill_free(rill_engine *e);

#ifdef __cplusplus
}
#endif

#endif
