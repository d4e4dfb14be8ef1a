/* bindings/lstream.c: rill._stream: the "rill.stream" userdata over core streams, and the
 * trampolines that run Lua hooks and listeners for the core. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"
#include "lrill.h"
#include "pipe.h"
#include "split.h"
#include "stream.h"

#define STREAM_MT "rill.stream"
#define LINES_MT "rill.lines_iter"
#define POOL_MAX 8

static const char STATE_KEY = 's'; /* registry[&STATE_KEY] = userdata holding the lstate_t * */
static const char WEAK_KEY = 'w';  /* registry[&WEAK_KEY] = {[wref] = stream userdata}, weak */
static const char PIN_KEY = 'p';   /* registry[&PIN_KEY] = {[wref] = stream userdata} */
static const char RUNNERS_KEY =
    'r';                            /* registry[&RUNNERS_KEY] = {read=, write=, ...} (stream.lua) */
static const char WORKER_KEY = 'k'; /* registry[&WORKER_KEY] = the pooled worker's function */

/* Per-interpreter state. Malloc'd and refcounted: core objects (items, errors, streams) may
 * outlive the interpreter by a little while it closes; they then find L == NULL. */
typedef struct {
  int refs;
  lua_State *L;   /* the main thread; NULL once the interpreter closes */
  lua_State *cur; /* the thread running the innermost binding call, else NULL */
  rill_ctx_t *ctx;
  rill_item_ops_t ops;
  lua_State *pool[POOL_MAX]; /* idle worker tasks */
  int npool;
} lstate_t;

/* The C side of one stream userdata (malloc'd: it lives as long as the core stream). */
typedef struct {
  rill_stream_t *s;
  lstate_t *B;
  int wref;       /* slot in the weak table; LUA_NOREF once the userdata is gone */
  unsigned lmask; /* events with at least one Lua listener */
  unsigned fns;   /* Lua hooks this stream has (F_*) */
  int pinned, unpin_scheduled;
  int wpending; /* a write hook runs: its done() not called yet */
  int fpending; /* the final hook runs: its done() not called yet */
  int dpending; /* destroy's done() not called yet */
  int busy;     /* the core holds references besides ours */
  int native;   /* wraps a native stream: freed by __gc, not by the core */
  int reader;   /* a task reads it: read() returns its error, so it is handled */
  int dead;     /* freed while unpin_check was queued: that immediate frees it */
} lstream_t;

static void state_unref(lstate_t *B);

/* Frees ls, or leaves that to the unpin_check immediate already queued with it (which the loop
 * still runs when it is freed, after the state closed). */
static void ls_free(lstream_t *ls) {
  if (ls->unpin_scheduled) {
    ls->dead = 1;
    return;
  }
  state_unref(ls->B);
  free(ls);
}

typedef struct {
  lstream_t *ls;
} lud_t;

enum { F_READ = 1, F_WRITE = 2, F_FINAL = 4, F_DESTROY = 8, F_TRANSFORM = 16, F_FLUSH = 32 };
static const char *const fn_names[] = {"read", "write", "final", "destroy", "transform", "flush"};

static const char *const ev_names[] = {"data",   "end",    "readable", "drain", "prefinish",
                                       "finish", "error",  "close",    "pipe",  "unpipe",
                                       "pause",  "resume", NULL};

static void state_unref(lstate_t *B) {
  if (--B->refs == 0) free(B);
}

/* The thread to use for Lua work right now. */
static lua_State *LS(lstate_t *B) {
  return B->cur ? B->cur : B->L;
}

#define ENTER(B, L)                 \
  lua_State *saved_cur_ = (B)->cur; \
  (B)->cur = (L)
#define LEAVE(B) (B)->cur = saved_cur_

static lstate_t *getstate(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
  lstate_t **box = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (box == NULL || *box == NULL) luaL_error(L, "rill._stream is not open in this state");
  return *box;
}

/* Pushes the stream's userdata (or nil when it was collected); returns its type. */
static int push_ud(lua_State *L, lstream_t *ls) {
  if (ls->wref == LUA_NOREF) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &WEAK_KEY);
  int t = lua_rawgeti(L, -1, ls->wref);
  lua_remove(L, -2);
  return t;
}

/* The binding data of a stream implemented in Lua. */
static lstream_t *ls_of(rill_stream_t *s) {
  return rill_stream_data(s);
}

/* ---- object-mode items: Lua values kept by registry references ---- */

static void *item_dup(const rill_item_ops_t *ops, void *item) {
  lstate_t *B = RILL_CONTAINER_OF(ops, lstate_t, ops);
  if (B->L == NULL) return item;
  lua_State *L = LS(B);
  lua_rawgeti(L, LUA_REGISTRYINDEX, (lua_Integer)(intptr_t)item);
  B->refs++;
  return (void *)(intptr_t)luaL_ref(L, LUA_REGISTRYINDEX);
}

static void item_drop(const rill_item_ops_t *ops, void *item) {
  lstate_t *B = RILL_CONTAINER_OF(ops, lstate_t, ops);
  if (B->L) luaL_unref(LS(B), LUA_REGISTRYINDEX, (int)(intptr_t)item);
  state_unref(B);
}

static int item_bytes(const rill_item_ops_t *ops, void *item, rill_view_t *out, const char **msg) {
  static const char *const why[] = {
      "a nil value cannot be written to a byte stream",
      "a boolean value cannot be written to a byte stream",
      "a userdata value cannot be written to a byte stream",
      "a number value cannot be written to a byte stream",
      "a string value cannot be written to a byte stream",
      "a table value cannot be written to a byte stream",
      "a function value cannot be written to a byte stream",
      "a userdata value cannot be written to a byte stream",
      "a thread value cannot be written to a byte stream",
  };
  lstate_t *B = RILL_CONTAINER_OF(ops, lstate_t, ops);
  if (B->L == NULL) return RILL_EINVALID_ARG_TYPE;
  lua_State *L = LS(B);
  int t = lua_rawgeti(L, LUA_REGISTRYINDEX, (lua_Integer)(intptr_t)item);
  size_t len;
  int r = 0;
  rill_view_t *v = rill__tobuffer(L, -1);
  if (v) {
    if (v->len) rill_view_slice(out, v, 0, v->len);
  } else if (t == LUA_TSTRING) {
    const char *p = lua_tolstring(L, -1, &len);
    r = rill_view_from(out, p, len);
  } else {
    *msg = t >= 0 && t < 9 ? why[t] : why[0];
    r = RILL_EINVALID_ARG_TYPE;
  }
  lua_pop(L, 1);
  return r;
}

/* ---- errors: Lua values <-> rill_err_t ---- */

static void err_release(rill_err_t *e) {
  lstate_t *B = e->payload;
  if (B->L) luaL_unref(LS(B), LUA_REGISTRYINDEX, (int)e->payload_id);
  state_unref(B);
}

static int errstring_p(lua_State *L) {
  rill__errstring(L, 1);
  return 1;
}

/* A core error for the Lua value at idx (kept as the payload, so the same value comes back). */
static rill_err_t *err_from_lua(lua_State *L, lstate_t *B, int idx) {
  idx = lua_absindex(L, idx);
  int code = RILL_ECALLBACK;
  if (lua_type(L, idx) == LUA_TTABLE) {
    if (lua_getfield(L, idx, "errno") == LUA_TNUMBER) code = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  /* The message comes from __tostring, user code that may raise: call it protected, since
   * this runs inside core frames too. */
  lua_pushcfunction(L, errstring_p);
  lua_pushvalue(L, idx);
  const char *msg = rill__pcall(L, 1, 1) == LUA_OK ? lua_tostring(L, -1) : "(error object)";
  rill_err_t *e = rill_err_new(code, NULL, NULL, msg);
  lua_pop(L, 1);
  if (e->refs > 0) {
    lua_pushvalue(L, idx);
    e->payload = B;
    e->payload_id = luaL_ref(L, LUA_REGISTRYINDEX);
    e->release = err_release;
    B->refs++;
  }
  return e;
}

/* Pushes the Lua value of a core error: the original value when it came from Lua. */
static void push_err(lua_State *L, lstate_t *B, rill_err_t *e) {
  if (e->release == err_release && e->payload == B) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->payload_id);
    return;
  }
  rill__pusherr(L, e->code, e->syscall, e->path);
  if (e->message) {
    lua_pushstring(L, e->message);
    lua_setfield(L, -2, "message");
  }
}

