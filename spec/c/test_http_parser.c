/* spec/c/test_http_parser.c: HTTP/1.1 parsing: chunk-boundary independence, limits, strictness. */
#include <stdint.h>
#include <uv.h>

#include "error.h"
#include "http_parser.h"
#include "test.h"

/* ---- a recorder: every event as text, body spans merged so that cuts do not show ---- */

typedef struct {
  char log[65536];
  size_t len;
  int in_body;
  int heads, ends;
  int fail_head, fail_body, fail_end; /* make a callback return UV_ENOMEM */
  int seen_smuggled;
  rill_http_head_t last; /* copied scalars of the last head */
} rec_t;

static void rec_add(rec_t *r, const char *s, size_t n) {
  CHECK(r->len + n < sizeof r->log);
  memcpy(r->log + r->len, s, n);
  r->len += n;
  r->log[r->len] = 0;
}

static void rec_str(rec_t *r, const char *s) {
  rec_add(r, s, strlen(s));
}

static int on_head(void *ud, const rill_http_head_t *h) {
  rec_t *r = ud;
  char line[512];
  r->heads++;
  r->last = *h;
  if (strstr(h->path, "smuggled")) r->seen_smuggled = 1;
  snprintf(line, sizeof line, "[HEAD %s %s %d %s %d.%d ka=%d ch=%d cl=%lld ex=%d up=%d",
           h->method ? h->method : "-", h->path, h->status, h->reason, h->version_major,
           h->version_minor, h->keep_alive, h->chunked, (long long)h->content_length,
           h->expect_continue, h->upgrade);
  rec_str(r, line);
  for (size_t i = 0; i < h->nheaders; i++) {
    CHECK_INT(strlen(h->headers[i].name), h->headers[i].name_len);
    CHECK_INT(strlen(h->headers[i].value), h->headers[i].value_len);
    rec_str(r, " <");
    rec_str(r, h->headers[i].name);
    rec_str(r, "=");
    rec_str(r, h->headers[i].value);
    rec_str(r, ">");
  }
  rec_str(r, "]");
  return r->fail_head ? UV_ENOMEM : 0;
}

static int on_body(void *ud, const char *at, size_t len) {
  rec_t *r = ud;
  CHECK(len > 0);
  if (!r->in_body) rec_str(r, "[BODY ");
  r->in_body = 1;
  rec_add(r, at, len);
  return r->fail_body ? UV_ENOMEM : 0;
}

static int on_end(void *ud) {
  rec_t *r = ud;
  if (r->in_body) rec_str(r, "]");
  r->in_body = 0;
  r->ends++;
  rec_str(r, "[END]");
  return r->fail_end ? UV_ENOMEM : 0;
}

static const rill_http_callbacks_t cbs = {on_head, on_body, on_end};

static rill_http_parser_t *mk(rill_http_type_t type, size_t max, rec_t *r) {
  memset(r, 0, sizeof *r);
  rill_http_parser_opts_t o = {type, max};
  rill_http_parser_t *p;
  CHECK_INT(rill_http_parser_new(&p, &o, &cbs, r), 0);
  return p;
}

/* Feeds one piece completely (execute stops after each message); returns 0 or the error. */
static int feed(rill_http_parser_t *p, const char *d, size_t n) {
  while (n > 0) {
    size_t used = (size_t)-1;
    int e = rill_http_parser_execute(p, d, n, &used);
    CHECK(used <= n);
    if (e) return e;
    CHECK(used > 0);
    d += used;
    n -= used;
  }
  return 0;
}

/* Parses s cut at the given offsets (sorted, each <= n); returns 0 or the first error. */
static int parse_cuts(rill_http_parser_t *p, const char *s, size_t n, const size_t *cuts,
                      size_t ncuts) {
  size_t at = 0;
  for (size_t i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : n;
    int e = feed(p, s + at, end - at);
    if (e) return e;
    at = end;
  }
  return 0;
}

/* Parses s in pieces of k bytes. */
static int parse_by(rill_http_parser_t *p, const char *s, size_t n, size_t k) {
  for (size_t at = 0; at < n; at += k) {
    int e = feed(p, s + at, n - at < k ? n - at : k);
    if (e) return e;
  }
  return 0;
}

