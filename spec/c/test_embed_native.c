/* spec/c/test_embed_native.c: native transforms: C transforms registered by the host and used
 * from Lua in pipes and pipelines; zero-copy outputs, errors with their messages, options, and
 * every instance freed once. */
#include <ctype.h>
#include <lauxlib.h>

#include "rill.h"
#include "test.h"

/* slab mallocs of this thread (core/buf.h), to show that push_input copies nothing */
size_t rill_slab_mallocs(void);

static int frees;

/* upper: every byte upper-cased into a reserved output (one output per input, no extra copy). */
static int upper_transform(rill_xform *x, const unsigned char *data, size_t len) {
  unsigned char *out = rill_xform_reserve(x, len);
  if (out == NULL) return UV_ENOMEM;
  for (size_t i = 0; i < len; i++) out[i] = (unsigned char)toupper(data[i]);
  return rill_xform_commit(x, len);
}

/* novowels: the runs between vowels, pushed as slices of the input (no copy at all). */
static int novowels_transform(rill_xform *x, const unsigned char *data, size_t len) {
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len || strchr("aeiou", data[i]) != NULL) {
      if (i > start && rill_xform_push_input(x, start, i - start) != 0) return UV_EINVAL;
      start = i + 1;
    }
  }
  return 0;
}

/* count: nothing per chunk; at the end one line with the byte count (state + flush). */
typedef struct {
  size_t bytes;
  int times;
} count_state;

static int count_transform(rill_xform *x, const unsigned char *data, size_t len) {
  count_state *st = rill_xform_state(x);
  st->bytes += len;
  return 0;
}

static int count_flush(rill_xform *x) {
  count_state *st = rill_xform_state(x);
  char line[64];
  int n = snprintf(line, sizeof line, "%s%zu bytes\n", (const char *)rill_xform_arg(x), st->bytes);
  for (int i = 0; i < (st->times ? st->times : 1); i++) rill_xform_push(x, line, (size_t)n);
  return 0;
}

/* Options: {times = n} (1..10); a bad type raises, a bad value returns an error. */
static int count_init(rill_xform *x, lua_State *L, int opts) {
  count_state *st = rill_xform_state(x);
  if (lua_isnil(L, opts)) return 0;
  luaL_checktype(L, opts, LUA_TTABLE);
  lua_getfield(L, opts, "times");
  st->times = (int)luaL_optinteger(L, -1, 1);
  lua_pop(L, 1);
  if (st->times < 1 || st->times > 10) {
    rill_xform_set_error(x, "times must be between 1 and 10");
    return UV_EINVAL;
  }
  return 0;
}

static void count_free(rill_xform *x) {
  frees++;
}

/* fail: passes bytes through until it meets '!', then fails with a message. */
static int fail_transform(rill_xform *x, const unsigned char *data, size_t len) {
  const unsigned char *bang = memchr(data, '!', len);
  if (bang == NULL) return rill_xform_push_input(x, 0, len);
  char msg[64];
  snprintf(msg, sizeof msg, "bad byte at offset %zu", (size_t)(bang - data));
  rill_xform_set_error(x, msg);
  return RILL_ERRRUN; /* not a libuv code: the stream fails with ERR_CALLBACK */
}

static int fail_flush(rill_xform *x) {
  return UV_EPIPE; /* a libuv code and no message: its own message */
}

static rill_engine *engine(const rill_options *o) {
  rill_engine *e = rill_new_ex(NULL, o);
  CHECK(e != NULL);
  rill_transform_def up = {.name = "upper", .transform = upper_transform};
  rill_transform_def nov = {.name = "novowels", .transform = novowels_transform};
  rill_transform_def cnt = {.name = "count",
                            .state_size = sizeof(count_state),
                            .arg = "total: ",
                            .init = count_init,
                            .transform = count_transform,
                            .flush = count_flush,
                            .free = count_free};
  rill_transform_def fl = {.name = "fail", .transform = fail_transform, .flush = fail_flush};
  rill_transform_def plain = {.name = "plain", .transform = novowels_transform, .free = count_free};
  CHECK_INT(rill_register_transform(e, &plain), 0); /* free without init */
  CHECK_INT(rill_register_transform(e, &up), 0);
  CHECK_INT(rill_register_transform(e, &nov), 0);
  CHECK_INT(rill_register_transform(e, &cnt), 0);
  CHECK_INT(rill_register_transform(e, &fl), 0);
  return e;
}

static void run_ok(rill_engine *e, const char *code) {
  int r = rill_dostring(e, code);
  if (r == RILL_OK) r = rill_run(e, RILL_RUN_DEFAULT);
  if (r != RILL_OK) fprintf(stderr, "%s\n", rill_errmsg(e));
  CHECK_INT(r, RILL_OK);
}

static void test_register(void) {
  rill_engine *e = engine(NULL);
  rill_transform_def d = {.name = "upper", .transform = upper_transform};
  CHECK_INT(rill_register_transform(e, &d), UV_EINVAL); /* taken */
  d.name = "";
  CHECK_INT(rill_register_transform(e, &d), UV_EINVAL);
  d.name = "has space";
  CHECK_INT(rill_register_transform(e, &d), UV_EINVAL);
  d.name = "9lives";
  CHECK_INT(rill_register_transform(e, &d), UV_EINVAL);
  d.name = NULL;
  CHECK_INT(rill_register_transform(e, &d), UV_EINVAL);
  d.name = "ok_name";
  d.transform = NULL;
  CHECK_INT(rill_register_transform(e, &d), UV_EINVAL);
  CHECK_INT(rill_register_transform(e, NULL), UV_EINVAL);
  run_ok(e, "assert(type(rill.native.upper) == 'function' and rill.native.ok_name == nil)");
  rill_free(e);
}

