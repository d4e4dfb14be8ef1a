/* spec/c/test_split.c: the record splitter: same records however the input is cut, zero copy,
 * linear time on huge lines, max_len, and every error path. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "error.h"
#include "split.h"
#include "split_ref.h"
#include "test.h"

/* ---- what the current run is, printed with any failure (seed included) ---- */

typedef struct {
  const char *sep; /* NULL: lines mode */
  size_t k;
  size_t max_len;
  const char *name;
} split_mode;

static struct {
  const char *what;
  const split_mode *mode;
  long long input, seed;
  const size_t *cuts;
  size_t m;
} cur;

static void fail_here(const char *file, int line, const char *cond) {
  size_t j;
  fprintf(stderr,
          "%s:%d: check failed: %s\n  during %s, mode \"%s\", input %lld, seed %lld, "
          "%zu pieces, cuts:",
          file, line, cond, cur.what ? cur.what : "?", cur.mode ? cur.mode->name : "-", cur.input,
          cur.seed, cur.m);
  for (j = 0; cur.cuts && j <= cur.m && j < 24; j++) fprintf(stderr, " %zu", cur.cuts[j]);
  fprintf(stderr, "%s\n", cur.cuts && cur.m > 23 ? " ..." : "");
  exit(1);
}
#define EXPECT(cond)                                   \
  do {                                                 \
    if (!(cond)) fail_here(__FILE__, __LINE__, #cond); \
  } while (0)

#define SEP(s) s, sizeof(s) - 1

/* ---- collecting records from the view interface ---- */

typedef struct {
  rill_view_t *v;
  size_t n, cap;
} collect_t;

static int collect_cb(void *arg, rill_view_t *rec) {
  collect_t *c = arg;
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 64;
    c->v = realloc(c->v, c->cap * sizeof *c->v);
    CHECK(c->v != NULL);
  }
  c->v[c->n++] = *rec; /* keeps the reference until the run is checked */
  return 0;
}

static void collect_clear(collect_t *c) {
  size_t i;
  for (i = 0; i < c->n; i++) rill_view_release(&c->v[i]);
  free(c->v);
  memset(c, 0, sizeof *c);
}

