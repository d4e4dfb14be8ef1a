/* core/codec.c: hex and base64(url) codecs: table-driven encoders, strict table-driven decoders. */
#include "codec.h"

#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "error.h"

/* ---- tables, built by the compiler from one expression per entry ---- */

#define T4(F, b) F(b), F((b) + 1), F((b) + 2), F((b) + 3)
#define T16(F, b) T4(F, b), T4(F, (b) + 4), T4(F, (b) + 8), T4(F, (b) + 12)
#define T64(F, b) T16(F, b), T16(F, (b) + 16), T16(F, (b) + 32), T16(F, (b) + 48)
#define T256B(F, b) T64(F, b), T64(F, (b) + 64), T64(F, (b) + 128), T64(F, (b) + 192)
#define T1024(F, b) T256B(F, b), T256B(F, (b) + 256), T256B(F, (b) + 512), T256B(F, (b) + 768)
#define T256(F) T256B(F, 0)
#define T4096(F) T1024(F, 0), T1024(F, 1024), T1024(F, 2048), T1024(F, 3072)

/* 255 marks a character outside the alphabet; "=" is outside too, so padding is only ever
 * accepted where the decoder looks for it explicitly. */
#define BAD 255
#define B64_COMMON(c)                          \
  ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'      \
   : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26 \
   : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52 \
                              : BAD)
#define B64_STD(c) ((c) == '+' ? 62 : (c) == '/' ? 63 : B64_COMMON(c))
#define B64_URL(c) ((c) == '-' ? 62 : (c) == '_' ? 63 : B64_COMMON(c))
#define HEX_VAL(c)                             \
  ((c) >= '0' && (c) <= '9'   ? (c) - '0'      \
   : (c) >= 'a' && (c) <= 'f' ? (c) - 'a' + 10 \
   : (c) >= 'A' && (c) <= 'F' ? (c) - 'A' + 10 \
                              : BAD)

/* The casts tell clang that the unused arms of the conditionals (which may exceed 255 for high
 * character codes) are fine. */
#define U8_STD(c) ((uint8_t)B64_STD(c))
#define U8_URL(c) ((uint8_t)B64_URL(c))
static const uint8_t rev_std[256] = {T256(U8_STD)};
static const uint8_t rev_url[256] = {T256(U8_URL)};
/* Hex digit values, the high one pre-shifted; a non-digit sets bit 8, which no digit touches. */
#define HEX_HI(c) (HEX_VAL(c) == BAD ? 0x100 : HEX_VAL(c) << 4)
#define HEX_LO(c) (HEX_VAL(c) == BAD ? 0x100 : HEX_VAL(c))
static const uint16_t hex_hi[256] = {T256(HEX_HI)};
static const uint16_t hex_lo[256] = {T256(HEX_LO)};

/* Decoding tables pre-shifted to where each character's 6 bits land, with the 3 output bytes in
 * memory order in the low 24 bits (byte 0 lowest): a group is 4 loads, 3 ORs and one store.
 * A character outside the alphabet sets the top byte, which no valid character touches. */
#define DEC_BAD 0xFF000000u
#define DEC_LE(v) ((((v) >> 16) & 0xFFu) | (((v) >> 8) & 0xFFu) << 8 | ((v)&0xFFu) << 16)
#define DEC_AT(V, c, shift) (V(c) == BAD ? DEC_BAD : (uint32_t)DEC_LE((uint32_t)V(c) << (shift)))
#define DS0(c) DEC_AT(B64_STD, c, 18)
#define DS1(c) DEC_AT(B64_STD, c, 12)
#define DS2(c) DEC_AT(B64_STD, c, 6)
#define DS3(c) DEC_AT(B64_STD, c, 0)
#define DU0(c) DEC_AT(B64_URL, c, 18)
#define DU1(c) DEC_AT(B64_URL, c, 12)
#define DU2(c) DEC_AT(B64_URL, c, 6)
#define DU3(c) DEC_AT(B64_URL, c, 0)
static const uint32_t dec_std[4][256] = {{T256(DS0)}, {T256(DS1)}, {T256(DS2)}, {T256(DS3)}};
static const uint32_t dec_url[4][256] = {{T256(DU0)}, {T256(DU1)}, {T256(DU2)}, {T256(DU3)}};

