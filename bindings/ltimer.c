/* bindings/ltimer.c: timers (timeout, interval, sleep) and signal handlers. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lrill.h"

#define TIMER_MT "rill.timer"
#define SIGNAL_MT "rill.signal"

/* libuv (1.44) runs every timer that is due while it runs timers, including one started with 0
 * ms by a timer callback: a task looping on sleep(0), or a timeout(0) that re-arms itself,
 * would never let the loop reach I/O. So a 0 ms start made from a timer callback waits in a
 * queue that a prepare handle starts after the timer phase: the timer is due at once and runs
 * in the next iteration, after this one's I/O, as in Node. */
typedef struct deferred_s {
  struct deferred_s *next;
  uv_timer_t *t;
  uv_timer_cb cb;
  uint64_t repeat;
  int queued;
} deferred_t;

typedef struct {
  rill_handle_t h;
  uv_prepare_t prep;
  int in_timers; /* timer callbacks running now (nested through the ticks they drain) */
  deferred_t *head, **tail;
} tphase_t;

static char TPHASE_KEY;

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
  tphase_t *ph;
  deferred_t d; /* a 0 ms timer started from a timer callback waits here */
} lhandle_t;

static void tphase_free(rill_handle_t *h) {
  free(RILL_CONTAINER_OF(h, tphase_t, h));
}

static void tphase_cb(uv_prepare_t *p) {
  tphase_t *ph = RILL_CONTAINER_OF(p->data, tphase_t, h);
  deferred_t *d = ph->head;
  ph->head = NULL;
  ph->tail = &ph->head;
  uv_prepare_stop(p);
  for (; d; d = d->next) {
    d->queued = 0;
    uv_timer_start(d->t, d->cb, 0, d->repeat);
  }
}

/* Starts t now, or from the prepare handle when a timer callback asks for 0 ms. */
static void timer_start(tphase_t *ph, deferred_t *d, uv_timer_t *t, uv_timer_cb cb, uint64_t ms,
                        uint64_t repeat) {
  if (ms > 0 || ph->in_timers == 0) {
    uv_timer_start(t, cb, ms, repeat);
    return;
  }
  d->next = NULL;
  d->t = t;
  d->cb = cb;
  d->repeat = repeat;
  d->queued = 1;
  *ph->tail = d;
  ph->tail = &d->next;
  uv_prepare_start(&ph->prep, tphase_cb);
}

static void timer_unqueue(tphase_t *ph, deferred_t *d) {
  if (!d->queued) return;
  d->queued = 0;
  for (deferred_t **pp = &ph->head; *pp; pp = &(*pp)->next) {
    if (*pp != d) continue;
    *pp = d->next;
    if (ph->tail == &d->next) ph->tail = pp;
    break;
  }
}

static void lhandle_free(rill_handle_t *h) {
  free(RILL_CONTAINER_OF(h, lhandle_t, h));
}

/* Stops h: drops its Lua references (Lua must be alive) and closes the uv handle. */
static void lhandle_stop(lhandle_t *lh) {
  if (lh->ph) timer_unqueue(lh->ph, &lh->d);
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
    if (lh->ph) timer_unqueue(lh->ph, &lh->d);
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
  tphase_t *ph = lh->ph;
  ph->in_timers++;
  rill__callback(L, 0);
  ph->in_timers--;
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
  lh->ph = lua_touserdata(L, lua_upvalueindex(1));
  timer_start(lh->ph, &lh->d, &lh->u.timer, timer_cb, ms, rep);
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
  tphase_t *ph;
  deferred_t d;
} sleeper_t;

static void sleeper_free(rill_handle_t *h) {
  free(RILL_CONTAINER_OF(h, sleeper_t, h));
}

static void sleep_cb(uv_timer_t *t) {
  sleeper_t *s = RILL_CONTAINER_OF(t->data, sleeper_t, h);
  tphase_t *ph = s->ph;
  rill_loop_t *loop = s->loop;
  rill__task_wake(s->T, 0);
  rill_handle_close(&s->h);
  /* Resume the task now, as Node runs microtasks after each timer: a timer due later in this
   * same pass must not overtake it. */
  ph->in_timers++;
  rill_loop_drain(loop);
  ph->in_timers--;
}

static int l_sleep(lua_State *L) {
  uint64_t ms = check_ms(L, 1);
  rill__task_check(L, "sleep");
  rill_ctx_t *ctx = rill__ctx(L);
  sleeper_t *s = malloc(sizeof *s);
  if (s == NULL) return luaL_error(L, "out of memory");
  s->T = L;
  s->loop = &ctx->loop;
  s->ph = lua_touserdata(L, lua_upvalueindex(1));
  uv_timer_init(ctx->loop.uv, &s->timer);
  rill_handle_track(&ctx->loop, &s->h, (uv_handle_t *)&s->timer, sleeper_free);
  timer_start(s->ph, &s->d, &s->timer, sleep_cb, ms, 0);
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
  static const luaL_Reg tfuncs[] = {
      {"timeout", l_timeout}, {"interval", l_interval}, {"sleep", l_sleep}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"on_signal", l_on_signal}, {NULL, NULL}};
  /* One timer phase per loop, closed with the loop's handles (it never calls into Lua). */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TPHASE_KEY);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    rill_ctx_t *ctx = rill__ctx(L);
    tphase_t *ph = calloc(1, sizeof *ph);
    if (ph == NULL) return luaL_error(L, "out of memory");
    ph->tail = &ph->head;
    uv_prepare_init(ctx->loop.uv, &ph->prep);
    rill_handle_track(&ctx->loop, &ph->h, (uv_handle_t *)&ph->prep, tphase_free);
    lua_pushlightuserdata(L, ph);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TPHASE_KEY);
  }
  luaL_setfuncs(L, tfuncs, 1);
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
