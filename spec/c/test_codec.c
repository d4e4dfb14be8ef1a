/* spec/c/test_codec.c: hex/base64/base64url against RFC 4648 vectors, invalid input, streaming. */
#include <stdint.h>
#include <uv.h>

#include "codec.h"
#include "error.h"
#include "test.h"

/* One-shot encode of s into a NUL-terminated static buffer. */
static const char *enc(rill_encoding_t e, const char *s, size_t n) {
  static char out[4096];
  size_t want;
  CHECK_INT(rill_encoded_len(e, n, &want), 0);
  size_t w = rill_encode(e, out, (const unsigned char *)s, n);
  CHECK_INT(w, want);
  out[w] = 0;
  return out;
}

/* Decodes s into an exact-size heap buffer (so ASan/valgrind catch any overrun); returns the
 * error code, and the bytes in out/outlen. */
static int dec(rill_encoding_t e, const char *s, char *out, size_t *outlen) {
  size_t n = strlen(s);
  size_t max = rill_decoded_max(e, n);
  CHECK(max <= n);
  unsigned char *d = malloc(max ? max : 1);
  size_t w = (size_t)-1;
  int r = rill_decode(e, d, s, n, &w);
  if (r == 0) {
    CHECK(w <= max);
    memcpy(out, d, w);
    out[w] = 0;
    *outlen = w;
  }
  free(d);
  return r;
}

static void check_dec(rill_encoding_t e, const char *s, const char *want, size_t wantlen) {
  char out[256];
  size_t n;
  int r = dec(e, s, out, &n);
  if (r != 0) fprintf(stderr, "decoding \"%s\" as %s failed\n", s, rill_encoding_name(e));
  CHECK_INT(r, 0);
  CHECK_INT(n, wantlen);
  CHECK(memcmp(out, want, n) == 0);
}

static void check_bad(rill_encoding_t e, const char *s) {
  char out[256];
  size_t n;
  int r = dec(e, s, out, &n);
  if (r != RILL_EINVALID_ENCODING)
    fprintf(stderr, "decoding \"%s\" as %s should fail\n", s, rill_encoding_name(e));
  CHECK_INT(r, RILL_EINVALID_ENCODING);
}

static void test_names(void) {
  CHECK_INT(rill_encoding_find("binary", 6), RILL_ENC_BINARY);
  CHECK_INT(rill_encoding_find("hex", 3), RILL_ENC_HEX);
  CHECK_INT(rill_encoding_find("base64", 6), RILL_ENC_BASE64);
  CHECK_INT(rill_encoding_find("base64url", 9), RILL_ENC_BASE64URL);
  CHECK_INT(rill_encoding_find("base64u", 7), -1);
  CHECK_INT(rill_encoding_find("HEX", 3), -1);
  CHECK_INT(rill_encoding_find("", 0), -1);
  CHECK_INT(rill_encoding_find("hex\0x", 5), -1);
  CHECK_STR(rill_encoding_name(RILL_ENC_BASE64URL), "base64url");
}