void rill__pushstreamerr(lua_State *L, rill_err_t *e) {
  push_err(L, getstate(L), e);
}

/* An error value for a callback that raised nil: a nil error must not read as success. */
static void fix_nil_error(lua_State *L) {
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "(error object is a nil value)");
  }
}

/* The error on top of L came from a Lua callback of ls: it fails the stream, or, when the
 * stream is already gone, it is uncaught. Pops it. */
static void callback_failed(lua_State *L, lstream_t *ls) {
  if (rill__is_exit(L, -1) || (rill_stream_state(ls->s) & RILL_SS_DESTROYED)) {
    rill__uncaught(L);
    return;
  }
  fix_nil_error(L);
  rill_err_t *e = err_from_lua(L, ls->B, -1);
  lua_pop(L, 1);
  rill_stream_destroy(ls->s, e);
  rill_err_unref(e);
}

/* ---- chunks: Lua values <-> rill_chunk_t ---- */

/* Native object-mode item kinds and how they are pushed (UDP messages, ...). */
static struct {
  const rill_item_ops_t *ops;
  rill_item_push_fn push;
} item_kinds[8];
static int n_item_kinds;

void rill__register_item(const rill_item_ops_t *ops, rill_item_push_fn push) {
  for (int i = 0; i < n_item_kinds; i++)
    if (item_kinds[i].ops == ops) return;
  if (n_item_kinds < (int)(sizeof item_kinds / sizeof item_kinds[0])) {
    item_kinds[n_item_kinds].ops = ops;
    item_kinds[n_item_kinds].push = push;
    n_item_kinds++;
  }
}

/* Pushes a chunk for Lua: a buffer (a new reference on the same memory), a string for record
 * streams (lines), or the item's value. */
static void push_chunk(lua_State *L, lstate_t *B, rill_stream_t *s, const rill_chunk_t *c) {
  if (c->ops == &B->ops) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, (lua_Integer)(intptr_t)c->item);
  } else if (c->ops) {
    /* An item of a native owner: its binding says how Lua sees it (rill__register_item). */
    for (int i = 0; i < n_item_kinds; i++) {
      if (item_kinds[i].ops == c->ops) {
        item_kinds[i].push(L, c->item);
        return;
      }
    }
    lua_pushlightuserdata(L, c->item);
  } else if (rill_stream_flags(s) & RILL_STREAM_RECORDS) {
    lua_pushlstring(L, (const char *)rill_view_data(&c->view), c->view.len);
  } else {
    rill_view_t v = {NULL, 0, 0};
    if (c->view.len) rill_view_slice(&v, &c->view, 0, c->view.len);
    rill__pushbuffer(L, &v);
  }
}

/* Makes a chunk of the value at idx for a side in object mode or not; raises a type error
 * naming the argument (luaL_typeerror) for a wrong value. */
static void to_chunk(lua_State *L, lstate_t *B, int idx, int object, rill_chunk_t *c) {
  if (object) {
    luaL_argexpected(L, !lua_isnoneornil(L, idx), idx, "non-nil value");
    lua_pushvalue(L, idx);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    B->refs++;
    rill_chunk_from_item(c, (void *)(intptr_t)ref, &B->ops);
    return;
  }
  rill_view_t *v = rill__tobuffer(L, idx);
  if (v) {
    rill_view_t sl = {NULL, 0, 0};
    if (v->len) rill_view_slice(&sl, v, 0, v->len);
    rill_chunk_from_view(c, &sl);
    return;
  }
  if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "string or buffer");
  size_t len;
  const char *p = lua_tolstring(L, idx, &len);
  if (rill_chunk_from_bytes(c, p, len) != 0) luaL_error(L, "not enough memory");
}

/* ---- pinning: a stream the core still works on keeps its userdata alive ---- */

static void pin(lstream_t *ls) {
  lstate_t *B = ls->B;
  if (B->L == NULL || ls->wref == LUA_NOREF) return;
  lua_State *L = LS(B);
  lua_checkstack(L, 4);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PIN_KEY);
  if (push_ud(L, ls) != LUA_TNIL) {
    lua_rawseti(L, -2, ls->wref);
    ls->pinned = 1;
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void unpin_check(void *arg) {
  lstream_t *ls = arg;
  lstate_t *B = ls->B;
  ls->unpin_scheduled = 0;
  if (ls->dead) {
    ls_free(ls);
    return;
  }
  /* Unpin only if the core still holds nothing besides our userdata's own reference. */
  if (!ls->pinned || ls->busy || B->L == NULL) return;
  lua_State *L = LS(B);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PIN_KEY);
  lua_pushnil(L);
  lua_rawseti(L, -2, ls->wref);
  lua_pop(L, 1);
  ls->pinned = 0;
}

/* ---- the owner hook: events to Lua listeners ---- */

static void lstream_hook(rill_stream_t *s, const rill_event_t *ev, void *arg);

/* Calls the Lua listeners of ev (a snapshot: on/off during the dispatch take effect after). */
static void dispatch(lstream_t *ls, const rill_event_t *ev) {
  lstate_t *B = ls->B;
  lua_State *L = LS(B);
  int top = lua_gettop(L);
  lua_checkstack(L, 10);
  if (push_ud(L, ls) == LUA_TNIL) goto out;
  int ud = lua_gettop(L);
  lua_getiuservalue(L, ud, 1);
  if (lua_getfield(L, -1, ev_names[ev->type]) != LUA_TTABLE) goto out;
  int list = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    lua_pushvalue(L, ud);
    int nargs = 1;
    if (ev->type == RILL_EV_DATA) {
      push_chunk(L, B, ls->s, ev->chunk);
      nargs++;
    } else if (ev->type == RILL_EV_ERROR) {
      push_err(L, B, ev->err);
      nargs++;
    } else if (ev->type == RILL_EV_PIPE || ev->type == RILL_EV_UNPIPE) {
      lstream_t *peer = ev->peer ? rill_stream_hook_arg(ev->peer, lstream_hook) : NULL;
      if (peer) {
        push_ud(L, peer);
      } else {
        lua_pushnil(L);
      }
      nargs++;
    }
    if (rill__pcall(L, nargs, 0) != LUA_OK) {
      /* A listener raised: it fails the stream (Node would throw out of emit). */
      callback_failed(L, ls);
      break;
    }
  }
out:
  lua_settop(L, top);
}

static void lstream_hook(rill_stream_t *s, const rill_event_t *ev, void *arg) {
  lstream_t *ls = arg;
  lstate_t *B = ls->B;
  if (B->L == NULL) return;
  switch (ev->type) {
    case RILL_EV_BUSY:
      ls->busy = 1;
      if (!ls->pinned) pin(ls);
      return;
    case RILL_EV_IDLE:
      ls->busy = 0;
      if (ls->pinned && !ls->unpin_scheduled) {
        ls->unpin_scheduled = 1;
        if (rill_loop_immediate(&B->ctx->loop, unpin_check, ls) != 0) ls->unpin_scheduled = 0;
      }
      return;
    default:
      break;
  }
  if (ls->lmask & RILL_EVBIT(ev->type)) dispatch(ls, ev);
  if (ev->type == RILL_EV_ERROR && !(ls->lmask & RILL_EVBIT(RILL_EV_ERROR)) &&
      rill_stream_error_unhandled(s)) {
    /* Nobody handles this error: like Node's unhandled 'error' event, it is uncaught. */
    lua_State *L = LS(B);
    lua_checkstack(L, 4);
    push_err(L, B, ev->err);
    rill__uncaught(L);
  }
}

