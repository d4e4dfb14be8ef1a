/* spec/c/test_embed_sandbox.c: sandboxed engines: denied modules and Lua library parts, the
 * memory cap, the instruction cap; each failure names what was denied or which cap was hit. */
#include <lauxlib.h>
#include <unistd.h>

#include "rill.h"
#include "test.h"

/* Runs code in e and checks that it succeeds (the code makes its own assertions). */
#define OK(e, code)                                                                    \
  do {                                                                                 \
    int r_ = rill_dostring(e, code);                                                   \
    if (r_ == RILL_OK) r_ = rill_run(e, RILL_RUN_DEFAULT);                             \
    if (r_ != RILL_OK) fprintf(stderr, "%s\n", rill_errmsg(e) ? rill_errmsg(e) : "?"); \
    CHECK_INT(r_, RILL_OK);                                                            \
  } while (0)

/* Runs code in e and checks that it fails with a message containing want. */
static void fails(rill_engine *e, const char *code, const char *want) {
  int r = rill_dostring(e, code);
  if (r == RILL_OK) r = rill_run(e, RILL_RUN_DEFAULT);
  if (r != RILL_ERRRUN || strstr(rill_errmsg(e), want) == NULL) {
    fprintf(stderr, "code: %s\nstatus %d, message: %s\nwanted: %s\n", code, r,
            rill_errmsg(e) ? rill_errmsg(e) : "(none)", want);
    exit(1);
  }
}

/* A Lua helper in every engine: denied(fn, what) checks that fn raises the sandbox's error. */
static const char *const DENIED_FN =
    "function denied(fn, what)\n"
    "  local ok, err = pcall(fn)\n"
    "  assert(not ok, what .. ' was not denied')\n"
    "  local msg = type(err) == 'table' and err.message or tostring(err)\n"
    "  local want = what .. ': denied by the engine\\'s sandbox'\n"
    "  assert(msg:find(want, 1, true), 'got: ' .. tostring(msg) .. ' wanted: ' .. want)\n"
    "  if type(err) == 'table' then assert(err.code == 'ERR_ACCESS_DENIED', err.code) end\n"
    "end";

static rill_engine *sandboxed(const rill_options *o) {
  rill_engine *e = rill_new_ex(NULL, o);
  CHECK(e != NULL);
  OK(e, DENIED_FN);
  return e;
}

static void test_options_checked(void) {
  rill_options o = {0};
  o.deny = 1u << 30;
  CHECK(rill_new_ex(NULL, &o) == NULL);
  const char *const empty[] = {"", NULL};
  o.deny = 0;
  o.deny_modules = empty;
  CHECK(rill_new_ex(NULL, &o) == NULL);
  o.deny_modules = NULL;
  o.max_memory = 1000; /* far below what an engine needs to open */
  CHECK(rill_new_ex(NULL, &o) == NULL);
  /* NULL and zeroed options: a plain engine. */
  rill_engine *e = rill_new_ex(NULL, NULL);
  OK(e, "assert(io and os.execute and debug and package.loadlib and rill.env)");
  rill_free(e);
}

static void test_deny_modules(void) {
  rill_options o = {.deny = RILL_DENY_MODULES};
  rill_engine *e = sandboxed(&o);
  OK(e,
     "denied(function() return rill.fs end, 'rill.fs')\n"
     "denied(function() return rill.process end, 'rill.process')\n"
     "denied(function() return rill.net end, 'rill.net')\n"
     "denied(function() return rill.udp end, 'rill.udp')\n"
     "denied(function() return rill.http end, 'rill.http')\n"
     "denied(function() return rill.stdout end, 'rill.stdout')\n"
     "denied(function() return rill.stdin end, 'rill.stdin')\n"
     "denied(function() return rill.on_signal end, 'rill.on_signal')\n"
     "denied(function() return require 'rill.fs' end, 'rill.fs')\n"
     "denied(function() return require 'rill._fs' end, 'rill._fs')\n"
     "denied(function() return require 'rill.http' end, 'rill.http')\n"
     "denied(function() return require 'rill.process' end, 'rill.process')\n"
     "denied(function() return require 'rill.stdio' end, 'rill.stdio')\n"
     "denied(function() return require 'rill._repl' end, 'rill._repl')\n"
     "denied(function() return require 'rill.udp' end, 'rill.udp')\n"
     "denied(function() return require 'rill._http' end, 'rill._http')\n"
     /* what is not denied still works */
     "assert(rill.buffer.alloc(3):tostring('hex') == '000000')\n"
     "assert(rill.env and io and os.getenv)\n"
     "rill.sleep(1)\n"
     /* the sandbox's metatable wrapper passes unknown keys through */
     "assert(rill.no_such_module == nil)");
  /* An uncaught denial reaches the host with its message. */
  fails(e, "local fs = rill.fs", "rill.fs: denied by the engine's sandbox");
  rill_free(e);
}

