/* bindings/lhttp.c: rill._http: the native HTTP server, for lua/rill/http.lua. */
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
  static const luaL_Reg fns[] = {{"listen", l_listen}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
