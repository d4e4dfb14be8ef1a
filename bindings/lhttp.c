/* bindings/lhttp.c: rill._http: the native HTTP server and client, for lua/rill/http.lua. */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "lrill.h"
#include "stream.h"

#define HTTP_SERVER_MT "rill.http_server"

typedef struct {
  rill_http_server_t *srv;
  rill_ctx_t *ctx;
  int self_ref;    /* pins the userdata while it listens */
  int handler_ref; /* fn(req, res) */
} hserver_t;

/* res:status(code) -> res */
static int l_status(lua_State *L) {
  rill_stream_t *s = rill__checkstream(L, 1);
  lua_Integer code = luaL_checkinteger(L, 2);
  luaL_argcheck(L, code >= 100 && code <= 999, 2, "status code out of range");
  int r = rill_http_res_status(s, (int)code);
  if (r == RILL_ESTREAM_ALREADY_FINISHED) return luaL_error(L, "status: headers already sent");
  luaL_argcheck(L, r == 0, 1, "not an HTTP response");
  lua_settop(L, 1);
  return 1;
}

/* res:header(name, value) -> res */
static int l_header(lua_State *L) {
  rill_stream_t *s = rill__checkstream(L, 1);
  const char *name = luaL_checkstring(L, 2);
  const char *value = luaL_tolstring(L, 3, NULL);
  int r = rill_http_res_header(s, name, value);
  if (r == RILL_ESTREAM_ALREADY_FINISHED) return luaL_error(L, "header: headers already sent");
  if (r == UV_ENOMEM) return luaL_error(L, "not enough memory");
  luaL_argcheck(L, r == 0, 2, "invalid header name or value");
  lua_settop(L, 1);
  return 1;
}

static void push_head(lua_State *L, const rill_http_head_t *h) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, h->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, h->path);
  lua_setfield(L, -2, "path");
  lua_pushfstring(L, "%d.%d", h->version_major, h->version_minor);
  lua_setfield(L, -2, "http_version");
  lua_createtable(L, 0, (int)h->nheaders);
  for (size_t i = 0; i < h->nheaders; i++) {
    const rill_http_header_t *x = &h->headers[i];
    lua_pushlstring(L, x->name, x->name_len);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      /* Repeated headers are joined with ", " (Node joins most of them the same way). */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, x->value, x->value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, x->value, x->value_len);
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
}

static void on_request(rill_http_server_t *srv, rill_stream_t *req, rill_stream_t *res,
                       const rill_http_head_t *head, void *arg) {
  hserver_t *hs = arg;
  lua_State *L = hs->ctx->L;
  lua_checkstack(L, 8);
  lua_rawgeti(L, LUA_REGISTRYINDEX, hs->handler_ref);
  rill__pushstream(L, req);
  push_head(L, head);
  char ip[64];
  int port;
  if (rill_http_peer(req, ip, sizeof ip, &port) == 0) {
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "remote_address");
    lua_pushinteger(L, port);
    lua_setfield(L, -2, "remote_port");
  }
  rill__setstreamfields(L, -2);
  rill__pushstream(L, res);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, l_status);
  lua_setfield(L, -2, "status");
  lua_pushcfunction(L, l_header);
  lua_setfield(L, -2, "header");
  rill__setstreamfields(L, -2);
  rill__callback(L, 2);
}

static hserver_t *check_server(lua_State *L) {
  return luaL_checkudata(L, 1, HTTP_SERVER_MT);
}

static int l_close(lua_State *L) {
  hserver_t *hs = check_server(L);
  if (hs->srv) rill_http_server_close(hs->srv);
  luaL_unref(L, LUA_REGISTRYINDEX, hs->self_ref);
  hs->self_ref = LUA_NOREF;
  return 0;
}

static int l_gc(lua_State *L) {
  hserver_t *hs = lua_touserdata(L, 1);
  rill_http_server_free(hs->srv);
  hs->srv = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, hs->handler_ref);
  hs->handler_ref = LUA_NOREF;
  return 0;
}

static int l_index(lua_State *L) {
  hserver_t *hs = check_server(L);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "port") == 0 && hs->srv)
    lua_pushinteger(L, rill_http_server_port(hs->srv));
  else if (strcmp(k, "close") == 0)
    lua_pushcfunction(L, l_close);
  else
    lua_pushnil(L);
  return 1;
}

/* listen(host, port, handler, max_header_size, headers_timeout, keepalive_timeout) -> server,
 * or nil, err (timeouts in ms, 0 for the defaults) */