static const char alpha_std[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char alpha_url[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encoding tables: the two characters for each 12-bit value, so a 3-byte group is two lookups
 * and two 2-byte copies (8 KiB per alphabet, which stays in L1). */
#define B64_CHAR(x, c62, c63) \
  ((x) < 26    ? 'A' + (x)    \
   : (x) < 52  ? 'a' + (x)-26 \
   : (x) < 62  ? '0' + (x)-52 \
   : (x) == 62 ? (c62)        \
               : (c63))
#define PAIR_STD(i) \
  { B64_CHAR((i) >> 6, '+', '/'), B64_CHAR((i)&63, '+', '/') }
#define PAIR_URL(i) \
  { B64_CHAR((i) >> 6, '-', '_'), B64_CHAR((i)&63, '-', '_') }
static const char pair_std[4096][2] = {T4096(PAIR_STD)};
static const char pair_url[4096][2] = {T4096(PAIR_URL)};

/* Stores the 3 bytes of a decoded group (memory order in the low 24 bits) plus one byte of
 * slack, which the next group (or the last group's own stores) overwrites. */
static inline void store3(unsigned char *d, uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  memcpy(d, &v, 4);
}

/* Two hex digits per byte value, so encoding is one 2-byte copy per input byte. */
#define HEX_DIGIT(x) ((x) < 10 ? '0' + (x) : 'a' + (x)-10)
#define HEX_PAIR(b) \
  { HEX_DIGIT((b) >> 4), HEX_DIGIT((b)&15) }
static const char hex_pairs[256][2] = {T256(HEX_PAIR)};

/* ---- names ---- */

static const char *const names[] = {"binary", "hex", "base64", "base64url"};

int rill_encoding_find(const char *name, size_t len) {
  for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
    if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) return i;
  }
  return -1;
}

const char *rill_encoding_name(rill_encoding_t enc) {
  return (unsigned)enc < sizeof names / sizeof names[0] ? names[enc] : "?";
}

/* ---- hex ---- */

size_t rill_hex_encode(char *dst, const unsigned char *src, size_t n) {
  for (size_t i = 0; i < n; i++) memcpy(dst + 2 * i, hex_pairs[src[i]], 2);
  return 2 * n;
}

int rill_hex_decode(unsigned char *dst, const char *src, size_t n, size_t *out) {
  if (n % 2) return RILL_EINVALID_ENCODING;
  const unsigned char *s = (const unsigned char *)src;
  /* Accumulate the table bits of the whole input and test once at the end. */
  unsigned bad = 0;
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v = hex_hi[s[2 * i]] | hex_lo[s[2 * i + 1]];
    bad |= v;
    dst[i] = (unsigned char)v;
  }
  if (bad & 0x100) return RILL_EINVALID_ENCODING;
  *out = n / 2;
  return 0;
}

/* ---- base64 ---- */

/* Encodes ngroups whole 3-byte groups: the hot loop, 3 bytes in and 4 characters out per step. */
static void b64_groups(char *d, const unsigned char *s, size_t ngroups, const char (*pair)[2]) {
  for (size_t i = 0; i < ngroups; i++, s += 3, d += 4) {
    uint32_t v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
    memcpy(d, pair[v >> 12], 2);
    memcpy(d + 2, pair[v & 4095], 2);
  }
}

size_t rill_base64_encode(char *dst, const unsigned char *src, size_t n, int url) {
  const char *a = url ? alpha_url : alpha_std;
  size_t g = n / 3;
  b64_groups(dst, src, g, url ? pair_url : pair_std);
  char *d = dst + 4 * g;
  const unsigned char *s = src + 3 * g;
  switch (n % 3) {
    case 1:
      *d++ = a[s[0] >> 2];
      *d++ = a[(s[0] & 3) << 4];
      if (!url) {
        *d++ = '=';
        *d++ = '=';
      }
      break;
    case 2:
      *d++ = a[s[0] >> 2];
      *d++ = a[(s[0] & 3) << 4 | s[1] >> 4];
      *d++ = a[(s[1] & 15) << 2];
      if (!url) *d++ = '=';
      break;
  }
  return (size_t)(d - dst);
}

/* Decodes k (2..4) data characters of a last group; 0, or an error for a bad character or
 * non-zero leftover bits. Returns the bytes written through *w. */
