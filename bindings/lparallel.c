/* bindings/lparallel.c: rill._parallel: stream.parallel, a transform whose function runs in
 * worker threads, each with a Lua state of its own, with outputs kept in input order. */
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "lrill.h"
#include "rill.h"
#include "stream.h"
#include "workers.h"

/* How it fits together
 * --------------------
 * The stream is a Lua-hooked transform (stream.transform) whose hooks are the C functions
 * below, so every chunk reaches us as the Lua value any transform sees (buffers, strings,
 * tables), whatever stream produced it. The transform hook copies the value into a message
 * (buffers are not copied: the message holds a reference on their slab), submits it to the
 * pool (core/workers.h), and returns at once while the pool has room; when the pool is full it
 * suspends its task, which holds the write acknowledgement, until a result frees a slot. A
 * worker rebuilds the value in its own Lua state, calls fn, and makes a message of the result.
 * Results come back on the loop thread in input order and are pushed into the stream natively:
 * a buffer as a view (no copy, no Lua), anything else as an item of our own kind that becomes
 * a Lua value only when a Lua consumer asks for it (rill__register_item); nil drops the chunk.
 * flush waits until every job has come back. Destroying the stream closes the pool: queued jobs
 * are dropped, running ones are interrupted by a hook and discarded when they return, and the
 * worker states are closed once their threads have exited. */

#define PAR_MT "rill.parallel"
#define DEFAULT_PER_WORKER 8
#define MAX_WORKERS 256
#define MAX_DEPTH 100 /* table nesting that a value may have to cross */

static const char FN_KEY = 'f';    /* worker registry[&FN_KEY] = fn */
static const char STATS_KEY = 's'; /* main registry[&STATS_KEY] = {[stream] = par}, weak keys */

/* ---- messages: a value on its way between two Lua states ---- */

/* Tags, then their payloads: integers and floats as 8 raw bytes, lengths and indices as
 * varints, a table as its pairs up to T_END, a table seen before as T_REF and its index. */
enum { T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_BUF, T_TABLE, T_REF, T_END };

typedef struct {
  unsigned char *p; /* tags and payloads */
  size_t len, cap;
  rill_view_t *v; /* the buffers, one reference each */
  size_t nv, vcap;
} msg_t;

/* Empties m, keeping its storage for the next value (up to a bound, so that one huge value
 * does not pin its memory for good). */
static void msg_reset(msg_t *m) {
  for (size_t i = 0; i < m->nv; i++) rill_view_release(&m->v[i]);
  m->len = m->nv = 0;
  if (m->cap > 256 * 1024) {
    free(m->p);
    m->p = NULL;
    m->cap = 0;
  }
}

static void msg_free(msg_t *m) {
  msg_reset(m);
  free(m->p);
  free(m->v);
  memset(m, 0, sizeof *m);
}

static int msg_grow(msg_t *m, size_t n) {
  if (m->cap - m->len >= n) return 0;
  size_t cap = m->cap ? m->cap : 64;
  while (cap - m->len < n) {
    if (cap > SIZE_MAX / 2) return -1;
    cap *= 2;
  }
  unsigned char *p = realloc(m->p, cap);
  if (p == NULL) return -1;
  m->p = p;
  m->cap = cap;
  return 0;
}

static int msg_put(msg_t *m, const void *p, size_t n) {
  if (msg_grow(m, n)) return -1;
  memcpy(m->p + m->len, p, n);
  m->len += n;
  return 0;
}

static int msg_tag(msg_t *m, unsigned char tag) {
  return msg_put(m, &tag, 1);
}

static int msg_varint(msg_t *m, size_t x) {
  unsigned char b[10];
  size_t n = 0;
  do {
    b[n++] = (unsigned char)((x & 0x7f) | (x > 0x7f ? 0x80 : 0));
    x >>= 7;
  } while (x);
  return msg_put(m, b, n);
}

/* Adds v's bytes as a buffer, taking a new reference on them (no copy). */
static int msg_view(msg_t *m, const rill_view_t *v) {
  if (m->nv == m->vcap) {
    size_t cap = m->vcap ? m->vcap * 2 : 4;
    rill_view_t *nv = realloc(m->v, cap * sizeof *nv);
    if (nv == NULL) return -1;
    m->v = nv;
    m->vcap = cap;
  }
  if (msg_tag(m, T_BUF) || msg_varint(m, m->nv)) return -1;
  rill_view_t *d = &m->v[m->nv++];
  d->slab = NULL;
  d->off = d->len = 0;
  if (v->len) rill_view_slice(d, v, 0, v->len);
  return 0;
}

/* ---- encoding a Lua value ---- */

typedef struct {
  lua_State *L;
  msg_t *m;
  int seen; /* stack index of {[table] = index}, made at the first table */
  size_t ntables;
  const char *who; /* "fn's argument" / "fn's result": for messages */
  char err[256];
} enc_t;

