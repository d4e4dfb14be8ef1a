/* bindings/ludp.c: rill.udp: sockets whose readable side gives {data, host, port} messages. */
#include <string.h>

#include "lrill.h"
#include "udp.h"

/* How Lua sees a received message: {data = buffer, host = "...", port = n}. */
static void push_msg(lua_State *L, void *item) {
  rill_udp_msg_t *m = item;
  lua_createtable(L, 0, 3);
  rill_view_t v = {NULL, 0, 0};
  if (m->data.len) rill_view_slice(&v, &m->data, 0, m->data.len);
  rill__pushbuffer(L, &v);
  lua_setfield(L, -2, "data");
  lua_pushstring(L, m->host);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, m->port);
  lua_setfield(L, -2, "port");
}

/* sock:send(data, host, port): true, or nil, err (EMSGSIZE for a datagram that is too big). */
static int l_send(lua_State *L) {
  rill_stream_t *s = rill__checkstream(L, 1);
  size_t len;
  rill_view_t tmp = {NULL, 0, 0}, *v = rill__tobuffer(L, 2);
  const char *p = v ? NULL : rill__checkbytes(L, 2, &len);
  const char *host = luaL_checkstring(L, 3);
  lua_Integer port = luaL_checkinteger(L, 4);
  luaL_argcheck(L, port > 0 && port <= 65535, 4, "port out of range");
  luaL_argcheck(L, rill_udp_is(s), 1, "not a UDP socket");
  if (v == NULL) {
    if (len && rill_view_from(&tmp, p, len) != 0) return luaL_error(L, "not enough memory");
    v = &tmp;
  }
  int r = rill_udp_send(s, v, host, (int)port, NULL, NULL);
  rill_view_release(&tmp);
  if (r < 0) return rill__fail(L, r, "send", NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* udp.bind{host, port, reuse_address} -> socket, or nil, err. sock:destroy() closes it. */
static int l_bind(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  const char *host = rill__opt_str(L, 1, "host", "127.0.0.1");
  lua_Integer port = rill__opt_int(L, 1, "port", 0);
  luaL_argcheck(L, port >= 0 && port <= 65535, 1, "port out of range");
  unsigned flags = rill__opt_bool(L, 1, "reuse_address", 0) ? RILL_UDP_REUSEADDR : 0;
  rill_stream_t *s;
  int r = rill_udp_bind(&ctx->loop, host, (int)port, flags, &s);
  if (r) return rill__fail(L, r, "bind", NULL);
  rill__pushstream(L, s);
  char ip[64];
  int bport = 0;
  lua_createtable(L, 0, 4);
  if (rill_udp_address(s, ip, sizeof ip, &bport) == 0) {
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "address");
    lua_pushinteger(L, bport);
    lua_setfield(L, -2, "port");
  }
  lua_pushcfunction(L, l_send);
  lua_setfield(L, -2, "send");
  rill__setstreamfields(L, -2);
  return 1;
}

int rill__open_udp(lua_State *L) {
  rill__ctx(L);
  rill__require_streams(L);
  rill__register_item(&rill_udp_msg_ops, push_msg);
  lua_newtable(L);
  lua_pushcfunction(L, l_bind);
  lua_setfield(L, -2, "bind");
  return 1;
}