static int b64_last(unsigned char *d, const unsigned char *s, size_t k, const uint8_t *r,
                    size_t *w) {
  uint32_t c[4] = {0, 0, 0, 0};
  unsigned bad = 0;
  for (size_t i = 0; i < k; i++) bad |= c[i] = r[s[i]];
  if (bad & 0xC0) return RILL_EINVALID_ENCODING;
  uint32_t v = c[0] << 18 | c[1] << 12 | c[2] << 6 | c[3];
  if (k == 2 && (c[1] & 15)) return RILL_EINVALID_ENCODING;
  if (k == 3 && (c[2] & 3)) return RILL_EINVALID_ENCODING;
  d[0] = (unsigned char)(v >> 16);
  if (k > 2) d[1] = (unsigned char)(v >> 8);
  if (k > 3) d[2] = (unsigned char)v;
  *w = k - 1;
  return 0;
}

int rill_base64_decode(unsigned char *dst, const char *src, size_t n, int url, size_t *out) {
  const uint8_t *r = url ? rev_url : rev_std;
  const unsigned char *s = (const unsigned char *)src;
  if (n == 0) {
    *out = 0;
    return 0;
  }
  size_t rem = n % 4;
  if (rem == 1 || (rem != 0 && !url)) return RILL_EINVALID_ENCODING;
  /* Every group but the last has 4 data characters; the last may be short or padded. */
  size_t last = rem ? rem : 4;
  size_t ngroups = (n - last) / 4;
  const uint32_t(*t)[256] = url ? dec_url : dec_std;
  uint32_t bad = 0;
  unsigned char *d = dst;
  /* store3 writes one byte past each group: the last group always writes that byte again. */
  for (size_t i = 0; i < ngroups; i++, s += 4, d += 3) {
    uint32_t v = t[0][s[0]] | t[1][s[1]] | t[2][s[2]] | t[3][s[3]];
    bad |= v;
    store3(d, v);
  }
  if (bad & DEC_BAD) return RILL_EINVALID_ENCODING;
  size_t k = last;
  if (last == 4 && s[3] == '=') k = s[2] == '=' ? 2 : 3;
  size_t w;
  int e = b64_last(d, s, k, r, &w);
  if (e) return e;
  *out = (size_t)(d - dst) + w;
  return 0;
}

/* ---- dispatch ---- */

int rill_encoded_len(rill_encoding_t enc, size_t n, size_t *out) {
  switch (enc) {
    case RILL_ENC_HEX:
      if (n > SIZE_MAX / 2) return UV_ENOMEM;
      *out = 2 * n;
      return 0;
    case RILL_ENC_BASE64:
    case RILL_ENC_BASE64URL: {
      size_t g = n / 3 + (n % 3 != 0);
      if (g > SIZE_MAX / 4) return UV_ENOMEM;
      if (enc == RILL_ENC_BASE64 || n % 3 == 0)
        *out = 4 * g;
      else
        *out = 4 * (g - 1) + (n % 3) + 1;
      return 0;
    }
    default:
      *out = n;
      return 0;
  }
}

size_t rill_encode(rill_encoding_t enc, char *dst, const unsigned char *src, size_t n) {
  switch (enc) {
    case RILL_ENC_HEX:
      return rill_hex_encode(dst, src, n);
    case RILL_ENC_BASE64:
      return rill_base64_encode(dst, src, n, 0);
    case RILL_ENC_BASE64URL:
      return rill_base64_encode(dst, src, n, 1);
    default:
      if (n) memcpy(dst, src, n);
      return n;
  }
}

size_t rill_decoded_max(rill_encoding_t enc, size_t n) {
  switch (enc) {
    case RILL_ENC_HEX:
      return n / 2;
    case RILL_ENC_BASE64:
    case RILL_ENC_BASE64URL:
      return n / 4 * 3 + (n % 4 == 3 ? 2 : n % 4 == 2 ? 1 : 0);
    default:
      return n;
  }
}