/* Names the value at idx for an error: "function", "thread (a coroutine)", "userdata
 * (rill.stream)". */
static const char *kind_name(lua_State *L, int idx, char *buf, size_t size) {
  int t = lua_type(L, idx);
  if (t == LUA_TTHREAD) return "thread (coroutine)";
  if (t == LUA_TUSERDATA || t == LUA_TLIGHTUSERDATA) {
    if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
      snprintf(buf, size, "userdata (%s)", lua_tostring(L, -1));
      lua_pop(L, 1);
      return buf;
    }
    return t == LUA_TUSERDATA ? "userdata" : "light userdata";
  }
  return lua_typename(L, t);
}

static int enc_fail(enc_t *e, int idx, int depth, int key) {
  char name[96];
  snprintf(e->err, sizeof e->err,
           "stream.parallel: %s %s a %s value%s, which cannot cross between threads (only nil, "
           "booleans, numbers, strings, buffers and tables of these can)",
           e->who, depth ? "holds" : "is", kind_name(e->L, idx, name, sizeof name),
           key ? " as a table key" : "");
  return -1;
}

static int enc_nomem(enc_t *e) {
  snprintf(e->err, sizeof e->err, "stream.parallel: not enough memory");
  return -1;
}

static int enc_value(enc_t *e, int idx, int depth, int key);

static int enc_table(enc_t *e, int idx, int depth) {
  lua_State *L = e->L;
  if (depth >= MAX_DEPTH) {
    snprintf(e->err, sizeof e->err, "stream.parallel: %s has tables nested more than %d deep",
             e->who, MAX_DEPTH);
    return -1;
  }
  if (!lua_checkstack(L, 6)) return enc_nomem(e);
  if (e->seen == 0) {
    lua_newtable(L);
    e->seen = lua_gettop(L);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->seen) == LUA_TNUMBER) { /* seen before: a shared table or a cycle */
    size_t id = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return msg_tag(e->m, T_REF) || msg_varint(e->m, id) ? enc_nomem(e) : 0;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, (lua_Integer)e->ntables++);
  lua_rawset(L, e->seen); /* seen[t] = index */
  if (msg_tag(e->m, T_TABLE)) return enc_nomem(e);
  /* Raw contents only: metatables stay behind (they may hold functions). */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (enc_value(e, top - 1, depth + 1, 1) || enc_value(e, top, depth + 1, 0)) {
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  return msg_tag(e->m, T_END) ? enc_nomem(e) : 0;
}

static int enc_value(enc_t *e, int idx, int depth, int key) {
  lua_State *L = e->L;
  msg_t *m = e->m;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return msg_tag(m, T_NIL) ? enc_nomem(e) : 0;
    case LUA_TBOOLEAN:
      return msg_tag(m, lua_toboolean(L, idx) ? T_TRUE : T_FALSE) ? enc_nomem(e) : 0;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        return msg_tag(m, T_INT) || msg_put(m, &i, sizeof i) ? enc_nomem(e) : 0;
      } else {
        lua_Number d = lua_tonumber(L, idx);
        return msg_tag(m, T_FLOAT) || msg_put(m, &d, sizeof d) ? enc_nomem(e) : 0;
      }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      return msg_tag(m, T_STR) || msg_varint(m, len) || msg_put(m, s, len) ? enc_nomem(e) : 0;
    }
    case LUA_TTABLE:
      return enc_table(e, idx, depth);
    case LUA_TUSERDATA: {
      rill_view_t *v = rill__tobuffer(L, idx);
      if (v) return msg_view(m, v) ? enc_nomem(e) : 0;
      return enc_fail(e, idx, depth, key);
    }
    default:
      return enc_fail(e, idx, depth, key);
  }
}

/* Makes m the message of the value at idx; 0, or -1 with the reason in e->err. Leaves the
 * stack as it was. */
static int encode(lua_State *L, int idx, msg_t *m, const char *who, enc_t *e) {
  int top = lua_gettop(L);
  e->L = L;
  e->m = m;
  e->seen = 0;
  e->ntables = 0;
  e->who = who;
  e->err[0] = 0;
  msg_reset(m);
  int r = enc_value(e, idx, 0, 0);
  lua_settop(L, top);
  if (r) msg_reset(m);
  return r;
}

/* ---- decoding into a Lua state ---- */

typedef struct {
  lua_State *L;
  msg_t *m;
  size_t pos;
  int tables; /* stack index of {[index] = table}, made at the first table */
  lua_Integer ntables;
  int take; /* move the views out of the message (it is decoded once) or slice them */
} dec_t;

static size_t dec_varint(dec_t *d) {
  size_t x = 0;
  int shift = 0;
  unsigned char b;
  do {
    b = d->m->p[d->pos++];
    x |= (size_t)(b & 0x7f) << shift;
    shift += 7;
  } while (b & 0x80);
  return x;
}