static void test_in_pipelines(void) {
  frees = 0;
  rill_engine *e = engine(NULL);
  run_ok(e,
         "local stream = rill.stream\n"
         /* pipe and collect, strings and buffers in */
         "local out = stream.from('hello world'):pipe(rill.native.upper()):collect()\n"
         "assert(tostring(out) == 'HELLO WORLD', tostring(out))\n"
         /* a pipeline of several native and Lua stages */
         "local got = {}\n"
         "local sink = stream.writable{write = function(self, c, done) got[#got + 1] = "
         "tostring(c); done() end}\n"
         "local ok, err = stream.pipeline(stream.from({'a stream ', 'of ', 'words'}),\n"
         "  rill.native.novowels(), stream.map(function(c) return tostring(c) end),\n"
         "  rill.native.upper(), sink)\n"
         "assert(ok, tostring(err))\n"
         "assert(table.concat(got) == ' STRM F WRDS', table.concat(got))\n"
         /* state, flush, arg, options */
         "out = stream.from('12345'):pipe(rill.native.count()):collect()\n"
         "assert(tostring(out) == 'total: 5 bytes\\n', tostring(out))\n"
         "out = stream.from('xy'):pipe(rill.native.count{times = 2}):collect()\n"
         "assert(tostring(out) == 'total: 2 bytes\\ntotal: 2 bytes\\n', tostring(out))\n"
         /* written into directly, read with read() */
         "local t = rill.native.upper()\n"
         "t:write('abc'); t:write(rill.buffer.from('def')); t:close()\n"
         "local acc = {}\n"
         "for c in t:chunks() do acc[#acc + 1] = tostring(c) end\n"
         "assert(table.concat(acc) == 'ABCDEF', table.concat(acc))");
  rill_free(e);
  CHECK_INT(frees, 2); /* both count instances, once each */
}

static void test_errors(void) {
  frees = 0;
  rill_engine *e = engine(NULL);
  run_ok(e,
         "local stream = rill.stream\n"
         "local ok, err = stream.pipeline(stream.from({'fine ', 'bad!'}), rill.native.fail(),\n"
         "  stream.writable{write = function(self, c, done) done() end})\n"
         "assert(not ok)\n"
         "assert(err.code == 'ERR_CALLBACK', err.code)\n"
         "assert(err.message == 'rill.native.fail: bad byte at offset 3', err.message)\n"
         "assert(tostring(err):find('rill.native.fail: bad byte at offset 3', 1, true))\n"
         /* an error from flush, with the code's own message */
         "ok, err = stream.pipeline(stream.from('fine'), rill.native.fail(),\n"
         "  stream.writable{write = function(self, c, done) done() end})\n"
         "assert(not ok and err.code == 'EPIPE', tostring(err))\n"
         "assert(err.message:find('^rill.native.fail: '), err.message)\n"
         /* init: a Lua error from luaL_check*, and an error code with a message */
         "local ok2, e2 = pcall(rill.native.count, 'not a table')\n"
         "assert(not ok2 and tostring(e2):find('table expected'), tostring(e2))\n"
         "ok2, e2 = pcall(rill.native.count, {times = 99})\n"
         "assert(not ok2 and e2.code == 'EINVAL', tostring(e2))\n"
         "assert(e2.message == 'rill.native.count: times must be between 1 and 10', e2.message)");
  CHECK_INT(frees, 2); /* the failed inits freed their state at once */
  rill_free(e);
}

/* Big input through push_input: outputs share the input's slabs, so no slab is made per chunk. */
static void test_zero_copy(void) {
  rill_engine *e = engine(NULL);
  run_ok(e, "big = rill.buffer.alloc(8 << 20, ('x'):byte())\n");
  size_t before = rill_slab_mallocs();
  run_ok(e,
         "local stream = rill.stream\n"
         "local n, chunks = 0, 0\n"
         "local sink = stream.writable{write = function(self, c, done)\n"
         "  n = n + #c; chunks = chunks + 1; done() end}\n"
         "assert(stream.pipeline(stream.from(big), rill.native.novowels(), sink))\n"
         "assert(n == 8 << 20 and chunks >= 128, n .. ' ' .. chunks)");
  size_t made = rill_slab_mallocs() - before;
  if (made > 8) {
    fprintf(stderr, "%zu slabs made for 128 chunks passed through\n", made);
    exit(1);
  }
  rill_free(e);
}

/* Every instance is freed once, however it ends; a sandbox keeps the host's grants. */
static void test_lifetimes_and_sandbox(void) {
  frees = 0;
  rill_options o = {.deny = RILL_DENY_ALL, .max_memory = 8 << 20};
  rill_engine *e = engine(&o);
  run_ok(e,
         "keep = rill.native.count()\n"
         "keep:write('abc')\n"
         "local out = rill.stream.from('sandboxed'):pipe(rill.native.upper()):collect()\n"
         "assert(tostring(out) == 'SANDBOXED')\n"
         "rill.native.count():destroy()\n"
         "local half = rill.native.count(); half:write('x')\n"
         "rill.sleep(5)\n"
         "half:destroy(); keep:destroy(); keep = nil\n"
         "rill.native.count() -- dropped at once\n"
         "rill.native.plain():destroy()\n"
         "collectgarbage(); collectgarbage()");
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_OK);
  lua_gc(rill_lua(e), LUA_GCCOLLECT);
  CHECK_INT(rill_run(e, RILL_RUN_DEFAULT), RILL_OK);
  CHECK_INT(frees, 5);
  rill_free(e);
  CHECK_INT(frees, 5);
}

int main(void) {
  RUN(test_register);
  RUN(test_in_pipelines);
  RUN(test_errors);
  RUN(test_zero_copy);
  RUN(test_lifetimes_and_sandbox);
  return 0;
}
