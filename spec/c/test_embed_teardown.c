/* spec/c/test_embed_teardown.c: whatever state its streams are in, closing rill frees them:
 * a plain Lua state closed without running the loop (a stock lua5.4 script that never calls
 * rill.run()) and an engine freed mid-pipeline by its host. Each case runs a few times and the
 * main arena's bytes in use must come back to the same figure: a leak grows it every run. The
 * ctest variant under valgrind (and LeakSanitizer in the sanitizer build) also names the block. */
#include <lauxlib.h>
#include <lualib.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rill.h"
#include "test.h"

static char dir[64];

/* Bytes in use in every malloc arena. Exact when glibc's per-thread caches are off (main sees
 * to that): a cached free block counts as in use, and the threadpool's caches fill slowly. */
static size_t heap_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

/* Runs case_fn(arg) until two runs in a row leave the heap where it was; fails when it grows
 * on each of several runs. The first runs warm up what is made once per process (libuv's
 * threadpool, the slab pool's bookkeeping, glibc's own structures). */
static void check_no_growth(const char *name, void (*case_fn)(const char *), const char *arg) {
  case_fn(arg);
  case_fn(arg);
  size_t first = heap_in_use(), base = first;
  int grew = 0;
  for (int i = 0; i < 4; i++) {
    case_fn(arg);
    size_t now = heap_in_use();
    if (now > base) grew++;
    base = now;
  }
  if (grew == 4) {
    fprintf(stderr, "%s: the heap grew on every run (a leak): %zu bytes in use, then %zu\n", name,
            first, base);
    exit(1);
  }
}

/* ---- a plain Lua state (as lua5.4 with require "rill") closed without rill.run() ---- */

static void plain_case(const char *code) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_rill);
  lua_setfield(L, -2, "rill");
  lua_pop(L, 1);
  lua_pushstring(L, dir);
  lua_setglobal(L, "DIR");
  if (luaL_dostring(L, code) != LUA_OK) {
    fprintf(stderr, "script failed: %s\n%s\n", lua_tostring(L, -1), code);
    exit(1);
  }
  lua_close(L);
}

static const char PRELUDE[] =
    "local rill = require 'rill'\n"
    "stream, fs, zlib = require 'rill.stream', require 'rill.fs', require 'rill.zlib'\n";

static char *with_prelude(const char *body) {
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s%s", PRELUDE, body);
  return buf;
}

static void test_plain_writer_in_flight(void) {
  /* The writer's queued writes still reach the file as the state closes. */
  const char *code = with_prelude(
      "local w = fs.writer(DIR .. '/w.out')\n"
      "w:write('hello ')\n"
      "w:write(('x'):rep(100000))\n");
  check_no_growth("writer", plain_case, code);
  char path[128];
  snprintf(path, sizeof path, "%s/w.out", dir);
  struct stat st;
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_size, 6 + 100000);
}

static void test_plain_transform_into_writer(void) {
  check_no_growth("transform", plain_case,
                  with_prelude("local t = stream.transform{ transform = function(_, c, push)\n"
                               "  push(c) end }\n"
                               "t:pipe(fs.writer(DIR .. '/t.out'))\n"
                               "t:write('hello')\n"));
}

static void test_plain_endless_into_stuck_writable(void) {
  /* A source that never ends, piped into a sink whose write never completes. */
  check_no_growth("endless", plain_case,
                  with_prelude("local r = stream.readable{ read = function(self)\n"
                               "  self:push(('y'):rep(1000)) end }\n"
                               "r:pipe(stream.writable{ write = function(_, c, done) end })\n"
                               "rill.immediate(function() end)\n"));
}

static void test_plain_gzip_into_writable(void) {
  check_no_growth(
      "gzip", plain_case,
      with_prelude("local z = zlib.gzip()\n"
                   "z:pipe(stream.writable{ write = function(_, c, done) done() end })\n"
                   "z:write(('x'):rep(100000))\n"));
}

static void test_plain_write_hook_pending(void) {
  /* A Lua writable whose write hook ran (the loop turned) and never called done. */
  check_no_growth("pending", plain_case,
                  with_prelude("local w = stream.writable{ write = function(_, c, done) end }\n"
                               "w:write('a')\n"
                               "rill.run()\n"
                               "w:write('b')\n"
                               "stream.from(('z'):rep(300000)):pipe(w)\n"));
}

/* ---- an engine freed by its host mid-pipeline ---- */

/* Each script starts pipelines that run for a long time and counts their progress in the
 * global `progress`; the host turns its loop until they are well under way, then frees. */
