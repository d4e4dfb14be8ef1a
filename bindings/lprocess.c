/* bindings/lprocess.c: rill.process: spawn children with their stdio as streams; kill, wait. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lrill.h"
#include "proc.h"

#define PROC_MT "rill.process"

typedef struct {
  rill_proc_t *p;
  rill_ctx_t *ctx;
  int self_ref; /* pins the userdata while the child runs (its waiters live in it) */
} child_t;

static const struct {
  const char *name;
  int num;
} signals[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT}, {"SIGABRT", SIGABRT},
    {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM}, {"SIGCHLD", SIGCHLD},
    {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP}, {"SIGWINCH", SIGWINCH},
};

static const char *signal_name(int sig) {
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
    if (signals[i].num == sig) return signals[i].name;
  return NULL;
}

static child_t *check_child(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, PROC_MT);
}

/* Pushes wait()'s results: code, or nil and the signal's name when a signal ended it. */
static int push_outcome(lua_State *L, int64_t status, int sig) {
  if (sig) {
    lua_pushnil(L);
    const char *n = signal_name(sig);
    if (n) {
      lua_pushstring(L, n);
    } else {
      lua_pushinteger(L, sig);
    }
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)status);
  return 1;
}

static void exited(rill_proc_t *p, int64_t status, int sig, void *arg) {
  child_t *c = arg;
  lua_State *L = c->ctx->L;
  lua_checkstack(L, 6);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->self_ref);
  int ud = lua_gettop(L);
  if (lua_getiuservalue(L, ud, 1) == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      lua_State *T = lua_tothread(L, -1);
      lua_pop(L, 1);
      rill__task_wake(T, push_outcome(T, status, sig));
    }
  }
  lua_pushnil(L);
  lua_setiuservalue(L, ud, 1);
  lua_settop(L, ud - 1);
  luaL_unref(L, LUA_REGISTRYINDEX, c->self_ref);
  c->self_ref = LUA_NOREF;
}

/* child:wait(): in a task, the exit code, or nil and the signal's name. */
static int l_wait(lua_State *L) {
  child_t *c = check_child(L, 1);
  int64_t status;
  int sig;
  if (c->p && rill_proc_exited(c->p, &status, &sig)) return push_outcome(L, status, sig);
  rill__task_check(L, "wait");
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1); /* uv[1] = waiting tasks */
  }
  lua_pushthread(L);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return rill__task_wait(L);
}