/* The piece that holds byte x: the last j < m with cuts[j] <= x. */
static size_t piece_of(const size_t *cuts, size_t m, size_t x) {
  size_t lo = 0, hi = m - 1;
  while (lo < hi) {
    size_t mid = (lo + hi + 1) / 2;
    if (cuts[mid] <= x)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* Whether the splitter must hand out this record as a slice of its chunk: it is not empty and
 * it lies, with its break, within one piece. */
static int in_one_piece(const ref_rec_t *r, const size_t *cuts, size_t m) {
  return r->len > 0 && r->terminated &&
         piece_of(cuts, m, r->start) == piece_of(cuts, m, r->end - 1);
}

/* Feeds whole[cuts[j], cuts[j+1]) for j < m as slices through rill_split_feed and compares the
 * records, the error, and which records share the input's slab, with the oracle's. */
static void run_views(const rill_view_t *whole, const size_t *cuts, size_t m, const split_mode *md,
                      const ref_rec_t *ref, size_t nref, int ref_err) {
  const unsigned char *in = rill_view_data(whole);
  rill_split_t s;
  collect_t c = {0};
  rill_view_t piece;
  size_t i, j;
  int rc = 0;
  EXPECT(rill_split_init(&s, md->sep, md->k, md->max_len) == 0);
  for (j = 0; j < m && rc == 0; j++) {
    rill_view_slice(&piece, whole, cuts[j], cuts[j + 1] - cuts[j]);
    rc = rill_split_feed(&s, &piece, collect_cb, &c);
    rill_view_release(&piece);
  }
  if (rc == 0) rc = rill_split_end(&s, collect_cb, &c);
  EXPECT(rc == ref_err);
  if (rc) { /* the failure is sticky and yields nothing more */
    EXPECT(rill_split_feed(&s, whole, collect_cb, &c) == rc);
    EXPECT(rill_split_end(&s, collect_cb, &c) == rc);
    EXPECT(s.carry == NULL);
  }
  EXPECT(c.n == nref);
  for (i = 0; i < nref; i++) {
    const rill_view_t *v = &c.v[i];
    EXPECT(v->len == ref[i].len);
    EXPECT(memcmp(rill_view_data(v), in + ref[i].start, v->len) == 0);
    if (in_one_piece(&ref[i], cuts, m))
      EXPECT(v->slab == whole->slab && rill_view_data(v) == in + ref[i].start);
    else if (v->len)
      EXPECT(v->slab != whole->slab);
  }
  collect_clear(&c);
  rill_split_free(&s);
}

/* The same through rill_split_next/finish, each piece in its own allocation so that a read past
 * a piece's end is visible to valgrind and ASan. */
static void run_raw(const unsigned char *in, const size_t *cuts, size_t m, const split_mode *md,
                    const ref_rec_t *ref, size_t nref, int ref_err) {
  rill_split_t s;
  rill_split_rec_t rec;
  size_t j, nr = 0;
  int rc = 0;
  EXPECT(rill_split_init(&s, md->sep, md->k, md->max_len) == 0);
  for (j = 0; j < m && rc == 0; j++) {
    size_t len = cuts[j + 1] - cuts[j], pos = 0;
    unsigned char *d = malloc(len ? len : 1);
    CHECK(d != NULL);
    memcpy(d, in + cuts[j], len);
    while ((rc = rill_split_next(&s, d, len, &pos, &rec)) > 0) {
      EXPECT(nr < nref);
      EXPECT(rec.len == ref[nr].len);
      EXPECT(memcmp(rec.p, in + ref[nr].start, rec.len) == 0);
      if (in_one_piece(&ref[nr], cuts, m)) EXPECT(rec.p == d + (ref[nr].start - cuts[j]));
      nr++;
    }
    if (rc == 0) EXPECT(pos == len);
    free(d);
  }
  if (rc == 0 && (rc = rill_split_finish(&s, &rec)) > 0) {
    EXPECT(nr < nref);
    EXPECT(rec.len == ref[nr].len);
    EXPECT(memcmp(rec.p, in + ref[nr].start, rec.len) == 0);
    nr++;
    rc = rill_split_finish(&s, &rec); /* nothing left */
  }
  EXPECT(rc == ref_err);
  EXPECT(nr == nref);
  rill_split_free(&s);
}

/* ---- exhaustive: every cut of small inputs into at most 3 pieces (CASES 30-32) ---- */

typedef struct {
  const char *p;
  size_t n;
} input_t;
#define IN(s) \
  { s, sizeof(s) - 1 }

static const input_t small_inputs[] = {
    IN(""),
    IN("\n"),
    IN("\n\n"),
    IN("a"),
    IN("a\n"),
    IN("a\nb"),
    IN("\r"),
    IN("\r\n"),
    IN("\r\r\n"),
    IN("\n\r"),
    IN("a\r\nb\r\n"),
    IN("a\rb\n"),
    IN("line1\r\nline2\nline3"),
    IN("\n\r\n\r\r\n\n\r"),
    IN("\xc3\xa9t\xc3\xa9\n\xc3\xbc\r\n\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\n\xe2\x82\xac"),
    IN("a,b,"),
    IN(",,"),
    IN(",a,,b"),
    IN("aaab"),
    IN("aab"),
    IN("aaaab aab aaab aa"),
    IN("ababab"),
    IN("abababab,abab"),
    IN("xabababx\r\n"),
    IN("\r\n\r\n"),
    IN("aaaaaaa"),
    IN("a\r\n\r\nb\r\n\r\r\n\r\n\r\nc"),
    IN("\0\xff\0\xff\xff\0\0\xff"),
    IN("abcd\nabcdefgh\nab"),
    IN("abcd\r\nabcde\r\nabc\r"),
    IN("ab,abcd,abcde"),
    IN("2026-11-27 INFO a\r\n\r\nlone\rcr\n,aab,abab\r\n\xc3\xa9\xe2\x82\xac\n\nend no break"),
    IN("aabaabaaab,,\r\n\n\rabababab\r\n\r\n\0\xff\0,\xe6\x97\xa5\n\n\r\r\n\r\nxyz,,\n\nq\r"),
    IN("x [a] [[ [ b [\n[ ["),
    IN("a,,a,aa,,ba,a"),
    IN("ab\r\nab\rab\nab\r\n\r\nb\r\n"),
};

static const split_mode small_modes[] = {
    {NULL, 0, 0, "lines"},
    {NULL, 0, 3, "lines max 3"},
    {NULL, 0, 1, "lines max 1"},
    {SEP(","), 0, ","},
    {SEP(","), 2, ", max 2"},
    {SEP("\n"), 0, "sep \\n"},
    {SEP("\r\n"), 0, "\\r\\n"},
    {SEP("aab"), 0, "aab"},
    {SEP("aaa"), 0, "aaa"},
    {SEP("abab"), 0, "abab"},
    {SEP("abab"), 2, "abab max 2"},
    {SEP("\r\n\r\n"), 0, "\\r\\n\\r\\n"},
    {SEP("\0\xff"), 0, "\\0\\xff"},
    {SEP(" ["), 0, "' [' (memchr for its 2nd byte)"},
    {SEP("a,"), 0, "a, (memchr for its 2nd byte)"},
    {SEP("ab\r\n"), 1, "ab\\r\\n max 1 (memchr for its 3rd byte)"},
};

static void test_exhaustive_3_pieces(void) {
  size_t t, md, i, j, runs = 0;
  ref_rec_t ref[80];
  for (t = 0; t < sizeof small_inputs / sizeof *small_inputs; t++) {
    const input_t *inp = &small_inputs[t];
    rill_view_t whole;
    CHECK(inp->n <= 64);
    CHECK(rill_view_from(&whole, inp->p, inp->n) == 0);
    for (md = 0; md < sizeof small_modes / sizeof *small_modes; md++) {
      const split_mode *mode = &small_modes[md];
      int err;
      size_t nref = ref_split(rill_view_data(&whole), inp->n, (const unsigned char *)mode->sep,
                              mode->k, mode->max_len, ref, &err);
      for (i = 0; i <= inp->n; i++) {
        for (j = i; j <= inp->n; j++) {
          size_t cuts[4] = {0, i, j, inp->n};
          cur.what = "exhaustive 3 pieces";
          cur.mode = mode;
          cur.input = (long long)t;
          cur.cuts = cuts;
          cur.m = 3;
          run_views(&whole, cuts, 3, mode, ref, nref, err);
          run_raw(rill_view_data(&whole), cuts, 3, mode, ref, nref, err);
          runs++;
        }
      }
    }
    rill_view_release(&whole);
  }
  cur.cuts = NULL;
  fprintf(stderr, "   %zu chunkings\n", runs);
}

/* Separators of 2-4 bytes cut 1+1+..: every piece at most one byte, so the separator spans up to
 * four chunks (beyond what 3 pieces reach). */
static void test_one_byte_pieces(void) {
  size_t t, md, i;
  ref_rec_t ref[80];
  size_t cuts[66];
  for (t = 0; t < sizeof small_inputs / sizeof *small_inputs; t++) {
    const input_t *inp = &small_inputs[t];
    rill_view_t whole;
    CHECK(rill_view_from(&whole, inp->p, inp->n) == 0);
    for (i = 0; i <= inp->n; i++) cuts[i] = i;
    for (md = 0; md < sizeof small_modes / sizeof *small_modes; md++) {
      const split_mode *mode = &small_modes[md];
      int err;
      size_t nref = ref_split(rill_view_data(&whole), inp->n, (const unsigned char *)mode->sep,
                              mode->k, mode->max_len, ref, &err);
      size_t m = inp->n ? inp->n : 1;
      cuts[m] = inp->n;
      cur.what = "one-byte pieces";
      cur.mode = mode;
      cur.input = (long long)t;
      cur.cuts = cuts;
      cur.m = m;
      run_views(&whole, cuts, m, mode, ref, nref, err);
      run_raw(rill_view_data(&whole), cuts, m, mode, ref, nref, err);
    }
    rill_view_release(&whole);
  }
  cur.cuts = NULL;
}

/* Inputs where the byte memchr looks for is everywhere but the separator is not: the search
 * leaves memchr for memmem at some point, for each N at a different distance from the match. */
static void test_search_fallback(void) {
  static const split_mode modes[] = {
      {SEP("aab"), 0, "aab"}, {SEP("aaab"), 0, "aaab"}, {SEP("abab"), 0, "abab"},
      {SEP(" ["), 0, "' ['"}, {SEP("[ "), 0, "'[ '"},   {SEP("a\r\n"), 0, "a\\r\\n"},
  };
  static const char *const fills[] = {"a", "a", "ab", "[", " ", "\r"};
  size_t md, nn, i, n;
  unsigned char in[1300];
  ref_rec_t ref[1300];
  for (md = 0; md < sizeof modes / sizeof *modes; md++) {
    for (nn = 0; nn < 600; nn++) {
      rill_view_t whole;
      size_t fl = strlen(fills[md]), cuts[3];
      int err;
      for (n = 0, i = 0; i < nn; i++) in[n++] = (unsigned char)fills[md][i % fl];
      memcpy(in + n, modes[md].sep, modes[md].k); /* the separator ends the input... */
      n += modes[md].k;
      for (i = 0; i < nn; i++) /* ...or comes before more of the same */
        in[n++] = (unsigned char)fills[md][i % fl];
      size_t nref =
          ref_split(in, n, (const unsigned char *)modes[md].sep, modes[md].k, 0, ref, &err);
      CHECK(nref >= 1 && ref[0].terminated);
      CHECK(rill_view_from(&whole, in, n) == 0);
      cur.what = "search fallback";
      cur.mode = &modes[md];
      cur.input = (long long)nn;
      cuts[0] = 0;
      cuts[1] = nn + modes[md].k;
      cuts[2] = n;
      cur.cuts = cuts;
      cur.m = 2;
      run_views(&whole, cuts, 2, &modes[md], ref, nref, err);
      run_raw(in, cuts, 2, &modes[md], ref, nref, err);
      cuts[1] = n;
      cur.m = 1;
      run_views(&whole, cuts, 1, &modes[md], ref, nref, err);
      rill_view_release(&whole);
    }
  }
  cur.cuts = NULL;
}

/* ---- 10 000 random chunkings of a corpus with a 1 MiB line ---- */

static uint64_t rng_state;
static uint64_t rng(void) { /* xorshift64*: deterministic from the printed seed */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}
static size_t rng_in(size_t lo, size_t hi) { /* uniform-ish in [lo, hi] */
  return lo + (size_t)(rng() % (hi - lo + 1));
}

#define BIG_LINE (1u << 20)
#define LONG_SEP "--rill-boundary-7f--" /* 20 bytes: kept outside the inline buffer */

static const split_mode random_modes[] = {
    {NULL, 0, 0, "lines"},
    {NULL, 0, BIG_LINE, "lines max 1 MiB"},
    {NULL, 0, BIG_LINE - 1, "lines max 1 MiB - 1"},
    {NULL, 0, 40, "lines max 40"},
    {SEP(","), 0, ","},
    {SEP("\r\n"), 0, "\\r\\n"},
    {SEP("aab"), 0, "aab"},
    {SEP("abab"), 0, "abab"},
    {SEP("\r\n\r\n"), 0, "\\r\\n\\r\\n"},
    {SEP(LONG_SEP), 0, "20-byte sep"},
    {SEP(" ["), 0, "' ['"},
    {SEP("INFO\n"), 0, "INFO\\n"},
};

/* A few KiB of everything that matters, then a 1 MiB line, then more, without a final break. */
static unsigned char *make_corpus(size_t *n, size_t *big_start) {
  static const char *const vocab[] = {
      "\n",
      "\n",
      "\r\n",
      "\r",
      "\n\n",
      "\r\n\r\n",
      ",",
      ",,",
      "aab",
      "aaab",
      "aa",
      "abab",
      "ababab",
      "aba",
      "\xc3\xa9",
      "\xe6\x97\xa5\xe6\x9c\xac",
      "\xe2\x82\xac",
      "\xf0\x9f\x98\x80",
      "word ",
      "INFO ",
      "INFO\n",
      " [",
      "[",
      "x",
      "--rill-",
      LONG_SEP,
      "--rill-boundary-7f-",
      "\0",
      "\xff",
  };
  size_t cap = 2 * 6000 + BIG_LINE + 6100, len = 0, part, i;
  unsigned char *p = malloc(cap);
  CHECK(p != NULL);
  rng_state = 0x9e3779b97f4a7c15ULL; /* the corpus is the same for every run */
  for (part = 0; part < 2; part++) {
    while (len < (part + 1) * 5000 + (part ? BIG_LINE + 1 : 0)) {
      const char *w = vocab[rng() % (sizeof vocab / sizeof *vocab)];
      size_t wl = w[0] ? strlen(w) : 1;
      memcpy(p + len, w, wl);
      len += wl;
    }
    if (part == 0) {
      p[len++] = '\n';
      *big_start = len;
      for (i = 0; i < BIG_LINE; i++) /* no separator of any mode inside */
        p[len + i] = (i % 1000 == 999)
                         ? '\r'
                         : (unsigned char)("0123456789abcdefghijklmnopqrstuvwxyz"[i % 36]);
      len += BIG_LINE;
      p[len++] = '\n';
    }
  }
  /* Runs where the byte memchr looks for is everywhere but the separator is rare: the search
   * must give up on memchr and still find the right place. */
  for (i = 0; i < 3000; i++) p[len++] = 'a';
  memcpy(p + len, "ab\n", 3);
  len += 3;
  for (i = 0; i < 3000; i++) p[len++] = "aba"[i % 3];
  memcpy(p + len, "abab\nthe end, no break", 22);
  len += 22;
  CHECK(len <= cap);
  *n = len;
  return p;
}

static void test_random_chunkings(void) {
  size_t n, big_start = 0, md, r, runs = 10000, nmodes = sizeof random_modes / sizeof *random_modes;
  unsigned char *corpus = make_corpus(&n, &big_start);
  rill_view_t whole;
  ref_rec_t *refs[sizeof random_modes / sizeof *random_modes];
  size_t nrefs[sizeof random_modes / sizeof *random_modes];
  int errs[sizeof random_modes / sizeof *random_modes];
  size_t *cuts = malloc((2 * n + 2) * sizeof *cuts);
  unsigned long long seed0 = 0x5eed0000ULL;
  const char *env = getenv("RILL_SPLIT_RUNS");
  if (env) runs = (size_t)strtoull(env, NULL, 10);
  if ((env = getenv("RILL_SPLIT_SEED")) != NULL) /* replays one failing run */
    seed0 = strtoull(env, NULL, 0);
  CHECK(cuts != NULL);
  CHECK(rill_view_from(&whole, corpus, n) == 0);
  for (md = 0; md < nmodes; md++) {
    refs[md] = malloc((n + 1) * sizeof(ref_rec_t));
    CHECK(refs[md] != NULL);
    nrefs[md] = ref_split(corpus, n, (const unsigned char *)random_modes[md].sep,
                          random_modes[md].k, random_modes[md].max_len, refs[md], &errs[md]);
  }
  /* the corpus does what it claims */
  CHECK(nrefs[0] > 200 && errs[0] == 0);
  CHECK(errs[1] == 0 && errs[2] == RILL_ELINE_TOO_LONG && errs[3] == RILL_ELINE_TOO_LONG);
  for (r = 0; r < runs; r++) {
    unsigned long long seed = seed0 + r;
    size_t m = 0, pos = 0, small_max;
    md = (size_t)(seed % nmodes);
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    /* Piece sizes: tiny (separators across many chunks), small, page-sized or slab-sized;
     * inside the 1 MiB line pieces stay large so a run costs about a millisecond. */
    static const size_t maxes[] = {1, 4, 16, 300, 4096, 70000};
    small_max = maxes[rng() % 6];
    cuts[m++] = 0;
    while (pos < n) {
      int big = pos >= big_start && pos < big_start + BIG_LINE;
      size_t len = rng_in(1, big ? 140000 : small_max);
      if (rng() % 64 == 0 && m < n) len = 0; /* empty chunks too */
      pos = pos + len > n ? n : pos + len;
      cuts[m++] = pos;
    }
    m--;
    cur.what = "random chunking";
    cur.mode = &random_modes[md];
    cur.input = -1;
    cur.seed = (long long)seed;
    cur.cuts = cuts;
    cur.m = m;
    run_views(&whole, cuts, m, &random_modes[md], refs[md], nrefs[md], errs[md]);
    if (r % 4 == 0) run_raw(corpus, cuts, m, &random_modes[md], refs[md], nrefs[md], errs[md]);
  }
  cur.cuts = NULL;
  cur.seed = 0;
  fprintf(stderr, "   %zu runs over %zu bytes (seeds %#llx..)\n", runs, n, seed0);
  for (md = 0; md < nmodes; md++) free(refs[md]);
  free(cuts);
  free(corpus);
  rill_view_release(&whole);
}

/* ---- explicit cases, readable on their own ---- */

/* Splits the NULL-terminated pieces and renders the records as "[a][b][]", then the error. */
static int split_str(const char *sep, size_t max_len, const char *const *pieces, char *out) {
  rill_split_t s;
  collect_t c = {0};
  rill_view_t v;
  size_t i;
  int rc = 0;
  CHECK(rill_split_init(&s, sep, sep ? strlen(sep) : 0, max_len) == 0);
  for (i = 0; pieces[i] && rc == 0; i++) {
    CHECK(rill_view_from(&v, pieces[i], strlen(pieces[i])) == 0);
    rc = rill_split_feed(&s, &v, collect_cb, &c);
    rill_view_release(&v);
  }
  if (rc == 0) rc = rill_split_end(&s, collect_cb, &c);
  *out = 0;
  for (i = 0; i < c.n; i++) {
    strcat(out, "[");
    strncat(out, (const char *)rill_view_data(&c.v[i]), c.v[i].len);
    strcat(out, "]");
  }
  collect_clear(&c);
  rill_split_free(&s);
  return rc;
}
#define P(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_lines_cases(void) {
  char out[256];
  CHECK_INT(split_str(NULL, 0, P("a\r\nb\n\nc"), out), 0);
  CHECK_STR(out, "[a][b][][c]");
  CHECK_INT(split_str(NULL, 0, P("a\n"), out), 0);
  CHECK_STR(out, "[a]");
  CHECK_INT(split_str(NULL, 0, P(""), out), 0);
  CHECK_STR(out, "");
  CHECK_INT(split_str(NULL, 0, P("\n"), out), 0);
  CHECK_STR(out, "[]");
  CHECK_INT(split_str(NULL, 0, P("a\rb\r"), out), 0); /* lone \r is data, also at the end */
  CHECK_STR(out, "[a\rb\r]");
  /* CASES 31: \r ends one chunk, \n starts the next: one line, no stray \r, no extra line */
  CHECK_INT(split_str(NULL, 0, P("abc\r", "\ndef\r", "\n"), out), 0);
  CHECK_STR(out, "[abc][def]");
  CHECK_INT(split_str(NULL, 0, P("\r", "\n"), out), 0);
  CHECK_STR(out, "[]");
  CHECK_INT(split_str(NULL, 0, P("x\r", "", "\n", "\r", "\r\n"), out), 0);
  CHECK_STR(out, "[x][\r]");
  CHECK_INT(split_str(NULL, 0, P("\xc3", "\xa9\n\xe2\x82", "\xac"), out), 0);
  CHECK_STR(out, "[\xc3\xa9][\xe2\x82\xac]");
}

static void test_sep_cases(void) {
  char out[256];
  CHECK_INT(split_str(",", 0, P("a,b,"), out), 0);
  CHECK_STR(out, "[a][b]");
  CHECK_INT(split_str(",", 0, P(",a,,b"), out), 0);
  CHECK_STR(out, "[][a][][b]");
  CHECK_INT(split_str("\n", 0, P("a\r\n"), out), 0); /* a separator never strips \r */
  CHECK_STR(out, "[a\r]");
  /* CASES 32: a 4-byte separator split 1+3, 2+2, 3+1 and 1+1+1+1 */
  CHECK_INT(split_str("<|>|", 0, P("x<", "|>|y"), out), 0);
  CHECK_STR(out, "[x][y]");
  CHECK_INT(split_str("<|>|", 0, P("x<|", ">|y"), out), 0);
  CHECK_STR(out, "[x][y]");
  CHECK_INT(split_str("<|>|", 0, P("x<|>", "|y"), out), 0);
  CHECK_STR(out, "[x][y]");
  CHECK_INT(split_str("<|>|", 0, P("x<", "|", ">", "|y<|>"), out), 0);
  CHECK_STR(out, "[x][y<|>]");
  /* overlapping prefixes: the match starts one byte later than the first candidate */
  CHECK_INT(split_str("aab", 0, P("aaab"), out), 0);
  CHECK_STR(out, "[a]");
  CHECK_INT(split_str("aab", 0, P("a", "a", "a", "b", "xaa", "ab"), out), 0);
  CHECK_STR(out, "[a][xa]");
  CHECK_INT(split_str("abab", 0, P("abab", "abab"), out), 0);
  CHECK_STR(out, "[][]");
  CHECK_INT(split_str("abab", 0, P("xab", "abab"), out), 0);
  CHECK_STR(out, "[x][ab]");
  CHECK_INT(split_str("aaa", 0, P("aa", "aaa", "a"), out), 0); /* leftmost, no overlap */
  CHECK_STR(out, "[][]");
}

static void test_max_len(void) {
  char out[256];
  /* records up to the long one are delivered, then the error */
  CHECK_INT(split_str(NULL, 4, P("abcd\nabcdefgh\nxy\n"), out), RILL_ELINE_TOO_LONG);
  CHECK_STR(out, "[abcd]");
  CHECK_INT(split_str(NULL, 4, P("abcd\r\n", "abcd\r", "\n"), out), 0); /* \r\n is not counted */
  CHECK_STR(out, "[abcd][abcd]");
  CHECK_INT(split_str(NULL, 4, P("ab", "cd\r", "x\n"), out), RILL_ELINE_TOO_LONG);
  CHECK_STR(out, "");
  CHECK_INT(split_str(NULL, 4, P("ab", "cde"), out), RILL_ELINE_TOO_LONG); /* the last line */
  CHECK_INT(split_str(",", 2, P("ab,a", "bc,"), out), RILL_ELINE_TOO_LONG);
  CHECK_STR(out, "[ab]");
  CHECK_INT(split_str("<>", 2, P("ab<", ">"), out), 0);
  CHECK_STR(out, "[ab]");
  /* The refusal comes with the first carried byte that can no longer be a break: max_len plus
   * one "\r" in lines mode, plus seplen-1 separator bytes in separator mode. */
  CHECK_INT(split_str(NULL, 10, P("0123456789\r", "\n"), out), 0);
  CHECK_INT(split_str(NULL, 10, P("0123456789\r", "x", "\n"), out), RILL_ELINE_TOO_LONG);
  {
    rill_split_t s;
    rill_split_rec_t rec;
    size_t pos = 0;
    CHECK_INT(rill_split_init(&s, NULL, 0, 10), 0);
    CHECK_INT(rill_split_next(&s, "0123456789\r", 11, &pos, &rec), 0);
    pos = 0;
    CHECK_INT(rill_split_next(&s, "x", 1, &pos, &rec), RILL_ELINE_TOO_LONG);
    rill_split_free(&s);
    CHECK_INT(rill_split_init(&s, "abc", 3, 10), 0);
    pos = 0;
    CHECK_INT(rill_split_next(&s, "0123456789ab", 12, &pos, &rec), 0);
    pos = 0;
    CHECK_INT(rill_split_next(&s, "x", 1, &pos, &rec), RILL_ELINE_TOO_LONG);
    rill_split_free(&s);
    CHECK_INT(rill_split_init(&s, "abc", 3, 10), 0);
    pos = 0;
    CHECK_INT(rill_split_next(&s, "0123456789a", 11, &pos, &rec), 0);
    pos = 0;
    CHECK_INT(rill_split_next(&s, "x", 1, &pos, &rec), 0); /* 12 bytes, may end in "ab" */
    pos = 0;
    CHECK_INT(rill_split_next(&s, "x", 1, &pos, &rec), RILL_ELINE_TOO_LONG);
    rill_split_free(&s);
  }

  /* A line without end is refused while it arrives, not at the end: memory stays bounded. */
  rill_split_t s;
  rill_view_t v;
  collect_t c = {0};
  size_t i;
  int rc = 0;
  CHECK(rill_view_alloc(&v, 4096) == 0);
  memset(rill_view_data(&v), 'z', 4096);
  CHECK_INT(rill_split_init(&s, NULL, 0, 10000), 0);
  for (i = 0; i < 256 && rc == 0; i++) rc = rill_split_feed(&s, &v, collect_cb, &c);
  CHECK_INT(rc, RILL_ELINE_TOO_LONG);
  CHECK_INT(i, 3); /* failed on the third 4 KiB chunk */
  CHECK(s.carry == NULL);
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), RILL_ELINE_TOO_LONG);
  CHECK_INT(rill_split_end(&s, collect_cb, &c), RILL_ELINE_TOO_LONG);
  rill_split_rec_t rec;
  size_t pos = 0;
  CHECK_INT(rill_split_next(&s, "a\n", 2, &pos, &rec), RILL_ELINE_TOO_LONG);
  CHECK_INT(rill_split_finish(&s, &rec), RILL_ELINE_TOO_LONG);
  CHECK_INT(c.n, 0);
  rill_split_free(&s);
  rill_view_release(&v);
}