/* ---- hooks implemented in Lua: jobs run in pooled worker tasks ---- */

/* Runs the runner function and nargs arguments on top of L in an idle worker task, from the
 * next tick (the job may wait: sleep, write with backpressure...). */
static void dispatch_job(lstate_t *B, lua_State *L, int nargs) {
  if (B->npool == 0) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &WORKER_KEY);
    if (rill__task_start_main(L, 0) != LUA_OK) lua_pop(L, 1);
  }
  if (B->npool == 0) {
    /* No worker could start (out of memory): drop the job rather than crash. */
    lua_pop(L, nargs);
    return;
  }
  lua_State *T = B->pool[--B->npool];
  lua_xmove(L, T, nargs);
  rill__task_wake(T, nargs);
}

/* wait_job(): a worker parks itself in the pool until a job arrives; nothing when the pool is
 * full (the worker then ends). */
static int l_wait_job(lua_State *L) {
  lstate_t *B = getstate(L);
  if (B->npool >= POOL_MAX) return 0;
  B->pool[B->npool++] = L;
  return rill__task_wait(L);
}

/* Pushes runner[name], the Lua hook fn_names[f] and the userdata; returns 0 when the stream's
 * userdata is gone (nothing pushed). */
static int push_job(lua_State *L, lstream_t *ls, int fbit, const char *runner) {
  lua_checkstack(L, 16); /* the job and the chunk, done or push pushed after it */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &RUNNERS_KEY);
  lua_getfield(L, -1, runner);
  lua_remove(L, -2);
  if (push_ud(L, ls) == LUA_TNIL) {
    lua_pop(L, 2);
    return 0;
  }
  lua_getiuservalue(L, -1, 2);
  int i = 0;
  while ((1 << i) != fbit) i++;
  lua_getfield(L, -1, fn_names[i]);
  lua_remove(L, -2);
  lua_insert(L, -2); /* runner, fn, ud */
  return 1;
}

static int done_closure(lua_State *L);

/* Pushes the done(err) closure of the hook kind (upvalues: userdata, kind). One per stream and
 * kind, kept in the hooks table: the pending flag in lstream_t tells a second call. */
static void push_done(lua_State *L, int ud, int kind) {
  lua_getiuservalue(L, ud, 2);
  if (lua_rawgeti(L, -1, kind) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lua_pushvalue(L, ud);
    lua_pushinteger(L, kind);
    lua_pushcclosure(L, done_closure, 2);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, kind); /* hooks[kind] = done */
  }
  lua_remove(L, -2);
}

static void t_read(rill_stream_t *s, size_t size) {
  lstream_t *ls = ls_of(s);
  lstate_t *B = ls->B;
  if (!(ls->fns & F_READ) || B->L == NULL) return;
  lua_State *L = LS(B);
  if (!push_job(L, ls, F_READ, "read")) return;
  lua_pushinteger(L, (lua_Integer)size);
  dispatch_job(B, L, 4);
}

static void t_write(rill_stream_t *s, const rill_chunk_t *c) {
  lstream_t *ls = ls_of(s);
  lstate_t *B = ls->B;
  if (!(ls->fns & F_WRITE) || B->L == NULL || !push_job(LS(B), ls, F_WRITE, "write")) {
    rill_stream_write_done(s, NULL);
    return;
  }
  lua_State *L = LS(B);
  int ud = lua_gettop(L);
  push_chunk(L, B, s, c);
  ls->wpending = 1;
  push_done(L, ud, F_WRITE);
  dispatch_job(B, L, 5);
}

static void t_final(rill_stream_t *s) {
  lstream_t *ls = ls_of(s);
  lstate_t *B = ls->B;
  if (!(ls->fns & F_FINAL) || B->L == NULL || !push_job(LS(B), ls, F_FINAL, "final")) {
    rill_stream_final_done(s, NULL);
    return;
  }
  lua_State *L = LS(B);
  int ud = lua_gettop(L);
  ls->fpending = 1;
  push_done(L, ud, F_FINAL);
  dispatch_job(B, L, 4);
}

static void t_destroy(rill_stream_t *s, rill_err_t *err) {
  lstream_t *ls = ls_of(s);
  lstate_t *B = ls->B;
  if (!(ls->fns & F_DESTROY) || B->L == NULL || !push_job(LS(B), ls, F_DESTROY, "destroy")) {
    rill_stream_destroy_done(s, err);
    return;
  }
  lua_State *L = LS(B);
  int ud = lua_gettop(L);
  if (err) {
    push_err(L, B, err);
  } else {
    lua_pushnil(L);
  }
  ls->dpending = 1;
  push_done(L, ud, F_DESTROY);
  dispatch_job(B, L, 5);
}

static void t_transform(rill_stream_t *s, const rill_chunk_t *c) {
  lstream_t *ls = ls_of(s);
  lstate_t *B = ls->B;
  if (B->L == NULL || !push_job(LS(B), ls, F_TRANSFORM, "transform")) {
    rill_stream_write_done(s, NULL);
    return;
  }
  lua_State *L = LS(B);
  int ud = lua_gettop(L);
  push_chunk(L, B, s, c);
  lua_getiuservalue(L, ud, 3); /* push */
  dispatch_job(B, L, 5);
}

static void t_flush(rill_stream_t *s) {
  lstream_t *ls = ls_of(s);
  lstate_t *B = ls->B;
  if (!(ls->fns & F_FLUSH) || B->L == NULL || !push_job(LS(B), ls, F_FLUSH, "flush")) {
    rill_stream_final_done(s, NULL);
    return;
  }
  lua_State *L = LS(B);
  int ud = lua_gettop(L);
  lua_getiuservalue(L, ud, 3);
  dispatch_job(B, L, 4);
}

static void t_free(rill_stream_t *s) {
  ls_free(ls_of(s));
}

static const rill_stream_impl_t lua_impl = {
    .read = t_read, .write = t_write, .final = t_final, .destroy = t_destroy, .free = t_free};
static const rill_stream_impl_t lua_xf_impl = {
    .transform = t_transform, .flush = t_flush, .destroy = t_destroy, .free = t_free};

/* The Lua error (or nil) at idx answering a hook: NULL or a new error. */
static rill_err_t *answer_err(lua_State *L, lstate_t *B, int idx) {
  if (lua_isnoneornil(L, idx) || (lua_isboolean(L, idx) && !lua_toboolean(L, idx))) return NULL;
  return err_from_lua(L, B, idx);
}

static lstream_t *checkls(lua_State *L, int idx) {
  lud_t *u = luaL_checkudata(L, idx, STREAM_MT);
  return u->ls;
}

/* done(err) given to write, final and destroy hooks: answers the call in flight; a call when
 * none is (a second call) fails the stream with ERR_MULTIPLE_CALLBACK, as in Node. */
static int done_closure(lua_State *L) {
  lstream_t *ls = checkls(L, lua_upvalueindex(1));
  int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
  lstate_t *B = ls->B;
  rill_err_t *e = answer_err(L, B, 1);
  ENTER(B, L);
  int twice = 0;
  if (kind == F_WRITE) {
    if (ls->wpending) {
      ls->wpending = 0;
      rill_stream_write_done(ls->s, e);
    } else {
      twice = 1;
    }
  } else if (kind == F_FINAL) {
    if (ls->fpending) {
      ls->fpending = 0;
      rill_stream_final_done(ls->s, e);
    } else {
      twice = 1;
    }
  } else {
    if (ls->dpending) {
      ls->dpending = 0;
      rill_stream_destroy_done(ls->s, e);
    }
  }
  if (twice && !(rill_stream_state(ls->s) & RILL_SS_DESTROYED)) {
    rill_stream_destroy_code(ls->s, RILL_EMULTIPLE_CALLBACK);
  }
  LEAVE(B);
  rill_err_unref(e);
  return 0;
}