/* Pushes the next value. Raises only on memory errors. */
static void dec_value(dec_t *d) {
  lua_State *L = d->L;
  luaL_checkstack(L, 4, "stream.parallel: value nested too deep");
  unsigned char tag = d->m->p[d->pos++];
  switch (tag) {
    case T_NIL:
      lua_pushnil(L);
      break;
    case T_FALSE:
    case T_TRUE:
      lua_pushboolean(L, tag == T_TRUE);
      break;
    case T_INT: {
      lua_Integer i;
      memcpy(&i, d->m->p + d->pos, sizeof i);
      d->pos += sizeof i;
      lua_pushinteger(L, i);
      break;
    }
    case T_FLOAT: {
      lua_Number n;
      memcpy(&n, d->m->p + d->pos, sizeof n);
      d->pos += sizeof n;
      lua_pushnumber(L, n);
      break;
    }
    case T_STR: {
      size_t len = dec_varint(d);
      lua_pushlstring(L, (const char *)d->m->p + d->pos, len);
      d->pos += len;
      break;
    }
    case T_BUF: {
      rill_view_t *src = &d->m->v[dec_varint(d)];
      if (d->take) {
        rill__pushbuffer(L, src); /* moves the reference: *src is emptied */
      } else {
        rill_view_t v = {NULL, 0, 0};
        if (src->len) rill_view_slice(&v, src, 0, src->len);
        rill__pushbuffer(L, &v);
      }
      break;
    }
    case T_TABLE: {
      if (d->tables == 0) {
        lua_newtable(L);
        d->tables = lua_gettop(L);
      }
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawseti(L, d->tables, d->ntables++); /* tables[index] = t */
      while (d->m->p[d->pos] != T_END) {
        dec_value(d);
        dec_value(d);
        lua_rawset(L, -3);
      }
      d->pos++;
      break;
    }
    case T_REF:
      lua_rawgeti(L, d->tables, (lua_Integer)dec_varint(d));
      break;
    default:
      luaL_error(L, "stream.parallel: corrupt message (tag %d)", tag);
  }
}

/* Pushes the value of m (or nil for an empty message). */
static void decode(lua_State *L, msg_t *m, int take) {
  if (m->len == 0) {
    lua_pushnil(L);
    return;
  }
  dec_t d = {L, m, 0, 0, 0, take};
  int top = lua_gettop(L);
  dec_value(&d);
  if (d.tables) {
    lua_replace(L, top + 1); /* the value takes the slot of the tables map */
    lua_settop(L, top + 1);
  }
}

/* ---- our object-mode items: results that are not buffers ---- */

typedef struct {
  int refs; /* loop thread only */
  msg_t m;
  unsigned char inl[]; /* a small message's bytes, in the same allocation */
} pitem_t;

#define ITEM_INLINE_MAX 256

static void *item_dup(const rill_item_ops_t *ops, void *item) {
  ((pitem_t *)item)->refs++;
  return item;
}

static void item_drop(const rill_item_ops_t *ops, void *item) {
  pitem_t *it = item;
  if (--it->refs > 0) return;
  if (it->m.p == it->inl) it->m.p = NULL; /* not a separate allocation */
  msg_free(&it->m);
  free(it);
}

/* A string result can go to a byte stream; other values cannot (as for Lua items). */
static int item_bytes(const rill_item_ops_t *ops, void *item, rill_view_t *out, const char **msg) {
  pitem_t *it = item;
  msg_t *m = &it->m;
  if (m->len > 0 && m->p[0] == T_STR) {
    dec_t d = {NULL, m, 1, 0, 0, 0};
    size_t len = dec_varint(&d);
    return rill_view_from(out, m->p + d.pos, len);
  }
  switch (m->len ? m->p[0] : T_NIL) {
    case T_TABLE:
      *msg = "a table value cannot be written to a byte stream";
      break;
    case T_INT:
    case T_FLOAT:
      *msg = "a number value cannot be written to a byte stream";
      break;
    default:
      *msg = "a boolean value cannot be written to a byte stream";
      break;
  }
  return RILL_EINVALID_ARG_TYPE;
}

static const rill_item_ops_t item_ops = {item_dup, item_drop, item_bytes};

/* How Lua sees our items: the value, rebuilt (buffers share their memory). */
static void item_push(lua_State *L, void *item) {
  decode(L, &((pitem_t *)item)->m, 0);
}

/* ---- the workers' Lua states ---- */

struct par_s;

typedef struct pjob_s {
  rill_job_t job;
  struct pjob_s *next_free;
  struct par_s *par; /* the owner; used only when the job comes back with status 0 */
  msg_t in, out;
  size_t bytes; /* buffer bytes the job carried (a hint for the worker's collector) */
  char *err;    /* the worker's error, with its traceback (malloc'd), or NULL */
} pjob_t;

