/* bindings/ltask.c: tasks: coroutines resumed by the loop, so waiting calls read sequentially. */
#include <string.h>

#include "lrill.h"

#define TASK_MT "rill.task"

static const char TASKS_KEY =
    'T'; /* registry[&TASKS_KEY] = {thread = task userdata} of live tasks */

enum { T_RUNNING, T_WAITING, T_WOKEN, T_DONE, T_FAILED };

typedef struct {
  lua_State *T;
  rill_ctx_t *ctx;
  int state;
  int joined; /* someone asked for the result: a failure is theirs, not uncaught */
  int nres;   /* results (or the error value) left on T's stack when it ended */
} task_t;

/* Pushes nothing; returns the task record of thread L, or NULL. */
static task_t *lookup(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_pushthread(L);
  lua_rawget(L, -2);
  task_t *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return t;
}

int rill__in_task(lua_State *L) {
  task_t *t = lookup(L);
  return t != NULL && t->state == T_RUNNING && lua_isyieldable(L);
}

void rill__task_check(lua_State *L, const char *fname) {
  if (!rill__in_task(L))
    luaL_error(L, "%s: must be called from a task (use rill.spawn, or run the script with rill)",
               fname);
}

int rill__task_wait(lua_State *L) {
  task_t *t = lookup(L);
  t->state = T_WAITING;
  lua_settop(L, 0);
  return lua_yield(L, 0);
}

static int waitk(lua_State *L, lua_KFunction k, lua_KContext kctx) {
  task_t *t = lookup(L);
  t->state = T_WAITING;
  lua_settop(L, 0);
  return lua_yieldk(L, 0, kctx, k);
}

static void resume(task_t *t, int nargs);

static void wake_tick(void *arg) {
  task_t *t = arg;
  /* Once rill.exit (or an EPIPE on stdout) ends the process, no task runs any further. */
  if (t->state != T_WOKEN || t->ctx->exiting || t->ctx->closing) return;
  resume(t, lua_gettop(t->T));
}

void rill__task_wake(lua_State *T, int nres) {
  task_t *t = lookup(T);
  if (t == NULL || t->state != T_WAITING) {
    lua_pop(T, nres);
    return;
  }
  t->state = T_WOKEN;
  if (rill_loop_next_tick(&t->ctx->loop, wake_tick, t) != 0) {
    /* Out of memory for the queue: resume right away rather than lose the task. */
    resume(t, lua_gettop(T));
  }
}

/* An ended task is no longer anchored by the registry; its userdata keeps the thread alive for
 * join through its user value. */
static void unanchor(task_t *t) {
  lua_State *L = t->ctx->L;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_pushthread(t->T);
  lua_xmove(t->T, L, 1);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static void report_if_unjoined(void *arg);

/* Decorates the failed task's error value (below it on L's stack: the thread T) with T's
 * traceback: appended to a string, as a `traceback` field of a table. */
static int traceback_of(lua_State *L) {
  lua_State *T = lua_tothread(L, 1);
  if (lua_type(L, 2) == LUA_TSTRING) {
    luaL_traceback(L, T, lua_tostring(L, 2), 0);
  } else {
    if (lua_type(L, 2) == LUA_TTABLE) {
      luaL_traceback(L, T, NULL, 0);
      lua_setfield(L, 2, "traceback");
    }
    lua_settop(L, 2);
  }
  return 1;
}

/* Replaces the error on top of T with its decorated copy. Protected, since the traceback needs
 * memory: at an engine's memory cap the error stays as it was rather than Lua panicking. */
static void add_traceback(lua_State *L, lua_State *T) {
  if (lua_type(T, -1) != LUA_TSTRING && lua_type(T, -1) != LUA_TTABLE) return;
  lua_pushcfunction(L, traceback_of);
  lua_pushthread(T);
  lua_xmove(T, L, 1);
  lua_pushvalue(T, -1);
  lua_xmove(T, L, 1);
  if (lua_pcall(L, 2, 1, 0) == LUA_OK) {
    lua_xmove(L, T, 1);
    lua_replace(T, -2);
  } else {
    lua_pop(L, 1);
  }
}

static void resume(task_t *t, int nargs) {
  lua_State *T = t->T;
  rill_ctx_t *ctx = t->ctx;
  lua_State *L = ctx->L;
  int nres = 0;
  t->state = T_RUNNING;
  /* Fetch the userdata now: it leaves the anchor table when the task ends. */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_pushthread(T);
  lua_xmove(T, L, 1);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  int ud = lua_gettop(L);
  lua_State *outer = ctx->task_now;
  ctx->task_now = T;
  int status = lua_resume(T, L, nargs, &nres);
  ctx->task_now = outer;
  if (status == LUA_YIELD) {
    if (t->state == T_WAITING) {
      lua_settop(L, ud - 1);
      return;
    }
    /* A bare coroutine.yield in a task: nothing would ever resume it. */
    lua_settop(T, 0);
    lua_pushliteral(T, "coroutine.yield called directly in a task (nothing will resume it)");
    status = LUA_ERRRUN;
    nres = 1;
  }
  if (status == LUA_OK) {
    t->state = T_DONE;
    t->nres = nres;
  } else {
    t->state = T_FAILED;
    t->nres = 1;
    if (rill__is_exit(T, -1))
      t->joined = 1; /* rill.exit unwinding: not an error */
    else
      add_traceback(L, T);
  }
  ctx->live_tasks--;
  /* Wake every joiner with (ok, results...) copies. */
  lua_getiuservalue(L, ud, 2);
  int joiners = lua_gettop(L);
  if (lua_istable(L, joiners)) {
    lua_Integer n = luaL_len(L, joiners);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, joiners, i);
      lua_State *J = lua_tothread(L, -1);
      lua_pop(L, 1);
      t->joined = 1;
      lua_pushboolean(J, t->state == T_DONE);
      for (int k = 0; k < t->nres; k++) lua_pushvalue(T, -t->nres);
      lua_xmove(T, J, t->nres);
      rill__task_wake(J, t->nres + 1);
    }
    lua_pushnil(L);
    lua_setiuservalue(L, ud, 2);
  }
  if (t->state == T_FAILED && !t->joined) {
    /* Give a join in the same turn its chance before calling the failure uncaught. Its entry
     * in the task table keeps it alive until the check (a new registry key could need memory
     * the engine's cap no longer allows, outside any protected call). */
    if (rill_loop_immediate(&ctx->loop, report_if_unjoined, t) != 0) report_if_unjoined(t);
  } else {
    unanchor(t);
  }
  lua_settop(L, ud - 1);
}

