/* fuzz/fuzz_http.c: libFuzzer target: HTTP parsing never crashes and ignores how input is cut. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../core/http_parser.h"

/* Input layout: [0] control: bit 0 response instead of request, bit 1 a small header limit,
 * bit 2 skip the body of the first response, bits 3-7 a seed for the cuts; the rest is the
 * byte stream. It is parsed twice, in one piece and in seeded pieces (each in its own
 * allocation, so a read past a piece's end trips ASan); both runs must report the same heads,
 * bodies, message ends and result. Heads are checked for internal consistency too. */

#define ASSERT(c)      \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

/* A running hash of everything reported, so the runs can be compared without logs. */
typedef struct {
  uint64_t h;
  int in_body;
  size_t heads, ends;
  uint64_t body_bytes;
} trace_t;

static void mix(trace_t *t, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) t->h = (t->h ^ b[i]) * 1099511628211u;
}

static void mix_str(trace_t *t, const char *s) {
  mix(t, s, strlen(s) + 1);
}

static int on_head(void *ud, const rill_http_head_t *h) {
  trace_t *t = ud;
  t->heads++;
  mix(t, "H", 1);
  mix_str(t, h->method ? h->method : "");
  mix_str(t, h->path);
  mix_str(t, h->reason);
  int nums[] = {h->status,  h->version_major,   h->version_minor, h->keep_alive,
                h->chunked, h->expect_continue, h->upgrade};
  mix(t, nums, sizeof nums);
  mix(t, &h->content_length, sizeof h->content_length);
  ASSERT(h->version_major == 1 && h->version_minor <= 1);
  ASSERT(!(h->chunked && h->content_length >= 0));
  for (size_t i = 0; i < h->nheaders; i++) {
    const rill_http_header_t *x = &h->headers[i];
    ASSERT(strlen(x->name) == x->name_len && strlen(x->value) == x->value_len);
    ASSERT(x->name_len > 0);
    for (size_t k = 0; k < x->name_len; k++) ASSERT(!(x->name[k] >= 'A' && x->name[k] <= 'Z'));
    if (x->value_len) {
      char first = x->value[0], last = x->value[x->value_len - 1];
      ASSERT(first != ' ' && first != '\t' && last != ' ' && last != '\t');
    }
    mix_str(t, x->name);
    mix_str(t, x->value);
  }
  return 0;
}

static int on_body(void *ud, const char *at, size_t len) {
  trace_t *t = ud;
  ASSERT(len > 0);
  if (!t->in_body) mix(t, "B", 1);
  t->in_body = 1;
  t->body_bytes += len;
  mix(t, at, len);
  return 0;
}

static int on_end(void *ud) {
  trace_t *t = ud;
  t->in_body = 0;
  t->ends++;
  mix(t, "E", 1);
  return 0;
}

static uint32_t next(uint32_t *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}

static int run(const uint8_t *data, size_t n, uint8_t ctl, uint32_t *seed, trace_t *t) {
  static const rill_http_callbacks_t cb = {on_head, on_body, on_end};
  rill_http_parser_opts_t o = {(ctl & 1) ? RILL_HTTP_RESPONSE : RILL_HTTP_REQUEST,
                               (ctl & 2) ? 64 : 0};
  rill_http_parser_t *p;
  memset(t, 0, sizeof *t);
  t->h = 14695981039346656037u;
  ASSERT(rill_http_parser_new(&p, &o, &cb, t) == 0);
  if (ctl & 4) rill_http_parser_skip_body(p);
  int r = 0;
  size_t at = 0;
  while (at < n && r == 0) {
    size_t k = seed ? 1 + next(seed) % 40 : n - at;
    if (k > n - at) k = n - at;
    char *piece = malloc(k);
    ASSERT(piece != NULL);
    memcpy(piece, data + at, k);
    size_t off = 0;
    while (off < k && r == 0) {
      size_t used = 0;
      r = rill_http_parser_execute(p, piece + off, k - off, &used);
      ASSERT(used <= k - off);
      ASSERT(r != 0 || used > 0);
      off += used;
    }
    free(piece);
    at += k;
  }
  if (r == 0) r = rill_http_parser_finish(p);
  ASSERT(r == 0 || r == RILL_EHTTP_PARSE || r == RILL_EHTTP_HEADER_OVERFLOW);
  ASSERT((r == 0) == (rill_http_parser_error_code(p)[0] == 0));
  mix_str(t, rill_http_parser_error_code(p));
  rill_http_parser_free(p);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t ctl = data[0];
  uint32_t seed = ctl >> 3;
  trace_t a, b;
  int ra = run(data + 1, size - 1, ctl, NULL, &a);
  int rb = run(data + 1, size - 1, ctl, &seed, &b);
  ASSERT(ra == rb);
  ASSERT(a.heads == b.heads && a.ends == b.ends && a.body_bytes == b.body_bytes);
  ASSERT(a.h == b.h);
  return 0;
}