/* _stream.answer(self, kind, ok, err): the runners report the end of a transform ("t"),
 * flush ("f") or read ("r") hook; a raised error fails the stream. */
static int l_answer(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  const char *kind = luaL_checkstring(L, 2);
  int ok = lua_toboolean(L, 3);
  lstate_t *B = ls->B;
  rill_err_t *e = NULL;
  if (!ok) {
    lua_settop(L, 4);
    fix_nil_error(L);
    e = err_from_lua(L, B, 4);
  }
  ENTER(B, L);
  if (kind[0] == 't') {
    rill_stream_write_done(ls->s, e);
  } else if (kind[0] == 'f') {
    rill_stream_final_done(ls->s, e);
  } else if (e) {
    rill_stream_destroy(ls->s, e);
  }
  LEAVE(B);
  rill_err_unref(e);
  return 0;
}

/* ---- constructors ---- */

/* Pushes a new userdata for s (takes the reference). */
static lstream_t *wrap(lua_State *L, lstate_t *B, rill_stream_t *s, lstream_t *ls) {
  lud_t *u = lua_newuserdatauv(L, sizeof *u, 3);
  u->ls = NULL;
  luaL_setmetatable(L, STREAM_MT);
  if (ls == NULL) {
    ls = calloc(1, sizeof *ls);
    if (ls == NULL) {
      rill_stream_unref(s);
      luaL_error(L, "not enough memory");
    }
  }
  ls->s = s;
  ls->B = B;
  u->ls = ls;
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1); /* uv[1] = listeners */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &WEAK_KEY);
  lua_pushvalue(L, -2);
  ls->wref = luaL_ref(L, -2);
  lua_pop(L, 1);
  rill_stream_set_hook(s, lstream_hook, ls);
  return ls;
}

/* Native streams made by other bindings (files, sockets) become Lua streams through this. */
void rill__pushstream(lua_State *L, rill_stream_t *s) {
  lstate_t *B = getstate(L);
  lstream_t *ls = calloc(1, sizeof *ls);
  if (ls == NULL) {
    rill_stream_unref(s);
    luaL_error(L, "not enough memory");
  }
  B->refs++;
  /* The native stream's data belongs to its implementation: this lstream_t is freed by __gc. */
  ls->native = 1;
  wrap(L, B, s, ls);
}

rill_stream_t *rill__tostream(lua_State *L, int idx) {
  lud_t *u = luaL_testudata(L, idx, STREAM_MT);
  return u && u->ls ? u->ls->s : NULL;
}

rill_stream_t *rill__checkstream(lua_State *L, int idx) {
  return checkls(L, idx)->s;
}

/* new(flags, read_hwm, write_hwm, hooks): flags is "r", "w", "d" or "t" plus "o" (readable
 * object mode), "O" (writable object mode), "h" (no half-open); hwm -1 means default. */
static int l_new(lua_State *L) {
  lstate_t *B = getstate(L);
  const char *kind = luaL_checkstring(L, 1);
  lua_Integer rh = luaL_optinteger(L, 2, -1), wh = luaL_optinteger(L, 3, -1);
  luaL_checktype(L, 4, LUA_TTABLE);
  luaL_argcheck(L, rh >= -1 && wh >= -1, 2, "high-water mark out of range");
  unsigned flags = 0;
  int xf = 0;
  for (const char *k = kind; *k; k++) {
    switch (*k) {
      case 'r':
        flags |= RILL_STREAM_READABLE;
        break;
      case 'w':
        flags |= RILL_STREAM_WRITABLE;
        break;
      case 'd':
        flags |= RILL_STREAM_DUPLEX;
        break;
      case 't':
        flags |= RILL_STREAM_DUPLEX;
        xf = 1;
        break;
      case 'o':
        flags |= RILL_STREAM_OBJECT_READ;
        break;
      case 'O':
        flags |= RILL_STREAM_OBJECT_WRITE;
        break;
      case 'h':
        flags |= RILL_STREAM_NO_HALF_OPEN;
        break;
      default:
        return luaL_argerror(L, 1, "unknown flag");
    }
  }
  unsigned fns = 0;
  for (int i = 0; i < 6; i++) {
    int t = lua_getfield(L, 4, fn_names[i]);
    if (t != LUA_TNIL) {
      if (t != LUA_TFUNCTION) return luaL_error(L, "option '%s' must be a function", fn_names[i]);
      fns |= 1u << i;
    }
    lua_pop(L, 1);
  }
  lstream_t *ls = calloc(1, sizeof *ls);
  if (ls == NULL) return luaL_error(L, "not enough memory");
  ls->fns = fns;
  rill_stream_opts_t o = {flags, rh < 0 ? RILL_HWM_DEFAULT : (size_t)rh,
                          wh < 0 ? RILL_HWM_DEFAULT : (size_t)wh};
  rill_stream_t *s;
  int r = rill_stream_new(&B->ctx->loop, xf ? &lua_xf_impl : &lua_impl, ls, &o, &s);
  if (r) {
    free(ls);
    return luaL_error(L, "stream: %s", rill_strerror(r));
  }
  B->refs++; /* held by ls, released in t_free */
  wrap(L, B, s, ls);
  lua_pushvalue(L, 4);
  lua_setiuservalue(L, -2, 2); /* uv[2] = hooks */
  return 1;
}

/* from_bytes(string or buffer [, chunk]): a native byte readable over the bytes. */
static int l_from_bytes(lua_State *L) {
  lstate_t *B = getstate(L);
  size_t len;
  rill_view_t tmp = {NULL, 0, 0}, *v = rill__tobuffer(L, 1);
  if (v == NULL) {
    const char *p = rill__checkbytes(L, 1, &len);
    if (len && rill_view_from(&tmp, p, len) != 0) return luaL_error(L, "not enough memory");
    v = &tmp;
  }
  lua_Integer chunk = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, chunk >= 0, 2, "chunk size out of range");
  rill_stream_t *s;
  int r = rill_stream_new_source(&B->ctx->loop, v, (size_t)chunk, &s);
  rill_view_release(&tmp);
  if (r) return luaL_error(L, "stream: %s", rill_strerror(r));
  rill__pushstream(L, s);
  return 1;
}

/* splitter_stream([sep [, max_len]]): the native lines/split transform. */
static int l_split_stream(lua_State *L) {
  lstate_t *B = getstate(L);
  size_t seplen = 0;
  const char *sep = lua_isnoneornil(L, 1) ? NULL : rill__checkbytes(L, 1, &seplen);
  luaL_argcheck(L, sep == NULL || seplen > 0, 1, "separator must not be empty");
  lua_Integer max = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, max >= 0, 2, "max_line_length out of range");
  rill_stream_t *s;
  int r = rill_lines_new(&B->ctx->loop, sep, seplen, (size_t)max, &s);
  if (r) return luaL_error(L, "stream: %s", rill_strerror(r));
  rill__pushstream(L, s);
  return 1;
}

/* ---- methods ---- */

static int push_result_err(lua_State *L, lstream_t *ls, int code) {
  lua_pushnil(L);
  rill_err_t *e = rill_stream_error(ls->s);
  if (e) {
    push_err(L, ls->B, e);
  } else {
    rill__pusherr(L, code, NULL, NULL);
  }
  return 2;
}

/* s:push(chunk): the readable side's push; nil ends. Returns true while more is welcome. */
static int l_push(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  lstate_t *B = ls->B;
  unsigned fl = rill_stream_flags(ls->s);
  luaL_argcheck(L, fl & RILL_STREAM_READABLE, 1, "stream is not readable");
  rill_chunk_t c;
  int eof = lua_isnoneornil(L, 2);
  if (!eof) to_chunk(L, B, 2, fl & RILL_STREAM_OBJECT_READ, &c);
  ENTER(B, L);
  int r = rill_stream_push(ls->s, eof ? NULL : &c);
  LEAVE(B);
  lua_pushboolean(L, r == 1);
  return 1;
}

