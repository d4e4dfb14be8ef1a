/* bindings/lnet.c: rill.net: TCP servers (each connection handled in a task) and connections. */
#include <stdlib.h>
#include <string.h>

#include "lrill.h"
#include "stream.h"
#include "tcp.h"

#define SERVER_MT "rill.server"

typedef struct {
  rill_tcp_server_t *srv;
  rill_ctx_t *ctx;
  int self_ref;    /* registry ref pinning the userdata while it listens */
  int handler_ref; /* on_connection */
  int error_ref;   /* on_error, or LUA_NOREF */
  int spawn_ref;   /* rill.spawn */
  int close_ref;   /* close(cb)'s cb, or LUA_NOREF */
} server_t;

/* Sets the address fields of the socket userdata on top (and its reset method). */
static int l_reset(lua_State *L) {
  rill_stream_t *s = rill__checkstream(L, 1);
  rill_tcp_reset(s);
  return 0;
}

static void set_fields(lua_State *L, rill_stream_t *s) {
  char ip[64];
  int port;
  lua_createtable(L, 0, 5);
  if (rill_tcp_address(s, 1, ip, sizeof ip, &port) == 0) {
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "remote_address");
    lua_pushinteger(L, port);
    lua_setfield(L, -2, "remote_port");
  }
  if (rill_tcp_address(s, 0, ip, sizeof ip, &port) == 0) {
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "local_address");
    lua_pushinteger(L, port);
    lua_setfield(L, -2, "local_port");
  }
  lua_pushcfunction(L, l_reset);
  lua_setfield(L, -2, "reset");
  rill__setstreamfields(L, -2);
}

/* ---- server ---- */

static void on_connection(rill_tcp_server_t *srv, int status, rill_stream_t *conn, void *arg) {
  server_t *sv = arg;
  lua_State *L = sv->ctx->L;
  lua_checkstack(L, 6);
  if (status < 0) {
    /* EMFILE and friends: the server stays up; the script may want to know. */
    if (sv->error_ref == LUA_NOREF) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, sv->error_ref);
    rill__pusherr(L, status, "accept", NULL);
    rill__callback(L, 1);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, sv->spawn_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, sv->handler_ref);
  rill__pushstream(L, conn);
  set_fields(L, conn);
  /* rill.spawn(handler, sock): each connection is a task, so it may wait. */
  rill__callback(L, 2);
}

static void unpin(lua_State *L, server_t *sv) {
  luaL_unref(L, LUA_REGISTRYINDEX, sv->self_ref);
  sv->self_ref = LUA_NOREF;
}

static void closed_cb(void *arg) {
  server_t *sv = arg;
  lua_State *L = sv->ctx->L;
  int ref = sv->close_ref;
  sv->close_ref = LUA_NOREF;
  unpin(L, sv);
  if (ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    rill__callback(L, 0);
  }
}

static server_t *check_server(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, SERVER_MT);
}

