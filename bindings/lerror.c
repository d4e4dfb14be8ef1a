/* bindings/lerror.c: error values ({code, message, syscall, path}) and reporting helpers. */
#include <string.h>

#include "lrill.h"

#define ERROR_MT "rill.error"

/* tostring(err): "CODE: message, syscall 'path'", like Node's one-line system errors. */
static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "code");
  const char *code = lua_tostring(L, -1);
  lua_getfield(L, 1, "message");
  const char *msg = lua_tostring(L, -1);
  lua_getfield(L, 1, "syscall");
  const char *sys = lua_tostring(L, -1);
  lua_getfield(L, 1, "path");
  const char *path = lua_tostring(L, -1);
  if (code) {
    luaL_addstring(&b, code);
    luaL_addstring(&b, ": ");
  }
  luaL_addstring(&b, msg ? msg : "error");
  if (sys) {
    luaL_addstring(&b, ", ");
    luaL_addstring(&b, sys);
  }
  if (path) {
    luaL_addstring(&b, " '");
    luaL_addstring(&b, path);
    luaL_addchar(&b, '\'');
  }
  luaL_pushresult(&b);
  return 1;
}

static void push_error_mt(lua_State *L) {
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring"); /* mt.__tostring = error_tostring */
  }
}

void rill__pusherr(lua_State *L, int err, const char *syscall, const char *path) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, rill_err_name(err));
  lua_setfield(L, -2, "code");
  lua_pushstring(L, rill_strerror(err));
  lua_setfield(L, -2, "message");
  lua_pushinteger(L, err);
  lua_setfield(L, -2, "errno");
  if (syscall) {
    lua_pushstring(L, syscall);
    lua_setfield(L, -2, "syscall");
  }
  if (path) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  push_error_mt(L);
  lua_setmetatable(L, -2);
}

int rill__fail(lua_State *L, int err, const char *syscall, const char *path) {
  lua_pushnil(L);
  rill__pusherr(L, err, syscall, path);
  return 2;
}

int rill__raise(lua_State *L, int err, const char *fname) {
  rill__pusherr(L, err, fname, NULL);
  return lua_error(L);
}

/* The message of the error value at 1 (a non-string): its __tostring, else its type; error
 * tables get their traceback field appended. Runs protected: __tostring is user code. */
static int tostring_p(lua_State *L) {
  if (!luaL_callmeta(L, 1, "__tostring") || lua_type(L, -1) != LUA_TSTRING) {
    lua_settop(L, 1);
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  if (lua_type(L, 1) == LUA_TTABLE) {
    if (lua_getfield(L, 1, "traceback") == LUA_TSTRING) {
      lua_pushliteral(L, "\n");
      lua_insert(L, -2);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
    }
  }
  return 1;
}

const char *rill__errstring(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1); /* converts the copy, as lua.c does for numbers */
  }
  lua_pushcfunction(L, tostring_p);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushfstring(L, "(error object is a %s value whose __tostring failed)",
                    luaL_typename(L, idx));
  }
  return lua_tostring(L, -1);
}
