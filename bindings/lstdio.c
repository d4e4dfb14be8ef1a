/* bindings/lstdio.c: rill.stdio: rill.stdin, rill.stdout and rill.stderr as streams, created on
 * first use, flushed at exit; EPIPE on stdout ends the process quietly with status 0. */
#include <stdio.h>
#include <string.h>

#include "lrill.h"
#include "stdfd.h"
#include "stream.h"

#define STDIO_MT "rill.stdio_state"

/* Per-interpreter: our own reference on each stream opened, so that they outlive their Lua
 * userdata at exit and can be flushed then. */
typedef struct {
  rill_ctx_t *ctx;
  rill_stream_t *s[3];
  rill_listener_t epipe; /* on stdout: EPIPE ends the process quietly */
  rill_listener_t quiet; /* on stderr: its errors are nobody's business */
} stdio_state_t;

static const char *const names[] = {"stdin", "stdout", "stderr", NULL};

static void stop_quietly(stdio_state_t *st) {
  if (st->ctx->exiting) return;
  /* The reader went away (`rill x.lua | head -1`): stop as rill.exit(0) would. */
  st->ctx->exiting = 1;
  st->ctx->exit_code = 0;
  uv_stop(st->ctx->loop.uv);
}

/* At the failed write itself: no task may run again, not even one already woken. */
static void on_write_error(rill_stream_t *s, int code, void *arg) {
  if (code == UV_EPIPE) stop_quietly(arg);
}

static void on_stdout_error(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  stdio_state_t *st = RILL_CONTAINER_OF(l, stdio_state_t, epipe);
  if (ev->err && ev->err->code == UV_EPIPE) stop_quietly(st);
}

static void ignore_error(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {}

/* __gc of the state (at lua_close, after the streams' own userdata): write what stdout and
 * stderr still hold, blocking, then let them go. */
static int state_gc(lua_State *L) {
  stdio_state_t *st = lua_touserdata(L, 1);
  for (int fd = 2; fd >= 0; fd--) {
    rill_stream_t *s = st->s[fd];
    if (s == NULL) continue;
    st->s[fd] = NULL;
    if (fd > 0) {
      rill_stdio_flush(s);
      rill_stream_unlisten(fd == 1 ? &st->epipe : &st->quiet);
    }
    rill_stream_set_hook(s, NULL, NULL);
    rill_stream_unref(s);
  }
  rill_stdio_restore();
  return 0;
}

/* print(...) once rill.stdout exists: what the stream still holds goes out first (blocking, as
 * Lua's print itself blocks), then Lua's print writes and flushes C stdio; so print and
 * rill.stdout:write reach fd 1 in program order, whatever fd 1 is. */
static int l_print(lua_State *L) {
  stdio_state_t *st = lua_touserdata(L, lua_upvalueindex(1));
  if (st->s[1]) (void)rill_stdio_flush(st->s[1]); /* a failure is the stream's own error */
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 0);
  return 0;
}

/* Routes the global print through l_print when it is the C print of the base library (a
 * print the script or the REPL set is theirs: left alone). C stdio's own buffer (io.write)
 * goes out before the stream's first byte. */
static void order_print(lua_State *L, int state_idx) {
  fflush(stdout);
  lua_getglobal(L, "print");
  if (!lua_iscfunction(L, -1) || lua_tocfunction(L, -1) == l_print) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, state_idx);
  lua_insert(L, -2);
  lua_pushcclosure(L, l_print, 2);
  lua_setglobal(L, "print");
}

/* stdio.<name>: the stream over fd 0, 1 or 2, made once. */
static int l_index(lua_State *L) {
  int fd = luaL_checkoption(L, 2, NULL, names);
  stdio_state_t *st = lua_touserdata(L, lua_upvalueindex(1));
  rill_stream_t *s;
  int r = rill_stdio_open(&st->ctx->loop, fd, &s);
  if (r) return luaL_error(L, "rill.%s: %s", names[fd], rill_strerror(r));
  rill_stream_ref(s);
  st->s[fd] = s;
  if (fd > 0) {
    rill_listener_t *l = fd == 1 ? &st->epipe : &st->quiet;
    l->mask = RILL_EVBIT(RILL_EV_ERROR);
    l->cb = fd == 1 ? on_stdout_error : ignore_error;
    rill_stream_listen(s, l);
    if (fd == 1) {
      rill_stdio_on_error(s, on_write_error, st);
      order_print(L, lua_upvalueindex(1));
    }
  }
  rill__pushstream(L, s);
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, names[fd]); /* cache: stdio[name] = stream */
  return 1;
}

/* stdio.flush(): writes what stdout and stderr hold now, blocking. true, or nil, err. */
static int l_flush(lua_State *L) {
  stdio_state_t *st = lua_touserdata(L, lua_upvalueindex(1));
  for (int fd = 1; fd <= 2; fd++) {
    if (st->s[fd] == NULL) continue;
    int r = rill_stdio_flush(st->s[fd]);
    if (r) return rill__fail(L, r, "write", NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

int rill__open_stdio(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  rill__require_streams(L);
  lua_newtable(L); /* the module */
  stdio_state_t *st = lua_newuserdatauv(L, sizeof *st, 0);
  memset(st, 0, sizeof *st);
  st->ctx = ctx;
  if (luaL_newmetatable(L, STDIO_MT)) {
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_flush, 1);
  lua_setfield(L, -3, "flush");
  lua_createtable(L, 0, 1);
  lua_insert(L, -2);
  lua_pushcclosure(L, l_index, 1); /* the state is its upvalue: it lives as long as the module */
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 1;
}