static void test_zero_copy(void) {
  rill_split_t s;
  rill_view_t a, b;
  collect_t c = {0};
  CHECK(rill_view_from(&a, "ab\ncd\nef", 8) == 0);
  CHECK(rill_view_from(&b, "g\nhi\n", 5) == 0);
  CHECK_INT(rill_split_init(&s, NULL, 0, 0), 0);
  CHECK_INT(rill_split_feed(&s, &a, collect_cb, &c), 0);
  CHECK_INT(rill_split_feed(&s, &b, collect_cb, &c), 0);
  CHECK_INT(c.n, 4);
  /* inside one chunk: slices of its slab, each holding a reference */
  CHECK(c.v[0].slab == a.slab && c.v[0].off == a.off + 0 && c.v[0].len == 2);
  CHECK(c.v[1].slab == a.slab && c.v[1].off == a.off + 3 && c.v[1].len == 2);
  CHECK(c.v[3].slab == b.slab && c.v[3].off == b.off + 2 && c.v[3].len == 2);
  CHECK(atomic_load(&a.slab->refs) == 3);
  /* across chunks: a copy in the carry */
  CHECK(c.v[2].slab != a.slab && c.v[2].slab != b.slab);
  CHECK(memcmp(rill_view_data(&c.v[2]), "efg", 3) == 0);
  rill_view_release(&a);
  rill_view_release(&b);
  /* the records outlive their chunks and the splitter */
  rill_split_free(&s);
  CHECK(memcmp(rill_view_data(&c.v[0]), "ab", 2) == 0);
  CHECK(memcmp(rill_view_data(&c.v[3]), "hi", 2) == 0);
  CHECK(memcmp(rill_view_data(&c.v[2]), "efg", 3) == 0);
  collect_clear(&c);
}

