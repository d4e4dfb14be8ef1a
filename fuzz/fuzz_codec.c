/* fuzz/fuzz_codec.c: libFuzzer target for the hex/base64 codecs: no crash, exact round trips. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Relative paths: fuzz targets link rill_static, which exports no include directories. */
#include "../core/codec.h"
#include "../core/error.h"

/* Input: one control byte (encoding in bits 0-1, cut point from the rest), then the payload,
 * used both as text to decode and as bytes to encode. */

/* A strict decoder accepts only canonical text, so re-encoding what it accepted must give the
 * input back: exactly for base64, up to letter case for hex, up to padding for base64url. */
static void check_canonical(rill_encoding_t enc, const char *in, size_t n, const unsigned char *d,
                            size_t w) {
  size_t elen;
  if (rill_encoded_len(enc, w, &elen) != 0) abort();
  char *e = malloc(elen + 1);
  if (rill_encode(enc, e, d, w) != elen) abort();
  if (enc == RILL_ENC_HEX) {
    if (elen != n) abort();
    for (size_t i = 0; i < n; i++) {
      char c = in[i] >= 'A' && in[i] <= 'F' ? (char)(in[i] - 'A' + 'a') : in[i];
      if (c != e[i]) abort();
    }
  } else if (enc == RILL_ENC_BASE64URL) {
    size_t m = n;
    while (m > 0 && in[m - 1] == '=') m--;
    if (m != elen || memcmp(in, e, m) != 0) abort();
    if (n != m && n % 4 != 0) abort(); /* padding only ever completes a group */
  } else {
    if (elen != n || memcmp(in, e, n) != 0) abort();
  }
  free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  rill_encoding_t enc = (rill_encoding_t)(data[0] & 3);
  const char *in = (const char *)data + 1;
  size_t n = size - 1;
  size_t cut = n ? (size_t)(data[0] >> 2) * 131 % (n + 1) : 0;

  /* One-shot decode into an exact-size buffer, so any overrun is caught. */
  size_t max = rill_decoded_max(enc, n), w = 0;
  unsigned char *d = malloc(max + 1);
  int r = rill_decode(enc, d, in, n, &w);
  if (r != 0 && r != RILL_EINVALID_ENCODING) abort();
  if (r == 0) {
    if (w > max) abort();
    check_canonical(enc, in, n, d, w);
  }

  /* Streaming decode with a cut must agree with one-shot (status and bytes). */
  rill_codec_t c;
  rill_codec_init(&c, enc);
  unsigned char *sd = malloc(rill_decoded_max(enc, n + 3) + 6);
  size_t k1 = 0, k2 = 0, k3 = 0;
  int s1 = rill_codec_decode(&c, sd, in, cut, &k1);
  int s2 = s1 ? s1 : rill_codec_decode(&c, sd + k1, in + cut, n - cut, &k2);
  int s3 = rill_codec_decode_end(&c, sd + k1 + k2, &k3);
  int sr = s1 ? s1 : s2 ? s2 : s3;
  if ((sr == 0) != (r == 0)) abort();
  if (r == 0 && (k1 + k2 + k3 != w || (w && memcmp(sd, d, w) != 0))) abort();
  free(sd);
  free(d);

  /* Encode the payload as bytes (one-shot and streamed), decode it back. */
  size_t elen;
  if (rill_encoded_len(enc, n, &elen) != 0) abort();
  char *e = malloc(elen + 1), *se = malloc(elen + 8);
  if (rill_encode(enc, e, (const unsigned char *)in, n) != elen) abort();
  rill_codec_init(&c, enc);
  size_t m = rill_codec_encode(&c, se, (const unsigned char *)in, cut);
  m += rill_codec_encode(&c, se + m, (const unsigned char *)in + cut, n - cut);
  m += rill_codec_encode_end(&c, se + m);
  if (m != elen || (elen && memcmp(e, se, elen) != 0)) abort();
  unsigned char *back = malloc(rill_decoded_max(enc, elen) + 1);
  if (rill_decode(enc, back, e, elen, &w) != 0 || w != n || (n && memcmp(back, in, n) != 0))
    abort();
  free(back);
  free(se);
  free(e);
  return 0;
}
