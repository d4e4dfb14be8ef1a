/* bindings/lbuffer.c: the rill.buffer module: byte buffers over refcounted views, codecs, pack. */
#define _GNU_SOURCE /* memmem */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "lrill.h"

#define BUFFER_MT "rill.buffer"

/* The largest buffer a script may ask for. Far above any real use, far below the sizes where
 * size arithmetic could wrap, and it keeps every length exact as a lua_Integer. */
#if SIZE_MAX > (1ull << 40)
#define BUF_MAX ((size_t)1 << 40)
#else
#define BUF_MAX (SIZE_MAX / 2)
#endif

/* ---- the userdata ---- */

static void push_mt(lua_State *L);

/* Pushes a new empty buffer userdata and returns its view. The userdata exists before any
 * memory is acquired for it, so a later error in the caller cannot leak that memory: __gc of
 * the userdata releases whatever the caller put in the view. */
static rill_view_t *newbuf(lua_State *L) {
  rill_view_t *v = lua_newuserdatauv(L, sizeof *v, 0);
  v->slab = NULL;
  v->off = v->len = 0;
  push_mt(L);
  lua_setmetatable(L, -2);
  return v;
}

/* Fills the view of a new buffer with n bytes, raising on failure. */
static unsigned char *bufalloc(lua_State *L, rill_view_t *v, size_t n) {
  if (rill_view_alloc(v, n) != 0) luaL_error(L, "not enough memory");
  return rill_view_data(v);
}

void rill__pushbuffer(lua_State *L, rill_view_t *v) {
  /* If creating the userdata raises (out of memory), *v still holds its reference. */
  rill_view_t *u = newbuf(L);
  *u = *v;
  v->slab = NULL;
  v->off = v->len = 0;
  /* The collector sees a small userdata, not the bytes it pins: tell it, so that a stream of
   * chunks handed to Lua is collected at the pace it is made (memory stays flat). */
  if (u->len >= 1024) lua_gc(L, LUA_GCSTEP, (int)(u->len >> 10));
}

rill_view_t *rill__tobuffer(lua_State *L, int idx) {
  return luaL_testudata(L, idx, BUFFER_MT);
}

rill_view_t *rill__checkbuffer(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, BUFFER_MT);
}

const char *rill__tobytes(lua_State *L, int idx, size_t *len) {
  /* Only real strings: a number would be converted in place, which surprises callers. */
  if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
  rill_view_t *v = rill__tobuffer(L, idx);
  if (v == NULL) return NULL;
  *len = v->len;
  return (const char *)rill_view_data(v);
}

const char *rill__checkbytes(lua_State *L, int idx, size_t *len) {
  const char *p = rill__tobytes(L, idx, len);
  if (p == NULL) luaL_typeerror(L, idx, "string or buffer");
  return p;
}

/* ---- helpers: sizes, positions, encodings ---- */

/* A size argument: an integer in [0, BUF_MAX]. NaN, infinities and non-integers raise through
 * luaL_checkinteger ("number has no integer representation"). */
static size_t checksize(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 0 && (lua_Unsigned)n <= BUF_MAX, arg, "size out of range");
  return (size_t)n;
}

/* string.sub's rules: a start position, clamped to [1, inf). */
static size_t startpos(lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos;
  if (pos == 0 || pos < -(lua_Integer)len) return 1;
  return len + (size_t)pos + 1;
}

/* string.sub's rules: an end position, clamped to [0, len]. */
static size_t endpos(lua_Integer pos, size_t len) {
  if (pos > (lua_Integer)len) return len;
  if (pos >= 0) return (size_t)pos;
  if (pos < -(lua_Integer)len) return 0;
  return len + (size_t)pos + 1;
}

/* The range [i, j] (string.sub's rules, defaults 1 and -1) as an offset and a length. */
static size_t optrange(lua_State *L, int arg, size_t len, size_t *off) {
  size_t i = startpos(luaL_optinteger(L, arg, 1), len);
  size_t j = endpos(luaL_optinteger(L, arg + 1, -1), len);
  *off = i - 1;
  return i > j ? 0 : j - i + 1;
}

/* An exact position for a write: negative counts from the end; raises outside [lo, len + 1]. */
static size_t checkpos(lua_State *L, int arg, lua_Integer pos, size_t len, lua_Integer lo) {
  if (pos < 0) pos = (lua_Integer)len + pos + 1;
  luaL_argcheck(L, pos >= lo && pos <= (lua_Integer)len + 1, arg, "index out of range");
  return (size_t)pos;
}