/* CASES 79: a 16 MiB line in 4 KiB chunks is searched once, not once per chunk. */
static void linear_case(const char *sep, size_t k, const char *fill, size_t fill_len) {
  size_t total = 16u << 20, piece = 4096, off, npieces = 0;
  rill_split_t s;
  rill_view_t whole, v;
  collect_t c = {0};
  unsigned char *d;
  CHECK(rill_view_alloc(&whole, total + (sep ? k : 1)) == 0);
  d = rill_view_data(&whole);
  for (off = 0; off < total; off++) d[off] = (unsigned char)fill[off % fill_len];
  memcpy(d + total, sep ? sep : "\n", sep ? k : 1);
  CHECK_INT(rill_split_init(&s, sep, k, 0), 0);
  for (off = 0; off < whole.len; off += piece, npieces++) {
    rill_view_slice(&v, &whole, off, whole.len - off < piece ? whole.len - off : piece);
    CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), 0);
    rill_view_release(&v);
  }
  CHECK_INT(rill_split_end(&s, collect_cb, &c), 0);
  CHECK_INT(c.n, 1);
  CHECK_INT(c.v[0].len, total);
  CHECK(memcmp(rill_view_data(&c.v[0]), d, total) == 0);
  /* every byte once, plus at most 2(k-1) seam bytes per chunk: a rescan of the carry would
   * count about total * npieces / 2 */
  fprintf(stderr, "   sep %zu bytes: scanned %zu of %zu bytes\n", sep ? k : 1, s.scanned,
          whole.len);
  CHECK(s.scanned <= whole.len + npieces * 2 * (k ? k - 1 : 0));
  CHECK(s.scanned >= whole.len);
  /* geometric growth: the carry was never more than 1.5x what it had to hold */
  CHECK(c.v[0].slab->cap <= total + total / 2 + RILL_SLAB_SIZE);
  collect_clear(&c);
  rill_split_free(&s);
  rill_view_release(&whole);
}