/* push(x) handed to transform and flush hooks: the same push, bound to the stream. */
static int l_bound_push(lua_State *L) {
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return l_push(L);
}

static void read_waiter(rill_waiter_t *w, rill_stream_t *s, const rill_event_t *ev);

typedef struct {
  rill_waiter_t w;
  lstate_t *B;
  lua_State *T;
  lstream_t *ls;
} twait_t;

/* Pushes the outcome of a read onto T: chunk, nil, or nil + err. Returns the count, or -1 to
 * keep waiting. */
static int read_outcome(lua_State *T, lstream_t *ls) {
  rill_chunk_t c;
  int r = rill_stream_read(ls->s, &c);
  if (r == 0) {
    push_chunk(T, ls->B, ls->s, &c);
    rill_chunk_release(&c);
    return 1;
  }
  if (r == UV_EOF) {
    lua_pushnil(T);
    return 1;
  }
  if (r == UV_EAGAIN) return -1;
  return push_result_err(T, ls, r);
}

static void read_waiter(rill_waiter_t *w, rill_stream_t *s, const rill_event_t *ev) {
  twait_t *tw = w->arg;
  lstate_t *B = tw->B;
  if (B->L == NULL) {
    free(tw);
    return;
  }
  ENTER(B, B->L);
  int n = read_outcome(tw->T, tw->ls);
  LEAVE(B);
  if (n < 0) {
    rill_stream_wait(s, &tw->w, w->l.mask, read_waiter, tw);
    return;
  }
  rill_stream_unref(s);
  lua_State *T = tw->T;
  free(tw);
  rill__task_wake(T, n);
}

#define WAIT_MASK                                                                       \
  (RILL_EVBIT(RILL_EV_READABLE) | RILL_EVBIT(RILL_EV_END) | RILL_EVBIT(RILL_EV_ERROR) | \
   RILL_EVBIT(RILL_EV_CLOSE))

/* r:read(): in a task, the next chunk, nil at the end, or nil, err. */
static int l_read(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  luaL_argcheck(L, rill_stream_flags(ls->s) & RILL_STREAM_READABLE, 1, "stream is not readable");
  rill__task_check(L, "read");
  lstate_t *B = ls->B;
  ENTER(B, L);
  if (!ls->reader) {
    ls->reader = 1;
    rill_stream_watch(ls->s, RILL_EV_ERROR, +1);
  }
  int n = read_outcome(L, ls);
  LEAVE(B);
  if (n >= 0) return n;
  twait_t *tw = malloc(sizeof *tw);
  if (tw == NULL) return luaL_error(L, "not enough memory");
  tw->B = B;
  tw->T = L;
  tw->ls = ls;
  rill_stream_ref(ls->s); /* the stream waits with us */
  rill_stream_wait(ls->s, &tw->w, WAIT_MASK, read_waiter, tw);
  return rill__task_wait(L);
}

static void drain_waiter(rill_waiter_t *w, rill_stream_t *s, const rill_event_t *ev) {
  twait_t *tw = w->arg;
  lua_State *T = tw->T;
  int n = 1;
  if (tw->B->L == NULL) {
    free(tw);
    return;
  }
  if (ev->type == RILL_EV_DRAIN) {
    lua_pushboolean(T, 1);
  } else {
    n = push_result_err(T, tw->ls, RILL_ESTREAM_DESTROYED);
  }
  rill_stream_unref(s);
  free(tw);
  rill__task_wake(T, n);
}

typedef struct {
  lstate_t *B;
  int ref;
} cbref_t;

/* Calls a Lua callback kept in a cbref_t with (err or nil) and frees it. */
static void call_cbref(cbref_t *cr, rill_err_t *err) {
  lstate_t *B = cr->B;
  if (B->L) {
    lua_State *L = LS(B);
    lua_checkstack(L, 4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cr->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, cr->ref);
    if (err) {
      push_err(L, B, err);
    } else {
      lua_pushnil(L);
    }
    if (rill__pcall(L, 1, 0) != LUA_OK) rill__uncaught(L);
  }
  state_unref(B);
  free(cr);
}

static void write_cb(rill_stream_t *s, rill_err_t *err, void *arg) {
  call_cbref(arg, err);
}

static cbref_t *make_cbref(lua_State *L, lstate_t *B, int idx) {
  if (lua_isnoneornil(L, idx)) return NULL;
  luaL_checktype(L, idx, LUA_TFUNCTION);
  cbref_t *cr = malloc(sizeof *cr);
  if (cr == NULL) luaL_error(L, "not enough memory");
  lua_pushvalue(L, idx);
  cr->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  cr->B = B;
  B->refs++;
  return cr;
}

static void drop_cbref(lua_State *L, cbref_t *cr) {
  if (cr == NULL) return;
  luaL_unref(L, LUA_REGISTRYINDEX, cr->ref);
  state_unref(cr->B);
  free(cr);
}

/* w:write(chunk [, cb]): true/false like Node; in a task, waits while full and returns true
 * (or nil, err when the stream fails meanwhile). Write after close raises. */
static int l_write(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  lstate_t *B = ls->B;
  unsigned fl = rill_stream_flags(ls->s);
  luaL_argcheck(L, fl & RILL_STREAM_WRITABLE, 1, "stream is not writable");
  if (rill_stream_state(ls->s) & RILL_SS_ENDING)
    return rill__raise(L, RILL_ESTREAM_WRITE_AFTER_END, "write");
  rill_chunk_t c;
  /* A string on a byte stream goes through write_bytes: on a sink that coalesces (files,
   * sockets, stdout) it joins the tail slab instead of costing a chunk and a malloc. */
  int str = !(fl & RILL_STREAM_OBJECT_WRITE) && lua_type(L, 2) == LUA_TSTRING;
  if (!str) to_chunk(L, B, 2, fl & RILL_STREAM_OBJECT_WRITE, &c);
  cbref_t *cr = make_cbref(L, B, 3);
  ENTER(B, L);
  int r;
  if (str) {
    size_t len;
    const char *p = lua_tolstring(L, 2, &len);
    r = rill_stream_write_bytes(ls->s, p, len, cr ? write_cb : NULL, cr);
  } else {
    r = rill_stream_write(ls->s, &c, cr ? write_cb : NULL, cr);
  }
  LEAVE(B);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  int in_task = rill__in_task(L);
  if (r == 1) {
    if (!in_task) {
      lua_pushboolean(L, 0);
      return 1;
    }
    twait_t *tw = malloc(sizeof *tw);
    if (tw == NULL) return luaL_error(L, "not enough memory");
    tw->B = B;
    tw->T = L;
    tw->ls = ls;
    rill_stream_ref(ls->s);
    rill_stream_wait(
        ls->s, &tw->w,
        RILL_EVBIT(RILL_EV_DRAIN) | RILL_EVBIT(RILL_EV_ERROR) | RILL_EVBIT(RILL_EV_CLOSE),
        drain_waiter, tw);
    return rill__task_wait(L);
  }
  if (r == RILL_ESTREAM_DESTROYED) {
    /* cb (if any) gets the error from the next tick. */
    if (in_task) return push_result_err(L, ls, r);
    lua_pushboolean(L, 0);
    return 1;
  }
  drop_cbref(L, cr);
  return rill__raise(L, r, "write");
}

static void end_cb(rill_stream_t *s, rill_err_t *err, void *arg) {
  call_cbref(arg, err);
}