static rill_encoding_t checkencoding(lua_State *L, int arg) {
  size_t n;
  const char *name = luaL_optlstring(L, arg, "binary", &n);
  int enc = rill_encoding_find(name, n);
  if (enc < 0) luaL_argerror(L, arg, lua_pushfstring(L, "unknown encoding '%s'", name));
  return (rill_encoding_t)enc;
}

/* A byte value: an integer number in [0, 255]; strings that look like numbers are refused. */
static int tobyte(lua_State *L, int idx, int *ok) {
  int isint = 0;
  lua_Integer b = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : -1;
  *ok = isint && b >= 0 && b <= 255;
  return (int)b;
}

/* A fill value: a byte, or a non-empty string or buffer pattern. Returns the pattern. When the
 * pattern is a buffer sharing memory with dst, it is copied first (into a string pushed on the
 * stack), so that filling cannot overwrite the pattern while reading it. */
static const unsigned char *checkfill(lua_State *L, int arg, const rill_view_t *dst,
                                      unsigned char *byte, size_t *plen) {
  if (lua_type(L, arg) == LUA_TNUMBER) {
    int ok, b = tobyte(L, arg, &ok);
    luaL_argcheck(L, ok, arg, "byte value (an integer from 0 to 255) expected");
    *byte = (unsigned char)b;
    *plen = 1;
    return byte;
  }
  const char *p = rill__tobytes(L, arg, plen);
  if (p == NULL) luaL_typeerror(L, arg, "byte, string or buffer");
  luaL_argcheck(L, *plen > 0, arg, "fill value is empty");
  rill_view_t *src = rill__tobuffer(L, arg);
  if (src != NULL && dst != NULL && src->slab == dst->slab) {
    p = lua_pushlstring(L, p, *plen);
  }
  return (const unsigned char *)p;
}

/* Repeats pattern p (k bytes, k > 0) over dst[0, m). Doubling copies: O(m), never a loop that
 * does not advance. */
static void fill_pattern(unsigned char *dst, size_t m, const unsigned char *p, size_t k) {
  if (m == 0) return;
  if (k == 1) {
    memset(dst, p[0], m);
    return;
  }
  size_t done = k < m ? k : m;
  memcpy(dst, p, done);
  while (done < m) {
    size_t c = done < m - done ? done : m - done;
    memcpy(dst + done, dst, c);
    done += c;
  }
}

/* ---- metamethods ---- */

static int buf_release(lua_State *L) {
  rill_view_release(rill__checkbuffer(L, 1));
  return 0;
}

static int buf_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rill__checkbuffer(L, 1)->len);
  return 1;
}

/* b[i] for an integer i (negative counts from the end; out of range raises); b.name for a
 * method; anything else is nil. */
static int buf_index(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    int isint;
    lua_Integer i = lua_tointegerx(L, 2, &isint);
    luaL_argcheck(L, isint, 2, "number has no integer representation");
    lua_Integer n = (lua_Integer)v->len;
    if (i < 0) i += n + 1;
    luaL_argcheck(L, i >= 1 && i <= n, 2, "index out of range");
    lua_pushinteger(L, rill_view_data(v)[i - 1]);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1)); /* methods[key] */
  return 1;
}

/* b[i] = v: i as for b[i]; v an integer from 0 to 255. */
static int buf_newindex(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  int isint = 0;
  lua_Integer i = lua_type(L, 2) == LUA_TNUMBER ? lua_tointegerx(L, 2, &isint) : 0;
  luaL_argcheck(L, isint, 2, "integer index expected");
  lua_Integer n = (lua_Integer)v->len;
  if (i < 0) i += n + 1;
  luaL_argcheck(L, i >= 1 && i <= n, 2, "index out of range");
  int ok, b = tobyte(L, 3, &ok);
  luaL_argcheck(L, ok, 3, "byte value (an integer from 0 to 255) expected");
  rill_view_data(v)[i - 1] = (unsigned char)b;
  return 0;
}

static int buf_tostring_mm(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  lua_pushlstring(L, (const char *)rill_view_data(v), v->len);
  return 1;
}