/* ---- tests ---- */

static void test_args(void) {
  rill_http_parser_t *p = (rill_http_parser_t *)&p;
  rill_http_parser_opts_t o = {RILL_HTTP_REQUEST, 0};
  CHECK_INT(rill_http_parser_new(NULL, &o, &cbs, NULL), UV_EINVAL);
  CHECK_INT(rill_http_parser_new(&p, NULL, &cbs, NULL), UV_EINVAL);
  CHECK_INT(rill_http_parser_new(&p, &o, NULL, NULL), UV_EINVAL);
  rill_http_parser_opts_t bad = {(rill_http_type_t)7, 0};
  CHECK_INT(rill_http_parser_new(&p, &bad, &cbs, NULL), UV_EINVAL);
  CHECK(p == (rill_http_parser_t *)&p); /* untouched on failure */
  rill_http_parser_free(NULL);
  /* Callbacks are optional. */
  rill_http_callbacks_t none = {0};
  CHECK_INT(rill_http_parser_new(&p, &o, &none, NULL), 0);
  const char *req = "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
  CHECK_INT(feed(p, req, strlen(req)), 0);
  size_t used = 99;
  CHECK_INT(rill_http_parser_execute(p, "", 0, &used), 0);
  CHECK_INT(used, 0);
  CHECK_STR(rill_http_parser_error_code(p), "");
  CHECK_STR(rill_http_parser_error_reason(p), "");
  rill_http_parser_free(p);
}

/* Three pipelined requests: one with a long header, one with a Content-Length body, one chunked
 * with an extension and a trailer. */
static const char PIPELINED[] =
    "GET /one HTTP/1.1\r\nHost: example.com\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
    "Accept: */*\r\n\r\n"
    "POST /two?q=1&r=%20 HTTP/1.1\r\nHOST: b\r\nContent-Length: 11\r\nX-Empty:\r\n"
    "X-Spaces: \t padded value \t \r\n\r\nhello world"
    "PUT /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    "3\r\nabc\r\n4;ext=1\r\ndefg\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-X: t\r\n\r\n";

static const char PIPELINED_LOG[] =
    "[HEAD GET /one 0  1.1 ka=1 ch=0 cl=-1 ex=0 up=0 <host=example.com> "
    "<x-long=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa> <accept=*/*>][END]"
    "[HEAD POST /two?q=1&r=%20 0  1.1 ka=1 ch=0 cl=11 ex=0 up=0 <host=b> <content-length=11> "
    "<x-empty=> <x-spaces=padded value>][BODY hello world][END]"
    "[HEAD PUT /three 0  1.1 ka=1 ch=1 cl=-1 ex=1 up=0 <transfer-encoding=chunked> "
    "<expect=100-continue>][BODY abcdefg0123456789abcdef][END]";

/* CASES 34: the three requests cut at every (i, j) give the same heads and bodies. */
static void test_pipelined_every_cut(void) {
  size_t n = strlen(PIPELINED);
  rec_t r;
  rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(feed(p, PIPELINED, n), 0);
  CHECK_STR(r.log, PIPELINED_LOG);
  rill_http_parser_free(p);
  size_t runs = 0;
  for (size_t i = 0; i <= n; i++) {
    for (size_t j = i; j <= n; j++) {
      size_t cuts[2] = {i, j};
      p = mk(RILL_HTTP_REQUEST, 0, &r);
      CHECK_INT(parse_cuts(p, PIPELINED, n, cuts, 2), 0);
      if (strcmp(r.log, PIPELINED_LOG) != 0) {
        fprintf(stderr, "cut at %zu, %zu:\n%s\n", i, j, r.log);
        CHECK_STR(r.log, PIPELINED_LOG);
      }
      CHECK(!rill_http_parser_busy(p));
      CHECK_INT(rill_http_parser_finish(p), 0);
      rill_http_parser_free(p);
      runs++;
    }
  }
  CHECK_INT(runs, (n + 1) * (n + 2) / 2);
  /* One byte at a time. */
  p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(parse_by(p, PIPELINED, n, 1), 0);
  CHECK_STR(r.log, PIPELINED_LOG);
  rill_http_parser_free(p);
}

