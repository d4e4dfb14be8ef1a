/* bindings/lzlib.c: rill.zlib: gzip, gunzip, deflate and inflate as native duplex streams. */
#include "lrill.h"
#include "pgzip.h"
#include "workers.h"
#include "zlib_stream.h"

/* Reads the optional options table at index 1: {level = 0..9 (compression only),
 * max_output = bytes (decompression only: more output fails the stream)}. */
static void check_opts(lua_State *L, rill_zlib_opts_t *o, const char *fname) {
  o->level = -1;
  o->max_output = 0;
  if (lua_isnoneornil(L, 1)) return;
  luaL_argexpected(L, lua_istable(L, 1), 1, "table or nil");
  int compress = o->mode == RILL_ZLIB_GZIP || o->mode == RILL_ZLIB_DEFLATE;
  if (lua_getfield(L, 1, "level") != LUA_TNIL) {
    if (!compress) luaL_error(L, "bad argument #1 to '%s' (level is only for compression)", fname);
    int isint;
    lua_Integer lv = lua_tointegerx(L, -1, &isint);
    if (!isint || lv < -1 || lv > 9)
      luaL_error(L, "bad argument #1 to '%s' (level must be an integer from 0 to 9)", fname);
    o->level = (int)lv;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "max_output") != LUA_TNIL) {
    int isint;
    lua_Integer m = lua_tointegerx(L, -1, &isint);
    if (!isint || m < 1)
      luaL_error(L, "bad argument #1 to '%s' (max_output must be a positive integer)", fname);
    o->max_output = (uint64_t)m;
  }
  lua_pop(L, 1);
}

static int make(lua_State *L, rill_zlib_mode_t mode, const char *fname) {
  rill_zlib_opts_t o = {mode, -1, 0};
  check_opts(L, &o, fname);
  rill_ctx_t *ctx = rill__ctx(L);
  rill_stream_t *s;
  int r = rill_zlib_stream_new(&ctx->loop, &o, &s);
  if (r) return rill__raise(L, r, fname);
  rill__pushstream(L, s);
  return 1;
}

/* gzip([{level, threads}]): with threads (0: one per core) blocks are compressed on worker
 * threads (core/pgzip.h); without, by one zlib stream on the loop thread. */
static int z_gzip(lua_State *L) {
  if (!lua_istable(L, 1) || lua_getfield(L, 1, "threads") == LUA_TNIL)
    return make(L, RILL_ZLIB_GZIP, "gzip");
  int isint;
  lua_Integer n = lua_tointegerx(L, -1, &isint);
  if (!isint || n < 0 || n > RILL_WORKERS_MAX)
    luaL_error(L, "bad argument #1 to 'gzip' (threads must be an integer from 0 to %d)",
               RILL_WORKERS_MAX);
  lua_pop(L, 1);
  rill_zlib_opts_t o = {RILL_ZLIB_GZIP, -1, 0};
  check_opts(L, &o, "gzip");
  rill_stream_t *s;
  int r = rill_pgzip_new(&rill__ctx(L)->loop, o.level, (unsigned)n, &s);
  if (r) return rill__raise(L, r, "gzip");
  rill__pushstream(L, s);
  return 1;
}

static int z_gunzip(lua_State *L) {
  return make(L, RILL_ZLIB_GUNZIP, "gunzip");
}

static int z_deflate(lua_State *L) {
  return make(L, RILL_ZLIB_DEFLATE, "deflate");
}

static int z_inflate(lua_State *L) {
  return make(L, RILL_ZLIB_INFLATE, "inflate");
}

/* Bytes consumed and produced so far by a zlib stream: z.stats(s) -> bytes_in, bytes_out. */
static int z_stats(lua_State *L) {
  rill_stream_t *s = rill__checkstream(L, 1);
  uint64_t in, out;
  if (rill_pgzip_stats(s, &in, &out)) {
    lua_pushinteger(L, (lua_Integer)in);
    lua_pushinteger(L, (lua_Integer)out);
    return 2;
  }
  const rill_zlib_t *z = rill_zlib_stream_engine(s);
  luaL_argexpected(L, z != NULL, 1, "zlib stream");
  lua_pushinteger(L, (lua_Integer)z->bytes_in);
  lua_pushinteger(L, (lua_Integer)z->bytes_out);
  return 2;
}

int rill__open_zlib(lua_State *L) {
  rill__require_streams(L);
  static const luaL_Reg fns[] = {
      {"gzip", z_gzip},       {"gunzip", z_gunzip}, {"deflate", z_deflate},
      {"inflate", z_inflate}, {"stats", z_stats},   {NULL, NULL},
  };
  luaL_newlib(L, fns);
  return 1;
}