static void test_linear_time(void) {
  linear_case(NULL, 0, "x\ryz", 4);
  linear_case("abab", 4, "aba", 3);
  linear_case("aab", 3, "a", 1);
}

/* Raw interface: pointers into the chunk or into the carry, resumable at any record. */
static void test_raw(void) {
  rill_split_t s;
  /* memchr looks for the rarest byte of a separator: a speed choice only */
  CHECK_INT(rill_split_init(&s, " [", 2, 0), 0);
  CHECK_INT(s.rare, 1);
  rill_split_free(&s);
  CHECK_INT(rill_split_init(&s, "\r\n", 2, 0), 0);
  CHECK_INT(s.rare, 0);
  rill_split_free(&s);
  rill_split_rec_t rec;
  size_t pos = 0;
  const char *a = "one\r\ntw", *b = "o\r", *c = "\nthree";
  CHECK_INT(rill_split_init(&s, NULL, 0, 0), 0);
  CHECK_INT(rill_split_next(&s, a, 7, &pos, &rec), 1);
  CHECK(rec.p == (const unsigned char *)a && rec.len == 3);
  CHECK_INT(pos, 5);
  CHECK_INT(rill_split_next(&s, a, 7, &pos, &rec), 0);
  CHECK_INT(pos, 7);
  CHECK_INT(rill_split_next(&s, a, 7, &pos, &rec), 0); /* used up: stays so */
  pos = 0;
  CHECK_INT(rill_split_next(&s, b, 2, &pos, &rec), 0);
  pos = 0;
  CHECK_INT(rill_split_next(&s, NULL, 0, &pos, &rec), 0); /* an empty chunk is fine */
  CHECK_INT(rill_split_next(&s, c, 6, &pos, &rec), 1);
  CHECK(rec.len == 3 && memcmp(rec.p, "two", 3) == 0);
  CHECK_INT(pos, 1);
  CHECK_INT(rill_split_next(&s, c, 6, &pos, &rec), 0);
  CHECK_INT(rill_split_finish(&s, &rec), 1);
  CHECK(rec.len == 5 && memcmp(rec.p, "three", 5) == 0);
  CHECK_INT(rill_split_finish(&s, &rec), 0);
  /* ready for a new input after the end */
  pos = 0;
  CHECK_INT(rill_split_next(&s, "x\n", 2, &pos, &rec), 1);
  CHECK(rec.len == 1 && rec.p[0] == 'x');
  rill_split_free(&s);
}