static int buf_eq(lua_State *L) {
  rill_view_t *a = rill__tobuffer(L, 1), *b = rill__tobuffer(L, 2);
  lua_pushboolean(
      L, a && b && a->len == b->len && memcmp(rill_view_data(a), rill_view_data(b), a->len) == 0);
  return 1;
}

/* Bytes of a concat operand: a string, a number (as Lua's own .. converts it), or a buffer. */
static const char *concat_operand(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) == LUA_TNUMBER) return lua_tolstring(L, idx, len);
  const char *p = rill__tobytes(L, idx, len);
  if (p == NULL) luaL_error(L, "attempt to concatenate a %s value", luaL_typename(L, idx));
  return p;
}

/* a .. b where either is a buffer: a string, like every other .. in Lua. */
static int buf_concat(lua_State *L) {
  size_t la, lb;
  const char *a = concat_operand(L, 1, &la);
  const char *b = concat_operand(L, 2, &lb);
  luaL_Buffer out;
  luaL_buffinit(L, &out);
  luaL_addlstring(&out, a, la);
  luaL_addlstring(&out, b, lb);
  luaL_pushresult(&out);
  return 1;
}

/* ---- module functions ---- */

/* buffer.alloc(n [, fill]): n zero bytes, or the fill byte or pattern repeated. */
static int l_alloc(lua_State *L) {
  size_t n = checksize(L, 1);
  lua_settop(L, 2);
  unsigned char byte = 0;
  size_t k = 1;
  const unsigned char *p = lua_isnoneornil(L, 2) ? &byte : checkfill(L, 2, NULL, &byte, &k);
  rill_view_t *v = newbuf(L);
  fill_pattern(bufalloc(L, v, n), n, p, k);
  return 1;
}

static int from_table(lua_State *L) {
  size_t n = lua_rawlen(L, 1);
  luaL_argcheck(L, n <= BUF_MAX, 1, "size out of range");
  rill_view_t *v = newbuf(L);
  unsigned char *d = bufalloc(L, v, n);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    int ok, b = tobyte(L, -1, &ok);
    if (!ok) {
      return luaL_argerror(
          L, 1, lua_pushfstring(L, "byte value expected at index %I", (lua_Integer)i + 1));
    }
    d[i] = (unsigned char)b;
    lua_pop(L, 1);
  }
  return 1;
}

/* buffer.from(x [, encoding]): a copy of a string, a table of byte values, or a buffer. Text in
 * hex or base64 that is not exactly valid gives nil, err (ERR_INVALID_ENCODING). */
static int l_from(lua_State *L) {
  rill_encoding_t enc = checkencoding(L, 2);
  if (lua_type(L, 1) == LUA_TTABLE) return from_table(L); /* byte values: no decoding */
  size_t n;
  const char *s = rill__tobytes(L, 1, &n);
  if (s == NULL) return luaL_typeerror(L, 1, "string, table or buffer");
  rill_view_t *v = newbuf(L);
  size_t max = rill_decoded_max(enc, n), w;
  unsigned char *d = bufalloc(L, v, max);
  if (rill_decode(enc, d, s, n, &w) != 0) {
    rill_view_release(v);
    rill__fail(L, RILL_EINVALID_ENCODING, NULL, NULL);
    lua_pushfstring(L, "invalid %s data", rill_encoding_name(enc));
    lua_setfield(L, -2, "message"); /* err.message = "invalid hex data" */
    return 2;
  }
  if (w == 0) {
    rill_view_release(v);
  } else {
    v->len = w; /* the decoded length can be below the bound by up to 2 bytes */
    v->slab->used = w;
  }
  return 1;
}

/* buffer.concat(list [, total]): one new buffer of the strings and buffers in list; total
 * truncates, or pads with zero bytes, as Node's Buffer.concat does. */
static int l_concat(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t n = lua_rawlen(L, 1), sum = 0, len;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i);
    if (rill__tobytes(L, -1, &len) == NULL) {
      return luaL_argerror(L, 1,
                           lua_pushfstring(L, "string or buffer expected at index %I, got %s",
                                           (lua_Integer)i, luaL_typename(L, -1)));
    }
    lua_pop(L, 1);
    luaL_argcheck(L, len <= BUF_MAX - sum, 1, "total size out of range");
    sum += len;
  }
  size_t total = lua_isnoneornil(L, 2) ? sum : checksize(L, 2);
  rill_view_t *v = newbuf(L);
  unsigned char *d = bufalloc(L, v, total);
  size_t at = 0;
  for (size_t i = 1; i <= n && at < total; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i);
    const char *p = rill__tobytes(L, -1, &len);
    size_t c = len < total - at ? len : total - at;
    if (c) memcpy(d + at, p, c);
    at += c;
    lua_pop(L, 1);
  }
  if (at < total) memset(d + at, 0, total - at);
  return 1;
}