/* RFC 4648 section 10 test vectors. */
static void test_rfc4648(void) {
  static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *b64[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  static const char *url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  static const char *hex[] = {"", "66", "666f", "666f6f", "666f6f62", "666f6f6261", "666f6f626172"};
  for (int i = 0; i < 7; i++) {
    size_t n = strlen(in[i]);
    CHECK_STR(enc(RILL_ENC_BASE64, in[i], n), b64[i]);
    CHECK_STR(enc(RILL_ENC_BASE64URL, in[i], n), url[i]);
    CHECK_STR(enc(RILL_ENC_HEX, in[i], n), hex[i]);
    CHECK_STR(enc(RILL_ENC_BINARY, in[i], n), in[i]);
    check_dec(RILL_ENC_BASE64, b64[i], in[i], n);
    check_dec(RILL_ENC_BASE64URL, url[i], in[i], n);
    check_dec(RILL_ENC_BASE64URL, b64[i], in[i], n); /* base64url also takes padding */
    check_dec(RILL_ENC_HEX, hex[i], in[i], n);
    check_dec(RILL_ENC_BINARY, in[i], in[i], n);
  }
  /* The alphabets differ in the last two characters. */
  CHECK_STR(enc(RILL_ENC_BASE64, "\xfb\xff\xbf", 3), "+/+/");
  CHECK_STR(enc(RILL_ENC_BASE64URL, "\xfb\xff\xbf", 3), "-_-_");
  CHECK_STR(enc(RILL_ENC_BASE64, "\xfb\xff", 2), "+/8=");
  CHECK_STR(enc(RILL_ENC_BASE64URL, "\xfb\xff", 2), "-_8");
  check_dec(RILL_ENC_BASE64, "+/+/", "\xfb\xff\xbf", 3);
  check_dec(RILL_ENC_BASE64URL, "-_-_", "\xfb\xff\xbf", 3);
  /* Hex: uppercase and mixed case decode; encoding is lowercase. */
  check_dec(RILL_ENC_HEX, "ABCDEF", "\xab\xcd\xef", 3);
  check_dec(RILL_ENC_HEX, "aBcD", "\xab\xcd", 2);
  check_dec(RILL_ENC_HEX, "00ff", "\x00\xff", 2);
  CHECK_STR(enc(RILL_ENC_HEX, "\xab\xcd\xef\x01", 4), "abcdef01");
}

static void test_invalid(void) {
  /* hex */
  check_bad(RILL_ENC_HEX, "abcdxx");
  check_bad(RILL_ENC_HEX, "abc");
  check_bad(RILL_ENC_HEX, "a");
  check_bad(RILL_ENC_HEX, "zz");
  check_bad(RILL_ENC_HEX, "0g");
  check_bad(RILL_ENC_HEX, "g0");
  check_bad(RILL_ENC_HEX, " 0");
  check_bad(RILL_ENC_HEX, "00 ");
  check_bad(RILL_ENC_HEX, "0x00");
  check_bad(RILL_ENC_HEX, "\xff\xff");
  /* base64: length, padding, alphabet, whitespace, leftover bits */
  static const char *bad64[] = {
      "Z",
      "Zg",
      "Zg=",
      "Zm8",
      "YQ=",
      "Y===",
      "====",
      "=",
      "==",
      "Zg===",
      "Zg====",
      "Zm=v",
      "=Zm9",
      "Z=g=",
      "Zg==Zg==",
      "Zm9v=",
      "Zm9v====",
      "Zm9v\n",
      "Zm9v\r\n",
      " Zm9v",
      "Zm 9v",
      "Zm9\tv",
      "Zm9v\n",
      "Zm9v YmFy",
      "Zh==",
      "Zm9=",
      "-_8=",
      "Zm9v-_-_",
      "Zm9*",
      "\x80\x80\x80\x80",
      "ZmZmZmZmZmZmZmZmZmZmZmZm*mZm",
  };
  for (size_t i = 0; i < sizeof bad64 / sizeof bad64[0]; i++) check_bad(RILL_ENC_BASE64, bad64[i]);
  /* base64url: optional padding, but the same strictness otherwise */
  static const char *badurl[] = {
      "Z",   "Zg=",  "YQ=",      "Y===",   "Zm8==", "Zm=v",  "Zg==Zg", "Zh",
      "Zm9", "+/8=", "Zm9v+/+/", "Zm9v\n", " Zm9v", "Zm9vZ", "=",
  };
  for (size_t i = 0; i < sizeof badurl / sizeof badurl[0]; i++)
    check_bad(RILL_ENC_BASE64URL, badurl[i]);
  unsigned char nul[8];
  size_t nn;
  CHECK_INT(rill_base64_decode(nul, "Zm9v\0Zm9", 8, 0, &nn), RILL_EINVALID_ENCODING);
  CHECK_INT(rill_hex_decode(nul,
                            "00\0"
                            "000",
                            6, &nn),
            RILL_EINVALID_ENCODING);
  check_dec(RILL_ENC_BASE64URL, "Zg", "f", 1);
  check_dec(RILL_ENC_BASE64URL, "Zm8=", "fo", 2);
}

static void test_long_invalid(void) {
  char s[401], out[400];
  size_t n;
  memset(s, 'A', 400);
  s[400] = 0;
  CHECK_INT(dec(RILL_ENC_BASE64, s, out, &n), 0);
  CHECK_INT(n, 300);
  for (int pos = 0; pos < 400; pos += 37) {
    s[pos] = '.';
    check_bad(RILL_ENC_BASE64, s);
    check_bad(RILL_ENC_BASE64URL, s);
    check_bad(RILL_ENC_HEX, s);
    s[pos] = '=';
    check_bad(RILL_ENC_BASE64, s);
    s[pos] = 'A';
  }
}

/* A small deterministic generator, so failures reproduce. */
static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

static void roundtrip(const unsigned char *p, size_t n) {
  for (int e = RILL_ENC_BINARY; e <= RILL_ENC_BASE64URL; e++) {
    size_t elen;
    CHECK_INT(rill_encoded_len((rill_encoding_t)e, n, &elen), 0);
    char *s = malloc(elen ? elen : 1);
    CHECK_INT(rill_encode((rill_encoding_t)e, s, p, n), elen);
    size_t max = rill_decoded_max((rill_encoding_t)e, elen);
    CHECK(max >= n);
    unsigned char *d = malloc(max ? max : 1);
    size_t w;
    CHECK_INT(rill_decode((rill_encoding_t)e, d, s, elen, &w), 0);
    CHECK_INT(w, n);
    CHECK(n == 0 || memcmp(d, p, n) == 0);
    free(d);
    free(s);
  }
}

static void test_roundtrip(void) {
  unsigned char all[256];
  for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
  roundtrip(all, 256);
  for (int i = 0; i < 256; i++) roundtrip(all + i, 256 - (size_t)i);
  unsigned char buf[1025];
  for (size_t n = 0; n <= 1024; n++) {
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)next_rand();
    roundtrip(buf, n);
  }
}