/* execute stops after each message, so pipelined requests are taken one at a time. */
static void test_one_message_per_call(void) {
  size_t n = strlen(PIPELINED);
  rec_t r;
  rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, 0, &r);
  size_t used, at = 0;
  int ends[] = {1, 2, 3};
  for (int k = 0; k < 3; k++) {
    CHECK_INT(rill_http_parser_execute(p, PIPELINED + at, n - at, &used), 0);
    CHECK_INT(r.ends, ends[k]);
    CHECK(!rill_http_parser_busy(p));
    at += used;
    CHECK(used > 0 && at <= n);
  }
  CHECK_INT(at, n);
  rill_http_parser_free(p);
  /* A message in progress is busy; finishing inside it is an error. */
  p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(feed(p, "GET / HT", 8), 0);
  CHECK(rill_http_parser_busy(p));
  CHECK_INT(rill_http_parser_finish(p), RILL_EHTTP_PARSE);
  CHECK_STR(rill_http_parser_error_code(p), "HPE_INVALID_EOF_STATE");
  CHECK_INT(rill_http_parser_execute(p, "x", 1, &used), RILL_EHTTP_PARSE); /* sticky */
  rill_http_parser_free(p);
  /* A body cut short by EOF. */
  p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(feed(p, "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 40), 0);
  CHECK_INT(rill_http_parser_finish(p), RILL_EHTTP_PARSE);
  CHECK_INT(r.ends, 0);
  rill_http_parser_free(p);
  /* Input after finish is refused. */
  p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(rill_http_parser_finish(p), 0);
  CHECK_INT(rill_http_parser_finish(p), 0);
  CHECK_INT(rill_http_parser_execute(p, "G", 1, &used), RILL_EHTTP_PARSE);
  rill_http_parser_free(p);
}

/* A malformed request, followed by a request that must never be handled. */
typedef struct {
  const char *req;
  const char *code;
} bad_t;

#define SMUGGLED "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
static const bad_t BAD[] = {
    /* CASES 83 */
    {"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "HPE_UNEXPECTED_CONTENT_LENGTH"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
     "HPE_UNEXPECTED_CONTENT_LENGTH"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: eee, chunked\r\n\r\n0\r\n\r\n",
     "HPE_INVALID_TRANSFER_ENCODING"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "HPE_INVALID_TRANSFER_ENCODING"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "HPE_INVALID_TRANSFER_ENCODING"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
     "HPE_INVALID_TRANSFER_ENCODING"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc", "HPE_INVALID_TRANSFER_ENCODING"},
    /* CASES 84 */
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
     "HPE_INVALID_CHUNK_SIZE"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n0\r\n\r\n",
     "HPE_INVALID_CHUNK_SIZE"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext\nabc\r\n0\r\n\r\n", "HPE_STRICT"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", "HPE_STRICT"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", NULL},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
     "HPE_INVALID_CHUNK_SIZE"},
    /* CASES 85 */
    {"GET / HTTP/1.1\nHost: a\n\n", NULL},
    {"GET / HTTP/1.1\r\nHost: a\n\r\n", NULL},
    {"GET / HTTP/1.1\rHost: a\r\r", NULL},
    {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", NULL},
    {"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"},
    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"},
    {"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"},
    {"GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"},
    {"GET / HTTP/1.1\r\nX: 1\r\nHost: abc\r\n  def\r\nY: 2\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"},
    {"GET / HTTP/1.1\r\n: x\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"},
    {"GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"},
    {"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"},
    {"GET / HTTP/1.7\r\nHost: a\r\n\r\n", "HPE_INVALID_VERSION"},
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HPE_INVALID_VERSION"},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "HPE_INVALID_VERSION"},
    {"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", "HPE_INVALID_METHOD"},
    {"get / HTTP/1.1\r\nHost: a\r\n\r\n", "HPE_INVALID_METHOD"},
    {"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", "HPE_INVALID_CONSTANT"},
    /* CASES 86 */
    {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     "HPE_UNEXPECTED_CONTENT_LENGTH"},
    {"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\nabc", "HPE_INVALID_CONTENT_LENGTH"},
    {"POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc", "HPE_INVALID_CONTENT_LENGTH"},
    {"POST / HTTP/1.1\r\nContent-Length: 3 3\r\n\r\nabc", "HPE_INVALID_CONTENT_LENGTH"},
    {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nabc",
     "HPE_INVALID_CONTENT_LENGTH"},
    /* Data after a message that closes the connection. */
    {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "HPE_CLOSED_CONNECTION"},
    {"GET / HTTP/1.0\r\n\r\n", "HPE_CLOSED_CONNECTION"},
};

/* Runs one malformed case cut in several ways: always the same error, never the smuggled
 * request, and (for the ones rejected in the head) never a head at all. */
static void test_malformed(void) {
  char buf[1024];
  for (size_t c = 0; c < sizeof BAD / sizeof *BAD; c++) {
    snprintf(buf, sizeof buf, "%s%s", BAD[c].req, SMUGGLED);
    size_t n = strlen(buf);
    char want_code[64] = "";
    for (size_t i = 0; i <= n; i++) {
      for (size_t k = 0; k < 2; k++) {
        rec_t r;
        rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, 0, &r);
        int e;
        if (k == 0) {
          size_t cuts[1] = {i};
          e = parse_cuts(p, buf, n, cuts, 1);
        } else {
          e = parse_by(p, buf, n, i + 1);
        }
        if (e != RILL_EHTTP_PARSE) fprintf(stderr, "case %zu cut %zu/%zu: %d\n", c, i, k, e);
        CHECK_INT(e, RILL_EHTTP_PARSE);
        const char *code = rill_http_parser_error_code(p);
        if (want_code[0] == 0) snprintf(want_code, sizeof want_code, "%s", code);
        if (strcmp(code, want_code) != 0)
          fprintf(stderr, "case %zu cut %zu/%zu: %s (%s)\n", c, i, k, code,
                  rill_http_parser_error_reason(p));
        CHECK_STR(code, want_code);
        if (BAD[c].code) CHECK_STR(code, BAD[c].code);
        CHECK(rill_http_parser_error_reason(p)[0] != 0);
        CHECK(!r.seen_smuggled);
        CHECK(r.ends <= 1);
        /* The failure is sticky. */
        size_t used;
        CHECK_INT(rill_http_parser_execute(p, SMUGGLED, strlen(SMUGGLED), &used), RILL_EHTTP_PARSE);
        CHECK_INT(rill_http_parser_finish(p), RILL_EHTTP_PARSE);
        CHECK(!r.seen_smuggled);
        rill_http_parser_free(p);
      }
    }
  }
}

/* A valid value cut anywhere (also right before its spaces) is not mistaken for obs-fold. */
static void test_values_cut(void) {
  const char *req = "GET / HTTP/1.1\r\nX-A: one two  three\r\nX-B: \t x\r\n\r\n";
  const char *want =
      "[HEAD GET / 0  1.1 ka=1 ch=0 cl=-1 ex=0 up=0 <x-a=one two  three> "
      "<x-b=x>][END]";
  size_t n = strlen(req);
  for (size_t i = 0; i <= n; i++) {
    for (size_t j = i; j <= n; j++) {
      rec_t r;
      rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, 0, &r);
      size_t cuts[2] = {i, j};
      CHECK_INT(parse_cuts(p, req, n, cuts, 2), 0);
      CHECK_STR(r.log, want);
      rill_http_parser_free(p);
    }
  }
}

