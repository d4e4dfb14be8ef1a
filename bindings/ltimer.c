/* bindings/ltimer.c: timers (timeout, interval, sleep) and signal handlers. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lrill.h"

#define TIMER_MT "rill.timer"
#define SIGNAL_MT "rill.signal"

/* A Lua-visible handle: the userdata boxes a pointer to this malloc'd struct, because libuv may
 * still use the memory after the userdata is collected (until its close callback). */
typedef struct {
  rill_handle_t h;
  union {
    uv_timer_t timer;
    uv_signal_t signal;
  } u;
  lua_State *L; /* the main thread: callbacks run there */
  int fn_ref;   /* the callback */
  int self_ref; /* pins the userdata while active */
  void **box;   /* the userdata's pointer to us, cleared on stop */
} lhandle_t;

static void lhandle_free(rill_handle_t *h) {
  free(RILL_CONTAINER_OF(h, lhandle_t, h));
}

/* Stops h: drops its Lua references (Lua must be alive) and closes the uv handle. */
static void lhandle_stop(lhandle_t *lh) {
  if (lh->box) *lh->box = NULL;
  lh->box = NULL;
  luaL_unref(lh->L, LUA_REGISTRYINDEX, lh->fn_ref);
  luaL_unref(lh->L, LUA_REGISTRYINDEX, lh->self_ref);
  lh->fn_ref = lh->self_ref = LUA_NOREF;
  rill_handle_close(&lh->h);
}

static lhandle_t *lhandle_new(lua_State *L, const char *mt, int fn_idx) {
  fn_idx = lua_absindex(L, fn_idx);
  void **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, mt);
  lhandle_t *lh = calloc(1, sizeof *lh);
  if (lh == NULL) luaL_error(L, "out of memory");
  rill_ctx_t *ctx = rill__ctx(L);
  lh->L = ctx->L;
  lh->box = box;
  *box = lh;
  lua_pushvalue(L, fn_idx);
  lh->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  lh->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return lh;
}

static int lhandle_gc(lua_State *L) {
  void **box = lua_touserdata(L, 1);
  /* Only reachable while stopped, or when the whole state closes: close without touching Lua. */
  if (*box) {
    lhandle_t *lh = *box;
    lh->box = NULL;
    rill_handle_close(&lh->h);
    *box = NULL;
  }
  return 0;
}

static void **check_handle(lua_State *L) {
  void **box = luaL_testudata(L, 1, TIMER_MT);
  return box ? box : luaL_checkudata(L, 1, SIGNAL_MT);
}

static int l_handle_stop(lua_State *L) {
  void **box = check_handle(L);
  if (*box) lhandle_stop(*box);
  return 0;
}

static int l_handle_active(lua_State *L) {
  void **box = check_handle(L);
  lua_pushboolean(L, *box != NULL);
  return 1;
}

/* ---- timers ---- */

static void timer_cb(uv_timer_t *t) {
  lhandle_t *lh = RILL_CONTAINER_OF(t->data, lhandle_t, h);
  lua_State *L = lh->L;
  int once = uv_timer_get_repeat(t) == 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lh->fn_ref);
  /* A one-shot timer is done before its callback runs, so stop() inside it is a no-op. */
  if (once) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->self_ref);
    lhandle_stop(lh);
    lua_pop(L, 1);
  }
  rill__callback(L, 0);
}

static uint64_t check_ms(lua_State *L, int idx) {
  lua_Number ms = luaL_checknumber(L, idx);
  luaL_argcheck(L, ms >= 0 && ms <= 1e15, idx, "milliseconds must be between 0 and 1e15");
  return (uint64_t)ms;
}