static int l_is(lua_State *L) {
  lua_pushboolean(L, rill__tobuffer(L, 1) != NULL);
  return 1;
}

/* ---- pack and unpack: string.pack's format language, written for views ---- */

/* The largest integer size in a format (Lua's limit, so formats mean the same here). */
#define PK_MAXINTSIZE 16
#define PK_SZINT ((int)sizeof(lua_Integer))

typedef enum {
  K_INT,
  K_UINT,
  K_FLOAT,
  K_DOUBLE,
  K_NUMBER,
  K_CHAR,
  K_STRING,
  K_ZSTR,
  K_PADDING,
  K_PADDALIGN,
  K_NOP
} pk_kind;

typedef struct {
  lua_State *L;
  int fmtarg;   /* argument number of the format, for error messages */
  int little;   /* current byte order */
  int maxalign; /* current maximum alignment ("!") */
} pk_state;

static int native_little(void) {
  const union {
    int i;
    char c;
  } u = {1};
  return u.c == 1;
}

struct pk_align_probe {
  char c;
  union {
    lua_Number n;
    double d;
    void *p;
    lua_Integer i;
    long l;
  } u;
};
#define PK_NATIVE_ALIGN ((int)offsetof(struct pk_align_probe, u))

static int pk_digit(char c) {
  return c >= '0' && c <= '9';
}

/* Reads an optional decimal number at *f; df when there is none. Stops before int overflow. */
static int pk_num(const char **f, int df) {
  if (!pk_digit(**f)) return df;
  int a = 0;
  do {
    a = a * 10 + (*(*f)++ - '0');
  } while (pk_digit(**f) && a <= (INT_MAX - 9) / 10);
  return a;
}

static int pk_numlimit(pk_state *h, const char **f, int df) {
  int sz = pk_num(f, df);
  if (sz > PK_MAXINTSIZE || sz <= 0)
    luaL_error(h->L, "integral size (%d) out of limits [1,%d]", sz, PK_MAXINTSIZE);
  return sz;
}

/* Reads one option; its size in *size (0 for options without data). */
static pk_kind pk_option(pk_state *h, const char **f, int *size) {
  int opt = *(*f)++;
  *size = 0;
  switch (opt) {
    case 'b':
      *size = 1;
      return K_INT;
    case 'B':
      *size = 1;
      return K_UINT;
    case 'h':
      *size = (int)sizeof(short);
      return K_INT;
    case 'H':
      *size = (int)sizeof(short);
      return K_UINT;
    case 'l':
      *size = (int)sizeof(long);
      return K_INT;
    case 'L':
      *size = (int)sizeof(long);
      return K_UINT;
    case 'j':
      *size = PK_SZINT;
      return K_INT;
    case 'J':
      *size = PK_SZINT;
      return K_UINT;
    case 'T':
      *size = (int)sizeof(size_t);
      return K_UINT;
    case 'f':
      *size = (int)sizeof(float);
      return K_FLOAT;
    case 'n':
      *size = (int)sizeof(lua_Number);
      return K_NUMBER;
    case 'd':
      *size = (int)sizeof(double);
      return K_DOUBLE;
    case 'i':
      *size = pk_numlimit(h, f, (int)sizeof(int));
      return K_INT;
    case 'I':
      *size = pk_numlimit(h, f, (int)sizeof(int));
      return K_UINT;
    case 's':
      *size = pk_numlimit(h, f, (int)sizeof(size_t));
      return K_STRING;
    case 'c':
      *size = pk_num(f, -1);
      if (*size == -1) luaL_error(h->L, "missing size for format option 'c'");
      return K_CHAR;
    case 'z':
      return K_ZSTR;
    case 'x':
      *size = 1;
      return K_PADDING;
    case 'X':
      return K_PADDALIGN;
    case ' ':
      break;
    case '<':
      h->little = 1;
      break;
    case '>':
      h->little = 0;
      break;
    case '=':
      h->little = native_little();
      break;
    case '!':
      h->maxalign = pk_numlimit(h, f, PK_NATIVE_ALIGN);
      break;
    default:
      luaL_error(h->L, "invalid format option '%c'", opt);
  }
  return K_NOP;
}