int rill_decode(rill_encoding_t enc, unsigned char *dst, const char *src, size_t n, size_t *out) {
  switch (enc) {
    case RILL_ENC_HEX:
      return rill_hex_decode(dst, src, n, out);
    case RILL_ENC_BASE64:
      return rill_base64_decode(dst, src, n, 0, out);
    case RILL_ENC_BASE64URL:
      return rill_base64_decode(dst, src, n, 1, out);
    default:
      if (n) memcpy(dst, src, n);
      *out = n;
      return 0;
  }
}

/* ---- streaming ---- */

void rill_codec_init(rill_codec_t *c, rill_encoding_t enc) {
  memset(c, 0, sizeof *c);
  c->enc = enc;
}

static int is_b64(rill_encoding_t enc) {
  return enc == RILL_ENC_BASE64 || enc == RILL_ENC_BASE64URL;
}

size_t rill_codec_encode(rill_codec_t *c, char *dst, const unsigned char *src, size_t n) {
  if (!is_b64(c->enc)) return rill_encode(c->enc, dst, src, n);
  const char(*a)[2] = c->enc == RILL_ENC_BASE64URL ? pair_url : pair_std;
  char *d = dst;
  /* Complete the carried partial group first, so groups never depend on the cuts. */
  while (c->ncarry > 0 && c->ncarry < 3 && n > 0) {
    c->carry[c->ncarry++] = *src++;
    n--;
  }
  if (c->ncarry == 3) {
    b64_groups(d, c->carry, 1, a);
    d += 4;
    c->ncarry = 0;
  }
  size_t g = n / 3;
  b64_groups(d, src, g, a);
  d += 4 * g;
  for (size_t i = 3 * g; i < n; i++) c->carry[c->ncarry++] = src[i];
  return (size_t)(d - dst);
}

size_t rill_codec_encode_end(rill_codec_t *c, char *dst) {
  if (!is_b64(c->enc)) return 0;
  size_t w = rill_base64_encode(dst, c->carry, c->ncarry, c->enc == RILL_ENC_BASE64URL);
  c->ncarry = 0;
  return w;
}

/* Group size in characters: what the decoder must see before it can emit bytes. */
static size_t group_chars(rill_encoding_t enc) {
  return enc == RILL_ENC_HEX ? 2 : is_b64(enc) ? 4 : 1;
}

int rill_codec_decode(rill_codec_t *c, unsigned char *dst, const char *src, size_t n, size_t *out) {
  *out = 0;
  if (c->failed) return RILL_EINVALID_ENCODING;
  if (n == 0) return 0;
  if (c->enc == RILL_ENC_BINARY) return rill_decode(c->enc, dst, src, n, out);
  /* After a padded group the encoding is over: any further character is an error. */
  if (c->done) goto fail;
  size_t gs = group_chars(c->enc), w;
  unsigned char *d = dst;
  if (c->ncarry > 0) {
    while (c->ncarry < gs && n > 0) {
      c->carry[c->ncarry++] = (unsigned char)*src++;
      n--;
    }
    if (c->ncarry < gs) return 0;
    if (rill_decode(c->enc, d, (const char *)c->carry, gs, &w)) goto fail;
    d += w;
    if (gs == 4 && c->carry[3] == '=') c->done = 1;
    c->ncarry = 0;
    if (n > 0 && c->done) goto fail;
  }
  size_t whole = n / gs * gs;
  if (whole > 0) {
    if (rill_decode(c->enc, d, src, whole, &w)) goto fail;
    d += w;
    if (gs == 4 && src[whole - 1] == '=') c->done = 1;
    if (whole < n && c->done) goto fail;
  }
  for (size_t i = whole; i < n; i++) c->carry[c->ncarry++] = (unsigned char)src[i];
  *out = (size_t)(d - dst);
  return 0;
fail:
  c->failed = 1;
  return RILL_EINVALID_ENCODING;
}

int rill_codec_decode_end(rill_codec_t *c, unsigned char *dst, size_t *out) {
  *out = 0;
  if (c->failed) return RILL_EINVALID_ENCODING;
  if (c->ncarry == 0) return 0;
  /* A partial group is an error except for unpadded base64url (2 or 3 characters). */
  if (c->enc == RILL_ENC_BASE64URL &&
      rill_base64_decode(dst, (const char *)c->carry, c->ncarry, 1, out) == 0) {
    c->ncarry = 0;
    return 0;
  }
  c->failed = 1;
  return RILL_EINVALID_ENCODING;
}
