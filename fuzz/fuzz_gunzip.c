/* fuzz/fuzz_gunzip.c: libFuzzer target: gunzip/inflate never crash and ignore how input is cut. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../core/buf.h"
#include "../core/error.h"
#include "../core/zlib_engine.h"

/* Input layout: [0] control: bit 0 inflate instead of gunzip, bits 1-7 a seed for the cuts and
 * read sizes; the rest is the compressed data. The data is decoded twice, in one piece with
 * large reads and in seeded pieces (each in its own slab, so a read past a piece's end trips
 * ASan) with small reads: both runs must give the same bytes and the same result. Output is
 * capped so that a bomb stays quick; a successful gunzip must also round-trip through gzip. */

#define ASSERT(c)      \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

#define MAX_OUT (1u << 20)

typedef struct {
  unsigned char *p;
  size_t len, cap;
} out_t;

static void out_add(out_t *o, const unsigned char *p, size_t n) {
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 65536;
    while (cap < o->len + n) cap *= 2;
    o->p = realloc(o->p, cap);
    ASSERT(o->p != NULL);
    o->cap = cap;
  }
  memcpy(o->p + o->len, p, n);
  o->len += n;
}

static uint32_t next(uint32_t *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}

static int drain(rill_zlib_t *z, out_t *o, uint32_t *seed) {
  for (;;) {
    size_t max = seed ? 1 + next(seed) % 5000 : 65536;
    rill_view_t v;
    int r = rill_zlib_read(z, &v, max);
    if (r) {
      ASSERT(v.len == 0);
      return r;
    }
    if (v.len == 0) return 0;
    ASSERT(v.len <= max);
    out_add(o, rill_view_data(&v), v.len);
    rill_view_release(&v);
  }
}

/* Decodes data; returns the final result (0 on success) with the output in *o. */
static int run(rill_zlib_mode_t mode, const uint8_t *data, size_t n, uint32_t *seed, out_t *o) {
  rill_zlib_t z;
  rill_zlib_opts_t opts = {mode, -1, MAX_OUT};
  ASSERT(rill_zlib_init(&z, &opts) == 0);
  int r = 0;
  size_t at = 0;
  while (at < n && r == 0) {
    size_t k = seed ? 1 + next(seed) % 97 : n - at;
    if (k > n - at) k = n - at;
    rill_view_t piece;
    ASSERT(rill_view_from(&piece, data + at, k) == 0);
    r = rill_zlib_write(&z, &piece);
    rill_view_release(&piece);
    at += k;
    if (r == 0) r = drain(&z, o, seed);
  }
  if (r == 0) r = rill_zlib_end(&z);
  if (r == 0) r = drain(&z, o, seed);
  ASSERT(r != 0);
  if (r == UV_EOF) r = 0;
  ASSERT(r == 0 || r == RILL_EZLIB || r == RILL_EZLIB_TRUNCATED || r == RILL_EOUTPUT_LIMIT);
  ASSERT(r == 0 || rill_zlib_message(&z)[0] != 0);
  ASSERT(z.bytes_out == o->len && o->len <= MAX_OUT);
  rill_zlib_close(&z);
  return r;
}

/* gzip then gunzip of the output gives it back. */
static void round_trip(const out_t *o) {
  rill_zlib_t z;
  rill_zlib_opts_t opts = {RILL_ZLIB_GZIP, 1, 0};
  ASSERT(rill_zlib_init(&z, &opts) == 0);
  out_t gz = {0}, back = {0};
  if (o->len) ASSERT(rill_zlib_write_bytes(&z, o->p, o->len) == 0);
  ASSERT(rill_zlib_end(&z) == 0);
  ASSERT(drain(&z, &gz, NULL) == UV_EOF);
  rill_zlib_close(&z);
  ASSERT(run(RILL_ZLIB_GUNZIP, gz.p, gz.len, NULL, &back) == 0);
  ASSERT(back.len == o->len && (o->len == 0 || memcmp(back.p, o->p, o->len) == 0));
  free(gz.p);
  free(back.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  rill_zlib_mode_t mode = (data[0] & 1) ? RILL_ZLIB_INFLATE : RILL_ZLIB_GUNZIP;
  uint32_t seed = data[0] >> 1;
  out_t a = {0}, b = {0};
  int ra = run(mode, data + 1, size - 1, NULL, &a);
  int rb = run(mode, data + 1, size - 1, &seed, &b);
  ASSERT(ra == rb);
  ASSERT(a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0));
  if (ra == 0 && mode == RILL_ZLIB_GUNZIP) round_trip(&a);
  free(a.p);
  free(b.p);
  rill_slab_pool_trim();
  return 0;
}
