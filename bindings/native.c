/* bindings/native.c: native transforms: transforms written in C by a host, registered in an
 * engine and used from Lua as rill.native.<name>([options]) streams like any other. */
#include <stdlib.h>
#include <string.h>

#include "lrill.h"
#include "rill.h"
#include "stream.h"

#define NAME_MAX_LEN 63

/* A registration, kept as the userdata upvalue of the constructor. Instances copy it: a stream
 * may outlive the constructor when the engine closes. */
typedef struct {
  rill_transform_def def;
  char name[NAME_MAX_LEN + 1];
} reg_t;

struct rill_xform_s {
  reg_t reg;
  void *state;
  rill_stream_t *s;
  const rill_view_t *in; /* the chunk being transformed (borrowed), or NULL */
  rill_view_t res;       /* the uncommitted reservation */
  char *errmsg;          /* set by rill_xform_set_error for the running hook */
  int active;            /* inside transform or flush: pushes are allowed */
  int inited;            /* init ran: free must run */
};

static void xform_free(rill_xform *x) {
  if (x->inited && x->reg.def.free) x->reg.def.free(x);
  rill_view_release(&x->res);
  free(x->errmsg);
  free(x->state);
  free(x);
}

/* The error a hook returned (r != 0): its code when it is libuv's range, else ERR_CALLBACK;
 * the message names the transform. NULL for r == 0. Clears the hook's message. */
static rill_err_t *hook_err(rill_xform *x, int r) {
  rill_err_t *e = NULL;
  if (r != 0) {
    int code = r < 0 && r > -4096 ? r : RILL_ECALLBACK;
    const char *msg = x->errmsg ? x->errmsg : rill_strerror(code);
    size_t n = strlen(x->reg.name) + strlen(msg) + 16;
    char *full = malloc(n);
    if (full) snprintf(full, n, "rill.native.%s: %s", x->reg.name, msg);
    e = rill_err_new(code, NULL, NULL, full ? full : msg);
    free(full);
  }
  free(x->errmsg);
  x->errmsg = NULL;
  return e;
}

/* ---- the stream implementation ---- */

static void nx_transform(rill_stream_t *s, const rill_chunk_t *c) {
  rill_xform *x = rill_stream_data(s);
  x->in = &c->view;
  x->active = 1;
  int r = x->reg.def.transform(x, rill_view_data(&c->view), c->view.len);
  x->active = 0;
  x->in = NULL;
  rill_view_release(&x->res);
  rill_err_t *e = hook_err(x, r);
  rill_stream_write_done(s, e);
  rill_err_unref(e);
}

static void nx_flush(rill_stream_t *s) {
  rill_xform *x = rill_stream_data(s);
  int r = 0;
  if (x->reg.def.flush) {
    x->active = 1;
    r = x->reg.def.flush(x);
    x->active = 0;
    rill_view_release(&x->res);
  }
  rill_err_t *e = hook_err(x, r);
  rill_stream_final_done(s, e);
  rill_err_unref(e);
}

static void nx_free(rill_stream_t *s) {
  xform_free(rill_stream_data(s));
}

static const rill_stream_impl_t native_impl = {
    .transform = nx_transform, .flush = nx_flush, .free = nx_free};

/* ---- outputs ---- */

static int push_view(rill_xform *x, rill_view_t *v) {
  rill_chunk_t c;
  rill_chunk_from_view(&c, v);
  int r = rill_stream_push(x->s, &c); /* 0 at the high-water mark: the core holds the write */
  return r < 0 ? r : 0;
}

RILL_API void *rill_xform_state(rill_xform *x) {
  return x->state;
}

RILL_API void *rill_xform_arg(rill_xform *x) {
  return x->reg.def.arg;
}

RILL_API int rill_xform_push_input(rill_xform *x, size_t off, size_t len) {
  if (!x->active || x->in == NULL || off > x->in->len || len > x->in->len - off) return UV_EINVAL;
  if (len == 0) return 0;
  rill_view_t v;
  rill_view_slice(&v, x->in, off, len); /* a reference on the input's slab: no copy */
  return push_view(x, &v);
}

RILL_API unsigned char *rill_xform_reserve(rill_xform *x, size_t len) {
  rill_view_release(&x->res);
  if (!x->active || len == 0) return NULL;
  if (rill_view_alloc(&x->res, len) != 0) return NULL;
  return rill_view_data(&x->res);
}

