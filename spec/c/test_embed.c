/* spec/c/test_embed.c: the embedding API: engines made and freed, scripts, errors, host loops,
 * several engines, and rill opened in a plain Lua state. Runs clean under valgrind. */
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>

#include "rill.h"
#include "test.h"

/* The global name as an integer (0 when absent). */
static long long global_int(rill_engine *e, const char *name) {
  lua_State *L = rill_lua(e);
  lua_getglobal(L, name);
  long long v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static void test_create_free_many(void) {
  for (int i = 0; i < 1000; i++) {
    rill_engine *e = rill_new(NULL);
    CHECK(e != NULL);
    CHECK(rill_lua(e) != NULL);
    CHECK(rill_loop(e) != NULL);
    CHECK(rill_errmsg(e) == NULL);
    rill_free(e);
  }
  rill_free(NULL); /* a no-op */
}

static void test_dostring_and_run(void) {
  rill_engine *e = rill_new(NULL);
  CHECK_INT(rill_dostring(e, "x = 1 + 1"), RILL_OK);
  CHECK_INT(global_int(e, "x"), 2);
  /* The chunk runs as a task: it may wait, and rill_run finishes it. */
  CHECK_INT(rill_dostring(e, "rill.sleep(5); y = 7"), RILL_OK);
  CHECK_INT(global_int(e, "y"), 0);
  CHECK(rill_alive(e));
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_OK);
  CHECK_INT(global_int(e, "y"), 7);
  CHECK(!rill_alive(e));
  /* rill.version and the lazy submodules are there. */
  CHECK_INT(rill_dostring(e, "assert(rill.version and rill.buffer)"), RILL_OK);
  rill_free(e);
}

static void test_errors(void) {
  rill_engine *e = rill_new(NULL);
  CHECK_INT(rill_dostring(e, "x = = 1"), RILL_ERRSYNTAX);
  CHECK(strstr(rill_errmsg(e), "unexpected symbol") != NULL);
  CHECK_INT(rill_dostring(e, "error('boom')"), RILL_ERRRUN);
  CHECK(strstr(rill_errmsg(e), "boom") != NULL);
  CHECK(strstr(rill_errmsg(e), "stack traceback") != NULL);
  CHECK_INT(rill_dofile(e, "/nonexistent/x.lua"), RILL_ERRFILE);
  CHECK(strstr(rill_errmsg(e), "/nonexistent/x.lua") != NULL);
  /* An error in a callback stops the run and comes back from rill_run, once. */
  CHECK_INT(rill_dostring(e, "rill.timeout(1, function() error('late') end)"), RILL_OK);
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_ERRRUN);
  CHECK(strstr(rill_errmsg(e), "late") != NULL);
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_OK);
  /* The engine is still usable after errors. */
  CHECK_INT(rill_dostring(e, "z = 3"), RILL_OK);
  CHECK_INT(global_int(e, "z"), 3);
  rill_free(e);
}

static void test_exit(void) {
  rill_engine *e = rill_new(NULL);
  CHECK_INT(rill_dostring(e, "rill.timeout(1, function() rill.exit(5) end)"), RILL_OK);
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_EXIT);
  CHECK_INT(rill_exit_code(e), 5);
  CHECK_INT(rill_status(e), RILL_EXIT);
  rill_free(e);
  e = rill_new(NULL);
  CHECK_INT(rill_dostring(e, "rill.exit(3); x = 1"), RILL_EXIT);
  CHECK_INT(rill_exit_code(e), 3);
  CHECK_INT(global_int(e, "x"), 0);
  rill_free(e);
}

static void test_argv(void) {
  rill_engine *e = rill_new(NULL);
  char *argv[] = {"script.lua", "a", "b"};
  rill_set_argv(e, 3, argv);
  CHECK_INT(rill_dostring(e,
                          "assert(rill.argv[0] == 'script.lua' and rill.argv[2] == 'b')"
                          "assert(arg[1] == 'a')"),
            RILL_OK);
  rill_free(e);
}

/* ONCE and NOWAIT let a host interleave the engine with its own work: an immediate queued by an
 * immediate runs on the next turn, so each turn advances the chain by one. */
static void test_run_modes(void) {
  rill_engine *e = rill_new(NULL);
  CHECK_INT(
      rill_dostring(e,
                    "n = 0\n"
                    "local function step() n = n + 1; if n < 3 then rill.immediate(step) end end\n"
                    "rill.immediate(step)"),
      RILL_OK);
  CHECK(rill_alive(e));
  CHECK_INT(rill_run(e, RILL_RUN_NOWAIT), RILL_OK);
  CHECK_INT(global_int(e, "n"), 1);
  CHECK_INT(rill_run(e, RILL_RUN_ONCE), RILL_OK);
  CHECK_INT(global_int(e, "n"), 2);
  CHECK(rill_alive(e));
  CHECK_INT(rill_run(e, RILL_RUN_ONCE), RILL_OK);
  CHECK_INT(global_int(e, "n"), 3);
  CHECK(!rill_alive(e));
  rill_free(e);
}

/* ---- the host's loop ---- */

static void host_tick(uv_timer_t *t) {
  (*(int *)t->data)++;
}