static void report_if_unjoined(void *arg) {
  task_t *t = arg;
  if (t->ctx->closing) return;
  lua_State *L = t->ctx->L;
  if (!t->joined) {
    t->joined = 1;
    lua_pushvalue(t->T, -1);
    lua_xmove(t->T, L, 1);
    rill__uncaught(L);
  }
  unanchor(t);
}

/* Starts the function below nargs arguments on L as a task; pushes the task. Runs it up to its
 * first wait. Returns the task's state. */
static task_t *start(lua_State *L, int nargs) {
  rill_ctx_t *ctx = rill__ctx(L);
  lua_State *T = lua_newthread(L);
  lua_insert(L, -(nargs + 2)); /* T, fn, args... */
  lua_xmove(L, T, nargs + 1);
  task_t *t = lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->T = T;
  t->ctx = ctx;
  t->state = T_RUNNING;
  luaL_setmetatable(L, TASK_MT);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, 1); /* ud.uv[1] = T */
  lua_remove(L, -2);           /* drop T: the task holds it */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_pushthread(T);
  lua_xmove(T, L, 1);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3); /* tasks[T] = ud */
  lua_pop(L, 1);
  ctx->live_tasks++;
  /* The first resume is immediate: spawn runs the task up to its first wait. */
  resume(t, nargs);
  return t;
}

int rill__task_start_main(lua_State *L, int nargs) {
  task_t *t = start(L, nargs);
  t->joined = 1; /* the caller reports a synchronous failure itself */
  lua_pop(L, 1);
  if (t->state == T_FAILED) {
    if (rill__is_exit(t->T, -1)) return LUA_OK;
    lua_pushvalue(t->T, -1);
    lua_xmove(t->T, L, 1);
    return LUA_ERRRUN;
  }
  if (t->state == T_WAITING || t->state == T_WOKEN) t->joined = 0;
  return LUA_OK;
}

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  start(L, lua_gettop(L) - 1);
  return 1;
}

static int join_results(lua_State *L, int status, lua_KContext kctx) {
  /* Stack: ok, results... (or ok=false, err) */
  if (!lua_toboolean(L, 1)) {
    lua_settop(L, 2);
    return lua_error(L);
  }
  return lua_gettop(L) - 1;
}

static int l_join(lua_State *L) {
  task_t *t = luaL_checkudata(L, 1, TASK_MT);
  if (t->state == T_DONE || t->state == T_FAILED) {
    t->joined = 1;
    if (t->state == T_FAILED) {
      lua_pushvalue(t->T, -1);
      lua_xmove(t->T, L, 1);
      return lua_error(L);
    }
    lua_settop(L, 0);
    for (int k = 0; k < t->nres; k++) lua_pushvalue(t->T, -t->nres);
    lua_xmove(t->T, L, t->nres);
    return t->nres;
  }
  if (t->T == L) return luaL_error(L, "join: a task cannot join itself");
  rill__task_check(L, "join");
  t->joined = 1;
  if (lua_getiuservalue(L, 1, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 2); /* ud.uv[2] = joiners */
  }
  lua_pushthread(L);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  return waitk(L, join_results, 0);
}

static int l_task_tostring(lua_State *L) {
  static const char *const names[] = {"running", "suspended", "suspended", "done", "failed"};
  task_t *t = luaL_checkudata(L, 1, TASK_MT);
  lua_pushfstring(L, "rill.task (%s): %p", names[t->state], (void *)t);
  return 1;
}

static int l_task_status(lua_State *L) {
  static const char *const names[] = {"running", "suspended", "suspended", "done", "failed"};
  task_t *t = luaL_checkudata(L, 1, TASK_MT);
  lua_pushstring(L, names[t->state]);
  return 1;
}

int rill__open_task(lua_State *L) {
  if (luaL_newmetatable(L, TASK_MT)) {
    static const luaL_Reg methods[] = {{"join", l_join}, {"status", l_task_status}, {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_task_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY) != LUA_TTABLE) {
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, -2, "spawn");
  return 0;
}