RILL_API int rill_xform_commit(rill_xform *x, size_t n) {
  if (!x->active || x->res.slab == NULL || n > x->res.len) return UV_EINVAL;
  rill_view_t v = x->res;
  x->res.slab = NULL;
  x->res.off = x->res.len = 0;
  if (n == 0) {
    rill_view_release(&v);
    return 0;
  }
  v.len = n;
  return push_view(x, &v);
}

RILL_API int rill_xform_push(rill_xform *x, const void *p, size_t len) {
  if (!x->active) return UV_EINVAL;
  if (len == 0) return 0;
  rill_view_t v;
  if (rill_view_from(&v, p, len) != 0) return UV_ENOMEM;
  return push_view(x, &v);
}

RILL_API void rill_xform_set_error(rill_xform *x, const char *message) {
  free(x->errmsg);
  x->errmsg = message ? strdup(message) : NULL;
}

/* ---- Lua: rill.native.<name>([options]) ---- */

static int pinit(lua_State *L) {
  rill_xform *x = lua_touserdata(L, 1);
  x->inited = 1;
  lua_pushinteger(L, x->reg.def.init(x, L, 2));
  return 1;
}

static int l_new(lua_State *L) {
  const reg_t *reg = lua_touserdata(L, lua_upvalueindex(1));
  rill_ctx_t *ctx = rill__ctx(L);
  lua_settop(L, 1); /* the options, or nil */
  /* The stream methods (pipe, collect, chunks, on...) come with rill.stream. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "rill.stream");
  lua_call(L, 1, 0);
  rill_xform *x = calloc(1, sizeof *x);
  if (x == NULL || (x->state = calloc(1, reg->def.state_size ? reg->def.state_size : 1)) == NULL) {
    free(x);
    return luaL_error(L, "not enough memory");
  }
  x->reg = *reg;
  x->reg.def.name = x->reg.name;
  x->inited = reg->def.init == NULL; /* free runs for every instance that got past init */
  if (reg->def.init) {
    /* Protected: init may raise (luaL_check* on the options), and x must not leak then. */
    lua_pushcfunction(L, pinit);
    lua_pushlightuserdata(L, x);
    lua_pushvalue(L, 1);
    int st = lua_pcall(L, 2, 1, 0);
    int r = st == LUA_OK ? (int)lua_tointeger(L, -1) : 0;
    if (st != LUA_OK || r != 0) {
      rill_err_t *e = st == LUA_OK ? hook_err(x, r) : NULL;
      xform_free(x);
      if (st != LUA_OK) return lua_error(L);
      rill__pusherr(L, e->code, NULL, NULL);
      lua_pushstring(L, rill_err_message(e));
      lua_setfield(L, -2, "message"); /* err.message = "rill.native.<name>: ..." */
      rill_err_unref(e);
      return lua_error(L);
    }
    lua_pop(L, 1);
  }
  rill_stream_opts_t o = {RILL_STREAM_DUPLEX, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  if (rill_stream_new(&ctx->loop, &native_impl, x, &o, &x->s) != 0) {
    xform_free(x);
    return luaL_error(L, "not enough memory");
  }
  rill__pushstream(L, x->s); /* takes our reference; on failure the stream frees x */
  return 1;
}

static int valid_name(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > NAME_MAX_LEN || (name[0] >= '0' && name[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return 1;
}

/* Sets rill.native[name] (raw: a sandbox's wrapper of the rill table stays out of the way). */
static int pregister(lua_State *L) {
  const rill_transform_def *def = lua_touserdata(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "rill") != LUA_TTABLE) return luaL_error(L, "rill is not open");
  if (lua_getfield(L, -1, "native") == LUA_TNIL) { /* the rill table's __index gives nil */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "native"); /* rill.native = {} */
  }
  if (lua_getfield(L, -1, def->name) != LUA_TNIL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pop(L, 1);
  reg_t *reg = lua_newuserdatauv(L, sizeof *reg, 0);
  reg->def = *def;
  strcpy(reg->name, def->name);
  reg->def.name = reg->name;
  lua_pushcclosure(L, l_new, 1);
  lua_setfield(L, -2, def->name); /* rill.native[name] = constructor */
  lua_pushboolean(L, 1);
  return 1;
}

RILL_API int rill_register_transform(rill_engine *e, const rill_transform_def *def) {
  if (def == NULL || def->transform == NULL || !valid_name(def->name)) return UV_EINVAL;
  lua_State *L = rill_lua(e);
  lua_pushcfunction(L, pregister);
  lua_pushlightuserdata(L, (void *)def);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return UV_ENOMEM;
  }
  int added = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return added ? 0 : UV_EINVAL;
}