/* The pool's arg: everything the workers use. Freed by ops.fini once the threads are gone. */
typedef struct {
  unsigned n;
  size_t cap;
  lua_State **Ls;                 /* one per worker */
  pjob_t *jobs;                   /* cap jobs, reused */
  pjob_t *free_jobs;              /* loop thread only */
  struct par_s *par;              /* the owner while it lives (loop thread only) */
  atomic_int stopping;            /* set by interrupt: a job starting now must stop at once too */
  unsigned long max_instructions; /* per job, from the engine's sandbox (0: none) */
  rill_slab_account_t *acct;      /* the engine's slab account (buffers made by fn), or NULL */
  struct wmem_s *mem;             /* per worker memory caps, or NULL */
} wset_t;

/* A worker state's memory cap (the engine's max_memory, for each worker state). */
typedef struct wmem_s {
  size_t used, cap;
} wmem_t;

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  wmem_t *m = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    m->used -= old;
    return NULL;
  }
  if (nsize > old && m->used - old + nsize > m->cap) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) m->used = m->used - old + nsize;
  return p;
}

/* The message handler of worker calls: strings get a traceback, tables a traceback field. */
static int worker_msgh(lua_State *W) {
  if (lua_type(W, 1) == LUA_TSTRING) {
    luaL_traceback(W, W, lua_tostring(W, 1), 1);
    return 1;
  }
  if (lua_type(W, 1) == LUA_TTABLE && lua_getfield(W, 1, "traceback") == LUA_TNIL) {
    luaL_traceback(W, W, NULL, 1);
    lua_setfield(W, 1, "traceback");
  }
  lua_settop(W, 1);
  return 1;
}

static void stop_hook(lua_State *W, lua_Debug *ar) {
  lua_sethook(W, NULL, 0, 0);
  luaL_error(W, "interrupted: the parallel stream was destroyed");
}

static void count_hook(lua_State *W, lua_Debug *ar) {
  lua_Integer cap = lua_gethookcount(W);
  lua_sethook(W, NULL, 0, 0);
  luaL_error(W,
             "instruction cap reached: one call of fn may run %I instructions "
             "(rill_options.max_instructions)",
             cap);
}

/* In the worker's state, protected: rebuild the argument, call fn, make the result's message. */
static int run_job(lua_State *W) {
  pjob_t *j = lua_touserdata(W, 1);
  lua_settop(W, 0);
  lua_pushcfunction(W, worker_msgh);
  lua_rawgetp(W, LUA_REGISTRYINDEX, &FN_KEY);
  decode(W, &j->in, 1);
  msg_reset(&j->in);
  if (lua_pcall(W, 1, 1, 1) != LUA_OK) {
    size_t len;
    rill__errstring(W, -1);
    const char *s = lua_tolstring(W, -1, &len);
    /* The traceback's last line is this C function ("[C]: in ?"): noise for the user. */
    static const char tail[] = "\n\t[C]: in ?";
    if (len >= sizeof tail - 1 && memcmp(s + len - (sizeof tail - 1), tail, sizeof tail - 1) == 0)
      len -= sizeof tail - 1;
    j->err = strndup(s, len);
    return 0;
  }
  enc_t e;
  if (encode(W, -1, &j->out, "fn's result", &e)) j->err = strdup(e.err);
  return 0;
}

static void w_work(rill_workers_t *p, rill_job_t *job, unsigned worker) {
  wset_t *ws = rill_workers_arg(p);
  pjob_t *j = RILL_CONTAINER_OF(job, pjob_t, job);
  lua_State *W = ws->Ls[worker];
  /* Buffers that fn makes count against the engine's memory cap, as the engine's own do. The
   * account outlives the pool: the engine releases it after closing its state (and so this
   * pool, whose threads are joined then). */
  rill_slab_account_use(ws->acct);
  if (ws->max_instructions) {
    unsigned long c = ws->max_instructions < INT_MAX ? ws->max_instructions : INT_MAX;
    lua_sethook(W, count_hook, LUA_MASKCOUNT, (int)c);
  }
  /* An interrupt that came before the line above would have been overwritten by it. */
  if (atomic_load(&ws->stopping)) lua_sethook(W, stop_hook, LUA_MASKCOUNT, 1);
  lua_pushcfunction(W, run_job);
  lua_pushlightuserdata(W, j);
  if (lua_pcall(W, 1, 0, 0) != LUA_OK && j->err == NULL) {
    const char *s = lua_tostring(W, -1);
    j->err = strdup(s ? s : "stream.parallel: error in a worker");
  }
  lua_settop(W, 0);
  if (ws->max_instructions) lua_sethook(W, NULL, 0, 0);
  /* Buffers are small userdata over big slabs: tell the collector how much they held, so that
   * the slabs of dead buffers come back soon. */
  if (j->bytes >= 1024) {
    size_t kb = j->bytes / 1024;
    lua_gc(W, LUA_GCSTEP, (int)(kb < (1u << 20) ? kb : (1u << 20)));
  }
}