/* CASES 82: a head of exactly the limit passes, one byte more fails with
 * RILL_EHTTP_HEADER_OVERFLOW before any handler sees it, however the bytes arrive. */
static void test_header_limit(void) {
  size_t limit = 200;
  char ok[512], over[512];
  const char *pre = "GET /x HTTP/1.1\r\nX-Pad: ";
  size_t fill = limit - strlen(pre) - 4; /* "\r\n\r\n" */
  snprintf(ok, sizeof ok, "%s%.*s\r\n\r\n", pre, (int)fill,
           "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
           "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
           "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp");
  CHECK_INT(strlen(ok), limit);
  snprintf(over, sizeof over, "%s%.*sq\r\n\r\n", pre, (int)fill, ok + strlen(pre));
  CHECK_INT(strlen(over), limit + 1);
  size_t steps[] = {1, 2, 7, 64, 199, 200, 201, 4096};
  for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
    rec_t r;
    rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, limit, &r);
    /* Two heads at the limit, back to back: the count starts again for each message. */
    CHECK_INT(parse_by(p, ok, limit, steps[s]), 0);
    CHECK_INT(parse_by(p, ok, limit, steps[s]), 0);
    CHECK_INT(r.ends, 2);
    rill_http_parser_free(p);

    p = mk(RILL_HTTP_REQUEST, limit, &r);
    CHECK_INT(parse_by(p, over, limit + 1, steps[s]), RILL_EHTTP_HEADER_OVERFLOW);
    CHECK_INT(r.heads, 0);
    CHECK_STR(rill_http_parser_error_code(p), "HPE_HEADER_OVERFLOW");
    rill_http_parser_free(p);
  }
  /* An endless header line is stopped at the limit, not buffered. */
  rec_t r;
  rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(feed(p, "GET / HTTP/1.1\r\nX: ", 19), 0);
  int e = 0;
  for (int i = 0; i < 1000 && e == 0; i++)
    e = feed(p, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 40);
  CHECK_INT(e, RILL_EHTTP_HEADER_OVERFLOW);
  rill_http_parser_free(p);
  /* The default limit is 16 KiB; bodies do not count. */
  static char big[40000];
  int k = snprintf(big, sizeof big, "POST / HTTP/1.1\r\nContent-Length: 30000\r\n\r\n");
  memset(big + k, 'b', 30000);
  p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(feed(p, big, (size_t)k + 30000), 0);
  CHECK_INT(r.ends, 1);
  rill_http_parser_free(p);
  k = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: ");
  memset(big + k, 'h', RILL_HTTP_MAX_HEADER_SIZE);
  p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(feed(p, big, (size_t)k + RILL_HTTP_MAX_HEADER_SIZE), RILL_EHTTP_HEADER_OVERFLOW);
  rill_http_parser_free(p);
}