static void test_lengths(void) {
  size_t o;
  CHECK_INT(rill_encoded_len(RILL_ENC_HEX, SIZE_MAX, &o), UV_ENOMEM);
  CHECK_INT(rill_encoded_len(RILL_ENC_HEX, SIZE_MAX / 2 + 1, &o), UV_ENOMEM);
  CHECK_INT(rill_encoded_len(RILL_ENC_HEX, SIZE_MAX / 2, &o), 0);
  CHECK_INT(rill_encoded_len(RILL_ENC_BASE64, SIZE_MAX, &o), UV_ENOMEM);
  CHECK_INT(rill_encoded_len(RILL_ENC_BASE64URL, SIZE_MAX, &o), UV_ENOMEM);
  CHECK_INT(rill_encoded_len(RILL_ENC_BASE64, SIZE_MAX / 4 * 3, &o), 0);
  CHECK(o == SIZE_MAX / 4 * 4);
  CHECK_INT(rill_encoded_len(RILL_ENC_BINARY, SIZE_MAX, &o), 0);
  CHECK(o == SIZE_MAX);
  for (size_t n = 0; n < 10; n++) {
    CHECK_INT(rill_encoded_len(RILL_ENC_BASE64, n, &o), 0);
    CHECK_INT(o, (n + 2) / 3 * 4);
    CHECK_INT(rill_encoded_len(RILL_ENC_BASE64URL, n, &o), 0);
    CHECK_INT(o, (n * 4 + 2) / 3);
  }
  CHECK_INT(rill_decoded_max(RILL_ENC_BASE64, SIZE_MAX), SIZE_MAX / 4 * 3 + 2);
  CHECK_INT(rill_decoded_max(RILL_ENC_HEX, SIZE_MAX), SIZE_MAX / 2);
}

