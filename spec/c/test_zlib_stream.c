/* spec/c/test_zlib_stream.c: zlib streams in pipelines: round trips, errors, consumer pace. */
#include <stdint.h>
#include <uv.h>
#include <zlib.h>

#include "buf.h"
#include "error.h"
#include "loop.h"
#include "pipe.h"
#include "stream.h"
#include "test.h"
#include "zlib_stream.h"

static rill_loop_t L;

/* ---- a sink that keeps what it gets and acknowledges now or from a later loop turn ---- */

typedef struct {
  unsigned char *got;
  size_t len, cap;
  uint64_t total;
  int keep;             /* keep the bytes (else only count them) */
  int slow;             /* acknowledge from the immediate queue */
  int acks_left;        /* slow: how many writes to acknowledge before stalling (-1: all) */
  rill_stream_t *watch; /* a stream whose buffered output is sampled at each write */
  size_t watch_max;
  int freed;
} sink_t;

static void ack_later(void *arg) {
  rill_stream_t *s = arg;
  rill_stream_write_done(s, NULL);
  rill_stream_unref(s);
}

static void sink_write(rill_stream_t *s, const rill_chunk_t *c) {
  sink_t *k = rill_stream_data(s);
  size_t n = c->view.len;
  if (k->keep) {
    if (k->len + n > k->cap) {
      k->cap = (k->len + n) * 2;
      k->got = realloc(k->got, k->cap);
    }
    memcpy(k->got + k->len, rill_view_data(&c->view), n);
    k->len += n;
  }
  k->total += n;
  if (k->watch) {
    size_t b = rill_stream_readable_length(k->watch);
    if (b > k->watch_max) k->watch_max = b;
  }
  if (k->slow) {
    if (k->acks_left == 0) return; /* stalled: the write stays in flight */
    if (k->acks_left > 0) k->acks_left--;
    rill_stream_ref(s);
    rill_loop_immediate(&L, ack_later, s);
  } else {
    rill_stream_write_done(s, NULL);
  }
}

static void sink_free(rill_stream_t *s) {
  sink_t *k = rill_stream_data(s);
  k->freed = 1;
}

static const rill_stream_impl_t sink_impl = {.write = sink_write, .free = sink_free};

static rill_stream_t *mk_sink(sink_t *k) {
  rill_stream_opts_t o = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  rill_stream_t *s;
  CHECK_INT(rill_stream_new(&L, &sink_impl, k, &o, &s), 0);
  return s;
}

static rill_stream_t *mk_source(const void *p, size_t n, size_t chunk) {
  rill_view_t v;
  CHECK_INT(rill_view_from(&v, p, n), 0);
  rill_stream_t *s;
  CHECK_INT(rill_stream_new_source(&L, &v, chunk, &s), 0);
  rill_view_release(&v);
  return s;
}

static rill_stream_t *mk_z(rill_zlib_mode_t mode, int level, uint64_t max_output) {
  rill_zlib_opts_t o = {mode, level, max_output};
  rill_stream_t *s;
  CHECK_INT(rill_zlib_stream_new(&L, &o, &s), 0);
  return s;
}

typedef struct {
  int called;
  int code;
  char msg[128];
} result_t;

static void pl_cb(rill_err_t *err, void *arg) {
  result_t *r = arg;
  r->called++;
  r->code = err ? err->code : 0;
  snprintf(r->msg, sizeof r->msg, "%s", err ? rill_err_message(err) : "");
}

/* Runs streams[0..n) as a pipeline to the end; every stream is released. */
static void run_pipeline(rill_stream_t **st, size_t n, result_t *res) {
  memset(res, 0, sizeof *res);
  CHECK_INT(rill_pipeline(st, n, pl_cb, res), 0);
  for (size_t i = 0; i < n; i++) rill_stream_unref(st[i]);
  rill_loop_run(&L, UV_RUN_DEFAULT);
  CHECK_INT(res->called, 1);
}

static void begin(void) {
  CHECK_INT(rill_loop_init(&L, NULL), 0);
}

static void end(void) {
  rill_loop_run(&L, UV_RUN_DEFAULT);
  CHECK_INT(rill_loop_pending(&L), 0);
  rill_loop_free(&L);
  rill_slab_pool_trim();
}

