/* spec/c/test_zlib.c: the zlib engine: round trips, chunking, corrupt/truncated input, bombs. */
#include <stdint.h>
#include <uv.h>
#include <zlib.h>

#include "buf.h"
#include "error.h"
#include "test.h"
#include "zlib_engine.h"

/* ---- helpers ---- */

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

/* Deterministic text-like data (compressible, not trivially). */
static unsigned char *make_text(size_t n) {
  static const char *words[] = {"stream ",       "rill ",  "buffer ", "gzip ", "the ", "of ",
                                "backpressure ", "slab\n", "zlib ",   "42 ",   "and "};
  unsigned char *p = malloc(n ? n : 1);
  size_t i = 0;
  uint32_t s = 7;
  while (i < n) {
    s = s * 1103515245u + 12345u;
    const char *w = words[(s >> 16) % (sizeof words / sizeof *words)];
    for (size_t k = 0; w[k] && i < n; k++) p[i++] = (unsigned char)w[k];
  }
  return p;
}

static unsigned char *make_random(size_t n) {
  unsigned char *p = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)rnd();
  return p;
}

/* Reference compressor written straight on zlib, independent of the engine. */
static unsigned char *ref_compress(const unsigned char *src, size_t n, int wbits, int level,
                                   size_t *outlen) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  CHECK_INT(deflateInit2(&zs, level, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = deflateBound(&zs, n) + 64;
  unsigned char *out = malloc(cap);
  zs.next_in = (unsigned char *)src;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  CHECK_INT(deflate(&zs, Z_FINISH), Z_STREAM_END);
  *outlen = zs.total_out;
  deflateEnd(&zs);
  return out;
}

static unsigned char *ref_gzip(const unsigned char *src, size_t n, size_t *outlen) {
  return ref_compress(src, n, 31, 6, outlen);
}

/* Reference decompressor (one stream) on zlib; returns the zlib result code. */
static int ref_decompress(const unsigned char *src, size_t n, int wbits, unsigned char *out,
                          size_t cap, size_t *outlen) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  CHECK_INT(inflateInit2(&zs, wbits), Z_OK);
  zs.next_in = (unsigned char *)src;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  int r = inflate(&zs, Z_FINISH);
  *outlen = zs.total_out;
  inflateEnd(&zs);
  return r;
}

/* A growing byte array. */
typedef struct {
  unsigned char *p;
  size_t len, cap;
} bytes_t;

static void bytes_add(bytes_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    b->p = realloc(b->p, cap);
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
}

/* Chunking policies: cut sizes for the input pieces. */
enum { CUT_ALL, CUT_1, CUT_7, CUT_64K, CUT_RANDOM };
static size_t cut_size(int how, size_t left) {
  size_t n;
  switch (how) {
    case CUT_1:
      n = 1;
      break;
    case CUT_7:
      n = 7;
      break;
    case CUT_64K:
      n = 64 * 1024;
      break;
    case CUT_RANDOM:
      n = 1 + rnd() % 3000;
      break;
    default:
      n = left;
      break;
  }
  return n < left ? n : left;
}

/* Drains every output the engine has right now into out; returns 0, UV_EOF or the error. */
static int drain(rill_zlib_t *z, bytes_t *out, size_t maxread) {
  for (;;) {
    rill_view_t v;
    int r = rill_zlib_read(z, &v, maxread);
    if (r) {
      CHECK_INT(v.len, 0);
      return r;
    }
    if (v.len == 0) return 0;
    CHECK(v.len <= maxread);
    bytes_add(out, rill_view_data(&v), v.len);
    rill_view_release(&v);
  }
}

/* Runs src through an engine of the given mode, fed in pieces cut by `how`, each piece as a view
 * of its own slab (so the engine's references are exercised), reading at most maxread per call.
 * Returns 0 on success (output in *out) or the first error. */