/* child:kill([sig]): sig is a name ("SIGKILL") or a number; default SIGTERM. true or nil, err. */
static int l_kill(lua_State *L) {
  child_t *c = check_child(L, 1);
  int sig = SIGTERM;
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *n = lua_tostring(L, 2);
    sig = -1;
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
      if (strcmp(signals[i].name, n) == 0) sig = signals[i].num;
    luaL_argcheck(L, sig > 0, 2, "unknown signal name");
  } else if (!lua_isnoneornil(L, 2)) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0 && n < 65, 2, "signal out of range");
    sig = (int)n;
  }
  int r = c->p ? rill_proc_kill(c->p, sig) : UV_ESRCH;
  if (r) return rill__fail(L, r, "kill", NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_index(lua_State *L) {
  child_t *c = check_child(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "pid") == 0) {
    lua_pushinteger(L, c->p ? rill_proc_pid(c->p) : 0);
  } else if (strcmp(k, "wait") == 0) {
    lua_pushcfunction(L, l_wait);
  } else if (strcmp(k, "kill") == 0) {
    lua_pushcfunction(L, l_kill);
  } else if (strcmp(k, "stdin") == 0 || strcmp(k, "stdout") == 0 || strcmp(k, "stderr") == 0) {
    lua_getiuservalue(L, 1, 2);
    lua_getfield(L, -1, k);
  } else if (strcmp(k, "exit_code") == 0) {
    int64_t status;
    int sig;
    if (c->p && rill_proc_exited(c->p, &status, &sig) && !sig) {
      lua_pushinteger(L, (lua_Integer)status);
    } else {
      lua_pushnil(L);
    }
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int l_gc(lua_State *L) {
  child_t *c = lua_touserdata(L, 1);
  if (c->p) {
    rill_proc_free(c->p);
    c->p = NULL;
  }
  return 0;
}

static int l_tostring(lua_State *L) {
  child_t *c = check_child(L, 1);
  lua_pushfstring(L, "rill.process (pid %d)", c->p ? rill_proc_pid(c->p) : 0);
  return 1;
}

/* Reads opts.stdio: nil, one string for all three, or an array of three. */
static void read_stdio(lua_State *L, int opts, int out[3]) {
  static const char *const kinds[] = {"pipe", "inherit", "ignore", NULL};
  out[0] = out[1] = out[2] = RILL_PROC_PIPE;
  if (lua_isnoneornil(L, opts)) return;
  int t = lua_getfield(L, opts, "stdio");
  if (t == LUA_TSTRING) {
    int k = luaL_checkoption(L, -1, NULL, kinds);
    out[0] = out[1] = out[2] = k;
  } else if (t == LUA_TTABLE) {
    for (int i = 0; i < 3; i++) {
      lua_rawgeti(L, -1, i + 1);
      if (!lua_isnil(L, -1)) out[i] = luaL_checkoption(L, -1, NULL, kinds);
      lua_pop(L, 1);
    }
  } else if (t != LUA_TNIL) {
    luaL_error(L, "option 'stdio' must be a string or a table");
  }
  lua_pop(L, 1);
}

/* process.spawn(cmd [, args [, {cwd, env, stdio}]]) -> child, or nil, err (ENOENT, EACCES). */
static int l_spawn(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  const char *cmd = luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  rill_proc_opts_t o;
  memset(&o, 0, sizeof o);
  o.file = cmd;
  read_stdio(L, 3, o.stdio);
  o.cwd = rill__opt_str(L, 3, "cwd", NULL);
  /* argv and env live in a Lua userdata block so that an error while building them leaks
   * nothing. */
  lua_Integer nargs = lua_isnil(L, 2) ? 0 : (lua_Integer)lua_rawlen(L, 2);
  luaL_argcheck(L, nargs < 100000, 2, "too many arguments");
  char **argv = lua_newuserdatauv(L, (size_t)(nargs + 2) * sizeof(char *), 0);
  lua_createtable(L, (int)nargs, 0); /* the argument strings, kept alive until spawn returns */
  int keep = lua_gettop(L);
  argv[0] = (char *)cmd;
  for (lua_Integer i = 1; i <= nargs; i++) {
    lua_rawgeti(L, 2, i);
    if (!lua_isstring(L, -1)) return luaL_argerror(L, 2, "arguments must be strings");
    argv[i] = (char *)lua_tostring(L, -1); /* numbers become strings here, on the copy */
    lua_rawseti(L, keep, i);
  }
  argv[nargs + 1] = NULL;
  o.args = argv;
  if (!lua_isnil(L, 3) && lua_getfield(L, 3, "env") != LUA_TNIL) {
    luaL_argcheck(L, lua_istable(L, -1), 3, "option 'env' must be a table");
    int envt = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, envt)) {
      n++;
      lua_pop(L, 1);
    }
    char **env = lua_newuserdatauv(L, (n + 1) * sizeof(char *), 0);
    int ekeep = lua_gettop(L);
    lua_newtable(L); /* the "K=V" strings, kept alive until spawn returns */
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, envt)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        return luaL_argerror(L, 3, "env keys and values must be strings");
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      env[i] = (char *)lua_tostring(L, -1);
      lua_rawseti(L, ekeep + 1, (lua_Integer)++i);
      lua_pop(L, 1);
    }
    env[i] = NULL;
    o.env = env;
  }
  child_t *c = lua_newuserdatauv(L, sizeof *c, 2);
  memset(c, 0, sizeof *c);
  c->ctx = ctx;
  c->self_ref = LUA_NOREF;
  luaL_setmetatable(L, PROC_MT);
  int ud = lua_gettop(L);
  int r = rill_proc_spawn(&ctx->loop, &o, exited, c, &c->p);
  if (r) {
    lua_pushnil(L);
    rill__pusherr(L, r, "spawn", cmd);
    lua_pushfstring(L, "spawn %s %s", cmd, uv_err_name(r));
    lua_setfield(L, -2, "message");
    return 2;
  }
  lua_createtable(L, 0, 3);
  static const char *const names[] = {"stdin", "stdout", "stderr"};
  for (int i = 0; i < 3; i++) {
    rill_stream_t *s = rill_proc_stream(c->p, i);
    if (s == NULL) continue;
    rill_stream_ref(s);
    rill__pushstream(L, s);
    lua_setfield(L, -2, names[i]);
  }
  lua_setiuservalue(L, ud, 2); /* uv[2] = {stdin=, stdout=, stderr=} */
  lua_pushvalue(L, ud);
  c->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, ud);
  return 1;
}

int rill__open_process(lua_State *L) {
  rill__ctx(L);
  rill__require_streams(L);
  if (luaL_newmetatable(L, PROC_MT)) {
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, -2, "spawn");
  return 1;
}
