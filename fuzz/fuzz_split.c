/* fuzz/fuzz_split.c: libFuzzer target: the splitter gives the same records however input is cut. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/buf.h"
#include "../core/error.h"
#include "../core/split.h"
#include "../spec/c/split_ref.h"

/* Input layout (every field optional; missing bytes read as 0):
 *   [0]        separator length: % 6, 0 = lines mode
 *   [1..k]     separator bytes
 *   next       max_len: 0 (unlimited) when >= 128, else % 24 (0 stays unlimited)
 *   next       number of cuts c (% 16), then c bytes: piece lengths (the last piece is the rest)
 *   rest       the data
 * Checks the chunked output of both interfaces against the naive one-shot oracle, with every
 * piece in its own allocation so that a read past a piece's end trips ASan. */

#define ASSERT(c)      \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

typedef struct {
  const unsigned char *in;
  const ref_rec_t *ref;
  size_t nref, n;
} expect_t;

static int check_cb(void *arg, rill_view_t *rec) {
  expect_t *e = arg;
  ASSERT(e->n < e->nref);
  ASSERT(rec->len == e->ref[e->n].len);
  ASSERT(memcmp(rill_view_data(rec), e->in + e->ref[e->n].start, rec->len) == 0);
  e->n++;
  rill_view_release(rec);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t at = 0, k, max_len, ncuts, lens[16], i, n, nref, start;
  unsigned char sep[8];
  const unsigned char *in;
  ref_rec_t *ref;
  rill_split_t s;
  rill_split_rec_t rec;
  expect_t e;
  int err, rc;
#define NEXT() (at < size ? data[at++] : 0)
  k = NEXT() % 6;
  for (i = 0; i < k; i++) sep[i] = NEXT();
  max_len = NEXT();
  max_len = max_len >= 128 ? 0 : max_len % 24;
  ncuts = NEXT() % 16;
  for (i = 0; i < ncuts; i++) lens[i] = NEXT();
#undef NEXT
  in = data + at;
  n = size - at;
  ref = malloc((n + 1) * sizeof *ref);
  ASSERT(ref != NULL);
  nref = ref_split(in, n, k ? sep : NULL, k, max_len, ref, &err);

  for (int path = 0; path < 2; path++) {
    ASSERT(rill_split_init(&s, k ? sep : NULL, k, max_len) == 0);
    e.in = in;
    e.ref = ref;
    e.nref = nref;
    e.n = 0;
    rc = 0;
    start = 0;
    for (i = 0; i <= ncuts && rc >= 0; i++) {
      size_t len = i < ncuts ? lens[i] : n - start;
      if (len > n - start) len = n - start;
      if (path == 0) {
        rill_view_t v;
        ASSERT(rill_view_from(&v, in + start, len) == 0);
        rc = rill_split_feed(&s, &v, check_cb, &e);
        rill_view_release(&v);
      } else {
        unsigned char *d = malloc(len ? len : 1);
        size_t pos = 0;
        ASSERT(d != NULL);
        memcpy(d, in + start, len);
        while ((rc = rill_split_next(&s, d, len, &pos, &rec)) > 0) {
          ASSERT(e.n < nref && rec.len == ref[e.n].len);
          ASSERT(memcmp(rec.p, in + ref[e.n].start, rec.len) == 0);
          e.n++;
        }
        ASSERT(rc < 0 || pos == len);
        free(d);
      }
      start += len;
    }
    if (rc == 0) {
      if (path == 0) {
        rc = rill_split_end(&s, check_cb, &e);
      } else if ((rc = rill_split_finish(&s, &rec)) > 0) {
        ASSERT(e.n < nref && rec.len == ref[e.n].len);
        ASSERT(memcmp(rec.p, in + ref[e.n].start, rec.len) == 0);
        e.n++;
        rc = rill_split_finish(&s, &rec);
      }
    }
    ASSERT(rc == err);
    ASSERT(e.n == nref);
    rill_split_free(&s);
  }
  free(ref);
  rill_slab_pool_trim();
  return 0;
}