static int run_engine(rill_zlib_mode_t mode, int level, uint64_t max_output,
                      const unsigned char *src, size_t n, int how, size_t maxread, bytes_t *out) {
  rill_zlib_t z;
  rill_zlib_opts_t o = {mode, level, max_output};
  CHECK_INT(rill_zlib_init(&z, &o), 0);
  memset(out, 0, sizeof *out);
  int r = 0;
  size_t off = 0;
  while (off < n && r == 0) {
    size_t k = cut_size(how, n - off);
    rill_view_t v;
    CHECK_INT(rill_view_from(&v, src + off, k), 0);
    r = rill_zlib_write(&z, &v);
    rill_view_release(&v); /* the engine keeps its own reference */
    off += k;
    if (r == 0) r = drain(&z, out, maxread);
  }
  if (r == 0) r = rill_zlib_end(&z);
  if (r == 0) r = drain(&z, out, maxread);
  if (r == UV_EOF) {
    r = 0;
    CHECK_INT(z.bytes_out, out->len);
    /* Finished engines stay finished. */
    rill_view_t v;
    CHECK_INT(rill_zlib_read(&z, &v, 100), UV_EOF);
  } else if (r == 0) {
    fprintf(stderr, "engine stopped without EOF\n");
    exit(1);
  } else {
    /* Errors are sticky. */
    rill_view_t v;
    CHECK_INT(rill_zlib_read(&z, &v, 100), r);
    CHECK_INT(rill_zlib_write_bytes(&z, "x", 1), r);
    CHECK(rill_zlib_message(&z)[0] != 0);
  }
  rill_zlib_close(&z);
  rill_zlib_close(&z); /* idempotent */
  return r;
}

/* Runs the engine and returns its error message too (for corrupt-input checks). */
static int run_msg(rill_zlib_mode_t mode, const unsigned char *src, size_t n, char *msg,
                   bytes_t *out) {
  rill_zlib_t z;
  rill_zlib_opts_t o = {mode, -1, 0};
  CHECK_INT(rill_zlib_init(&z, &o), 0);
  memset(out, 0, sizeof *out);
  int r = rill_zlib_write_bytes(&z, src, n);
  if (r == 0) r = rill_zlib_end(&z);
  if (r == 0) r = drain(&z, out, 65536);
  snprintf(msg, 96, "%s", rill_zlib_message(&z));
  rill_zlib_close(&z);
  return r == UV_EOF ? 0 : r;
}

/* ---- tests ---- */

static void test_args(void) {
  rill_zlib_t z;
  memset(&z, 0xAB, sizeof z);
  rill_zlib_opts_t bad_mode = {(rill_zlib_mode_t)9, -1, 0};
  CHECK_INT(rill_zlib_init(&z, &bad_mode), UV_EINVAL);
  CHECK_INT(z.inited, 0xAB); /* untouched on failure */
  rill_zlib_opts_t bad_level = {RILL_ZLIB_GZIP, 10, 0};
  CHECK_INT(rill_zlib_init(&z, &bad_level), UV_EINVAL);
  bad_level.level = -2;
  CHECK_INT(rill_zlib_init(&z, &bad_level), UV_EINVAL);
  CHECK_INT(rill_zlib_init(&z, NULL), UV_EINVAL);
  /* Level is not checked for decompression. */
  rill_zlib_opts_t ok = {RILL_ZLIB_GUNZIP, 99, 0};
  CHECK_INT(rill_zlib_init(&z, &ok), 0);
  rill_view_t v;
  CHECK_INT(rill_zlib_read(&z, &v, 0), UV_EINVAL);
  CHECK_STR(rill_zlib_message(&z), "");
  CHECK_INT(rill_zlib_read(&z, &v, 10), 0); /* nothing yet: more input needed */
  CHECK_INT(v.len, 0);
  CHECK_INT(rill_zlib_end(&z), 0);
  CHECK_INT(rill_zlib_end(&z), 0); /* idempotent */
  CHECK_INT(rill_zlib_write_bytes(&z, "x", 1), RILL_ESTREAM_WRITE_AFTER_END);
  rill_view_t in;
  CHECK_INT(rill_view_from(&in, "x", 1), 0);
  CHECK_INT(rill_zlib_write(&z, &in), RILL_ESTREAM_WRITE_AFTER_END);
  CHECK_INT(in.slab->refs, 1); /* no reference taken on failure */
  rill_view_release(&in);
  rill_zlib_close(&z);
  /* Reading a closed engine is refused, not a crash. */
  CHECK_INT(rill_zlib_read(&z, &v, 10), UV_EINVAL);
  CHECK_INT(rill_zlib_write_bytes(&z, "", 0), RILL_ESTREAM_WRITE_AFTER_END);
}