/* One module denied: the others, stdio and streams included, keep working. */
static void test_deny_one_module(void) {
  rill_options o = {.deny = RILL_DENY_FS};
  rill_engine *e = sandboxed(&o);
  OK(e,
     "denied(function() return rill.fs end, 'rill.fs')\n"
     "assert(rill.net and rill.process and rill.zlib and rill.stream)\n"
     "assert(tostring(rill.stream.from('abc'):collect()) == 'abc')");
  rill_free(e);
}

static void test_deny_named_modules(void) {
  const char *const extra[] = {"buffer", "zlib", NULL};
  rill_options o = {.deny_modules = extra};
  rill_engine *e = sandboxed(&o);
  OK(e,
     "denied(function() return rill.buffer end, 'rill.buffer')\n"
     "denied(function() return require 'rill.buffer' end, 'rill.buffer')\n"
     "denied(function() return rill.zlib end, 'rill.zlib')\n"
     "assert(rill.spawn and rill.timeout)");
  rill_free(e);
}

static void test_deny_lua_parts(void) {
  rill_options o = {.deny = RILL_DENY_LUA};
  rill_engine *e = sandboxed(&o);
  OK(e,
     "denied(function() return io.open('/etc/passwd') end, 'io.open')\n"
     "denied(function() return require('io').lines end, 'io.lines')\n"
     "denied(function() return dofile('/etc/passwd') end, 'dofile')\n"
     "denied(function() return loadfile('/etc/passwd') end, 'loadfile')\n"
     "denied(function() return os.execute('true') end, 'os.execute')\n"
     "denied(function() return os.remove('/tmp/x') end, 'os.remove')\n"
     "denied(function() return os.rename('/tmp/x', '/tmp/y') end, 'os.rename')\n"
     "denied(function() return os.exit(3) end, 'os.exit')\n"
     "denied(function() return os.getenv('HOME') end, 'os.getenv')\n"
     "denied(function() return os.tmpname() end, 'os.tmpname')\n"
     "denied(function() return rill.env end, 'rill.env')\n"
     "denied(function() return package.loadlib('libc.so.6', 'puts') end, 'package.loadlib')\n"
     "denied(function() return debug.getinfo(1) end, 'debug.getinfo')\n"
     "denied(function() return require('debug').sethook end, 'debug.sethook')\n"
     "denied(function() return debug.getregistry() end, 'debug.getregistry')\n"
     "denied(function() return debug.getupvalue(print, 1) end, 'debug.getupvalue')\n"
     "assert(debug.traceback('x'):find('^x\\nstack traceback'))\n"
     /* rill's own Lua modules still load (rill.stream keeps debug.traceback) */
     "assert(tostring(rill.stream.from('x'):collect()) == 'x')\n"
     /* the harmless parts of os stay */
     "assert(os.time() and os.clock() and os.date('%Y'))\n"
     /* require: preload works, Lua files and C modules say why they are not looked up */
     "assert(require('rill.buffer') == rill.buffer)\n"
     "local ok, err = pcall(require, 'socket')\n"
     "assert(not ok and err:find('require of Lua files: denied by the engine\\'s sandbox', 1, "
     "true), err)\n"
     "assert(err:find('require of C modules: denied by the engine\\'s sandbox', 1, true), err)\n"
     /* binary chunks: load says so; text chunks still load */
     "local f, msg = load(string.dump(function() return 1 end))\n"
     "assert(f == nil and msg:find('binary chunks: denied by the engine\\'s sandbox', 1, true), "
     "msg)\n"
     "f, msg = load(string.dump(function() return 1 end), 'x', 'b')\n"
     "assert(f == nil and msg:find('binary chunks: denied', 1, true), msg)\n"
     "local parts = { string.dump(function() return 1 end) }\n"
     "f, msg = load(function() return table.remove(parts) end)\n"
     "assert(f == nil and msg:find('binary chunks: denied', 1, true), msg)\n"
     "assert(load('return 40 + 2')() == 42)\n"
     "assert(load('return x', 'n', 't', {x = 5})() == 5)\n"
     /* the stub libraries cannot be opened up */
     "assert(getmetatable(io) == 'denied')\n"
     "assert(not pcall(setmetatable, io, {}))");
  fails(e, "os.exit(1)", "os.exit: denied by the engine's sandbox");
  rill_free(e);
}