static void w_interrupt(rill_workers_t *p, unsigned worker) {
  wset_t *ws = rill_workers_arg(p);
  atomic_store(&ws->stopping, 1);
  /* lua_sethook is the one call of the Lua API meant to be made asynchronously: lua.c makes it
   * from a signal handler to stop a running script, LuaLanes from another thread to cancel a
   * lane. It only stores the hook and sets trap flags that the worker's VM polls. */
  lua_sethook(ws->Ls[worker], stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void wset_free(wset_t *ws) {
  if (ws == NULL) return;
  for (unsigned i = 0; ws->Ls && i < ws->n; i++) {
    if (ws->Ls[i]) {
      lua_sethook(ws->Ls[i], NULL, 0, 0);
      lua_close(ws->Ls[i]);
    }
  }
  for (size_t i = 0; ws->jobs && i < ws->cap; i++) {
    msg_free(&ws->jobs[i].in);
    msg_free(&ws->jobs[i].out);
    free(ws->jobs[i].err);
  }
  free(ws->Ls);
  free(ws->jobs);
  free(ws->mem);
  free(ws);
}

/* ---- the owner: one per parallel stream ---- */

typedef struct par_s {
  rill_workers_t *pool; /* NULL once closed */
  wset_t *ws;           /* NULL once closed */
  /* The stream (borrowed): valid while pin_ref holds its userdata, which it does while jobs are
   * in flight. (A core reference of ours would read as "busy" to the binding, which would then
   * keep the stream, and so us, alive for good.) */
  rill_stream_t *s;
  int pin_ref;
  lua_State *waiter;           /* the transform's task, suspended while the pool is full */
  lua_State *flusher;          /* the flush's task, suspended until every job is back */
  int waiter_ref, flusher_ref; /* registry refs that keep those threads alive */
  lua_State *L;                /* the main state */
  unsigned n;
} par_t;

static void wake(par_t *par, lua_State **T, int *ref) {
  lua_State *t = *T;
  if (t == NULL) return;
  *T = NULL;
  luaL_unref(par->L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
  rill__task_wake(t, 0);
}

static void unpin(par_t *par) {
  if (par->pin_ref == LUA_NOREF) return;
  luaL_unref(par->L, LUA_REGISTRYINDEX, par->pin_ref);
  par->pin_ref = LUA_NOREF;
  par->s = NULL;
}

static void job_release(wset_t *ws, pjob_t *j) {
  msg_reset(&j->in);
  msg_reset(&j->out);
  free(j->err);
  j->err = NULL;
  j->par = NULL;
  j->bytes = 0;
  j->next_free = ws->free_jobs;
  ws->free_jobs = j;
}

/* Pushes the result of j into the stream (or fails it with the worker's error). */
static void deliver(par_t *par, pjob_t *j) {
  rill_stream_t *s = par->s;
  if (j->err) {
    rill_err_t *e = rill_err_new(RILL_ECALLBACK, NULL, NULL, j->err);
    rill_stream_destroy(s, e);
    rill_err_unref(e);
    return;
  }
  msg_t *m = &j->out;
  if (m->len == 0 || m->p[0] == T_NIL) return; /* nil drops the chunk */
  rill_chunk_t c;
  if (m->p[0] == T_BUF) {
    /* A buffer goes on as a view of the same memory: no copy and no Lua on this thread. */
    rill_chunk_from_view(&c, &m->v[0]);
  } else {
    /* One allocation for a small value (the job keeps its storage for the next one); a big
     * one takes the message's storage and the job starts afresh. */
    int small = m->nv == 0 && m->len <= ITEM_INLINE_MAX;
    pitem_t *it = malloc(sizeof *it + (small ? m->len : 0));
    if (it == NULL) {
      rill_stream_destroy_code(s, UV_ENOMEM);
      return;
    }
    it->refs = 1;
    if (small) {
      memcpy(it->inl, m->p, m->len);
      it->m = (msg_t){it->inl, m->len, m->len, NULL, 0, 0};
      m->len = 0;
    } else {
      it->m = *m;
      memset(m, 0, sizeof *m);
    }
    rill_chunk_from_item(&c, it, &item_ops);
  }
  rill_stream_push(s, &c);
}

static void w_done(rill_workers_t *p, rill_job_t *job, int status) {
  wset_t *ws = rill_workers_arg(p);
  pjob_t *j = RILL_CONTAINER_OF(job, pjob_t, job);
  par_t *par = status == 0 ? j->par : NULL;
  /* The stream is pinned while jobs are in flight, and a push cannot free it (a destroyed
   * stream lives until "close", which comes from a later tick). */
  if (par) deliver(par, j);
  job_release(ws, j);
  /* The push above may have run Lua that destroyed the stream (closing the pool) or even
   * collected par: ws->par, cleared when par closes the pool, tells. */
  if (par && ws->par == par) {
    size_t in_flight = rill_workers_in_flight(p);
    /* The transform waits until the pool is half empty, so that it refills it in a burst and
     * each wake-up of a task moves many items rather than one. */
    if (par->waiter && in_flight <= rill_workers_capacity(p) / 2)
      wake(par, &par->waiter, &par->waiter_ref);
    if (in_flight == 0) {
      wake(par, &par->flusher, &par->flusher_ref);
      unpin(par);
    }
  }
}

static void w_fini(rill_workers_t *p) {
  wset_t *ws = rill_workers_arg(p);
  if (ws->par) {
    ws->par->pool = NULL;
    ws->par->ws = NULL;
  }
  wset_free(ws);
}

static const rill_workers_ops_t worker_ops = {w_work, w_done, w_interrupt, w_fini};

/* Stops the workers (idempotent) and lets suspended hooks return. */
static void par_close(par_t *par) {
  if (par->pool) {
    rill_workers_t *p = par->pool;
    par->ws->par = NULL;
    par->pool = NULL;
    par->ws = NULL;
    rill_workers_close(p);
  }
  wake(par, &par->waiter, &par->waiter_ref);
  wake(par, &par->flusher, &par->flusher_ref);
  unpin(par);
}

static int par_gc(lua_State *L) {
  par_close(luaL_checkudata(L, 1, PAR_MT));
  return 0;
}

/* ---- the stream's hooks ---- */

/* transform(self, chunk, push): hands chunk to the pool; waits while the pool is full. */
static int h_transform(lua_State *L) {
  par_t *par = luaL_checkudata(L, lua_upvalueindex(1), PAR_MT);
  if (par->pool == NULL) return 0; /* destroyed: chunks are dropped */
  wset_t *ws = par->ws;
  pjob_t *j = ws->free_jobs;
  if (j == NULL) return luaL_error(L, "stream.parallel: no free job (internal error)");
  if (par->pin_ref == LUA_NOREF) {
    /* Jobs are about to be in flight: keep the stream (self) alive until they are back. */
    par->s = rill__checkstream(L, 1);
    lua_pushvalue(L, 1);
    par->pin_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  enc_t e;
  if (encode(L, 2, &j->in, "fn's argument", &e)) {
    if (rill_workers_in_flight(par->pool) == 0) unpin(par);
    lua_pushstring(L, e.err);
    return lua_error(L);
  }
  ws->free_jobs = j->next_free;
  j->par = par;
  for (size_t i = 0; i < j->in.nv; i++) j->bytes += j->in.v[i].len;
  int r = rill_workers_submit(par->pool, &j->job);
  if (r) {
    job_release(ws, j);
    if (rill_workers_in_flight(par->pool) == 0) unpin(par);
    return luaL_error(L, "stream.parallel: %s", rill_strerror(r));
  }
  if (rill_workers_in_flight(par->pool) < rill_workers_capacity(par->pool)) return 0;
  /* Full: this write is acknowledged when a result frees a slot (backpressure). */
  rill__task_check(L, "stream.parallel");
  lua_pushthread(L);
  par->waiter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  par->waiter = L;
  return rill__task_wait(L);
}

/* flush(self, push): the stream ends once every job has come back. */
static int h_flush(lua_State *L) {
  par_t *par = luaL_checkudata(L, lua_upvalueindex(1), PAR_MT);
  if (par->pool == NULL || rill_workers_in_flight(par->pool) == 0) return 0;
  rill__task_check(L, "stream.parallel");
  lua_pushthread(L);
  par->flusher_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  par->flusher = L;
  return rill__task_wait(L);
}

/* destroy(self, err, done): stops the workers, then done(err). */
static int h_destroy(lua_State *L) {
  par_t *par = luaL_checkudata(L, lua_upvalueindex(1), PAR_MT);
  par_close(par);
  lua_settop(L, 3);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 2);
  lua_call(L, 1, 0); /* done(err) */
  return 0;
}

/* ---- making the worker states ---- */

typedef struct {
  const char *code; /* fn dumped, or NULL */
  size_t len;
  const char *modname;
  unsigned index, n;
  const rill_options *sandbox;
} setup_t;

/* In a new worker state, protected: libraries, rill (buffer), the sandbox, then fn. */
static int worker_setup(lua_State *W) {
  const setup_t *su = lua_touserdata(W, 1);
  luaL_openlibs(W);
  luaL_getsubtable(W, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(W, rill__open_buffer);
  lua_setfield(W, -2, "rill.buffer");
  lua_pop(W, 1);
  /* A small rill: the pure modules (no loop, no I/O) and who this worker is. */
  lua_createtable(W, 0, 4);
  luaL_requiref(W, "rill.buffer", rill__open_buffer, 0);
  lua_setfield(W, -2, "buffer");
  lua_pushinteger(W, su->index + 1);
  lua_setfield(W, -2, "worker"); /* rill.worker: 1..n */
  lua_pushinteger(W, su->n);
  lua_setfield(W, -2, "workers");
  lua_pushliteral(W, RILL_VERSION);
  lua_setfield(W, -2, "version");
  luaL_getsubtable(W, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(W, -2);
  lua_setfield(W, -2, "rill"); /* package.loaded.rill = rill */
  lua_pop(W, 1);
  lua_setglobal(W, "rill"); /* as in scripts that the rill command runs */
  if (su->sandbox) rill__sandbox_open(W, su->sandbox);
  if (su->code) {
    /* Our own dump of the caller's function, so loading bytecode here is safe even where the
     * sandbox denies bytecode to scripts. Its first upvalue (_ENV) becomes our globals. */
    if (luaL_loadbufferx(W, su->code, su->len, "=(parallel fn)", "b") != LUA_OK)
      return lua_error(W);
  } else {
    lua_getglobal(W, "require");
    lua_pushstring(W, su->modname);
    lua_call(W, 1, 1);
    if (!lua_isfunction(W, -1)) {
      return luaL_error(W, "module '%s' returned a %s, not a function", su->modname,
                        luaL_typename(W, -1));
    }
  }
  lua_rawsetp(W, LUA_REGISTRYINDEX, &FN_KEY);
  return 0;
}

/* lua_dump's writer: appends to a msg_t used as a plain byte buffer. (A luaL_Buffer cannot be
 * used: it may push onto the stack, and lua_dump needs the function on top.) */
static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  return msg_put(ud, p, sz) ? 1 : 0;
}

/* Raises "bad argument #arg to 'parallel' (msg)": the user calls stream.parallel. */
static int argerr(lua_State *L, int arg, const char *msg) {
  return luaL_error(L, "bad argument #%d to 'parallel' (%s)", arg, msg);
}

/* Checks fn (at idx) and pushes its dump: a Lua function that uses no upvalue but _ENV. */
static void dump_fn(lua_State *L, int idx) {
  if (lua_iscfunction(L, idx))
    argerr(L, idx,
           "a C function cannot be copied into a worker; pass a Lua function or a module "
           "name");
  for (int i = 1;; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    if (name == NULL) break;
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0) {
      const char *msg = lua_pushfstring(
          L,
          "fn uses '%s', a local variable from outside itself (an upvalue); each worker has "
          "its own Lua state and cannot see it: use globals, require, or a module name",
          *name ? name : "?");
      argerr(L, idx, msg);
    }
  }
  msg_t b = {0};
  lua_pushvalue(L, idx);
  int r = lua_dump(L, dump_writer, &b, 0); /* keep debug info: tracebacks name the lines */
  lua_pop(L, 1);
  if (r != 0) {
    msg_free(&b);
    luaL_error(L, "not enough memory");
  }
  lua_pushlstring(L, (const char *)b.p, b.len); /* raises only when out of memory: then b leaks */
  msg_free(&b);
}

/* ---- rill._parallel.new(n, fn [, opts]) ---- */

static int l_new(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  int isnum;
  lua_Integer n = lua_tointegerx(L, 1, &isnum);
  if (!isnum || n < 0 || n > MAX_WORKERS)
    argerr(L, 1, "number of workers expected: an integer from 0 (one per core) to 256");
  int t = lua_type(L, 2);
  if (t != LUA_TFUNCTION && t != LUA_TSTRING)
    argerr(L, 2,
           lua_pushfstring(L, "function or module name expected, got %s", luaL_typename(L, 2)));
  lua_Integer k = DEFAULT_PER_WORKER;
  if (!lua_isnoneornil(L, 3)) {
    if (!lua_istable(L, 3)) argerr(L, 3, "table expected");
    if (lua_getfield(L, 3, "per_worker") != LUA_TNIL) {
      k = lua_tointegerx(L, -1, &isnum);
      if (!isnum || k < 1 || k > 1024) argerr(L, 3, "per_worker must be an integer in 1..1024");
    }
    lua_pop(L, 1);
  }
  if (n == 0) n = rill_workers_default_count();
  if (n > MAX_WORKERS) n = MAX_WORKERS;
  setup_t su = {NULL, 0, NULL, 0, (unsigned)n, ctx->sandbox};
  if (t == LUA_TFUNCTION) {
    dump_fn(L, 2);
    su.code = lua_tolstring(L, -1, &su.len);
  } else {
    su.modname = lua_tostring(L, 2);
  }

  /* The owner userdata first, so that anything acquired below is freed by its __gc if a later
   * step raises. */
  par_t *par = lua_newuserdatauv(L, sizeof *par, 0);
  memset(par, 0, sizeof *par);
  par->waiter_ref = par->flusher_ref = par->pin_ref = LUA_NOREF;
  par->L = ctx->L;
  par->n = (unsigned)n;
  luaL_setmetatable(L, PAR_MT);
  int par_idx = lua_gettop(L);

  wset_t *ws = calloc(1, sizeof *ws);
  if (ws == NULL) return luaL_error(L, "not enough memory");
  ws->n = (unsigned)n;
  ws->cap = (size_t)n * (size_t)k;
  ws->Ls = calloc((size_t)n, sizeof *ws->Ls);
  ws->jobs = calloc(ws->cap, sizeof *ws->jobs);
  if (ctx->sandbox && ctx->sandbox->max_memory) ws->mem = calloc((size_t)n, sizeof *ws->mem);
  if (ws->Ls == NULL || ws->jobs == NULL ||
      (ctx->sandbox && ctx->sandbox->max_memory && !ws->mem)) {
    wset_free(ws);
    return luaL_error(L, "not enough memory");
  }
  if (ctx->sandbox) ws->max_instructions = ctx->sandbox->max_instructions;
  ws->acct = rill_slab_account_use(NULL); /* this thread's current account: the engine's */
  rill_slab_account_use(ws->acct);
  for (size_t i = ws->cap; i-- > 0;) {
    ws->jobs[i].next_free = ws->free_jobs;
    ws->free_jobs = &ws->jobs[i];
  }
  for (unsigned i = 0; i < (unsigned)n; i++) {
    lua_State *W = luaL_newstate();
    if (W == NULL) {
      wset_free(ws);
      return luaL_error(L, "not enough memory");
    }
    ws->Ls[i] = W;
    if (ws->mem) {
      ws->mem[i].cap = ctx->sandbox->max_memory;
      ws->mem[i].used = (size_t)lua_gc(W, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(W, LUA_GCCOUNTB);
      lua_setallocf(W, capped_alloc, &ws->mem[i]);
    }
    su.index = i;
    lua_pushcfunction(W, worker_setup);
    lua_pushlightuserdata(W, &su);
    if (lua_pcall(W, 1, 0, 0) != LUA_OK) {
      lua_pushfstring(L, "stream.parallel: cannot set up a worker: %s", lua_tostring(W, -1));
      wset_free(ws);
      return lua_error(L);
    }
  }
  lua_settop(L, par_idx);

  int r = rill_workers_new(&ctx->loop, (unsigned)n, (unsigned)k, &worker_ops, ws, &par->pool);
  if (r) {
    wset_free(ws);
    return luaL_error(L, "stream.parallel: cannot start the workers: %s", rill_strerror(r));
  }
  par->ws = ws;
  ws->par = par;

  /* The stream: stream.transform{object_mode = true, transform =, flush =, destroy =}. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "rill.stream");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "transform");
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "object_mode");
  lua_pushvalue(L, par_idx);
  lua_pushcclosure(L, h_transform, 1);
  lua_setfield(L, -2, "transform");
  lua_pushvalue(L, par_idx);
  lua_pushcclosure(L, h_flush, 1);
  lua_setfield(L, -2, "flush");
  lua_pushvalue(L, par_idx);
  lua_pushcclosure(L, h_destroy, 1);
  lua_setfield(L, -2, "destroy");
  lua_call(L, 1, 1); /* the stream; its hooks hold par */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATS_KEY);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, par_idx);
  lua_rawset(L, -3); /* stats[stream] = par, for in_flight() */
  lua_pop(L, 1);
  return 1;
}

/* in_flight(stream) -> jobs in the pool now, its capacity, the number of workers (tests and
 * monitoring); nil when the stream is not a parallel stream. */
static int l_in_flight(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATS_KEY);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  par_t *par = luaL_testudata(L, -1, PAR_MT);
  if (par == NULL) return 0;
  lua_pushinteger(L, par->pool ? (lua_Integer)rill_workers_in_flight(par->pool) : 0);
  lua_pushinteger(L, par->pool ? (lua_Integer)rill_workers_capacity(par->pool) : 0);
  lua_pushinteger(L, par->n);
  return 3;
}

static const luaL_Reg funcs[] = {
    {"new", l_new},
    {"in_flight", l_in_flight},
    {NULL, NULL},
};

int rill__open_parallel(lua_State *L) {
  rill__register_item(&item_ops, item_push);
  if (luaL_newmetatable(L, PAR_MT)) {
    lua_pushcfunction(L, par_gc);
    lua_setfield(L, -2, "__gc"); /* mt.__gc = par_gc */
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &STATS_KEY);
  luaL_newlib(L, funcs);
  return 1;
}