/* The engine keeps references to written views instead of copying them. */
static void test_write_refs(void) {
  rill_zlib_t z;
  rill_zlib_opts_t o = {RILL_ZLIB_GZIP, 6, 0};
  CHECK_INT(rill_zlib_init(&z, &o), 0);
  rill_view_t in;
  CHECK_INT(rill_view_from(&in, "hello hello hello", 17), 0);
  CHECK_INT(rill_zlib_write(&z, &in), 0);
  CHECK_INT(in.slab->refs, 2);
  CHECK_INT(rill_zlib_pending(&z), 17);
  rill_view_t empty = {NULL, 0, 0};
  CHECK_INT(rill_zlib_write(&z, &empty), 0);
  CHECK_INT(rill_zlib_pending(&z), 17);
  rill_view_t out;
  CHECK_INT(rill_zlib_read(&z, &out, 1000), 0); /* gzip header at most, input consumed */
  CHECK_INT(rill_zlib_pending(&z), 0);
  CHECK_INT(in.slab->refs, 1);
  rill_view_release(&out);
  /* Closing with queued input and a live output view releases the engine's references only. */
  CHECK_INT(rill_zlib_write(&z, &in), 0);
  CHECK_INT(rill_zlib_end(&z), 0);
  CHECK_INT(rill_zlib_read(&z, &out, 5), 0);
  CHECK_INT(out.len, 5);
  rill_zlib_close(&z);
  CHECK_INT(in.slab->refs, 1);
  CHECK_INT(out.slab->refs, 1);
  rill_view_release(&out);
  rill_view_release(&in);
}

static void check_round_trip(rill_zlib_mode_t c, rill_zlib_mode_t d, int wbits, int level,
                             const unsigned char *src, size_t n, int how, size_t maxread) {
  bytes_t comp, back;
  CHECK_INT(run_engine(c, level, 0, src, n, how, maxread, &comp), 0);
  /* The compressed bytes decode with plain zlib... */
  unsigned char *ref = malloc(n + 1);
  size_t refn;
  CHECK_INT(ref_decompress(comp.p, comp.len, wbits, ref, n + 1, &refn), Z_STREAM_END);
  CHECK_INT(refn, n);
  CHECK(n == 0 || memcmp(ref, src, n) == 0);
  /* ...and are byte-identical to plain zlib's output at the same level (except at level 0,
   * where zlib sizes stored blocks by the output space it is given). */
  size_t zn;
  unsigned char *zc = ref_compress(src, n, wbits, level, &zn);
  if (level != 0) {
    CHECK_INT(comp.len, zn);
    CHECK(memcmp(comp.p, zc, zn) == 0);
  }
  /* ...and the engine decodes them back. */
  CHECK_INT(run_engine(d, -1, 0, comp.p, comp.len, how, maxread, &back), 0);
  CHECK_INT(back.len, n);
  CHECK(n == 0 || memcmp(back.p, src, n) == 0);
  free(zc);
  free(ref);
  free(comp.p);
  free(back.p);
}

