/* bindings/sandbox.c: sandboxed engines: leaves out the rill modules and the parts of Lua's own
 * libraries that rill_options.deny names, so that each use fails with a clear error. */
#include <string.h>

#include "lrill.h"
#include "rill.h"

/* rill modules per deny bit: each name covers rill.<name>, rill._<name> (a C half) and any
 * preloaded rill.<name>_x / rill.<name>.x, as keys of the rill table and as require names. */
static const struct {
  unsigned bit;
  const char *names[6];
} module_bits[] = {
    {RILL_DENY_FS, {"fs", NULL}},
    {RILL_DENY_PROCESS, {"process", NULL}},
    {RILL_DENY_NET, {"net", "udp", "tcp", NULL}},
    {RILL_DENY_HTTP, {"http", NULL}},
    {RILL_DENY_STDIO, {"stdio", "stdin", "stdout", "stderr", "repl", NULL}},
};

/* Raises the sandbox's error for the name in upvalue 1 (or, as an __index, for upvalue 1 "."
 * the key). An error value, so that scripts can test err.code == "ERR_ACCESS_DENIED". */
static int deny(lua_State *L) {
  const char *what = lua_tostring(L, lua_upvalueindex(1));
  if (lua_toboolean(L, lua_upvalueindex(2))) { /* an __index: name the field */
    what = lua_pushfstring(L, "%s.%s", what, luaL_tolstring(L, 2, NULL));
  }
  rill__pusherr(L, RILL_EDENIED, NULL, NULL);
  lua_pushfstring(L, "%s: denied by the engine's sandbox", what);
  lua_setfield(L, -2, "message"); /* err.message names what was denied */
  return lua_error(L);
}

static void push_deny(lua_State *L, const char *what) {
  lua_pushstring(L, what);
  lua_pushboolean(L, 0);
  lua_pushcclosure(L, deny, 2);
}

/* Pushes a table whose every field access raises "<what>.<key>: denied...". */
static void push_deny_table(lua_State *L, const char *what) {
  lua_newtable(L);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, what);
  lua_pushboolean(L, 1);
  lua_pushcclosure(L, deny, 2);
  lua_setfield(L, -2, "__index"); /* mt.__index = deny */
  lua_pushliteral(L, "denied");
  lua_setfield(L, -2, "__metatable"); /* getmetatable(t) cannot reach or change it */
  lua_setmetatable(L, -2);
}

/* Replaces global name (and package.loaded[name]) with a table that denies every field but
 * those in keep (NULL-terminated, or NULL), which keep their original values. */
static void deny_library(lua_State *L, const char *name, const char *const *keep) {
  lua_getglobal(L, name);
  push_deny_table(L, name);
  for (; keep && *keep; keep++) {
    if (lua_istable(L, -2))
      lua_getfield(L, -2, *keep);
    else
      lua_pushnil(L);
    lua_setfield(L, -2, *keep); /* stub[k] = original[k] */
  }
  lua_remove(L, -2);
  lua_pushvalue(L, -1);
  lua_setglobal(L, name);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, name); /* package.loaded[name] = stub */
  lua_pop(L, 1);
}

/* Replaces field k of the table on top with a function that raises "<lib>.<k>: denied...". */
static void deny_field(lua_State *L, const char *lib, const char *k) {
  lua_pushfstring(L, "%s%s%s", lib, *lib ? "." : "", k);
  push_deny(L, lua_tostring(L, -1));
  lua_setfield(L, -3, k);
  lua_pop(L, 1);
}

/* ---- binary chunks ---- */

static const char BINARY_MSG[] = "binary chunks: denied by the engine's sandbox";

/* Rewrites Lua's "attempt to load a binary chunk" failure (nil, msg on top) to say why. */
static int binary_result(lua_State *L, int nres) {
  if (nres == 2 && lua_isnil(L, -2) && lua_isstring(L, -1) &&
      strstr(lua_tostring(L, -1), "binary chunk") != NULL) {
    lua_pop(L, 1);
    lua_pushstring(L, BINARY_MSG);
  }
  return nres;
}

/* load(chunk [, name [, mode [, env]]]) and loadfile(path [, mode [, env]]) with mode forced to
 * "t"; upvalue 1 is the original, upvalue 2 the index of the mode argument. */
static int text_only(lua_State *L) {
  int mode = (int)lua_tointeger(L, lua_upvalueindex(2));
  if (lua_gettop(L) < mode) lua_settop(L, mode);
  lua_pushliteral(L, "t");
  lua_replace(L, mode);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return binary_result(L, lua_gettop(L));
}