static int start_timer(lua_State *L, int repeat) {
  rill_ctx_t *ctx = rill__ctx(L);
  uint64_t ms = check_ms(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lhandle_t *lh = lhandle_new(L, TIMER_MT, 2);
  uv_timer_init(ctx->loop.uv, &lh->u.timer);
  rill_handle_track(&ctx->loop, &lh->h, (uv_handle_t *)&lh->u.timer, lhandle_free);
  /* Node clamps intervals to at least 1 ms; a zero interval would spin. */
  uint64_t rep = repeat ? (ms ? ms : 1) : 0;
  uv_timer_start(&lh->u.timer, timer_cb, ms, rep);
  return 1;
}

static int l_timeout(lua_State *L) {
  return start_timer(L, 0);
}

static int l_interval(lua_State *L) {
  return start_timer(L, 1);
}

/* ---- sleep: a timer that wakes the calling task ---- */

typedef struct {
  rill_handle_t h;
  uv_timer_t timer;
  lua_State *T;
  rill_loop_t *loop;
} sleeper_t;

static void sleeper_free(rill_handle_t *h) {
  free(RILL_CONTAINER_OF(h, sleeper_t, h));
}

static void sleep_cb(uv_timer_t *t) {
  sleeper_t *s = RILL_CONTAINER_OF(t->data, sleeper_t, h);
  rill__task_wake(s->T, 0);
  rill_handle_close(&s->h);
  /* Resume the task now, as Node runs microtasks after each timer: a timer due later in this
   * same pass must not overtake it. */
  rill_loop_drain(s->loop);
}

static int l_sleep(lua_State *L) {
  uint64_t ms = check_ms(L, 1);
  rill__task_check(L, "sleep");
  rill_ctx_t *ctx = rill__ctx(L);
  sleeper_t *s = malloc(sizeof *s);
  if (s == NULL) return luaL_error(L, "out of memory");
  s->T = L;
  s->loop = &ctx->loop;
  uv_timer_init(ctx->loop.uv, &s->timer);
  rill_handle_track(&ctx->loop, &s->h, (uv_handle_t *)&s->timer, sleeper_free);
  uv_timer_start(&s->timer, sleep_cb, ms, 0);
  return rill__task_wait(L);
}

/* ---- signals ---- */

static const struct {
  const char *name;
  int num;
} signames[] = {
    {"SIGINT", SIGINT},   {"SIGTERM", SIGTERM}, {"SIGHUP", SIGHUP},   {"SIGQUIT", SIGQUIT},
    {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGPIPE", SIGPIPE}, {"SIGWINCH", SIGWINCH},
    {"SIGCHLD", SIGCHLD}, {"SIGALRM", SIGALRM}, {"SIGCONT", SIGCONT}, {NULL, 0},
};

static void signal_cb(uv_signal_t *sig, int signum) {
  lhandle_t *lh = RILL_CONTAINER_OF(sig->data, lhandle_t, h);
  lua_State *L = lh->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lh->fn_ref);
  for (int i = 0; signames[i].name; i++)
    if (signames[i].num == signum) lua_pushstring(L, signames[i].name);
  rill__callback(L, 1);
}

static int l_on_signal(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int num = 0;
  for (int i = 0; signames[i].name; i++)
    if (strcmp(signames[i].name, name) == 0) num = signames[i].num;
  if (num == 0) return luaL_argerror(L, 1, lua_pushfstring(L, "unknown signal '%s'", name));
  lhandle_t *lh = lhandle_new(L, SIGNAL_MT, 2);
  uv_signal_init(ctx->loop.uv, &lh->u.signal);
  rill_handle_track(&ctx->loop, &lh->h, (uv_handle_t *)&lh->u.signal, lhandle_free);
  int r = uv_signal_start(&lh->u.signal, signal_cb, num);
  if (r) {
    lhandle_stop(lh);
    return rill__raise(L, r, "on_signal");
  }
  return 1;
}

static void new_handle_mt(lua_State *L, const char *name) {
  static const luaL_Reg methods[] = {
      {"stop", l_handle_stop}, {"active", l_handle_active}, {NULL, NULL}};
  luaL_newmetatable(L, name);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index"); /* mt.__index = methods */
  lua_pushcfunction(L, lhandle_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

int rill__open_timer(lua_State *L) {
  new_handle_mt(L, TIMER_MT);
  new_handle_mt(L, SIGNAL_MT);
  static const luaL_Reg funcs[] = {{"timeout", l_timeout},
                                   {"interval", l_interval},
                                   {"sleep", l_sleep},
                                   {"on_signal", l_on_signal},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