static void test_round_trips(void) {
  size_t big = 1536 * 1024 + 17; /* past 1 MiB and not a multiple of anything */
  unsigned char *text = make_text(big);
  unsigned char *noise = make_random(big);
  /* Every level on 200 KiB; the default level past 1 MiB. */
  int levels[] = {0, 1, 6, 9, -1};
  for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) {
    check_round_trip(RILL_ZLIB_GZIP, RILL_ZLIB_GUNZIP, 31, levels[i], text, 200000, CUT_64K, 65536);
    check_round_trip(RILL_ZLIB_DEFLATE, RILL_ZLIB_INFLATE, 15, levels[i], text, 200000, CUT_7,
                     65536);
  }
  check_round_trip(RILL_ZLIB_GZIP, RILL_ZLIB_GUNZIP, 31, 6, noise, big, CUT_RANDOM, 65536);
  check_round_trip(RILL_ZLIB_GZIP, RILL_ZLIB_GUNZIP, 31, 6, text, big, CUT_ALL, 65536);
  check_round_trip(RILL_ZLIB_DEFLATE, RILL_ZLIB_INFLATE, 15, 1, text, big, CUT_RANDOM, 4096);
  /* Small and empty inputs, small reads. */
  size_t sizes[] = {0, 1, 2, 100, 5000};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    check_round_trip(RILL_ZLIB_GZIP, RILL_ZLIB_GUNZIP, 31, 6, text, sizes[i], CUT_7, 3);
    check_round_trip(RILL_ZLIB_DEFLATE, RILL_ZLIB_INFLATE, 15, 9, noise, sizes[i], CUT_1, 1);
  }
  free(text);
  free(noise);
}

/* CASES 33: every chunking of the same member (and every read size) gives identical output. */
static void test_chunkings(void) {
  size_t n = 20000;
  unsigned char *text = make_text(n);
  size_t gzn;
  unsigned char *gz = ref_gzip(text, n, &gzn);
  int hows[] = {CUT_ALL, CUT_1, CUT_7, CUT_64K, CUT_RANDOM};
  size_t reads[] = {1, 7, 4096, 65536, 1 << 20};
  for (size_t h = 0; h < sizeof hows / sizeof *hows; h++) {
    for (size_t k = 0; k < sizeof reads / sizeof *reads; k++) {
      bytes_t out;
      CHECK_INT(run_engine(RILL_ZLIB_GUNZIP, -1, 0, gz, gzn, hows[h], reads[k], &out), 0);
      CHECK_INT(out.len, n);
      CHECK(memcmp(out.p, text, n) == 0);
      free(out.p);
    }
  }
  /* Many random chunkings. */
  for (int i = 0; i < 50; i++) {
    bytes_t out;
    CHECK_INT(run_engine(RILL_ZLIB_GUNZIP, -1, 0, gz, gzn, CUT_RANDOM, 1 + rnd() % 70000, &out), 0);
    CHECK_INT(out.len, n);
    CHECK(memcmp(out.p, text, n) == 0);
    free(out.p);
  }
  free(gz);
  free(text);
}

/* Every cut of a member: truncated input fails with "unexpected end of file", and whatever was
 * emitted before is a prefix of the real content (CASES 91). Empty input fails the same way. */
static void test_truncated(void) {
  size_t n = 3000;
  unsigned char *text = make_text(n);
  size_t gzn, zn;
  unsigned char *gz = ref_gzip(text, n, &gzn);
  unsigned char *zz = ref_compress(text, n, 15, 6, &zn);
  for (size_t cut = 0; cut < gzn; cut++) {
    bytes_t out;
    CHECK_INT(run_engine(RILL_ZLIB_GUNZIP, -1, 0, gz, cut, CUT_7, 512, &out), RILL_EZLIB_TRUNCATED);
    CHECK(out.len <= n);
    CHECK(out.len == 0 || memcmp(out.p, text, out.len) == 0);
    free(out.p);
  }
  for (size_t cut = 0; cut < zn; cut++) {
    bytes_t out;
    CHECK_INT(run_engine(RILL_ZLIB_INFLATE, -1, 0, zz, cut, CUT_ALL, 65536, &out),
              RILL_EZLIB_TRUNCATED);
    free(out.p);
  }
  char msg[96];
  bytes_t out;
  CHECK_INT(run_msg(RILL_ZLIB_GUNZIP, gz, 0, msg, &out), RILL_EZLIB_TRUNCATED);
  CHECK_STR(msg, "unexpected end of file");
  CHECK_STR(rill_err_name(RILL_EZLIB_TRUNCATED), "Z_BUF_ERROR");
  free(out.p);
  /* A second member cut short fails too, after the first member's whole output. */
  unsigned char *two = malloc(2 * gzn);
  memcpy(two, gz, gzn);
  memcpy(two + gzn, gz, gzn);
  CHECK_INT(run_msg(RILL_ZLIB_GUNZIP, two, gzn + 10, msg, &out), RILL_EZLIB_TRUNCATED);
  CHECK_INT(out.len, n);
  free(out.p);
  free(two);
  free(gz);
  free(zz);
  free(text);
}