static void check_one(const char *req, const char *want) {
  rec_t r;
  rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, 0, &r);
  CHECK_INT(feed(p, req, strlen(req)), 0);
  CHECK_STR(r.log, want);
  rill_http_parser_free(p);
}

static void test_heads(void) {
  check_one("GET / HTTP/1.0\r\n\r\n", "[HEAD GET / 0  1.0 ka=0 ch=0 cl=-1 ex=0 up=0][END]");
  check_one("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "[HEAD GET / 0  1.0 ka=1 ch=0 cl=-1 ex=0 up=0 <connection=keep-alive>][END]");
  check_one("GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            "[HEAD GET / 0  1.1 ka=0 ch=0 cl=-1 ex=0 up=0 <connection=close>][END]");
  check_one("HEAD /h HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n",
            "[HEAD HEAD /h 0  1.1 ka=1 ch=0 cl=-1 ex=0 up=0 <a=1> <a=2>][END]");
  check_one("\r\nDELETE /d HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "[HEAD DELETE /d 0  1.1 ka=1 ch=0 cl=0 ex=0 up=0 <content-length=0>][END]");
  check_one("POST / HTTP/1.1\r\nEXPECT: 100-Continue\r\nContent-Length: 1\r\n\r\nx",
            "[HEAD POST / 0  1.1 ka=1 ch=0 cl=1 ex=1 up=0 <expect=100-Continue> "
            "<content-length=1>][BODY x][END]");
  check_one("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
            "[HEAD POST / 0  1.1 ka=1 ch=1 cl=-1 ex=0 up=0 <transfer-encoding=Chunked>][END]");
  /* An upgrade ends HTTP/1 on the connection. */
  rec_t r;
  rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, 0, &r);
  const char *up = "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  size_t used;
  CHECK_INT(rill_http_parser_execute(p, up, strlen(up), &used), 0);
  CHECK_INT(used, strlen(up));
  CHECK_INT(r.last.upgrade, 1);
  CHECK_INT(r.last.keep_alive, 0);
  CHECK_INT(rill_http_parser_execute(p, "\x81\x00", 2, &used), RILL_EHTTP_PARSE);
  CHECK_STR(rill_http_parser_error_code(p), "HPE_PAUSED_UPGRADE");
  rill_http_parser_free(p);
}

/* Callback errors stop the parser and come back from execute. */
static void test_callback_errors(void) {
  const char *req = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
  for (int which = 0; which < 3; which++) {
    rec_t r;
    rill_http_parser_t *p = mk(RILL_HTTP_REQUEST, 0, &r);
    r.fail_head = which == 0;
    r.fail_body = which == 1;
    r.fail_end = which == 2;
    CHECK_INT(feed(p, req, strlen(req)), UV_ENOMEM);
    CHECK_STR(rill_http_parser_error_code(p), "ENOMEM");
    size_t used;
    CHECK_INT(rill_http_parser_execute(p, "G", 1, &used), UV_ENOMEM);
    rill_http_parser_free(p);
  }
}

static void check_resp(const char *resp, int skip, int finish, const char *want) {
  size_t n = strlen(resp);
  for (size_t k = 1; k <= n; k++) {
    rec_t r;
    rill_http_parser_t *p = mk(RILL_HTTP_RESPONSE, 0, &r);
    if (skip) rill_http_parser_skip_body(p);
    CHECK_INT(parse_by(p, resp, n, k), 0);
    CHECK_INT(rill_http_parser_finish(p), finish);
    if (strcmp(r.log, want) != 0) fprintf(stderr, "pieces of %zu:\n%s\n", k, r.log);
    CHECK_STR(r.log, want);
    rill_http_parser_free(p);
  }
}

/* Responses, including CASES 89: a body shorter than Content-Length before EOF fails. */
static void test_responses(void) {
  check_resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 0, 0,
             "[HEAD -  200 OK 1.1 ka=1 ch=0 cl=2 ex=0 up=0 <content-length=2>][BODY hi][END]");
  check_resp("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n", 0,
             0,
             "[HEAD -  404 Not Found 1.1 ka=1 ch=1 cl=-1 ex=0 up=0 <transfer-encoding=chunked>]"
             "[BODY no][END]");
  /* No length: the body runs to EOF. */
  check_resp("HTTP/1.1 200 OK\r\n\r\nuntil eof", 0, 0,
             "[HEAD -  200 OK 1.1 ka=0 ch=0 cl=-1 ex=0 up=0][BODY until eof][END]");
  /* The answer to HEAD has no body whatever its length says; 100 Continue comes first. */
  check_resp("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", 1, 0,
             "[HEAD -  100 Continue 1.1 ka=1 ch=0 cl=-1 ex=0 up=0][END]"
             "[HEAD -  200 OK 1.1 ka=1 ch=0 cl=50 ex=0 up=0 <content-length=50>][END]");
  /* A short body before EOF is an error, never a silently short body. */
  check_resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0, RILL_EHTTP_PARSE,
             "[HEAD -  200 OK 1.1 ka=1 ch=0 cl=10 ex=0 up=0 <content-length=10>][BODY short");
  check_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 0, RILL_EHTTP_PARSE,
             "[HEAD -  200 OK 1.1 ka=1 ch=1 cl=-1 ex=0 up=0 <transfer-encoding=chunked>]"
             "[BODY ab");
  /* Bad status lines. */
  const char *bad[] = {"HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 OK\r\n\r\n", "HTXP/1.1 200 OK\r\n\r\n",
                       "HTTP/3.0 200 OK\r\n\r\n", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    rec_t r;
    rill_http_parser_t *p = mk(RILL_HTTP_RESPONSE, 0, &r);
    CHECK_INT(feed(p, bad[i], strlen(bad[i])), RILL_EHTTP_PARSE);
    CHECK_INT(r.heads, 0);
    rill_http_parser_free(p);
  }
}

int main(void) {
  RUN(test_args);
  RUN(test_pipelined_every_cut);
  RUN(test_one_message_per_call);
  RUN(test_malformed);
  RUN(test_values_cut);
  RUN(test_header_limit);
  RUN(test_heads);
  RUN(test_callback_errors);
  RUN(test_responses);
  fprintf(stderr, "test_http_parser: all passed\n");
  return 0;
}