/* Reads one option and works out the padding that aligns it at offset total. */
static pk_kind pk_details(pk_state *h, size_t total, const char **f, int *size, int *pad) {
  pk_kind k = pk_option(h, f, size);
  int align = *size;
  if (k == K_PADDALIGN) {
    /* "Xop" aligns like op, which is read and otherwise ignored. */
    if (**f == '\0' || pk_option(h, f, &align) == K_CHAR || align == 0)
      luaL_argerror(h->L, h->fmtarg, "invalid next option for option 'X'");
  }
  if (align <= 1 || k == K_CHAR) {
    *pad = 0;
  } else {
    if (align > h->maxalign) align = h->maxalign;
    if ((align & (align - 1)) != 0)
      luaL_argerror(h->L, h->fmtarg, "format asks for alignment not power of 2");
    *pad = (align - (int)(total & (size_t)(align - 1))) & (align - 1);
  }
  return k;
}

/* Byte i (0 = least significant) of an integer of size bytes lives at this offset. */
static int pk_at(int little, int size, int i) {
  return little ? i : size - 1 - i;
}

static void pk_putint(luaL_Buffer *b, lua_Unsigned n, int little, int size, int neg) {
  char *p = luaL_prepbuffsize(b, (size_t)size);
  for (int i = 0; i < size; i++) {
    unsigned char byte = i < PK_SZINT ? (unsigned char)(n >> (8 * i)) : (neg ? 0xff : 0);
    p[pk_at(little, size, i)] = (char)byte;
  }
  luaL_addsize(b, (size_t)size);
}

/* Copies size bytes of a native float from src to dst, reversing them for the other order. */
static void pk_copyorder(unsigned char *dst, const unsigned char *src, int size, int little) {
  if (little == native_little()) {
    memcpy(dst, src, (size_t)size);
  } else {
    for (int i = 0; i < size; i++) dst[i] = src[size - 1 - i];
  }
}

/* buffer.pack(fmt, ...): like string.pack, into a new buffer. Strings may be buffers. */
static int l_pack(lua_State *L) {
  pk_state h = {L, 1, native_little(), 1};
  const char *fmt = luaL_checkstring(L, 1);
  int arg = 1;
  size_t total = 0;
  luaL_Buffer b;
  lua_pushnil(L); /* keeps the buffer's stack slot above every argument */
  luaL_buffinit(L, &b);
  while (*fmt != '\0') {
    int size, pad;
    pk_kind k = pk_details(&h, total, &fmt, &size, &pad);
    total += (size_t)pad + (size_t)size;
    while (pad-- > 0) luaL_addchar(&b, 0);
    arg++;
    switch (k) {
      case K_INT: {
        lua_Integer n = luaL_checkinteger(L, arg);
        if (size < PK_SZINT) {
          lua_Integer lim = (lua_Integer)1 << (size * 8 - 1);
          luaL_argcheck(L, -lim <= n && n < lim, arg, "integer overflow");
        }
        pk_putint(&b, (lua_Unsigned)n, h.little, size, n < 0);
        break;
      }
      case K_UINT: {
        lua_Integer n = luaL_checkinteger(L, arg);
        if (size < PK_SZINT)
          luaL_argcheck(L, (lua_Unsigned)n < ((lua_Unsigned)1 << (size * 8)), arg,
                        "unsigned overflow");
        pk_putint(&b, (lua_Unsigned)n, h.little, size, 0);
        break;
      }
      case K_FLOAT:
      case K_DOUBLE:
      case K_NUMBER: {
        lua_Number x = luaL_checknumber(L, arg);
        union {
          float f;
          double d;
          lua_Number n;
          unsigned char
              c[sizeof(lua_Number) > sizeof(double) ? sizeof(lua_Number) : sizeof(double)];
        } u;
        if (k == K_FLOAT)
          u.f = (float)x;
        else if (k == K_DOUBLE)
          u.d = (double)x;
        else
          u.n = x;
        char *p = luaL_prepbuffsize(&b, (size_t)size);
        pk_copyorder((unsigned char *)p, u.c, size, h.little);
        luaL_addsize(&b, (size_t)size);
        break;
      }
      case K_CHAR: {
        size_t len;
        const char *s = rill__checkbytes(L, arg, &len);
        luaL_argcheck(L, len <= (size_t)size, arg, "string longer than given size");
        luaL_addlstring(&b, s, len);
        for (size_t i = len; i < (size_t)size; i++) luaL_addchar(&b, 0);
        break;
      }
      case K_STRING: {
        size_t len;
        const char *s = rill__checkbytes(L, arg, &len);
        luaL_argcheck(L, size >= (int)sizeof(size_t) || len < ((size_t)1 << (size * 8)), arg,
                      "string length does not fit in given size");
        pk_putint(&b, (lua_Unsigned)len, h.little, size, 0);
        luaL_addlstring(&b, s, len);
        total += len;
        break;
      }
      case K_ZSTR: {
        size_t len;
        const char *s = rill__checkbytes(L, arg, &len);
        luaL_argcheck(L, memchr(s, 0, len) == NULL, arg, "string contains zeros");
        luaL_addlstring(&b, s, len);
        luaL_addchar(&b, 0);
        total += len + 1;
        break;
      }
      case K_PADDING:
        luaL_addchar(&b, 0);
        arg--;
        break;
      case K_PADDALIGN:
      case K_NOP:
        arg--;
        break;
    }
  }
  /* The bytes sit in b (below the top); copy them once into the new buffer. */
  size_t n = luaL_bufflen(&b);
  rill_view_t *v = newbuf(L);
  unsigned char *d = bufalloc(L, v, n);
  if (n) memcpy(d, luaL_buffaddr(&b), n);
  return 1;
}