static void check_corrupt(const unsigned char *src, size_t n, rill_zlib_mode_t mode,
                          const char *want) {
  char msg[96];
  bytes_t out;
  int r = run_msg(mode, src, n, msg, &out);
  if (r != RILL_EZLIB || strcmp(msg, want) != 0)
    fprintf(stderr, "corrupt input: got %s \"%s\", want \"%s\"\n", rill_err_name(r), msg, want);
  CHECK_INT(r, RILL_EZLIB);
  CHECK_STR(msg, want);
  free(out.p);
}

/* CASES 92: bad CRC, bad ISIZE, bad method, bad flags, bad magic, bad block, bad zlib header. */
static void test_corrupt(void) {
  size_t n = 3000;
  unsigned char *text = make_text(n);
  size_t gzn, zn;
  unsigned char *gz = ref_gzip(text, n, &gzn);
  unsigned char *zz = ref_compress(text, n, 15, 6, &zn);
  unsigned char *m = malloc(gzn);

  memcpy(m, gz, gzn);
  m[gzn - 8] ^= 1; /* CRC32 */
  check_corrupt(m, gzn, RILL_ZLIB_GUNZIP, "incorrect data check");
  memcpy(m, gz, gzn);
  m[gzn - 1] ^= 1; /* ISIZE */
  check_corrupt(m, gzn, RILL_ZLIB_GUNZIP, "incorrect length check");
  memcpy(m, gz, gzn);
  m[2] = 7; /* method */
  check_corrupt(m, gzn, RILL_ZLIB_GUNZIP, "unknown compression method");
  memcpy(m, gz, gzn);
  m[3] = 0xE0; /* reserved flag bits */
  check_corrupt(m, gzn, RILL_ZLIB_GUNZIP, "unknown header flags set");
  memcpy(m, gz, gzn);
  m[0] = 0x1e; /* magic */
  check_corrupt(m, gzn, RILL_ZLIB_GUNZIP, "incorrect header check");
  memcpy(m, gz, gzn);
  m[10] = 0xff; /* first block: type 3 is invalid */
  check_corrupt(m, gzn, RILL_ZLIB_GUNZIP, "invalid block type");
  /* A zlib stream is not gzip, and the other way round. */
  check_corrupt(zz, zn, RILL_ZLIB_GUNZIP, "incorrect header check");
  check_corrupt(gz, gzn, RILL_ZLIB_INFLATE, "incorrect header check");
  memcpy(m, zz, zn);
  m[zn - 1] ^= 1; /* adler32 */
  check_corrupt(m, zn, RILL_ZLIB_INFLATE, "incorrect data check");
  /* A zlib stream that asks for a preset dictionary. */
  unsigned char dict[] = {0x78, 0xbb, 0, 0, 0, 1, 3, 0};
  check_corrupt(dict, sizeof dict, RILL_ZLIB_INFLATE, "a preset dictionary is needed");
  free(m);
  free(gz);
  free(zz);
  free(text);
}

/* CASES 93: bit flips everywhere in a member give an error or the right output, never a crash
 * (the sanitizer build and valgrind watch the memory). */
static void test_mutants(void) {
  size_t n = 400;
  unsigned char *text = make_text(n);
  size_t gzn;
  unsigned char *gz = ref_gzip(text, n, &gzn);
  unsigned char *m = malloc(gzn);
  int ok = 0, bad = 0;
  for (size_t i = 0; i < gzn * 8; i++) {
    memcpy(m, gz, gzn);
    m[i / 8] ^= (unsigned char)(1u << (i % 8));
    bytes_t out;
    int r = run_engine(RILL_ZLIB_GUNZIP, -1, 0, m, gzn, CUT_RANDOM, 1 + rnd() % 500, &out);
    if (r == 0) {
      /* Only header bits zlib does not check (mtime, xfl, os, FTEXT) can flip harmlessly. */
      CHECK_INT(out.len, n);
      CHECK(memcmp(out.p, text, n) == 0);
      ok++;
    } else {
      CHECK(r == RILL_EZLIB || r == RILL_EZLIB_TRUNCATED);
      bad++;
    }
    free(out.p);
  }
  CHECK(bad > ok);
  free(m);
  free(gz);
  free(text);
}

