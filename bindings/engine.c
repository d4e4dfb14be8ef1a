/* bindings/engine.c: the embedding API (include/rill.h): an engine is a Lua state plus a loop. */
#include <stdlib.h>
#include <string.h>

#include "lrill.h"
#include "rill.h"

#include <lualib.h>

struct rill_engine_s {
  lua_State *L;
  rill_ctx_t *ctx;
  char *errmsg;
};

static void set_errmsg(rill_engine *e, const char *msg) {
  free(e->errmsg);
  e->errmsg = msg ? strdup(msg) : NULL;
}

/* Opens the standard libraries and rill in L, and sets the global `rill`. */
static int open_all(lua_State *L) {
  uv_loop_t *uv = lua_touserdata(L, 1);
  luaL_openlibs(L);
  rill__ctx_open(L, uv);
  luaL_requiref(L, "rill", rill__open_core, 1);
  return 0;
}

RILL_API rill_engine *rill_new(uv_loop_t *loop) {
  rill_engine *e = calloc(1, sizeof *e);
  if (e == NULL) return NULL;
  e->L = luaL_newstate();
  if (e->L == NULL) goto fail;
  lua_pushcfunction(e->L, open_all);
  lua_pushlightuserdata(e->L, loop);
  if (lua_pcall(e->L, 1, 0, 0) != LUA_OK) goto fail;
  e->ctx = rill__ctx(e->L);
  return e;
fail:
  if (e->L) lua_close(e->L);
  free(e);
  return NULL;
}

RILL_API lua_State *rill_lua(rill_engine *e) {
  return e->L;
}

/* Runs the chunk on top of the stack as the main task. */
static int run_main(rill_engine *e) {
  lua_State *L = e->L;
  if (rill__task_start_main(L, 0) != LUA_OK) {
    set_errmsg(e, rill__errstring(L, -1));
    lua_pop(L, 2);
    return RILL_ERRRUN;
  }
  rill_loop_drain(&e->ctx->loop);
  if (e->ctx->exiting) return RILL_EXIT;
  return RILL_OK;
}

RILL_API int rill_dostring(rill_engine *e, const char *code) {
  if (luaL_loadbuffer(e->L, code, strlen(code), "=(command line)") != LUA_OK) {
    set_errmsg(e, lua_tostring(e->L, -1));
    lua_pop(e->L, 1);
    return RILL_ERRSYNTAX;
  }
  return run_main(e);
}

RILL_API int rill_dofile(rill_engine *e, const char *path) {
  int r = luaL_loadfile(e->L, path);
  if (r != LUA_OK) {
    set_errmsg(e, lua_tostring(e->L, -1));
    lua_pop(e->L, 1);
    return r == LUA_ERRFILE ? RILL_ERRFILE : RILL_ERRSYNTAX;
  }
  return run_main(e);
}

RILL_API int rill_run(rill_engine *e, int mode) {
  uv_run_mode m = mode == RILL_RUN_ONCE ? UV_RUN_ONCE
                  : mode == RILL_RUN_NOWAIT ? UV_RUN_NOWAIT : UV_RUN_DEFAULT;
  int r = rill__run(e->ctx, m);
  if (r == RILL_ERRRUN) {
    set_errmsg(e, rill__take_failure(e->L));
    lua_pop(e->L, 1);
  }
  return r;
}

RILL_API const char *rill_errmsg(rill_engine *e) {
  return e->errmsg;
}

RILL_API int rill_exit_code(rill_engine *e) {
  return e->ctx->exit_code;
}

RILL_API void rill_set_argv(rill_engine *e, int argc, char **argv) {
  lua_State *L = e->L;
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushvalue(L, -1);
  lua_setglobal(L, "arg"); /* as lua.c does */
  lua_getglobal(L, "rill");
  lua_insert(L, -2);
  lua_setfield(L, -2, "argv"); /* rill.argv = argv */
  lua_pop(L, 1);
}

RILL_API void rill_free(rill_engine *e) {
  if (e == NULL) return;
  lua_close(e->L); /* its anchor closes every handle the engine opened */
  free(e->errmsg);
  free(e);
}