static int stop_positive_cb(void *arg, rill_view_t *rec) {
  rill_view_release(rec);
  return 1;
}

static int stop_cb(void *arg, rill_view_t *rec) {
  int *calls = arg;
  rill_view_release(rec); /* the reference is ours even when we stop */
  return ++*calls == 2 ? RILL_ECALLBACK : 0;
}

static void test_errors(void) {
  rill_split_t s;
  rill_split_rec_t rec;
  rill_view_t v;
  collect_t c = {0};
  size_t pos = 0;
  int calls = 0;
  char longsep[40];

  /* bad arguments change nothing */
  CHECK_INT(rill_split_init(NULL, NULL, 0, 0), UV_EINVAL);
  CHECK_INT(rill_split_init(&s, ",", 0, 0), UV_EINVAL);
  CHECK_INT(rill_split_init(&s, NULL, 2, 0), UV_EINVAL);
  CHECK_INT(rill_split_init(&s, NULL, 0, 0), 0);
  CHECK(rill_view_from(&v, "a\nb\nc\nd", 7) == 0);
  CHECK_INT(rill_split_feed(NULL, &v, collect_cb, &c), UV_EINVAL);
  CHECK_INT(rill_split_feed(&s, NULL, collect_cb, &c), UV_EINVAL);
  CHECK_INT(rill_split_feed(&s, &v, NULL, &c), UV_EINVAL);
  CHECK_INT(rill_split_end(NULL, collect_cb, &c), UV_EINVAL);
  CHECK_INT(rill_split_end(&s, NULL, &c), UV_EINVAL);
  CHECK_INT(rill_split_next(NULL, "a", 1, &pos, &rec), UV_EINVAL);
  CHECK_INT(rill_split_next(&s, NULL, 1, &pos, &rec), UV_EINVAL);
  CHECK_INT(rill_split_next(&s, "a", 1, NULL, &rec), UV_EINVAL);
  CHECK_INT(rill_split_next(&s, "a", 1, &pos, NULL), UV_EINVAL);
  pos = 2;
  CHECK_INT(rill_split_next(&s, "a", 1, &pos, &rec), UV_EINVAL); /* misuse, not sticky */
  CHECK_INT(rill_split_finish(NULL, &rec), UV_EINVAL);
  CHECK_INT(rill_split_finish(&s, NULL), UV_EINVAL);
  CHECK_INT(c.n, 0);

  /* a callback that stops: the feed returns its value and the splitter stays failed */
  CHECK_INT(rill_split_feed(&s, &v, stop_cb, &calls), RILL_ECALLBACK);
  CHECK_INT(calls, 2);
  CHECK_INT(rill_split_feed(&s, &v, stop_cb, &calls), RILL_ECALLBACK);
  CHECK_INT(rill_split_end(&s, stop_cb, &calls), RILL_ECALLBACK);
  CHECK_INT(calls, 2);
  rill_split_free(&s);
  rill_split_free(&s);                                           /* idempotent */
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), UV_EINVAL); /* freed: refuses work */
  CHECK_INT(rill_split_end(&s, collect_cb, &c), UV_EINVAL);
  memset(&s, 0, sizeof s); /* never initialised */
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), UV_EINVAL);
  CHECK_INT(rill_split_finish(&s, &rec), UV_EINVAL);
  CHECK_INT(c.n, 0);

  /* a positive stop value must not read as "1 = a record" on the raw interface afterwards */
  calls = 0;
  CHECK_INT(rill_split_init(&s, NULL, 0, 0), 0);
  CHECK_INT(rill_split_feed(&s, &v, stop_positive_cb, &calls), RILL_ECALLBACK);
  pos = 0;
  CHECK_INT(rill_split_next(&s, "a\n", 2, &pos, &rec), RILL_ECALLBACK);
  rill_split_free(&s);
  calls = 0;

  /* the last record's callback can stop too */
  calls = 1;
  CHECK_INT(rill_split_init(&s, NULL, 0, 0), 0);
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), 0);
  CHECK_INT(rill_split_end(&s, stop_cb, &calls), RILL_ECALLBACK);
  CHECK_INT(rill_split_end(&s, collect_cb, &c), RILL_ECALLBACK);
  CHECK_INT(c.n, 3);
  collect_clear(&c);
  rill_split_free(&s);

  /* out of memory: a long separator's copy, then the carry, then the carry's growth */
  memset(longsep, '#', sizeof longsep);
  rill__split_nomem = 1;
  CHECK_INT(rill_split_init(&s, longsep, sizeof longsep, 0), UV_ENOMEM);
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), UV_EINVAL); /* untouched: still freed */
  CHECK_INT(rill_split_init(&s, longsep, sizeof longsep, 0), 0);
  rill__split_nomem = 1;
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), UV_ENOMEM);
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), UV_ENOMEM);
  rill_split_free(&s);

  CHECK_INT(rill_split_init(&s, NULL, 0, 0), 0);
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), 0); /* carries "d" */
  rill_view_release(&v);
  CHECK(rill_view_alloc(&v, RILL_SLAB_SIZE + 10) == 0);
  memset(rill_view_data(&v), 'e', v.len);
  rill__split_nomem = 1;
  CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), UV_ENOMEM); /* the carry must grow */
  CHECK_INT(rill_split_end(&s, collect_cb, &c), UV_ENOMEM);
  rill_split_free(&s);
  CHECK_INT(c.n, 3);
  collect_clear(&c);

  /* the probe of a multi-byte separator needs room in the carry too */
  CHECK_INT(rill_split_init(&s, "ab", 2, 0), 0);
  pos = 0;
  CHECK_INT(rill_split_next(&s, "xa", 2, &pos, &rec), 0);
  /* fill the carry's slab to its end so that the 1-byte probe must move or grow it */
  rill_view_release(&v);
  CHECK(rill_view_alloc(&v, s.carry->cap - s.cbase - s.clen) == 0);
  memset(rill_view_data(&v), 'q', v.len);
  pos = 0;
  CHECK_INT(rill_split_next(&s, rill_view_data(&v), v.len, &pos, &rec), 0);
  rill_slab_ref(s.carry); /* pretend a view shares it, so it cannot slide */
  rill_slab_t *held = s.carry;
  rill__split_nomem = 1;
  pos = 0;
  CHECK_INT(rill_split_next(&s, "b", 1, &pos, &rec), UV_ENOMEM);
  rill_slab_unref(held);
  rill_split_free(&s);
  rill_view_release(&v);
}