static void wrap_text_only(lua_State *L, const char *name, int mode_arg) {
  lua_getglobal(L, name);
  lua_pushinteger(L, mode_arg);
  lua_pushcclosure(L, text_only, 2);
  lua_setglobal(L, name);
}

static int dofile_cont(lua_State *L, int status, lua_KContext k) {
  return lua_gettop(L) - 1;
}

/* dofile(path) that refuses binary chunks. */
static int text_dofile(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    if (strstr(lua_tostring(L, -1), "binary chunk") != NULL) {
      lua_pushfstring(L, "dofile: %s", BINARY_MSG);
    }
    return lua_error(L);
  }
  lua_callk(L, 0, LUA_MULTRET, 0, dofile_cont);
  return dofile_cont(L, 0, 0);
}

/* package.searchers[2] that reads Lua files from package.path as text only. */
static int search_text(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, lua_upvalueindex(1), "path");
  lua_call(L, 2, 2);              /* package.searchpath(name, package.path) */
  if (lua_isnil(L, -2)) return 1; /* the "no file ..." list */
  const char *file = lua_tostring(L, -2);
  if (luaL_loadfilex(L, file, "t") != LUA_OK) {
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, file,
                      lua_tostring(L, -1));
  }
  lua_pushstring(L, file);
  return 2;
}

/* A package searcher that finds nothing and says why, for require's error message. */
static int search_denied(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

static void push_search_denied(lua_State *L, const char *what) {
  lua_pushfstring(L, "%s: denied by the engine's sandbox", what);
  lua_pushcclosure(L, search_denied, 1);
}

/* Rebuilds package.searchers: preload always; Lua files unless IO is denied (text only when
 * bytecode is); C modules unless they are denied. */
static void sandbox_searchers(lua_State *L, unsigned deny) {
  lua_getglobal(L, "package");
  int pkg = lua_gettop(L);
  lua_getfield(L, pkg, "searchers");
  int old = lua_gettop(L);
  lua_createtable(L, 4, 0);
  lua_rawgeti(L, old, 1); /* preload */
  lua_rawseti(L, -2, 1);
  if (deny & RILL_DENY_IO) {
    push_search_denied(L, "require of Lua files");
  } else if (deny & RILL_DENY_BYTECODE) {
    lua_pushvalue(L, pkg);
    lua_pushcclosure(L, search_text, 1);
  } else {
    lua_rawgeti(L, old, 2);
  }
  lua_rawseti(L, -2, 2);
  if (deny & RILL_DENY_CMODULES) {
    push_search_denied(L, "require of C modules");
    lua_rawseti(L, -2, 3);
  } else {
    lua_rawgeti(L, old, 3);
    lua_rawseti(L, -2, 3);
    lua_rawgeti(L, old, 4);
    lua_rawseti(L, -2, 4);
  }
  lua_setfield(L, pkg, "searchers");
  if (deny & RILL_DENY_CMODULES) {
    lua_pushvalue(L, pkg);
    deny_field(L, "package", "loadlib");
    lua_pop(L, 1);
  }
  lua_settop(L, pkg - 1);
}

/* ---- rill modules ---- */

/* True if preload name p is rill's module base (or its C half, or a part of it). */
static int covers(const char *p, const char *base) {
  if (strncmp(p, "rill.", 5) != 0) return 0;
  p += 5;
  if (*p == '_') p++;
  size_t n = strlen(base);
  return strncmp(p, base, n) == 0 && (p[n] == '\0' || p[n] == '_' || p[n] == '.');
}

/* Denies module base: as a key of the rill table (keys table at -2 gets keys[k] = "rill.k")
 * and as every preloaded name it covers, plus rill.base and rill._base themselves. */
static void deny_module(lua_State *L, int keys, int preload, const char *base) {
  const char *forms[] = {"rill.%s", "rill._%s"};
  for (int i = 0; i < 2; i++) {
    const char *full = lua_pushfstring(L, forms[i], base);
    lua_pushstring(L, full + 5);
    lua_pushvalue(L, -2);
    lua_rawset(L, keys); /* keys[base] = "rill.base" */
    push_deny(L, full);
    lua_setfield(L, preload, full); /* preload[full] = deny */
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, preload)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING && covers(lua_tostring(L, -1), base)) {
      const char *full = lua_tostring(L, -1);
      lua_pushstring(L, full + 5);
      lua_pushvalue(L, -2);
      lua_rawset(L, keys);
      lua_pushvalue(L, -1);
      push_deny(L, full);
      lua_rawset(L, preload); /* replacing an existing key keeps lua_next valid */
    }
  }
}