/* w:close([chunk] [, cb]): Node's end(). */
static int l_close(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  lstate_t *B = ls->B;
  unsigned fl = rill_stream_flags(ls->s);
  luaL_argcheck(L, fl & RILL_STREAM_WRITABLE, 1, "stream is not writable");
  int cbidx = 3;
  if (lua_isfunction(L, 2) && lua_isnone(L, 3)) cbidx = 2;
  rill_chunk_t c;
  int has = cbidx == 3 && !lua_isnoneornil(L, 2);
  if (has) {
    if (rill_stream_state(ls->s) & RILL_SS_ENDING)
      return rill__raise(L, RILL_ESTREAM_WRITE_AFTER_END, "close");
    to_chunk(L, B, 2, fl & RILL_STREAM_OBJECT_WRITE, &c);
  }
  cbref_t *cr = make_cbref(L, B, cbidx);
  ENTER(B, L);
  int r = rill_stream_end(ls->s, has ? &c : NULL, cr ? end_cb : NULL, cr);
  LEAVE(B);
  if (r < 0) {
    drop_cbref(L, cr);
    return rill__raise(L, r, "close");
  }
  lua_settop(L, 1);
  return 1;
}

/* s:destroy([err]) */
static int l_destroy(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  lstate_t *B = ls->B;
  rill_err_t *e = lua_isnoneornil(L, 2) ? NULL : err_from_lua(L, B, 2);
  ENTER(B, L);
  rill_stream_destroy(ls->s, e);
  LEAVE(B);
  rill_err_unref(e);
  lua_settop(L, 1);
  return 1;
}

static int l_pause(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  ENTER(ls->B, L);
  rill_stream_pause(ls->s);
  LEAVE(ls->B);
  lua_settop(L, 1);
  return 1;
}

static int l_resume(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  ENTER(ls->B, L);
  rill_stream_resume(ls->s);
  LEAVE(ls->B);
  lua_settop(L, 1);
  return 1;
}

/* _stream.pipe(r, w, end) -> w */
static int l_pipe(lua_State *L) {
  lstream_t *r = checkls(L, 1), *w = checkls(L, 2);
  int end = lua_isnone(L, 3) ? 1 : lua_toboolean(L, 3);
  luaL_argcheck(L, rill_stream_flags(r->s) & RILL_STREAM_READABLE, 1, "stream is not readable");
  luaL_argcheck(L, rill_stream_flags(w->s) & RILL_STREAM_WRITABLE, 2, "stream is not writable");
  ENTER(r->B, L);
  int rc = rill_stream_pipe(r->s, w->s, end);
  LEAVE(r->B);
  if (rc) return luaL_error(L, "pipe: %s", rill_strerror(rc));
  lua_settop(L, 2);
  return 1;
}

static int l_unpipe(lua_State *L) {
  lstream_t *r = checkls(L, 1);
  lstream_t *w = lua_isnoneornil(L, 2) ? NULL : checkls(L, 2);
  ENTER(r->B, L);
  rill_stream_unpipe(r->s, w ? w->s : NULL);
  LEAVE(r->B);
  lua_settop(L, 1);
  return 1;
}

/* _stream.watch(s, event, delta): Lua listeners were added or removed. */
static int l_watch(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  int ev = luaL_checkoption(L, 2, NULL, ev_names);
  int delta = (int)luaL_checkinteger(L, 3);
  int count = (int)luaL_checkinteger(L, 4); /* Lua listeners of ev after the change */
  if (count > 0) {
    ls->lmask |= RILL_EVBIT(ev);
  } else {
    ls->lmask &= ~RILL_EVBIT(ev);
  }
  ENTER(ls->B, L);
  rill_stream_watch(ls->s, (rill_stream_ev_t)ev, delta);
  LEAVE(ls->B);
  return 0;
}

/* _stream.listeners(s): the per-stream table of Lua listeners (event -> array). */
static int l_listeners(lua_State *L) {
  checkls(L, 1);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* _stream.dead(s): destroyed (the runners skip hooks queued before a destroy). */
static int l_dead(lua_State *L) {
  lud_t *u = lua_touserdata(L, 1);
  lua_pushboolean(L,
                  u == NULL || u->ls == NULL || (rill_stream_state(u->ls->s) & RILL_SS_DESTROYED));
  return 1;
}

static int l_in_task(lua_State *L) {
  lua_pushboolean(L, rill__in_task(L));
  return 1;
}

static int l_task_check(lua_State *L) {
  rill__task_check(L, luaL_checkstring(L, 1));
  return 0;
}

/* ---- pipeline and finished ---- */

typedef struct {
  lstate_t *B;
  int ref; /* Lua callback, or LUA_NOREF when a task waits */
  lua_State *T;
} donecb_t;

static void deliver(donecb_t *d, rill_err_t *err) {
  lstate_t *B = d->B;
  if (B->L) {
    if (d->T) {
      int n = 1;
      if (err) {
        lua_pushnil(d->T);
        push_err(d->T, B, err);
        n = 2;
      } else {
        lua_pushboolean(d->T, 1);
      }
      rill__task_wake(d->T, n);
    } else {
      lua_State *L = LS(B);
      lua_checkstack(L, 4);
      lua_rawgeti(L, LUA_REGISTRYINDEX, d->ref);
      luaL_unref(L, LUA_REGISTRYINDEX, d->ref);
      if (err) {
        push_err(L, B, err);
      } else {
        lua_pushnil(L);
      }
      /* The callback's own error is uncaught: it must not feed back into the pipeline. */
      if (rill__pcall(L, 1, 0) != LUA_OK) rill__uncaught(L);
    }
  }
  state_unref(B);
  free(d);
}

static void pipeline_done(rill_err_t *err, void *arg) {
  deliver(arg, err);
}

static void finished_done(rill_stream_t *s, rill_err_t *err, void *arg) {
  deliver(arg, err);
}

static donecb_t *make_donecb(lua_State *L, lstate_t *B, int cbidx) {
  donecb_t *d = malloc(sizeof *d);
  if (d == NULL) luaL_error(L, "not enough memory");
  d->B = B;
  d->T = NULL;
  d->ref = LUA_NOREF;
  if (cbidx) {
    lua_pushvalue(L, cbidx);
    d->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    d->T = L;
  }
  B->refs++;
  return d;
}

/* _stream.pipeline(list, cb or nil): with cb, returns at once; without, waits in the task and
 * returns true or nil, err. */
static int l_pipeline(lua_State *L) {
  lstate_t *B = getstate(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  int cb = lua_isnoneornil(L, 2) ? 0 : 2;
  if (cb) luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!cb) rill__task_check(L, "pipeline");
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, n >= 2 && n <= 1024, 1, "pipeline needs at least 2 streams");
  rill_stream_t *ss[1024];
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    lud_t *u = luaL_testudata(L, -1, STREAM_MT);
    if (u == NULL) return luaL_error(L, "pipeline: argument %d is not a stream", (int)i);
    ss[i - 1] = u->ls->s;
    lua_pop(L, 1);
  }
  for (lua_Integer i = 0; i < n; i++) {
    unsigned fl = rill_stream_flags(ss[i]);
    unsigned need = i == 0       ? RILL_STREAM_READABLE
                    : i == n - 1 ? RILL_STREAM_WRITABLE
                                 : RILL_STREAM_DUPLEX;
    if ((fl & need) != need)
      return luaL_error(L, "pipeline: stream %d is not %s", (int)i + 1,
                        i == 0       ? "readable"
                        : i == n - 1 ? "writable"
                                     : "a duplex or transform");
  }
  donecb_t *d = make_donecb(L, B, cb);
  ENTER(B, L);
  int r = rill_pipeline(ss, (size_t)n, pipeline_done, d);
  LEAVE(B);
  if (r) {
    if (d->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, d->ref);
    state_unref(B);
    free(d);
    return luaL_error(L, "pipeline: %s", rill_strerror(r));
  }
  if (cb) return 0;
  return rill__task_wait(L);
}