/* Carry records handed out as views stay intact while the carry keeps being reused. */
static void test_carry_sharing(void) {
  rill_split_t s;
  collect_t c = {0};
  rill_view_t v;
  char buf[8];
  int i;
  CHECK_INT(rill_split_init(&s, NULL, 0, 0), 0);
  for (i = 0; i < 30000; i++) { /* every record straddles two chunks */
    int n = snprintf(buf, sizeof buf, "%d", i);
    CHECK(rill_view_from(&v, buf, (size_t)n) == 0);
    CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), 0);
    rill_view_release(&v);
    CHECK(rill_view_from(&v, "\r\n", 2) == 0);
    CHECK_INT(rill_split_feed(&s, &v, collect_cb, &c), 0);
    rill_view_release(&v);
    if (i % 3 == 0) { /* drop some views early, so the carry sometimes is ours alone */
      rill_view_release(&c.v[--c.n]);
    }
  }
  for (i = 0; i < (int)c.n; i++) {
    int want = i / 2 * 3 + 1 + i % 2, n = snprintf(buf, sizeof buf, "%d", want);
    CHECK_INT(c.v[i].len, n);
    CHECK(memcmp(rill_view_data(&c.v[i]), buf, (size_t)n) == 0);
  }
  collect_clear(&c);
  rill_split_free(&s);
}

int main(void) {
  RUN(test_lines_cases);
  RUN(test_sep_cases);
  RUN(test_max_len);
  RUN(test_zero_copy);
  RUN(test_raw);
  RUN(test_errors);
  RUN(test_carry_sharing);
  RUN(test_linear_time);
  RUN(test_exhaustive_3_pieces);
  RUN(test_one_byte_pieces);
  RUN(test_search_fallback);
  RUN(test_random_chunkings);
  rill_slab_pool_trim();
  return 0;
}