/* CASES 94: concatenated members, zero padding, trailing garbage. */
static void test_members(void) {
  const char *parts[] = {"first member\n", "", "third member, a bit longer than the first\n"};
  bytes_t all = {0}, want = {0};
  for (int i = 0; i < 3; i++) {
    size_t k;
    size_t len = strlen(parts[i]);
    unsigned char *g = ref_gzip((const unsigned char *)parts[i], len, &k);
    bytes_add(&all, g, k);
    bytes_add(&want, parts[i], len);
    free(g);
  }
  int hows[] = {CUT_ALL, CUT_1, CUT_7, CUT_RANDOM};
  for (size_t h = 0; h < sizeof hows / sizeof *hows; h++) {
    bytes_t out;
    CHECK_INT(run_engine(RILL_ZLIB_GUNZIP, -1, 0, all.p, all.len, hows[h], 5, &out), 0);
    CHECK_INT(out.len, want.len);
    CHECK(memcmp(out.p, want.p, want.len) == 0);
    free(out.p);
  }
  /* Zero padding after the last member is ignored, however it is cut. */
  bytes_t pad = {0};
  bytes_add(&pad, all.p, all.len);
  unsigned char zeros[1000] = {0};
  bytes_add(&pad, zeros, sizeof zeros);
  for (size_t h = 0; h < sizeof hows / sizeof *hows; h++) {
    bytes_t out;
    CHECK_INT(run_engine(RILL_ZLIB_GUNZIP, -1, 0, pad.p, pad.len, hows[h], 65536, &out), 0);
    CHECK_INT(out.len, want.len);
    free(out.p);
  }
  char msg[96];
  bytes_t out;
  /* Any other trailing bytes are an error, never silently dropped. */
  bytes_t g1 = {0};
  bytes_add(&g1, all.p, all.len);
  bytes_add(&g1, "garbage!", 8);
  CHECK_INT(run_msg(RILL_ZLIB_GUNZIP, g1.p, g1.len, msg, &out), RILL_EZLIB);
  CHECK_STR(msg, "incorrect header check");
  CHECK_INT(out.len, want.len); /* the valid members' output came first */
  free(out.p);
  /* Something that looks like a gzip header but is not one. */
  bytes_t g2 = {0};
  bytes_add(&g2, all.p, all.len);
  bytes_add(&g2, "\x1f\x8b\xff\xff", 4);
  bytes_add(&g2, zeros, 10);
  CHECK_INT(run_msg(RILL_ZLIB_GUNZIP, g2.p, g2.len, msg, &out), RILL_EZLIB);
  CHECK_STR(msg, "unknown compression method");
  free(out.p);
  /* A gzip header cut short after the members: truncated, not ignored. */
  CHECK_INT(run_msg(RILL_ZLIB_GUNZIP, g2.p, all.len + 2, msg, &out), RILL_EZLIB_TRUNCATED);
  free(out.p);
  /* Zero padding followed by garbage. */
  bytes_t g3 = {0};
  bytes_add(&g3, pad.p, pad.len);
  bytes_add(&g3, "\x01", 1);
  CHECK_INT(run_msg(RILL_ZLIB_GUNZIP, g3.p, g3.len, msg, &out), RILL_EZLIB);
  CHECK_STR(msg, "invalid trailing data after the last gzip member");
  free(out.p);
  for (size_t h = 0; h < sizeof hows / sizeof *hows; h++) {
    CHECK_INT(run_engine(RILL_ZLIB_GUNZIP, -1, 0, g3.p, g3.len, hows[h], 100, &out), RILL_EZLIB);
    free(out.p);
  }
  /* inflate: one zlib stream; zero padding ignored, anything else after it is an error. */
  size_t zn;
  unsigned char *zz = ref_compress((const unsigned char *)"abc", 3, 15, 6, &zn);
  bytes_t z1 = {0};
  bytes_add(&z1, zz, zn);
  bytes_add(&z1, zeros, 3);
  CHECK_INT(run_engine(RILL_ZLIB_INFLATE, -1, 0, z1.p, z1.len, CUT_1, 10, &out), 0);
  CHECK_INT(out.len, 3);
  free(out.p);
  bytes_add(&z1, zz, zn); /* a second zlib stream is trailing data for inflate */
  CHECK_INT(run_msg(RILL_ZLIB_INFLATE, z1.p, z1.len, msg, &out), RILL_EZLIB);
  CHECK_INT(out.len, 3);
  free(out.p);
  CHECK_INT(run_msg(RILL_ZLIB_INFLATE, z1.p, zn + 3 + 1, msg, &out), RILL_EZLIB);
  CHECK_STR(msg, "invalid trailing data after the zlib stream");
  free(out.p);
  bytes_t z2 = {0};
  bytes_add(&z2, zz, zn);
  bytes_add(&z2, zz, zn);
  CHECK_INT(run_msg(RILL_ZLIB_INFLATE, z2.p, z2.len, msg, &out), RILL_EZLIB);
  CHECK_STR(msg, "invalid trailing data after the end of the zlib stream");
  CHECK_INT(out.len, 3);
  free(out.p);
  free(z2.p);
  free(zz);
  free(z1.p);
  free(g1.p);
  free(g2.p);
  free(g3.p);
  free(pad.p);
  free(all.p);
  free(want.p);
}