static lua_Integer pk_getint(lua_State *L, const unsigned char *s, int little, int size,
                             int issigned) {
  lua_Unsigned r = 0;
  int limit = size <= PK_SZINT ? size : PK_SZINT;
  for (int i = limit - 1; i >= 0; i--) r = r << 8 | s[pk_at(little, size, i)];
  if (size < PK_SZINT) {
    if (issigned) { /* sign-extend from bit size*8-1 */
      lua_Unsigned m = (lua_Unsigned)1 << (size * 8 - 1);
      r = (r ^ m) - m;
    }
  } else if (size > PK_SZINT) {
    /* The extra high bytes must only repeat the sign, or the value does not fit. */
    int fill = !issigned || (lua_Integer)r >= 0 ? 0 : 0xff;
    for (int i = limit; i < size; i++) {
      if (s[pk_at(little, size, i)] != fill)
        luaL_error(L, "%d-byte integer does not fit into Lua Integer", size);
    }
  }
  return (lua_Integer)r;
}

/* b:unpack(fmt [, pos]): like string.unpack, reading the buffer in place (no copy of it). */
static int buf_unpack(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  pk_state h = {L, 2, native_little(), 1};
  const char *fmt = luaL_checkstring(L, 2);
  const unsigned char *data = rill_view_data(v);
  size_t ld = v->len;
  /* Lua 5.4's rule (string.sub's start): 0 and anything before the start mean 1. */
  size_t pos = startpos(luaL_optinteger(L, 3, 1), ld) - 1;
  luaL_argcheck(L, pos <= ld, 3, "initial position out of string");
  int n = 0;
  while (*fmt != '\0') {
    int size, pad;
    pk_kind k = pk_details(&h, pos, &fmt, &size, &pad);
    luaL_argcheck(L, (size_t)pad + (size_t)size <= ld - pos, 2, "data string too short");
    pos += (size_t)pad;
    luaL_checkstack(L, 2, "too many results");
    n++;
    switch (k) {
      case K_INT:
      case K_UINT:
        lua_pushinteger(L, pk_getint(L, data + pos, h.little, size, k == K_INT));
        break;
      case K_FLOAT:
      case K_DOUBLE:
      case K_NUMBER: {
        union {
          float f;
          double d;
          lua_Number n;
          unsigned char
              c[sizeof(lua_Number) > sizeof(double) ? sizeof(lua_Number) : sizeof(double)];
        } u;
        pk_copyorder(u.c, data + pos, size, h.little);
        lua_pushnumber(L, k == K_FLOAT ? (lua_Number)u.f : k == K_DOUBLE ? (lua_Number)u.d : u.n);
        break;
      }
      case K_CHAR:
        lua_pushlstring(L, (const char *)data + pos, (size_t)size);
        break;
      case K_STRING: {
        size_t len = (size_t)(lua_Unsigned)pk_getint(L, data + pos, h.little, size, 0);
        luaL_argcheck(L, len <= ld - pos - (size_t)size, 2, "data string too short");
        lua_pushlstring(L, (const char *)data + pos + size, len);
        pos += len;
        break;
      }
      case K_ZSTR: {
        const unsigned char *z = memchr(data + pos, 0, ld - pos);
        luaL_argcheck(L, z != NULL, 2, "unfinished string for format 'z'");
        size_t len = (size_t)(z - (data + pos));
        lua_pushlstring(L, (const char *)data + pos, len);
        pos += len + 1;
        break;
      }
      case K_PADDALIGN:
      case K_PADDING:
      case K_NOP:
        n--;
        break;
    }
    pos += (size_t)size;
  }
  lua_pushinteger(L, (lua_Integer)pos + 1);
  return n + 1;
}