/* server:close([cb]): stop accepting; cb runs once the listening socket is closed. */
static int l_server_close(lua_State *L) {
  server_t *sv = check_server(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  if (sv->srv == NULL) return 0;
  if (!lua_isnoneornil(L, 2) && sv->close_ref == LUA_NOREF) {
    lua_pushvalue(L, 2);
    sv->close_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  rill_tcp_server_close(sv->srv, closed_cb, sv);
  return 0;
}

static int l_server_gc(lua_State *L) {
  server_t *sv = lua_touserdata(L, 1);
  if (sv->srv) {
    rill_tcp_server_free(sv->srv); /* drops the close callback: nobody to call any more */
    sv->srv = NULL;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, sv->handler_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, sv->error_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, sv->spawn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, sv->close_ref);
  sv->handler_ref = sv->error_ref = sv->spawn_ref = sv->close_ref = LUA_NOREF;
  return 0;
}

static int l_server_index(lua_State *L) {
  server_t *sv = check_server(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "port") == 0 && sv->srv) {
    lua_pushinteger(L, rill_tcp_server_port(sv->srv));
  } else if (strcmp(k, "host") == 0 && sv->srv) {
    lua_pushstring(L, rill_tcp_server_host(sv->srv));
  } else if (strcmp(k, "close") == 0) {
    lua_pushcfunction(L, l_server_close);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int l_server_tostring(lua_State *L) {
  server_t *sv = check_server(L, 1);
  if (sv->srv) {
    lua_pushfstring(L, "rill.server (%s:%d)", rill_tcp_server_host(sv->srv),
                    rill_tcp_server_port(sv->srv));
  } else {
    lua_pushliteral(L, "rill.server (closed)");
  }
  return 1;
}

/* net.listen{host, port, on_connection = fn(sock), on_error = fn(err), backlog, half_open}
 * -> server, or nil, err (EADDRINUSE, EACCES). */
static int l_listen(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *host = rill__opt_str(L, 1, "host", "127.0.0.1");
  lua_Integer port = rill__opt_int(L, 1, "port", 0);
  luaL_argcheck(L, port >= 0 && port <= 65535, 1, "port out of range");
  lua_Integer backlog = rill__opt_int(L, 1, "backlog", 511);
  luaL_argcheck(L, backlog > 0 && backlog <= 65535, 1, "backlog out of range");
  unsigned flags = rill__opt_bool(L, 1, "half_open", 0) ? RILL_TCP_HALF_OPEN : 0;
  if (lua_getfield(L, 1, "on_connection") != LUA_TFUNCTION)
    return luaL_argerror(L, 1, "on_connection must be a function");
  int on_error = lua_getfield(L, 1, "on_error");
  if (on_error != LUA_TNIL && on_error != LUA_TFUNCTION)
    return luaL_argerror(L, 1, "on_error must be a function");
  server_t *sv = lua_newuserdatauv(L, sizeof *sv, 0);
  memset(sv, 0, sizeof *sv);
  sv->ctx = ctx;
  sv->self_ref = sv->handler_ref = sv->error_ref = sv->spawn_ref = sv->close_ref = LUA_NOREF;
  luaL_setmetatable(L, SERVER_MT);
  int ud = lua_gettop(L);
  int r = rill_tcp_listen(&ctx->loop, host, (int)port, (int)backlog, flags, on_connection, sv,
                          &sv->srv);
  if (r) return rill__fail(L, r, "listen", NULL);
  lua_pushvalue(L, ud - 2);
  sv->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (on_error == LUA_TFUNCTION) {
    lua_pushvalue(L, ud - 1);
    sv->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  sv->spawn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, ud);
  sv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* a listening server is not garbage */
  lua_settop(L, ud);
  return 1;
}

/* ---- client ---- */

typedef struct {
  rill_listener_t quiet; /* keeps the stream's connect error from counting as unhandled */
  int refs;
  lua_State *T; /* the waiting task, or NULL */
  int sock_ref; /* the socket userdata while a task waits */
  rill_ctx_t *ctx;
  char host[256];
  int port;
} connect_t;

static void connect_unref(connect_t *c) {
  if (--c->refs == 0) free(c);
}

static void quiet_cb(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  connect_t *c = RILL_CONTAINER_OF(l, connect_t, quiet);
  if (ev->type == RILL_EV_CLOSE) {
    rill_stream_unlisten(l);
    connect_unref(c);
  }
}

static void connected(rill_stream_t *s, rill_err_t *err, void *arg) {
  connect_t *c = arg;
  lua_State *L = c->ctx->L;
  if (err == NULL) {
    /* Connected: errors from now on are the script's to handle. */
    if (c->quiet.stream) {
      rill_stream_unlisten(&c->quiet);
      c->refs--;
    }
  }
  if (err == NULL && c->sock_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->sock_ref);
    set_fields(L, s);
    lua_pop(L, 1);
  }
  if (c->T) {
    lua_State *T = c->T;
    int n;
    if (err) {
      lua_pushnil(T);
      rill__pusherr(T, err->code, err->syscall, NULL);
      lua_pushstring(T, c->host);
      lua_setfield(T, -2, "address");
      lua_pushinteger(T, c->port);
      lua_setfield(T, -2, "port");
      if (err->message) {
        lua_pushstring(T, err->message);
        lua_setfield(T, -2, "message");
      }
      n = 2;
    } else {
      lua_rawgeti(L, LUA_REGISTRYINDEX, c->sock_ref);
      lua_xmove(L, T, 1);
      n = 1;
    }
    rill__task_wake(T, n);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, c->sock_ref);
  c->sock_ref = LUA_NOREF;
  connect_unref(c);
}

/* net.connect(host, port [, {half_open}]): in a task, waits and returns the socket or nil, err;
 * elsewhere returns the connecting socket at once (errors arrive as its "error" event). */
static int l_connect(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port > 0 && port <= 65535, 2, "port out of range");
  luaL_argcheck(L, strlen(host) < 256, 1, "host name too long");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  unsigned flags = rill__opt_bool(L, 3, "half_open", 0) ? RILL_TCP_HALF_OPEN : 0;
  int in_task = rill__in_task(L);
  connect_t *c = calloc(1, sizeof *c);
  if (c == NULL) return luaL_error(L, "not enough memory");
  c->ctx = ctx;
  c->refs = 1;
  c->sock_ref = LUA_NOREF;
  c->port = (int)port;
  strcpy(c->host, host);
  rill_stream_t *s;
  int r = rill_tcp_connect(&ctx->loop, host, (int)port, flags, connected, c, &s);
  if (r) {
    free(c);
    return rill__fail(L, r, "connect", NULL);
  }
  rill__pushstream(L, s);
  lua_pushvalue(L, -1);
  c->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* until connected: then the fields are set */
  if (!in_task) return 1;
  c->T = L;
  c->quiet.mask = RILL_EVBIT(RILL_EV_ERROR) | RILL_EVBIT(RILL_EV_CLOSE);
  c->quiet.cb = quiet_cb;
  rill_stream_listen(s, &c->quiet);
  c->refs++;
  return rill__task_wait(L);
}

int rill__open_net(lua_State *L) {
  rill__ctx(L);
  rill__require_streams(L);
  if (luaL_newmetatable(L, SERVER_MT)) {
    lua_pushcfunction(L, l_server_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_server_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_server_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  /* rill.spawn, for the connection tasks */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "rill");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "spawn");
  lua_remove(L, -2);
  lua_pushcclosure(L, l_listen, 1);
  lua_setfield(L, -2, "listen");
  lua_pushcfunction(L, l_connect);
  lua_setfield(L, -2, "connect");
  return 1;
}