static const char *const PIPELINES[] = {
    /* Lua readable -> Lua transform -> lines -> Lua writable acknowledging after a sleep */
    "local stream = require 'rill.stream'\n"
    "progress = 0\n"
    "local n = 0\n"
    "local src = stream.readable{ read = function(self)\n"
    "  n = n + 1; self:push(('line %d\\n'):format(n):rep(50)) end }\n"
    "local up = stream.transform{ transform = function(_, c, push) push(tostring(c):upper()) end "
    "}\n"
    "local sink = stream.writable{ object_mode = true, write = function(_, c, done)\n"
    "  progress = progress + 1\n"
    "  rill.timeout(1, function() done() end) end }\n"
    "stream.pipeline(src, up, stream.lines(), sink, function() end)\n",
    /* a file through a sleeping Lua transform, gzip and gunzip into a file */
    "local stream, fs, zlib = require 'rill.stream', require 'rill.fs', require 'rill.zlib'\n"
    "progress = 0\n"
    "fs.write_file(DIR .. '/big.in', ('0123456789abcdef'):rep(1 << 16))\n"
    "local slow = stream.transform{ transform = function(_, c, push)\n"
    "  progress = progress + 1; rill.sleep(2); push(c) end }\n"
    "rill.spawn(stream.pipeline, fs.reader(DIR .. '/big.in', { chunk_size = 4096 }),\n"
    "  slow, zlib.gzip(), zlib.gunzip(), fs.writer(DIR .. '/big.out'))\n",
    /* a TCP echo server and a client writing an endless stream through it */
    "local stream, net = require 'rill.stream', require 'rill.net'\n"
    "progress = 0\n"
    "local srv = assert(net.listen{ port = 0, on_connection = function(s)\n"
    "  s:pipe(stream.transform{ transform = function(_, c, push) push(c) end }):pipe(s) end })\n"
    "local sock = assert(net.connect('127.0.0.1', srv.port))\n"
    "local block = ('e'):rep(8192)\n"
    "stream.pipeline(stream.readable{ read = function(self) self:push(block) end }, sock,\n"
    "  function() end)\n"
    "sock:pipe(stream.writable{ write = function(_, c, done)\n"
    "  progress = progress + 1; rill.timeout(1, function() done() end) end })\n",
    /* a child process (cat) in the middle */
    "local stream, process = require 'rill.stream', require 'rill.process'\n"
    "progress = 0\n"
    "local child = assert(process.spawn('cat'))\n"
    "local block = ('c'):rep(8192)\n"
    "stream.pipeline(stream.readable{ read = function(self) self:push(block) end },\n"
    "  child.stdin, function() end)\n"
    "stream.pipeline(child.stdout, stream.writable{ write = function(_, c, done)\n"
    "  progress = progress + 1; rill.timeout(1, function() done() end) end }, function() end)\n",
};

static long long global_int(lua_State *L, const char *name) {
  lua_getglobal(L, name);
  long long v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static void set_dir(lua_State *L) {
  lua_pushstring(L, dir);
  lua_setglobal(L, "DIR");
}

/* The host's loop: turned by the host until the pipelines made progress, then the engine is
 * freed; the loop must close cleanly afterwards. */
static void host_case(const char *code) {
  uv_loop_t loop;
  CHECK_INT(uv_loop_init(&loop), 0);
  rill_engine *e = rill_new(&loop);
  CHECK(e != NULL);
  set_dir(rill_lua(e));
  CHECK_INT(rill_dostring(e, code), RILL_OK);
  for (int i = 0; i < 100000 && global_int(rill_lua(e), "progress") < 20; i++)
    uv_run(&loop, UV_RUN_ONCE);
  CHECK(global_int(rill_lua(e), "progress") >= 20);
  CHECK_INT(rill_status(e), RILL_OK);
  rill_free(e);
  /* Requests the engine left in flight (a child's exit, a file request) finish on the host's
   * loop without calling into the freed engine. */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
}

/* The engine's own loop, turned through rill_run. */
static void own_case(const char *code) {
  rill_engine *e = rill_new(NULL);
  CHECK(e != NULL);
  set_dir(rill_lua(e));
  CHECK_INT(rill_dostring(e, code), RILL_OK);
  for (int i = 0; i < 100000 && global_int(rill_lua(e), "progress") < 20; i++)
    CHECK_INT(rill_run(e, RILL_RUN_ONCE), RILL_OK);
  CHECK(global_int(rill_lua(e), "progress") >= 20);
  rill_free(e);
}

static void test_engine_freed_mid_pipeline(void) {
  for (size_t i = 0; i < sizeof PIPELINES / sizeof *PIPELINES; i++) {
    char name[32];
    snprintf(name, sizeof name, "host loop, pipeline %zu", i + 1);
    check_no_growth(name, host_case, PIPELINES[i]);
    snprintf(name, sizeof name, "own loop, pipeline %zu", i + 1);
    check_no_growth(name, own_case, PIPELINES[i]);
  }
}

int main(int argc, char **argv) {
  (void)argc;
  /* Under valgrind (its preload) the exec would leave valgrind behind: it checks leaks itself. */
  const char *tun = getenv("GLIBC_TUNABLES"), *pre = getenv("LD_PRELOAD");
  if (!(tun && strstr(tun, "tcache_count=0")) && !(pre && strstr(pre, "vgpreload"))) {
    setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
    execv("/proc/self/exe", argv);
    perror("exec with glibc.malloc.tcache_count=0"); /* the figures are only looser */
  }
  snprintf(dir, sizeof dir, "/tmp/rill-teardown-XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  RUN(test_plain_writer_in_flight);
  RUN(test_plain_transform_into_writer);
  RUN(test_plain_endless_into_stuck_writable);
  RUN(test_plain_gzip_into_writable);
  RUN(test_plain_write_hook_pending);
  RUN(test_engine_freed_mid_pipeline);
  const char *files[] = {"w.out", "t.out", "big.in", "big.out"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    unlink(p);
  }
  CHECK_INT(rmdir(dir), 0);
  return 0;
}