static int l_listen(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  const char *host = luaL_optstring(L, 1, "127.0.0.1");
  lua_Integer port = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_Integer maxh = luaL_optinteger(L, 4, 0);
  luaL_argcheck(L, maxh >= 0 && maxh <= (1 << 24), 4, "max_header_size out of range");
  lua_Integer hto = luaL_optinteger(L, 5, 0), kto = luaL_optinteger(L, 6, 0);
  luaL_argcheck(L, hto >= 0 && hto <= 86400000, 5, "headers_timeout out of range");
  luaL_argcheck(L, kto >= 0 && kto <= 86400000, 6, "keepalive_timeout out of range");
  hserver_t *hs = lua_newuserdatauv(L, sizeof *hs, 0);
  memset(hs, 0, sizeof *hs);
  hs->ctx = ctx;
  hs->self_ref = hs->handler_ref = LUA_NOREF;
  luaL_setmetatable(L, HTTP_SERVER_MT);
  rill_http_server_opts_t o = {host, (int)port, (size_t)maxh, (unsigned)hto, (unsigned)kto};
  int r = rill_http_listen(&ctx->loop, &o, on_request, hs, &hs->srv);
  if (r) return rill__fail(L, r, "listen", NULL);
  lua_pushvalue(L, 3);
  hs->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  hs->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* ---- client ---- */

#define AGENT_MT "rill.http_agent"

typedef struct {
  rill_http_agent_t *a;
} hagent_t;

/* agent([idle_timeout_ms [, max_idle]]) -> agent (0: the defaults) */
static int l_agent(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  lua_Integer idle = luaL_optinteger(L, 1, 0), max = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, idle >= 0 && idle <= 86400000, 1, "idle_timeout out of range");
  luaL_argcheck(L, max >= 0 && max <= 100000, 2, "max_idle out of range");
  hagent_t *ha = lua_newuserdatauv(L, sizeof *ha, 0);
  ha->a = NULL;
  luaL_setmetatable(L, AGENT_MT);
  rill_http_agent_opts_t o = {(unsigned)idle, (size_t)max};
  int r = rill_http_agent_new(&ctx->loop, &o, &ha->a);
  if (r) return rill__fail(L, r, "agent", NULL);
  return 1;
}

static hagent_t *check_agent(lua_State *L, int i) {
  hagent_t *ha = luaL_checkudata(L, i, AGENT_MT);
  if (ha->a == NULL) luaL_argerror(L, i, "agent is closed");
  return ha;
}

/* agent:close(): closes its idle connections */
static int l_agent_close(lua_State *L) {
  rill_http_agent_close(check_agent(L, 1)->a);
  return 0;
}

/* agent:idle() -> number of idle connections */
static int l_agent_idle(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rill_http_agent_idle(check_agent(L, 1)->a));
  return 1;
}

static int l_agent_gc(lua_State *L) {
  hagent_t *ha = lua_touserdata(L, 1);
  rill_http_agent_free(ha->a);
  ha->a = NULL;
  return 0;
}

#define WAITER_MT "rill.http_waiter"

/* The pending response of a request: the C callback may come before or after wait(), and
 * after the waiter userdata was collected, so the state is shared and refcounted. */
typedef struct {
  rill_ctx_t *ctx;
  lua_State *T; /* the task in wait(), or NULL */
  int res_ref;  /* the response stream, or LUA_NOREF */
  int err_ref;  /* the error value, or LUA_NOREF */
  int done;
  int refs; /* the userdata and the pending callback */
} wstate_t;

typedef struct {
  wstate_t *st;
} waiter_t;

static void wstate_unref(lua_State *L, wstate_t *st) {
  if (--st->refs > 0) return;
  luaL_unref(L, LUA_REGISTRYINDEX, st->res_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, st->err_ref);
  free(st);
}

static void on_response(rill_stream_t *res, const rill_http_head_t *head, rill_err_t *err,
                        void *arg) {
  wstate_t *st = arg;
  lua_State *L = st->ctx->L;
  st->done = 1;
  if (st->refs == 1) {
    /* Nobody can wait for it any more. */
    rill_stream_unref(res);
    wstate_unref(L, st);
    return;
  }
  lua_checkstack(L, 6);
  if (res) {
    rill__pushstream(L, res);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, head->status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, head->reason);
    lua_setfield(L, -2, "reason");
    lua_pushfstring(L, "%d.%d", head->version_major, head->version_minor);
    lua_setfield(L, -2, "http_version");
    push_head(L, head);
    lua_getfield(L, -1, "headers");
    lua_remove(L, -2);
    lua_setfield(L, -2, "headers");
    rill__setstreamfields(L, -2);
    st->res_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    rill__pushstreamerr(L, err);
    st->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (st->T) {
    lua_State *T = st->T;
    st->T = NULL;
    if (st->res_ref != LUA_NOREF) {
      lua_rawgeti(T, LUA_REGISTRYINDEX, st->res_ref);
      rill__task_wake(T, 1);
    } else {
      lua_pushnil(T);
      lua_rawgeti(T, LUA_REGISTRYINDEX, st->err_ref);
      rill__task_wake(T, 2);
    }
  }
  wstate_unref(L, st);
}