/* The rill table's __index: denied keys raise, others go to the original (upvalue 2). */
static int rill_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) == LUA_TSTRING) {
    const char *what = lua_tostring(L, -1);
    rill__pusherr(L, RILL_EDENIED, NULL, NULL);
    lua_pushfstring(L, "%s: denied by the engine's sandbox", what);
    lua_setfield(L, -2, "message");
    return lua_error(L);
  }
  lua_pop(L, 1);
  switch (lua_type(L, lua_upvalueindex(2))) {
    case LUA_TNIL:
      return 0;
    case LUA_TFUNCTION:
      lua_pushvalue(L, lua_upvalueindex(2));
      lua_insert(L, 1);
      lua_call(L, 2, 1);
      return 1;
    default:
      lua_gettable(L, lua_upvalueindex(2));
      return 1;
  }
}

static void sandbox_rill(lua_State *L, const rill_options *o) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "rill") != LUA_TTABLE) {
    lua_pop(L, 2);
    return;
  }
  int rill = lua_gettop(L);
  lua_newtable(L);
  int keys = rill + 1;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  int preload = rill + 2;
  for (size_t i = 0; i < sizeof module_bits / sizeof module_bits[0]; i++) {
    if (!(o->deny & module_bits[i].bit)) continue;
    for (int j = 0; j < 6 && module_bits[i].names[j]; j++)
      deny_module(L, keys, preload, module_bits[i].names[j]);
  }
  for (const char *const *m = o->deny_modules; m && *m; m++) deny_module(L, keys, preload, *m);
  /* Fields of the rill table itself: drop them so that the __index below sees the access. */
  const char *fields[3] = {NULL, NULL, NULL};
  if (o->deny & RILL_DENY_SIGNAL) fields[0] = "on_signal";
  if (o->deny & RILL_DENY_OS) fields[1] = "env";
  for (int i = 0; i < 3; i++) {
    if (fields[i] == NULL) continue;
    lua_pushnil(L);
    lua_setfield(L, rill, fields[i]);
    lua_pushfstring(L, "rill.%s", fields[i]);
    lua_setfield(L, keys, fields[i]);
  }
  /* Wrap the metatable's __index (the lazy loader of submodules). */
  if (!lua_getmetatable(L, rill)) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setmetatable(L, rill);
  }
  lua_pushvalue(L, keys);
  lua_getfield(L, -2, "__index");
  lua_pushcclosure(L, rill_index, 2);
  lua_setfield(L, -2, "__index"); /* mt.__index = rill_index */
  lua_settop(L, rill - 2);
}

/* ---- Lua's libraries ---- */

void rill__sandbox_open(lua_State *L, const rill_options *o) {
  unsigned deny = o->deny;
  if (deny & RILL_DENY_IO) {
    deny_library(L, "io", NULL);
    lua_pushglobaltable(L);
    deny_field(L, "", "dofile");
    deny_field(L, "", "loadfile");
    lua_pop(L, 1);
  }
  if (deny & RILL_DENY_OS) {
    static const char *const sys[] = {"execute", "remove",  "rename",    "exit",
                                      "getenv",  "tmpname", "setlocale", NULL};
    lua_getglobal(L, "os");
    if (lua_istable(L, -1))
      for (int i = 0; sys[i]; i++) deny_field(L, "os", sys[i]);
    lua_pop(L, 1);
  }
  if (deny & RILL_DENY_BYTECODE) {
    wrap_text_only(L, "load", 3);
    if (!(deny & RILL_DENY_IO)) {
      wrap_text_only(L, "loadfile", 2);
      lua_pushcfunction(L, text_dofile);
      lua_setglobal(L, "dofile");
    }
  }
  if (deny & RILL_DENY_DEBUG) {
    /* traceback only formats the stack: rill's own Lua modules use it for their errors. */
    static const char *const keep[] = {"traceback", NULL};
    deny_library(L, "debug", keep);
  } else if (o->max_instructions || o->max_memory) {
    /* The caps rely on a count hook: a script must not be able to remove it. */
    lua_getglobal(L, "debug");
    if (lua_istable(L, -1)) deny_field(L, "debug", "sethook");
    lua_pop(L, 1);
  }
  if (deny & (RILL_DENY_IO | RILL_DENY_BYTECODE | RILL_DENY_CMODULES)) sandbox_searchers(L, deny);
  sandbox_rill(L, o);
}