/* Streaming encode/decode under every 2-cut split of inputs up to 40 bytes equals one-shot. */
static void test_streaming(void) {
  unsigned char p[40];
  for (size_t i = 0; i < sizeof p; i++) p[i] = (unsigned char)next_rand();
  for (int e = RILL_ENC_BINARY; e <= RILL_ENC_BASE64URL; e++) {
    for (size_t n = 0; n <= sizeof p; n++) {
      char whole[128];
      size_t wl = rill_encode((rill_encoding_t)e, whole, p, n);
      for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
          rill_codec_t c;
          char out[128];
          size_t w = 0;
          rill_codec_init(&c, (rill_encoding_t)e);
          w += rill_codec_encode(&c, out + w, p, a);
          w += rill_codec_encode(&c, out + w, p + a, b - a);
          w += rill_codec_encode(&c, out + w, p + b, n - b);
          w += rill_codec_encode_end(&c, out + w);
          CHECK_INT(w, wl);
          CHECK(memcmp(out, whole, wl) == 0);
        }
      }
      /* decoding the text under every 2-cut split */
      for (size_t a = 0; a <= wl; a++) {
        for (size_t b = a; b <= wl; b++) {
          rill_codec_t c;
          unsigned char out[64];
          size_t w = 0, k;
          rill_codec_init(&c, (rill_encoding_t)e);
          CHECK_INT(rill_codec_decode(&c, out + w, whole, a, &k), 0);
          w += k;
          CHECK_INT(rill_codec_decode(&c, out + w, whole + a, b - a, &k), 0);
          w += k;
          CHECK_INT(rill_codec_decode(&c, out + w, whole + b, wl - b, &k), 0);
          w += k;
          CHECK_INT(rill_codec_decode_end(&c, out + w, &k), 0);
          w += k;
          CHECK_INT(w, n);
          CHECK(n == 0 || memcmp(out, p, n) == 0);
        }
      }
    }
  }
}

/* Streaming decode rejects what one-shot rejects, wherever the input is cut, and stays failed. */
static void stream_bad(rill_encoding_t e, const char *s) {
  size_t n = strlen(s);
  for (size_t a = 0; a <= n; a++) {
    rill_codec_t c;
    unsigned char out[64];
    size_t k;
    rill_codec_init(&c, e);
    int r1 = rill_codec_decode(&c, out, s, a, &k);
    int r2 = r1 ? r1 : rill_codec_decode(&c, out + k, s + a, n - a, &k);
    int r3 = rill_codec_decode_end(&c, out, &k);
    if (!(r1 || r2 || r3)) fprintf(stderr, "stream \"%s\" cut at %zu accepted\n", s, a);
    CHECK(r1 || r2 || r3);
    CHECK_INT(r3, RILL_EINVALID_ENCODING);
    CHECK_INT(rill_codec_decode(&c, out, "AAAA", 4, &k), RILL_EINVALID_ENCODING); /* sticky */
  }
}

static void test_streaming_invalid(void) {
  stream_bad(RILL_ENC_BASE64, "Zg==Zg==");
  stream_bad(RILL_ENC_BASE64, "Zg==A");
  stream_bad(RILL_ENC_BASE64, "Zm9vYg");
  stream_bad(RILL_ENC_BASE64, "Zm9v Yg==");
  stream_bad(RILL_ENC_BASE64, "Zh==");
  stream_bad(RILL_ENC_BASE64URL, "Zm9vY");
  stream_bad(RILL_ENC_BASE64URL, "Zg==Zg");
  stream_bad(RILL_ENC_BASE64URL, "Zh");
  stream_bad(RILL_ENC_HEX, "abc");
  stream_bad(RILL_ENC_HEX, "abcx");
  /* A trailing empty update after a padded group is fine. */
  rill_codec_t c;
  unsigned char out[8];
  size_t k;
  rill_codec_init(&c, RILL_ENC_BASE64);
  CHECK_INT(rill_codec_decode(&c, out, "Zg==", 4, &k), 0);
  CHECK_INT(k, 1);
  CHECK_INT(rill_codec_decode(&c, out, "", 0, &k), 0);
  CHECK_INT(rill_codec_decode_end(&c, out, &k), 0);
}

int main(void) {
  RUN(test_names);
  RUN(test_rfc4648);
  RUN(test_invalid);
  RUN(test_long_invalid);
  RUN(test_roundtrip);
  RUN(test_lengths);
  RUN(test_streaming);
  RUN(test_streaming_invalid);
  return 0;
}