/* _stream.finished(s, cb) */
static int l_finished(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  donecb_t *d = make_donecb(L, ls->B, 2);
  ENTER(ls->B, L);
  int r = rill_stream_finished(ls->s, 0, finished_done, d, NULL);
  LEAVE(ls->B);
  if (r) {
    luaL_unref(L, LUA_REGISTRYINDEX, d->ref);
    state_unref(d->B);
    free(d);
    return luaL_error(L, "finished: %s", rill_strerror(r));
  }
  return 0;
}

/* _stream.stop_sources(s): take(n) got enough; the streams feeding s stop. */
static int l_stop_sources(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  ENTER(ls->B, L);
  rill_stream_stop_sources(ls->s);
  LEAVE(ls->B);
  return 0;
}

/* ---- metamethods and properties ---- */

static int l_gc(lua_State *L) {
  lud_t *u = lua_touserdata(L, 1);
  lstream_t *ls = u->ls;
  if (ls == NULL) return 0;
  u->ls = NULL;
  lstate_t *B = ls->B;
  /* The weak table already lost us; free the slot. */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &WEAK_KEY);
  luaL_unref(L, -1, ls->wref);
  lua_pop(L, 1);
  ls->wref = LUA_NOREF;
  rill_stream_t *s = ls->s;
  rill_stream_set_hook(s, NULL, NULL);
  int native = ls->native;
  ENTER(B, L);
  rill_stream_unref(s);
  LEAVE(B);
  if (native) {
    ls_free(ls);
  }
  return 0;
}

/* __close: the closing value of for-loops over r:chunks()/r:lines() (and `local s <close>`).
 * A loop that ran to the end leaves the stream alone (a duplex may still be written to); a
 * break or an error destroys it at once. */
static int l_close_mm(lua_State *L) {
  lud_t *u = lua_touserdata(L, 1);
  if (u->ls == NULL) return 0;
  if (lua_isnoneornil(L, 2) && (rill_stream_state(u->ls->s) & RILL_SS_READ_ENDED) &&
      rill_stream_readable_length(u->ls->s) == 0)
    return 0;
  ENTER(u->ls->B, L);
  rill_stream_destroy(u->ls->s, NULL);
  LEAVE(u->ls->B);
  return 0;
}

static int l_tostring(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  unsigned fl = rill_stream_flags(ls->s);
  const char *kind = (fl & RILL_STREAM_DUPLEX) == RILL_STREAM_DUPLEX ? "duplex"
                     : (fl & RILL_STREAM_READABLE)                   ? "readable"
                                                                     : "writable";
  lua_pushfstring(L, "rill.stream (%s): %p", kind, (void *)ls->s);
  return 1;
}

/* __index: methods first (upvalue 1), then read-only state fields. */
static int l_index(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  const char *k = lua_tostring(L, 2);
  if (k == NULL) return 1;
  unsigned st = rill_stream_state(ls->s), fl = rill_stream_flags(ls->s);
  if (!strcmp(k, "destroyed")) {
    lua_pushboolean(L, st & RILL_SS_DESTROYED);
  } else if (!strcmp(k, "closed")) {
    lua_pushboolean(L, st & RILL_SS_CLOSED);
  } else if (!strcmp(k, "readable")) {
    lua_pushboolean(
        L, (fl & RILL_STREAM_READABLE) && !(st & (RILL_SS_DESTROYED | RILL_SS_END_EMITTED)));
  } else if (!strcmp(k, "writable")) {
    lua_pushboolean(L, (fl & RILL_STREAM_WRITABLE) && !(st & (RILL_SS_DESTROYED | RILL_SS_ENDING)));
  } else if (!strcmp(k, "readable_ended")) {
    lua_pushboolean(L, st & RILL_SS_END_EMITTED);
  } else if (!strcmp(k, "writable_ended")) {
    lua_pushboolean(L, st & RILL_SS_ENDING);
  } else if (!strcmp(k, "writable_finished")) {
    lua_pushboolean(L, st & RILL_SS_FINISHED);
  } else if (!strcmp(k, "readable_flowing")) {
    lua_pushboolean(L, st & RILL_SS_FLOWING);
  } else if (!strcmp(k, "readable_length")) {
    lua_pushinteger(L, (lua_Integer)rill_stream_readable_length(ls->s));
  } else if (!strcmp(k, "writable_length")) {
    lua_pushinteger(L, (lua_Integer)rill_stream_writable_length(ls->s));
  } else if (!strcmp(k, "readable_high_water_mark")) {
    lua_pushinteger(L, (lua_Integer)rill_stream_readable_hwm(ls->s));
  } else if (!strcmp(k, "writable_high_water_mark")) {
    lua_pushinteger(L, (lua_Integer)rill_stream_writable_hwm(ls->s));
  } else if (!strcmp(k, "writable_need_drain")) {
    lua_pushboolean(L, st & RILL_SS_NEED_DRAIN);
  } else if (!strcmp(k, "readable_object_mode")) {
    lua_pushboolean(L, fl & RILL_STREAM_OBJECT_READ);
  } else if (!strcmp(k, "writable_object_mode")) {
    lua_pushboolean(L, fl & RILL_STREAM_OBJECT_WRITE);
  } else if (!strcmp(k, "errored")) {
    rill_err_t *e = rill_stream_error(ls->s);
    if (e) {
      push_err(L, ls->B, e);
    } else {
      lua_pushnil(L);
    }
  } else if (ls->native && lua_getiuservalue(L, 1, 2) == LUA_TTABLE) {
    lua_getfield(L, -1, k); /* a native stream's own fields (rill__setstreamfields) */
  } else {
    lua_pushnil(L);
  }
  return 1;
}

void rill__setstreamfields(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  checkls(L, idx);
  lua_setiuservalue(L, idx, 2); /* uv[2] = fields: native streams have no Lua hooks there */
}

/* ---- r:lines(): the iterator is a C function ----
 * Each call hands out the next line of the chunk at hand (one string made, no table, no Lua
 * frame); a chunk that is ready is split straight from the core stream (no buffer userdata, no
 * collector debt). Only when nothing is ready does it call the stream's read (a Lua call that
 * may suspend the task), and then splits what read returned. */

typedef struct {
  rill_split_t sp;
  rill_chunk_t c;  /* the core chunk being split, when held */
  const char *src; /* the bytes being split: c's, or those of the Lua value in upvalue 5 */
  size_t len, pos;
  int held;     /* c holds a reference */
  int finished; /* the input ended: the next call ends the loop */
} liter_t;

/* Upvalues of the iterator: the state, the stream, its read method, the loop's closing value,
 * the Lua chunk being split. */
#define IT_STATE lua_upvalueindex(1)
#define IT_STREAM lua_upvalueindex(2)
#define IT_READ lua_upvalueindex(3)
#define IT_CLOSER lua_upvalueindex(4)
#define IT_CHUNK lua_upvalueindex(5)

static void liter_drop(lua_State *L, liter_t *it) {
  if (it->held) {
    it->held = 0;
    rill_chunk_release(&it->c);
  } else {
    lua_pushnil(L);
    lua_replace(L, IT_CHUNK);
  }
  it->src = NULL;
}

static int liter_end(lua_State *L, liter_t *it) {
  rill_split_rec_t rec;
  int e = rill_split_finish(&it->sp, &rec);
  it->finished = 1;
  if (e < 0) return rill__raise(L, e, "lines");
  if (e == 1) {
    lua_pushlstring(L, (const char *)rec.p, rec.len);
    return 1;
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, IT_CLOSER, "done"); /* run to the end: the closing value leaves the stream */
  return 0;
}

static int liter_k(lua_State *L, int status, lua_KContext kctx);
static int liter_step(lua_State *L, liter_t *it);