/* ---- methods ---- */

/* b:sub(i [, j]): a view of bytes i..j (string.sub's rules) sharing b's memory. */
static int buf_sub(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  size_t i = startpos(luaL_checkinteger(L, 2), v->len);
  size_t j = endpos(luaL_optinteger(L, 3, -1), v->len);
  rill_view_t *s = newbuf(L);
  if (i <= j) rill_view_slice(s, v, i - 1, j - i + 1);
  return 1;
}

/* b:copy([i [, j]]): an independent copy of bytes i..j. */
static int buf_copy(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  size_t off, n = optrange(L, 2, v->len, &off);
  rill_view_t *c = newbuf(L);
  if (rill_view_from(c, rill_view_data(v) + off, n) != 0) luaL_error(L, "not enough memory");
  return 1;
}

/* b:tostring([encoding [, i [, j]]]): bytes i..j as a string, raw or encoded. */
static int buf_tostring(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  rill_encoding_t enc = checkencoding(L, 2);
  size_t off, n = optrange(L, 3, v->len, &off), elen;
  const unsigned char *p = rill_view_data(v) + off;
  if (enc == RILL_ENC_BINARY) {
    lua_pushlstring(L, (const char *)p, n);
    return 1;
  }
  if (rill_encoded_len(enc, n, &elen) != 0) return luaL_error(L, "not enough memory");
  /* Encode into a scratch view held by a userdata (so an error cannot leak it), then make the
   * string. A view rather than a luaL_Buffer: large slabs get huge pages, which makes the
   * scratch memory much cheaper to touch the first time. */
  rill_view_t *tmp = newbuf(L);
  char *d = (char *)bufalloc(L, tmp, elen);
  lua_pushlstring(L, d, rill_encode(enc, d, p, n));
  rill_view_release(tmp);
  return 1;
}

/* b:find(needle [, init]): plain search, string.find's rules for init and an empty needle. */
static int buf_find(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  size_t nl;
  const char *needle = rill__checkbytes(L, 2, &nl);
  size_t init = startpos(luaL_optinteger(L, 3, 1), v->len);
  if (init > v->len + 1) {
    luaL_pushfail(L);
    return 1;
  }
  const unsigned char *data = rill_view_data(v);
  if (nl == 0) {
    lua_pushinteger(L, (lua_Integer)init);
    lua_pushinteger(L, (lua_Integer)init - 1);
    return 2;
  }
  const unsigned char *hit = memmem(data + init - 1, v->len - (init - 1), needle, nl);
  if (hit == NULL) {
    luaL_pushfail(L);
    return 1;
  }
  lua_Integer i = (lua_Integer)(hit - data) + 1;
  lua_pushinteger(L, i);
  lua_pushinteger(L, i + (lua_Integer)nl - 1);
  return 2;
}

/* b:byte([i [, j]]): like string.byte. */
static int buf_byte(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  lua_Integer pi = luaL_optinteger(L, 2, 1);
  size_t i = startpos(pi, v->len);
  size_t j = endpos(luaL_optinteger(L, 3, pi), v->len);
  if (i > j) return 0;
  if (j - i >= (size_t)INT_MAX) return luaL_error(L, "string slice too long");
  int n = (int)(j - i) + 1;
  luaL_checkstack(L, n, "string slice too long");
  const unsigned char *d = rill_view_data(v) + i - 1;
  for (int k = 0; k < n; k++) lua_pushinteger(L, d[k]);
  return n;
}