static unsigned char *make_text(size_t n) {
  unsigned char *p = malloc(n ? n : 1);
  uint32_t s = 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    p[i] = (unsigned char)("abcdefgh \n"[(s >> 16) % 10]);
  }
  return p;
}

static unsigned char *ref_gzip(const unsigned char *src, size_t n, size_t *outlen) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  CHECK_INT(deflateInit2(&zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
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

/* ---- tests ---- */

static void test_args(void) {
  begin();
  rill_stream_t *s = NULL;
  rill_zlib_opts_t bad = {RILL_ZLIB_GZIP, 11, 0};
  CHECK_INT(rill_zlib_stream_new(&L, &bad, &s), UV_EINVAL);
  CHECK_INT(rill_zlib_stream_new(NULL, &bad, &s), UV_EINVAL);
  CHECK_INT(rill_zlib_stream_new(&L, NULL, &s), UV_EINVAL);
  CHECK(s == NULL);
  s = mk_z(RILL_ZLIB_GUNZIP, -1, 0);
  CHECK(rill_zlib_stream_engine(s) != NULL);
  CHECK_INT(rill_stream_flags(s) & RILL_STREAM_DUPLEX, RILL_STREAM_DUPLEX);
  sink_t k = {0};
  rill_stream_t *other = mk_sink(&k);
  CHECK(rill_zlib_stream_engine(other) == NULL);
  rill_stream_unref(other);
  rill_stream_unref(s); /* unused: destroyed and freed quietly */
  end();
  CHECK(k.freed);
}

/* source -> gzip -> gunzip -> sink gives the input back, for several sizes and chunkings. */
static void test_round_trip(void) {
  size_t sizes[] = {0, 1, 1000, 3 * 1024 * 1024 + 5};
  size_t chunks[] = {0, 7, 1000, 0};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    begin();
    unsigned char *text = make_text(sizes[i]);
    sink_t k = {.keep = 1, .slow = i % 2, .acks_left = -1};
    rill_stream_t *st[4] = {mk_source(text, sizes[i], chunks[i]), mk_z(RILL_ZLIB_GZIP, 6, 0),
                            mk_z(RILL_ZLIB_GUNZIP, -1, 0), mk_sink(&k)};
    result_t res;
    run_pipeline(st, 4, &res);
    CHECK_INT(res.code, 0);
    CHECK_INT(k.len, sizes[i]);
    CHECK(sizes[i] == 0 || memcmp(k.got, text, sizes[i]) == 0);
    free(k.got);
    free(text);
    end();
    CHECK(k.freed);
  }
  /* deflate -> inflate, and gzip output that plain zlib decodes. */
  begin();
  unsigned char *text = make_text(200000);
  sink_t k = {.keep = 1, .acks_left = -1};
  rill_stream_t *st[3] = {mk_source(text, 200000, 3000), mk_z(RILL_ZLIB_DEFLATE, 9, 0),
                          mk_sink(&k)};
  result_t res;
  run_pipeline(st, 3, &res);
  CHECK_INT(res.code, 0);
  unsigned char *back = malloc(200000);
  uLongf bn = 200000;
  CHECK_INT(uncompress(back, &bn, k.got, k.len), Z_OK);
  CHECK_INT(bn, 200000);
  CHECK(memcmp(back, text, bn) == 0);
  sink_t k2 = {.keep = 1, .acks_left = -1};
  rill_stream_t *st2[3] = {mk_source(k.got, k.len, 100), mk_z(RILL_ZLIB_INFLATE, -1, 0),
                           mk_sink(&k2)};
  run_pipeline(st2, 3, &res);
  CHECK_INT(res.code, 0);
  CHECK_INT(k2.len, 200000);
  CHECK(memcmp(k2.got, text, 200000) == 0);
  free(back);
  free(k.got);
  free(k2.got);
  free(text);
  end();
}

/* Corrupt, truncated and over-limit input fail the pipeline with the engine's error. */
static void check_fails(const unsigned char *p, size_t n, rill_zlib_mode_t mode, uint64_t max,
                        int code, const char *msg) {
  begin();
  sink_t k = {.acks_left = -1};
  rill_stream_t *st[3] = {mk_source(p, n, 100), mk_z(mode, -1, max), mk_sink(&k)};
  result_t res;
  run_pipeline(st, 3, &res);
  if (res.code != code) fprintf(stderr, "got %s: %s\n", rill_err_name(res.code), res.msg);
  CHECK_INT(res.code, code);
  CHECK_STR(res.msg, msg);
  end();
  CHECK(k.freed);
}

static void test_errors(void) {
  unsigned char *text = make_text(50000);
  size_t gzn;
  unsigned char *gz = ref_gzip(text, 50000, &gzn);
  check_fails(gz, gzn / 2, RILL_ZLIB_GUNZIP, 0, RILL_EZLIB_TRUNCATED, "unexpected end of file");
  check_fails(gz, 0, RILL_ZLIB_GUNZIP, 0, RILL_EZLIB_TRUNCATED, "unexpected end of file");
  gz[gzn - 6] ^= 0x40;
  check_fails(gz, gzn, RILL_ZLIB_GUNZIP, 0, RILL_EZLIB, "incorrect data check");
  gz[gzn - 6] ^= 0x40;
  check_fails(gz, gzn, RILL_ZLIB_INFLATE, 0, RILL_EZLIB, "incorrect header check");
  check_fails(gz, gzn, RILL_ZLIB_GUNZIP, 1000, RILL_EOUTPUT_LIMIT, "output exceeds max_output");
  unsigned char *junk = malloc(gzn + 3);
  memcpy(junk, gz, gzn);
  memcpy(junk + gzn, "\0\0x", 3);
  check_fails(junk, gzn + 3, RILL_ZLIB_GUNZIP, 0, RILL_EZLIB,
              "invalid trailing data after the last gzip member");
  free(junk);
  free(gz);
  free(text);
}

/* A bomb through gunzip into a slow sink: the gunzip stream never buffers more than its
 * high-water mark plus one chunk, its input is consumed bit by bit, and slabs are reused. */
static void test_bomb_paced(void) {
  begin();
  /* 64 MiB of zeros, gzipped by the engine itself. */
  rill_zlib_t z;
  rill_zlib_opts_t o = {RILL_ZLIB_GZIP, 9, 0};
  CHECK_INT(rill_zlib_init(&z, &o), 0);
  rill_view_t zeros;
  CHECK_INT(rill_view_alloc(&zeros, 1 << 20), 0);
  memset(zeros.slab->data, 0, zeros.len);
  unsigned char *gz = NULL;
  size_t gzn = 0, gzcap = 0;
  for (int i = 0; i <= 64; i++) {
    if (i < 64)
      CHECK_INT(rill_zlib_write(&z, &zeros), 0);
    else
      CHECK_INT(rill_zlib_end(&z), 0);
    rill_view_t v;
    int r;
    while ((r = rill_zlib_read(&z, &v, 65536)) == 0 && v.len > 0) {
      if (gzn + v.len > gzcap) {
        gzcap = (gzn + v.len) * 2;
        gz = realloc(gz, gzcap);
      }
      memcpy(gz + gzn, rill_view_data(&v), v.len);
      gzn += v.len;
      rill_view_release(&v);
    }
    CHECK_INT(r, i < 64 ? 0 : UV_EOF);
  }
  rill_zlib_close(&z);
  rill_view_release(&zeros);

  sink_t k = {.slow = 1, .acks_left = -1};
  rill_stream_t *gunzip = mk_z(RILL_ZLIB_GUNZIP, -1, 0);
  k.watch = gunzip;
  rill_stream_ref(gunzip);
  rill_stream_t *st[3] = {mk_source(gz, gzn, 0), gunzip, mk_sink(&k)};
  size_t mallocs = rill_slab_mallocs();
  result_t res;
  run_pipeline(st, 3, &res);
  CHECK_INT(res.code, 0);
  CHECK_INT(k.total, (uint64_t)64 << 20);
  CHECK(k.watch_max <= RILL_HWM_BYTES_DEFAULT + RILL_SLAB_SIZE);
  CHECK(rill_slab_mallocs() - mallocs < 16);
  CHECK_INT(rill_zlib_stream_engine(gunzip)->bytes_out, (uint64_t)64 << 20);
  rill_stream_unref(gunzip);
  end();

  /* A consumer that stops: the engine stops too, with most of its input not yet decoded. */
  begin();
  sink_t stall = {.slow = 1, .acks_left = 3};
  gunzip = mk_z(RILL_ZLIB_GUNZIP, -1, 0);
  rill_stream_ref(gunzip);
  rill_stream_t *st2[3] = {mk_source(gz, gzn, 0), gunzip, mk_sink(&stall)};
  CHECK_INT(rill_pipeline(st2, 3, pl_cb, &res), 0);
  memset(&res, 0, sizeof res);
  for (int i = 0; i < 3; i++) rill_stream_unref(st2[i]);
  for (int i = 0; i < 20; i++) rill_loop_run(&L, UV_RUN_NOWAIT);
  const rill_zlib_t *e = rill_zlib_stream_engine(gunzip);
  CHECK(e->bytes_out <= 8 * RILL_SLAB_SIZE);
  CHECK(e->bytes_in < gzn / 4);
  CHECK_INT(res.called, 0);
  /* Destroying the stalled pipeline ends it with the error; nothing leaks. */
  rill_stream_destroy_code(gunzip, UV_ECANCELED);
  rill_stream_unref(gunzip);
  rill_loop_run(&L, UV_RUN_DEFAULT);
  CHECK_INT(res.called, 1);
  CHECK_INT(res.code, UV_ECANCELED);
  end();
  free(gz);
}

/* Pull mode: write everything, then read chunk by chunk; destroy from a data listener. */
static int datas;
static void destroy_on_data(rill_stream_t *s, const rill_event_t *ev, void *arg) {
  if (ev->type == RILL_EV_DATA && ++datas == 2) rill_stream_destroy(s, NULL);
}

static void test_pull_and_destroy(void) {
  begin();
  unsigned char *text = make_text(300000);
  size_t gzn;
  unsigned char *gz = ref_gzip(text, 300000, &gzn);
  rill_stream_t *s = mk_z(RILL_ZLIB_GUNZIP, -1, 0);
  CHECK_INT(rill_stream_write_bytes(s, gz, gzn, NULL, NULL), 1 /* above the mark */);
  CHECK_INT(rill_stream_end(s, NULL, NULL, NULL), 0);
  rill_loop_run(&L, UV_RUN_NOWAIT);
  size_t got = 0;
  int r;
  rill_chunk_t c;
  for (int spins = 0; spins < 1000; spins++) {
    while ((r = rill_stream_read(s, &c)) == 0) {
      CHECK(memcmp(rill_view_data(&c.view), text + got, c.view.len) == 0);
      got += c.view.len;
      rill_chunk_release(&c);
    }
    if (r == UV_EOF) break;
    CHECK_INT(r, UV_EAGAIN);
    rill_loop_run(&L, UV_RUN_NOWAIT);
  }
  CHECK_INT(r, UV_EOF);
  CHECK_INT(got, 300000);
  rill_stream_unref(s);
  end();

  /* Destroyed by its own data listener, mid-output: no crash, no leak, close once. */
  begin();
  datas = 0;
  s = mk_z(RILL_ZLIB_GUNZIP, -1, 0);
  rill_stream_set_hook(s, destroy_on_data, NULL);
  rill_stream_write_bytes(s, gz, gzn, NULL, NULL);
  rill_stream_end(s, NULL, NULL, NULL);
  rill_stream_resume(s);
  rill_loop_run(&L, UV_RUN_DEFAULT);
  CHECK_INT(datas, 2);
  CHECK(rill_stream_state(s) & RILL_SS_CLOSED);
  rill_stream_unref(s);
  end();
  free(gz);
  free(text);
}

int main(void) {
  RUN(test_args);
  RUN(test_round_trip);
  RUN(test_errors);
  RUN(test_bomb_paced);
  RUN(test_pull_and_destroy);
  fprintf(stderr, "test_zlib_stream: all passed\n");
  return 0;
}