/* waiter:wait() -> response, or nil, err (in a task) */
static int l_wait(lua_State *L) {
  waiter_t *w = luaL_checkudata(L, 1, WAITER_MT);
  wstate_t *st = w->st;
  if (st->done) {
    if (st->res_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, st->res_ref);
      return 1;
    }
    lua_pushnil(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->err_ref);
    return 2;
  }
  if (st->T) return luaL_error(L, "request: already waited for");
  rill__task_check(L, "request");
  st->T = L;
  return rill__task_wait(L);
}

static int l_waiter_gc(lua_State *L) {
  waiter_t *w = lua_touserdata(L, 1);
  if (w->st) wstate_unref(L, w->st);
  w->st = NULL;
  return 0;
}

/* request(method, host, port, path, {name, value, ...}, content_length, timeout_ms [, agent])
 * -> request body stream, waiter; content_length: >= 0, -1 chunked, -2 no body. */
static int l_request(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  rill_http_request_opts_t o;
  memset(&o, 0, sizeof o);
  o.method = luaL_checkstring(L, 1);
  o.host = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  luaL_argcheck(L, port > 0 && port <= 65535, 3, "port out of range");
  o.port = (int)port;
  o.path = luaL_checkstring(L, 4);
  luaL_checktype(L, 5, LUA_TTABLE);
  lua_Integer len = luaL_checkinteger(L, 6);
  luaL_argcheck(L, len >= RILL_HTTP_NO_BODY, 6, "bad content length");
  o.content_length = len;
  lua_Integer to = luaL_optinteger(L, 7, 0);
  luaL_argcheck(L, to >= 0 && to <= 86400000, 7, "timeout out of range");
  o.timeout_ms = (unsigned)to;
  if (!lua_isnoneornil(L, 8)) o.agent = check_agent(L, 8)->a;
  lua_Integer n = luaL_len(L, 5);
  luaL_argcheck(L, n % 2 == 0 && n < 2000, 5, "bad header list");
  const char **hs = lua_newuserdatauv(L, sizeof *hs * (size_t)(n + 1), 0); /* freed by GC */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 5, i);
    hs[i - 1] = lua_tostring(L, -1);
    luaL_argcheck(L, hs[i - 1] != NULL, 5, "header names and values must be strings");
    lua_pop(L, 1); /* the string stays alive in the table */
  }
  o.headers = hs;
  o.nheaders = (size_t)n / 2;
  waiter_t *w = lua_newuserdatauv(L, sizeof *w, 0);
  w->st = NULL;
  luaL_setmetatable(L, WAITER_MT);
  wstate_t *st = calloc(1, sizeof *st);
  if (st == NULL) return luaL_error(L, "not enough memory");
  st->ctx = ctx;
  st->res_ref = st->err_ref = LUA_NOREF;
  st->refs = 1;
  w->st = st;
  rill_stream_t *req;
  int r = rill_http_request(&ctx->loop, &o, on_response, st, &req);
  if (r == UV_EINVAL) return luaL_error(L, "request: invalid method, path or header");
  if (r) return rill__fail(L, r, "request", NULL);
  st->refs++; /* the pending callback's */
  rill__pushstream(L, req);
  lua_insert(L, -2);
  return 2;
}

int rill__open_http(lua_State *L) {
  rill__ctx(L);
  rill__require_streams(L);
  if (luaL_newmetatable(L, HTTP_SERVER_MT)) {
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, WAITER_MT)) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_wait);
    lua_setfield(L, -2, "wait");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_waiter_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, AGENT_MT)) {
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_agent_close);
    lua_setfield(L, -2, "close");
    lua_pushcfunction(L, l_agent_idle);
    lua_setfield(L, -2, "idle");
    lua_setfield(L, -2, "__index"); /* mt.__index = methods */
    lua_pushcfunction(L, l_agent_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
      {"listen", l_listen}, {"request", l_request}, {"agent", l_agent}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