static void test_host_loop(void) {
  uv_loop_t loop;
  CHECK_INT(uv_loop_init(&loop), 0);
  uv_timer_t ht;
  int host_ticks = 0;
  uv_timer_init(&loop, &ht);
  ht.data = &host_ticks;
  uv_timer_start(&ht, host_tick, 1, 1);
  rill_engine *e = rill_new(&loop);
  CHECK(rill_loop(e) == &loop);
  CHECK_INT(rill_dostring(e,
                          "fired = 0\n"
                          "rill.timeout(5, function() fired = fired + 1 end)\n"
                          "rill.interval(1000, function() end)\n"
                          "rill.spawn(function() rill.sleep(1e6) end)\n"
                          "rill.spawn(function() rill.sleep(2); slept = 1 end)\n"
                          "rill.immediate(function() imm = 1 end)"),
            RILL_OK);
  /* The host drives its loop itself; the engine's timers run next to the host's. */
  while (global_int(e, "fired") == 0) uv_run(&loop, UV_RUN_ONCE);
  CHECK_INT(global_int(e, "slept"), 1);
  CHECK_INT(global_int(e, "imm"), 1);
  CHECK(host_ticks > 0);
  CHECK_INT(rill_status(e), RILL_OK);
  CHECK(rill_alive(e)); /* the interval and the long sleep are still pending */
  rill_free(e);
  /* The host's own timer still works, and nothing of the engine is left on the loop. */
  int before = host_ticks;
  while (host_ticks == before) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&ht, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
}

/* An uncaught error stops the host's uv_run; rill_status says why. */
static void test_host_loop_error(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  rill_engine *e = rill_new(&loop);
  CHECK_INT(rill_dostring(e,
                          "rill.timeout(1, function() error('in host loop') end)"
                          "rill.interval(50, function() end)"),
            RILL_OK);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns: uv_stop */
  CHECK_INT(rill_status(e), RILL_ERRRUN);
  CHECK(strstr(rill_errmsg(e), "in host loop") != NULL);
  CHECK_INT(rill_status(e), RILL_OK);
  /* rill.run() inside a script never runs the host's loop nested. */
  CHECK_INT(rill_dostring(e, "rill.run(); ran = 1"), RILL_OK);
  CHECK_INT(global_int(e, "ran"), 1);
  rill_free(e);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
}

/* Several engines on one loop stay apart. */
static void test_engines_share_loop(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  rill_engine *a = rill_new(&loop), *b = rill_new(&loop);
  CHECK_INT(rill_dostring(a, "who = 'a'; rill.timeout(2, function() got = 1 end)"), RILL_OK);
  CHECK_INT(rill_dostring(b, "who = 'b'; rill.timeout(1, function() got = 2 end)"), RILL_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(global_int(a, "got"), 1);
  CHECK_INT(global_int(b, "got"), 2);
  CHECK_INT(rill_dostring(a, "rill.interval(10, function() end)"), RILL_OK);
  rill_free(b); /* b goes first: a's interval stays */
  CHECK(rill_alive(a));
  rill_free(a);
  CHECK_INT(uv_loop_close(&loop), 0);
}

/* ---- engines in threads ---- */

static void *thread_main(void *arg) {
  long id = (long)arg;
  for (int round = 0; round < 5; round++) {
    rill_engine *e = rill_new(NULL);
    if (e == NULL) return (void *)1;
    lua_State *L = rill_lua(e);
    lua_pushinteger(L, id);
    lua_setglobal(L, "id");
    int r = rill_dostring(e,
                          "local sum = 0\n"
                          "local ts = {}\n"
                          "for i = 1, 10 do ts[i] = rill.spawn(function() rill.sleep(i % 3)\n"
                          "  return i * id end) end\n"
                          "for i = 1, 10 do sum = sum + ts[i]:join() end\n"
                          "result = sum");
    if (r == RILL_OK) r = rill_run(e, RILL_RUN_DEFAULT);
    long long got = global_int(e, "result");
    rill_free(e);
    if (r != RILL_OK || got != 55 * id) return (void *)1;
  }
  return NULL;
}

static void test_threads(void) {
  pthread_t t[4];
  for (long i = 0; i < 4; i++)
    CHECK_INT(pthread_create(&t[i], NULL, thread_main, (void *)(i + 1)), 0);
  for (int i = 0; i < 4; i++) {
    void *res;
    pthread_join(t[i], &res);
    CHECK(res == NULL);
  }
}

/* ---- rill in a Lua state the host made (as require "rill" from lua5.4) ---- */

static void test_plain_lua_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_rill);
  lua_setfield(L, -2, "rill");
  lua_pop(L, 1);
  /* Live timers, an interval, a waiting task and a signal handler when the state closes. */
  CHECK_INT(luaL_dostring(L,
                          "local rill = require 'rill'\n"
                          "n = 0\n"
                          "rill.timeout(1, function() n = n + 1 end)\n"
                          "rill.run()\n"
                          "assert(n == 1)\n"
                          "rill.timeout(60000, print)\n"
                          "rill.interval(5, print)\n"
                          "rill.spawn(function() rill.sleep(60000) end)\n"
                          "rill.on_signal('SIGUSR2', print)\n"
                          "local b = rill.buffer.alloc(100000)"),
            LUA_OK);
  lua_close(L);
}

int main(void) {
  RUN(test_create_free_many);
  RUN(test_dostring_and_run);
  RUN(test_errors);
  RUN(test_exit);
  RUN(test_argv);
  RUN(test_run_modes);
  RUN(test_host_loop);
  RUN(test_host_loop_error);
  RUN(test_engines_share_loop);
  RUN(test_threads);
  RUN(test_plain_lua_state);
  return 0;
}
