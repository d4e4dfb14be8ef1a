/* fuzz/fuzz_pack.c: libFuzzer target for b:unpack and buffer.pack against Lua's string.unpack. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* bindings/lbuffer.c; declared here because fuzz targets get no include path to bindings/. */
int rill__open_buffer(lua_State *L);

/* Input: a format, a NUL, then the data (and the byte after the NUL, if any, picks the start
 * position). b:unpack over a buffer must behave exactly as string.unpack over the same bytes:
 * same success, same values, same error message; and whatever unpacked must pack back the same
 * with buffer.pack as with string.pack. */

static lua_State *L;

/* Runs in protected mode: compares everything, raises "mismatch" when the two disagree. */
static const char *CHECK_LUA =
    "local buffer, fmt, data, pos = ...\n"
    "local b = buffer.from(data)\n"
    "local r1 = table.pack(pcall(string.unpack, fmt, data, pos))\n"
    "local r2 = table.pack(pcall(b.unpack, b, fmt, pos))\n"
    "local function msg(e) return tostring(e):match('%((.*)%)$') or tostring(e) end\n"
    "if r1[1] ~= r2[1] then error('mismatch: status') end\n"
    "if not r1[1] then\n"
    "  if msg(r1[2]) ~= msg(r2[2]) then error('mismatch: ' .. msg(r1[2]) .. ' / ' .. msg(r2[2])) "
    "end\n"
    "  return\n"
    "end\n"
    "if r1.n ~= r2.n then error('mismatch: count') end\n"
    "for i = 2, r1.n do\n"
    "  local x, y = r1[i], r2[i]\n"
    "  if not (x == y or (x ~= x and y ~= y)) or math.type(x) ~= math.type(y) then\n"
    "    error('mismatch: value ' .. i)\n"
    "  end\n"
    "end\n"
    "local p1 = table.pack(pcall(string.pack, fmt, table.unpack(r1, 2, r1.n - 1)))\n"
    "local p2 = table.pack(pcall(buffer.pack, fmt, table.unpack(r1, 2, r1.n - 1)))\n"
    "if p1[1] ~= p2[1] then error('mismatch: pack status') end\n"
    "if p1[1] and p1[2] ~= tostring(p2[2]) then error('mismatch: pack bytes') end\n"
    "if not p1[1] and msg(p1[2]) ~= msg(p2[2]) then error('mismatch: pack error') end\n";

static int check_ref;

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "rill.buffer", rill__open_buffer, 0);
  lua_pop(L, 1);
  if (luaL_loadstring(L, CHECK_LUA) != LUA_OK) abort();
  check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) setup();
  const uint8_t *nul = memchr(data, 0, size);
  size_t flen = nul ? (size_t)(nul - data) : size;
  const uint8_t *rest = nul ? nul + 1 : data + size;
  size_t rlen = size - (size_t)(rest - data);
  lua_Integer pos = 1;
  if (rlen > 0) {
    pos = (int8_t)rest[0]; /* small positive and negative positions, 0 included */
    rest++;
    rlen--;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "rill.buffer");
  lua_remove(L, -2);
  lua_pushlstring(L, (const char *)data, flen);
  lua_pushlstring(L, (const char *)rest, rlen);
  lua_pushinteger(L, pos);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    /* A disagreement is a bug; running out of memory on a huge format is not. */
    if (m && strstr(m, "mismatch")) {
      fprintf(stderr, "%s\n", m);
      abort();
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
