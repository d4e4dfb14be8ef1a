/* bindings/lio.c: helpers shared by the I/O bindings (fs, net, udp, process, stdio). */
#include <signal.h>

#include "lrill.h"

void rill__require_streams(lua_State *L) {
  /* rill.stream adds the Lua methods (lines, chunks, on...) when it is there. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "rill.stream");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    luaL_requiref(L, "rill._stream", rill__open_stream, 0);
    lua_pop(L, 1);
  }
  /* A write to a closed pipe or socket is an EPIPE error, not a fatal signal: the rill command
   * ignores SIGPIPE already; stock lua5.4 does not. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

lua_Integer rill__opt_int(lua_State *L, int idx, const char *k, lua_Integer def) {
  if (lua_isnoneornil(L, idx)) return def;
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok) luaL_error(L, "option '%s' must be an integer", k);
  lua_pop(L, 1);
  return v;
}

lua_Integer rill__opt_range(lua_State *L, int idx, const char *k, lua_Integer def, lua_Integer lo,
                            lua_Integer hi) {
  lua_Integer v = rill__opt_int(L, idx, k, def);
  if (v < lo || v > hi) {
    const char *m = lua_pushfstring(L, "%s out of range (%I to %I)", k, lo, hi);
    luaL_argerror(L, idx, m);
  }
  return v;
}

int rill__opt_bool(lua_State *L, int idx, const char *k, int def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_getfield(L, idx, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

const char *rill__opt_str(lua_State *L, int idx, const char *k, const char *def) {
  if (lua_isnoneornil(L, idx)) return def;
  int t = lua_getfield(L, idx, k);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (t != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", k);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the options table keeps the string alive */
  return s;
}