/* Bytecode denied, files allowed: loadfile, dofile and require of Lua files read text only. */
static void test_deny_bytecode_only(void) {
  /* Per-process names: ctest may run this test and its valgrind twin at once. */
  char dir[64], src[96], bin[96], code[2048];
  snprintf(dir, sizeof dir, "/tmp/rill_test_embed_%d_", (int)getpid());
  snprintf(src, sizeof src, "%stext.lua", dir);
  snprintf(bin, sizeof bin, "%sbin.lua", dir);
  FILE *f = fopen(src, "w");
  CHECK(f != NULL);
  fputs("return 'text'", f);
  fclose(f);
  rill_options o = {.deny = RILL_DENY_BYTECODE};
  rill_engine *e = sandboxed(&o);
  snprintf(code, sizeof code,
           "local src, bin, dir = '%s', '%s', '%s'\n"
           "local f = io.open(bin, 'wb')\n"
           "f:write(string.dump(function() return 'binary' end)); f:close()\n"
           "assert(dofile(src) == 'text')\n"
           "assert(loadfile(src)() == 'text')\n"
           "local fn, msg = loadfile(bin)\n"
           "assert(fn == nil and msg:find('binary chunks: denied', 1, true), msg)\n"
           "local ok, err = pcall(dofile, bin)\n"
           "assert(not ok and err:find('binary chunks: denied', 1, true), err)\n"
           "package.path = dir .. '?.lua'\n"
           "assert(require('text') == 'text')\n"
           "ok, err = pcall(require, 'bin')\n"
           "assert(not ok and err:find('binary chunk', 1, true), err)\n"
           "ok, err = pcall(require, 'missing')\n"
           "assert(not ok and err:find('no file', 1, true), err)",
           src, bin, dir);
  OK(e, code);
  rill_free(e);
  /* The host's own rill_dofile honours the sandbox too. */
  e = sandboxed(&o);
  CHECK_INT(rill_dofile(e, bin), RILL_ERRSYNTAX);
  CHECK(strstr(rill_errmsg(e), "binary chunk") != NULL);
  CHECK_INT(rill_dofile(e, src), RILL_OK);
  rill_free(e);
  remove(src);
  remove(bin);
}

/* ---- the memory cap ---- */

static void test_memory_cap(void) {
  rill_options o = {.max_memory = 4 << 20};
  rill_engine *e = rill_new_ex(NULL, &o);
  CHECK(e != NULL);
  size_t idle = rill_memory(e);
  CHECK(idle > 0 && idle < o.max_memory);
  /* A growing table hits the cap; the error says it was the cap. */
  fails(e, "local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(100) .. i end",
        "memory cap reached (the engine may hold 4194304 bytes): not enough memory");
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_OK); /* the failed task is let go next turn */
  lua_gc(rill_lua(e), LUA_GCCOLLECT);
  CHECK(rill_memory(e) < idle + 64 * 1024);
  /* One big string. */
  fails(e, "local s = ('x'):rep(8 << 20)", "memory cap reached");
  /* A script can catch the error, and the engine keeps working afterwards. */
  OK(e,
     "local ok, err = pcall(function() return ('x'):rep(8 << 20) end)\n"
     "assert(not ok and err:find('not enough memory'))\n"
     "local s = ('y'):rep(1 << 20)\n"
     "assert(#s == 1 << 20)");
  /* In a task resumed by the loop, and in a callback. */
  fails(e, "rill.sleep(1); local t = {} for i = 1, 1e9 do t[i] = {i} end", "memory cap reached");
  fails(e, "rill.timeout(1, function() local t = {} for i = 1, 1e9 do t[i] = {i} end end)",
        "memory cap reached");
  OK(e, "x = 1");
  rill_free(e);
}

/* Buffers count against the same cap: their slabs are charged to the engine. */
static void test_memory_cap_buffers(void) {
  rill_options o = {.max_memory = 4 << 20};
  rill_engine *e = rill_new_ex(NULL, &o);
  size_t idle = rill_memory(e);
  OK(e, "b = rill.buffer.alloc(1 << 20)");
  CHECK(rill_memory(e) >= idle + (1 << 20));
  fails(e, "local t = {} for i = 1, 1e6 do t[i] = rill.buffer.alloc(65536) end",
        "memory cap reached (the engine may hold 4194304 bytes)");
  fails(e, "local b = rill.buffer.alloc(16 << 20)", "memory cap reached");
  /* The Lua heap and the buffers share the cap (string.rep needs twice the length at its peak:
   * 3 MiB, which fits only without b's 1 MiB). */
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_OK);
  fails(e, "local s = ('x'):rep(1536 << 10)", "memory cap reached");
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_OK); /* failed tasks are let go next turn */
  OK(e, "b = nil; collectgarbage(); local s = ('x'):rep(1536 << 10)");
  lua_gc(rill_lua(e), LUA_GCCOLLECT);
  CHECK(rill_memory(e) < idle + 64 * 1024);
  rill_free(e);
}