/* b:fill(v [, i [, j]]): sets bytes i..j (default: all) to a byte, or repeats a string or buffer
 * pattern from i. Unlike sub, the range is not clamped, since this writes: negative indices
 * count from the end, then i must be in [1, #b + 1] and j in [i - 1, #b] (i = j + 1 is an empty
 * range); anything else raises. Returns b. */
static int buf_fill(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  lua_settop(L, 4); /* checkfill may push a copy of the pattern above the arguments */
  unsigned char byte;
  size_t k;
  const unsigned char *p = checkfill(L, 2, v, &byte, &k);
  size_t i = checkpos(L, 3, luaL_optinteger(L, 3, 1), v->len, 1);
  size_t j = checkpos(L, 4, luaL_optinteger(L, 4, -1), v->len, 0);
  luaL_argcheck(L, j <= v->len, 4, "index out of range");
  luaL_argcheck(L, i <= j + 1, 4, "range ends before it starts");
  fill_pattern(rill_view_data(v) + i - 1, j + 1 - i, p, k);
  lua_settop(L, 1);
  return 1;
}

/* b:write(s [, i]): copies the string or buffer s into b starting at i (default 1; negative
 * counts from the end). It never writes past #b and never truncates: if s does not fit, it
 * raises and b is unchanged. Returns the number of bytes written (#s). */
static int buf_write(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  size_t n;
  const char *s = rill__checkbytes(L, 2, &n);
  size_t i = checkpos(L, 3, luaL_optinteger(L, 3, 1), v->len, 1);
  if (n > v->len - (i - 1)) {
    return luaL_argerror(
        L, 2,
        lua_pushfstring(L, "%I bytes do not fit at position %I of a %I-byte buffer", (lua_Integer)n,
                        (lua_Integer)i, (lua_Integer)v->len));
  }
  if (n) memmove(rill_view_data(v) + i - 1, s, n); /* s may be a view of b itself */
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int compare(lua_State *L) {
  rill_view_t *v = rill__checkbuffer(L, 1);
  size_t n;
  const char *o = rill__checkbytes(L, 2, &n);
  size_t m = v->len < n ? v->len : n;
  int c = m ? memcmp(rill_view_data(v), o, m) : 0;
  if (c == 0) c = v->len < n ? -1 : v->len > n ? 1 : 0;
  return c < 0 ? -1 : c > 0;
}

/* b:equals(o): byte equality with a buffer or string. */
static int buf_equals(lua_State *L) {
  lua_pushboolean(L, compare(L) == 0);
  return 1;
}

/* b:compare(o): -1, 0 or 1, ordering bytes as unsigned, a prefix first. */
static int buf_compare(lua_State *L) {
  lua_pushinteger(L, compare(L));
  return 1;
}

/* ---- registration ---- */

static const luaL_Reg methods[] = {
    {"sub", buf_sub},       {"copy", buf_copy},     {"tostring", buf_tostring},
    {"find", buf_find},     {"byte", buf_byte},     {"fill", buf_fill},
    {"write", buf_write},   {"equals", buf_equals}, {"compare", buf_compare},
    {"unpack", buf_unpack}, {NULL, NULL},
};

static const luaL_Reg metamethods[] = {
    {"__gc", buf_release},
    {"__close", buf_release},
    {"__len", buf_len},
    {"__newindex", buf_newindex},
    {"__tostring", buf_tostring_mm},
    {"__eq", buf_eq},
    {"__concat", buf_concat},
    {NULL, NULL},
};

/* Pushes the buffer metatable, creating it on first use (rill__pushbuffer may run before any
 * script required rill.buffer). */
static void push_mt(lua_State *L) {
  if (!luaL_newmetatable(L, BUFFER_MT)) return; /* sets mt.__name = "rill.buffer" */
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);
  lua_pushcclosure(L, buf_index, 1);
  lua_setfield(L, -2, "__index"); /* mt.__index = buf_index with the methods as upvalue */
}

static const luaL_Reg funcs[] = {
    {"alloc", l_alloc}, {"from", l_from}, {"concat", l_concat},
    {"is", l_is},       {"pack", l_pack}, {NULL, NULL},
};

int rill__open_buffer(lua_State *L) {
  push_mt(L);
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