/* Builds a gzip of n zero bytes with the engine itself (streaming, bounded memory). */
static void make_bomb(uint64_t n, bytes_t *gz) {
  rill_zlib_t z;
  rill_zlib_opts_t o = {RILL_ZLIB_GZIP, 9, 0};
  CHECK_INT(rill_zlib_init(&z, &o), 0);
  memset(gz, 0, sizeof *gz);
  rill_view_t zeros;
  CHECK_INT(rill_view_alloc(&zeros, 1 << 20), 0);
  memset(zeros.slab->data, 0, zeros.len);
  for (uint64_t left = n; left > 0;) {
    rill_view_t piece;
    size_t k = left < zeros.len ? (size_t)left : zeros.len;
    rill_view_slice(&piece, &zeros, 0, k);
    CHECK_INT(rill_zlib_write(&z, &piece), 0);
    rill_view_release(&piece);
    left -= k;
    CHECK_INT(drain(&z, gz, 65536), 0);
  }
  CHECK_INT(rill_zlib_end(&z), 0);
  CHECK_INT(drain(&z, gz, 65536), UV_EOF);
  rill_zlib_close(&z);
  rill_view_release(&zeros);
}

/* CASES 95: a bomb read at the consumer's pace never holds more than a slab or two, the engine
 * keeps its place in the input between reads, and the total is exact. */