/* Without a cap, the count is still kept (hosts can watch it). */
static void test_memory_count(void) {
  rill_engine *e = rill_new(NULL);
  size_t before = rill_memory(e);
  OK(e, "big = ('x'):rep(1 << 20)");
  CHECK(rill_memory(e) >= before + (1 << 20));
  OK(e, "big = nil; collectgarbage(); buf = rill.buffer.alloc(1 << 20)");
  CHECK(rill_memory(e) >= before + (1 << 20));
  CHECK(rill_memory(e) < before + (1 << 20) + 64 * 1024);
  OK(e, "buf = nil; collectgarbage()");
  CHECK(rill_memory(e) < before + 64 * 1024);
  rill_free(e);
}

/* ---- the instruction cap ---- */

static void test_instruction_cap(void) {
  rill_options o = {.max_instructions = 1000000};
  rill_engine *e = sandboxed(&o);
  const char *want = "instruction cap reached: more than 1000000 Lua instructions";
  fails(e, "while true do end", want);
  /* A pcall around the loop cannot swallow the cap. */
  fails(e, "while true do pcall(function() while true do end end) end", want);
  fails(e, "for i = 1, 1e9 do local ok = pcall(error, i) end", want);
  /* In a coroutine, a task, a callback. */
  fails(e, "coroutine.wrap(function() while true do end end)()", want);
  fails(e, "rill.spawn(function() rill.sleep(1); while true do end end)", want);
  fails(e, "rill.timeout(1, function() local n = 0 while true do n = n + 1 end end)", want);
  fails(e, "rill.next_tick(function() while true do end end)", want);
  /* The position of the loop is in the message. */
  fails(e, "local x = 0\nwhile true do x = x + 1 end", "(command line):2:");
  /* Work that yields to the loop may run as long as it likes in total. */
  OK(e,
     "local n = 0\n"
     "for turn = 1, 5 do\n"
     "  for i = 1, 100000 do n = n + i end\n" /* ~400k instructions per turn */
     "  rill.sleep(0)\n"
     "end\n"
     "assert(n == 5 * 5000050000)");
  /* Each rill_dostring starts afresh. */
  for (int i = 0; i < 5; i++) OK(e, "for i = 1, 100000 do end");
  /* The hook cannot be removed. */
  OK(e, "denied(function() debug.sethook() end, 'debug.sethook')");
  rill_free(e);
}

/* The instruction cap on a host loop: the host's handles stay untouched. */
static void test_instruction_cap_host_loop(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  rill_options o = {.max_instructions = 100000, .deny = RILL_DENY_ALL};
  rill_engine *e = rill_new_ex(&loop, &o);
  CHECK_INT(rill_dostring(e, "rill.timeout(1, function() while true do end end)"), RILL_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(rill_status(e), RILL_ERRRUN);
  CHECK(strstr(rill_errmsg(e), "instruction cap reached") != NULL);
  rill_free(e);
  CHECK_INT(uv_loop_close(&loop), 0);
}

/* Everything at once, many times: creation and teardown stay clean. */
static void test_many_sandboxes(void) {
  rill_options o = {.deny = RILL_DENY_ALL, .max_memory = 8 << 20, .max_instructions = 1 << 20};
  for (int i = 0; i < 200; i++) {
    rill_engine *e = rill_new_ex(NULL, &o);
    CHECK(e != NULL);
    CHECK_INT(rill_dostring(e, "rill.timeout(1, function() x = 1 end)"), RILL_OK);
    if (i % 2) CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_OK);
    rill_free(e);
  }
}

int main(void) {
  RUN(test_options_checked);
  RUN(test_deny_modules);
  RUN(test_deny_one_module);
  RUN(test_deny_named_modules);
  RUN(test_deny_lua_parts);
  RUN(test_deny_bytecode_only);
  RUN(test_memory_cap);
  RUN(test_memory_cap_buffers);
  RUN(test_memory_count);
  RUN(test_instruction_cap);
  RUN(test_instruction_cap_host_loop);
  RUN(test_many_sandboxes);
  return 0;
}