static void ready_waiter(rill_waiter_t *w, rill_stream_t *s, const rill_event_t *ev) {
  twait_t *tw = w->arg;
  if (tw->B->L == NULL) {
    free(tw);
    return;
  }
  lua_State *T = tw->T;
  rill_stream_unref(s);
  free(tw);
  rill__task_wake(T, 0);
}

/* wait_ready(r): in a task, waits until r has a chunk, its end or an error, and returns
 * nothing: the iterator then takes it itself (the chunk never becomes a Lua buffer). */
static int l_wait_ready(lua_State *L) {
  lstream_t *ls = ((lud_t *)lua_touserdata(L, 1))->ls;
  rill__task_check(L, "lines");
  twait_t *tw = malloc(sizeof *tw);
  if (tw == NULL) return luaL_error(L, "not enough memory");
  tw->B = ls->B;
  tw->T = L;
  tw->ls = ls;
  rill_stream_ref(ls->s);
  rill_stream_wait(ls->s, &tw->w, WAIT_MASK, ready_waiter, tw);
  return rill__task_wait(L);
}

static int liter_resume(lua_State *L, int status, lua_KContext kctx) {
  lua_settop(L, 0);
  return liter_step(L, lua_touserdata(L, IT_STATE));
}

static int liter_step(lua_State *L, liter_t *it) {
  rill_split_rec_t rec;
  for (;;) {
    if (it->src) {
      int e = rill_split_next(&it->sp, it->src, it->len, &it->pos, &rec);
      if (e == 1) {
        lua_pushlstring(L, (const char *)rec.p, rec.len);
        return 1;
      }
      liter_drop(L, it);
      if (e < 0) return rill__raise(L, e, "lines");
    }
    if (it->finished) {
      lua_pushboolean(L, 1);
      lua_setfield(L, IT_CLOSER, "done");
      return 0;
    }
    lstream_t *ls = ((lud_t *)lua_touserdata(L, IT_STREAM))->ls;
    if (rill_stream_flags(ls->s) & RILL_STREAM_OBJECT_READ) break;
    ENTER(ls->B, L);
    int r = rill_stream_read(ls->s, &it->c);
    LEAVE(ls->B);
    if (r == UV_EAGAIN) break;
    if (r == UV_EOF) return liter_end(L, it);
    if (r) {
      push_result_err(L, ls, r);
      return lua_error(L);
    }
    it->held = 1;
    it->src = (const char *)rill_view_data(&it->c.view);
    it->len = it->c.view.len;
    it->pos = 0;
  }
  if (!(rill_stream_flags(((lud_t *)lua_touserdata(L, IT_STREAM))->ls->s) &
        RILL_STREAM_OBJECT_READ)) {
    /* Nothing ready: wait for the next chunk (or the end), then take it as above. */
    lua_pushcfunction(L, l_wait_ready);
    lua_pushvalue(L, IT_STREAM);
    lua_callk(L, 1, 0, 0, liter_resume);
    return liter_resume(L, LUA_OK, 0);
  }
  /* An object-mode stream: read waits, then liter_k splits the chunk it returns. */
  lua_pushvalue(L, IT_READ);
  lua_pushvalue(L, IT_STREAM);
  lua_callk(L, 1, 2, 0, liter_k);
  return liter_k(L, LUA_OK, 0);
}

static int liter_k(lua_State *L, int status, lua_KContext kctx) {
  liter_t *it = lua_touserdata(L, IT_STATE);
  if (lua_isnil(L, -2)) {
    if (!lua_isnil(L, -1)) return lua_error(L); /* read's error, raised as it is */
    lua_pop(L, 2);
    return liter_end(L, it);
  }
  lua_pop(L, 1);
  it->src = rill__checkbytes(L, -1, &it->len); /* a string or a buffer: kept alive below */
  it->pos = 0;
  lua_replace(L, IT_CHUNK);
  return liter_step(L, it);
}

static int liter_next(lua_State *L) {
  return liter_step(L, lua_touserdata(L, IT_STATE));
}

static int liter_gc(lua_State *L) {
  liter_t *it = luaL_checkudata(L, 1, LINES_MT);
  if (it->held) {
    it->held = 0;
    rill_chunk_release(&it->c);
  }
  rill_split_free(&it->sp);
  return 0;
}

/* lines_iter(r, read, closer [, max_line_length]) -> the iterator of r:lines() */
static int l_lines_iter(lua_State *L) {
  lstream_t *ls = checkls(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer max = luaL_optinteger(L, 4, 0);
  luaL_argcheck(L, max >= 0, 4, "max_line_length out of range");
  if (!ls->reader) {
    /* The loop reads the stream: its errors are raised there (as read reports them). */
    ls->reader = 1;
    rill_stream_watch(ls->s, RILL_EV_ERROR, +1);
  }
  liter_t *it = lua_newuserdatauv(L, sizeof *it, 0);
  memset(it, 0, sizeof *it);
  int r = rill_split_init(&it->sp, NULL, 0, (size_t)max);
  if (r) return luaL_error(L, "lines: %s", rill_strerror(r));
  luaL_setmetatable(L, LINES_MT);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushnil(L);
  lua_pushcclosure(L, liter_next, 5);
  return 1;
}

/* ---- module ---- */

static int l_is_exit(lua_State *L) {
  lua_pushboolean(L, rill__is_exit(L, 1));
  return 1;
}

static int l_set_worker(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushvalue(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &WORKER_KEY);
  lua_pushvalue(L, 2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &RUNNERS_KEY);
  return 0;
}

/* _stream.bind_push(s): the push function given to transform hooks, cached in uv[3]. */
static int l_bind_push(lua_State *L) {
  checkls(L, 1);
  if (lua_getiuservalue(L, 1, 3) == LUA_TFUNCTION) return 1;
  lua_pop(L, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, l_bound_push, 1);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, 3);
  return 1;
}

static int state_gc(lua_State *L) {
  lstate_t **box = lua_touserdata(L, 1);
  if (*box == NULL) return 0;
  (*box)->L = NULL;
  (*box)->cur = NULL;
  state_unref(*box);
  *box = NULL;
  return 0;
}

static const luaL_Reg methods[] = {
    {"push", l_push},     {"read", l_read},       {"write", l_write},
    {"close", l_close},   {"destroy", l_destroy}, {"pause", l_pause},
    {"resume", l_resume}, {"unpipe", l_unpipe},   {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"new", l_new},
    {"from_bytes", l_from_bytes},
    {"split_stream", l_split_stream},
    {"pipe", l_pipe},
    {"watch", l_watch},
    {"listeners", l_listeners},
    {"pipeline", l_pipeline},
    {"finished", l_finished},
    {"stop_sources", l_stop_sources},
    {"answer", l_answer},
    {"wait_job", l_wait_job},
    {"set_worker", l_set_worker},
    {"bind_push", l_bind_push},
    {"lines_iter", l_lines_iter},
    {"is_exit", l_is_exit},
    {"in_task", l_in_task},
    {"dead", l_dead},
    {"task_check", l_task_check},
    {NULL, NULL},
};

int rill__open_stream(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY) == LUA_TNIL) {
    lstate_t **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = calloc(1, sizeof **box);
    if (*box == NULL) return luaL_error(L, "not enough memory");
    lstate_t *B = *box;
    B->refs = 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    B->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    B->ctx = ctx;
    B->ops.dup = item_dup;
    B->ops.drop = item_drop;
    B->ops.to_bytes = item_bytes;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &WEAK_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PIN_KEY);
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  if (luaL_newmetatable(L, STREAM_MT)) {
    luaL_newlib(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "methods"); /* module.methods = methods: stream.lua adds its own */
    lua_pushcclosure(L, l_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_close_mm);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  } else {
    lua_getfield(L, -1, "__index");
    lua_getupvalue(L, -1, 1);
    lua_setfield(L, -4, "methods");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, LINES_MT)) {
    lua_pushcfunction(L, liter_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  return 1;
}