static void test_bomb(void) {
  uint64_t n = (uint64_t)64 << 20;
  bytes_t gz;
  make_bomb(n, &gz);
  CHECK(gz.len < n / 500);
  rill_zlib_t z;
  rill_zlib_opts_t o = {RILL_ZLIB_GUNZIP, -1, 0};
  CHECK_INT(rill_zlib_init(&z, &o), 0);
  CHECK_INT(rill_zlib_write_bytes(&z, gz.p, gz.len), 0);
  CHECK_INT(rill_zlib_end(&z), 0);
  rill_view_t v;
  CHECK_INT(rill_zlib_read(&z, &v, 65536), 0);
  CHECK_INT(v.len, 65536);
  /* Most of the input is still waiting: the engine only decoded what was asked for. */
  CHECK(rill_zlib_pending(&z) > gz.len / 2);
  uint64_t total = v.len;
  rill_view_release(&v);
  size_t mallocs = rill_slab_mallocs();
  int r;
  while ((r = rill_zlib_read(&z, &v, 65536)) == 0) {
    CHECK(v.len > 0);
    total += v.len;
    rill_view_release(&v);
  }
  CHECK_INT(r, UV_EOF);
  CHECK_INT(total, n);
  /* Output slabs came back to the pool and were reused: no slab allocation per read. */
  CHECK(rill_slab_mallocs() - mallocs <= 2);
  rill_zlib_close(&z);

  /* max_output: exactly max_output bytes, then RILL_EOUTPUT_LIMIT (sticky). */
  uint64_t limits[] = {1, 65536, 100000, 10 << 20};
  for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
    rill_zlib_opts_t lo = {RILL_ZLIB_GUNZIP, -1, limits[i]};
    CHECK_INT(rill_zlib_init(&z, &lo), 0);
    CHECK_INT(rill_zlib_write_bytes(&z, gz.p, gz.len), 0);
    CHECK_INT(rill_zlib_end(&z), 0);
    total = 0;
    while ((r = rill_zlib_read(&z, &v, 65536)) == 0 && v.len > 0) {
      total += v.len;
      rill_view_release(&v);
    }
    CHECK_INT(r, RILL_EOUTPUT_LIMIT);
    CHECK_INT(total, limits[i]);
    CHECK_INT(rill_zlib_read(&z, &v, 65536), RILL_EOUTPUT_LIMIT);
    CHECK_STR(rill_zlib_message(&z), "output exceeds max_output");
    rill_zlib_close(&z);
  }
  free(gz.p);
  /* Output of exactly max_output bytes is fine; compression is limited the same way. */
  unsigned char *text = make_text(5000);
  bytes_t out;
  size_t gzn;
  unsigned char *g = ref_gzip(text, 5000, &gzn);
  CHECK_INT(run_engine(RILL_ZLIB_GUNZIP, -1, 5000, g, gzn, CUT_7, 100, &out), 0);
  CHECK_INT(out.len, 5000);
  free(out.p);
  CHECK_INT(run_engine(RILL_ZLIB_GUNZIP, -1, 4999, g, gzn, CUT_7, 100, &out), RILL_EOUTPUT_LIMIT);
  CHECK_INT(out.len, 4999);
  CHECK(memcmp(out.p, text, 4999) == 0);
  free(out.p);
  CHECK_INT(run_engine(RILL_ZLIB_GZIP, 0, 100, text, 5000, CUT_ALL, 65536, &out),
            RILL_EOUTPUT_LIMIT);
  CHECK_INT(out.len, 100);
  free(out.p);
  free(g);
  free(text);
}

/* Compression at the consumer's pace: small reads, and no output until input ends is allowed. */
static void test_compress_paced(void) {
  rill_zlib_t z;
  rill_zlib_opts_t o = {RILL_ZLIB_DEFLATE, 6, 0};
  CHECK_INT(rill_zlib_init(&z, &o), 0);
  bytes_t out = {0};
  unsigned char *text = make_text(300000);
  CHECK_INT(rill_zlib_write_bytes(&z, text, 300000), 0);
  CHECK_INT(drain(&z, &out, 1), 0);
  /* More input needed: everything written was consumed into zlib's window. */
  CHECK_INT(rill_zlib_pending(&z), 0);
  CHECK_INT(z.bytes_in, 300000);
  CHECK_INT(rill_zlib_end(&z), 0);
  CHECK_INT(drain(&z, &out, 1), UV_EOF);
  unsigned char *back = malloc(300000);
  size_t bn;
  CHECK_INT(ref_decompress(out.p, out.len, 15, back, 300000, &bn), Z_STREAM_END);
  CHECK_INT(bn, 300000);
  CHECK(memcmp(back, text, bn) == 0);
  rill_zlib_close(&z);
  free(back);
  free(text);
  free(out.p);
}

int main(void) {
  RUN(test_args);
  RUN(test_write_refs);
  RUN(test_round_trips);
  RUN(test_chunkings);
  RUN(test_truncated);
  RUN(test_corrupt);
  RUN(test_mutants);
  RUN(test_members);
  RUN(test_bomb);
  RUN(test_compress_paced);
  rill_slab_pool_trim();
  fprintf(stderr, "test_zlib: all passed\n");
  return 0;
}
