/* core/http_parser.c: llhttp glue: heads copied out of the stream, limits, extra strictness. */
#include "http_parser.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "error.h"
#include "llhttp.h"

/* Where a header's name and value sit in the parser's byte store (offsets, since it grows). */
typedef struct {
  size_t name, name_len, value, value_len;
} hdr_slot_t;

struct rill_http_parser_s {
  llhttp_t ll;
  rill_http_callbacks_t cb;
  void *ud;
  rill_http_type_t type;
  size_t max_head;
  size_t head_bytes;     /* bytes of the current head fed so far */
  const char *feed_end;  /* end of the piece llhttp is parsing now */
  unsigned char in_head; /* between messages or inside a head (the size limit applies) */
  unsigned char busy;    /* a message has begun and not ended */
  unsigned char head_done, msg_done; /* set by callbacks during one feed */
  unsigned char upgraded;            /* an upgrade message ended: no more HTTP/1 */
  unsigned char skip_body;
  unsigned char eof;          /* rill_http_parser_finish was called */
  unsigned char value_open;   /* a header value has spans but is not complete */
  unsigned char value_at_end; /* ...and its last span ended at the end of the fed piece */
  unsigned char te_count, te_bad;
  int err;
  const char *err_code, *err_reason;
  /* The head being collected: the request target or reason phrase, then each header's name
   * and value, each NUL-terminated, in one growing store bounded by the head size limit. */
  char *store;
  size_t store_len, store_cap;
  size_t target, target_len;
  hdr_slot_t *slots;
  size_t nslots, slots_cap;
  rill_http_header_t *headers; /* the head's view of the slots, built when the head is done */
  size_t headers_cap;
  rill_http_head_t head;
};

static rill_http_parser_t *from_ll(llhttp_t *ll) {
  return (rill_http_parser_t *)ll->data;
}

/* Records the first failure; returns err. */
static int fail(rill_http_parser_t *p, int err, const char *code, const char *reason) {
  if (p->err == 0) {
    p->err = err;
    p->err_code = code;
    p->err_reason = reason;
  }
  return p->err;
}

/* Fails from inside an llhttp callback; the value tells llhttp to stop. */
static int cb_fail(rill_http_parser_t *p, int err, const char *code, const char *reason) {
  fail(p, err, code, reason);
  return HPE_USER;
}

static int store_add(rill_http_parser_t *p, const char *at, size_t len, int lower) {
  if (len > p->store_cap - p->store_len) {
    size_t cap = p->store_cap ? p->store_cap : 256;
    while (cap - p->store_len < len) cap *= 2;
    char *s = realloc(p->store, cap);
    if (s == NULL) return UV_ENOMEM;
    p->store = s;
    p->store_cap = cap;
  }
  char *dst = p->store + p->store_len;
  if (lower) {
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)at[i];
      dst[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
  } else {
    memcpy(dst, at, len);
  }
  p->store_len += len;
  return 0;
}

/* ---- llhttp callbacks ---- */

static int on_message_begin(llhttp_t *ll) {
  rill_http_parser_t *p = from_ll(ll);
  p->busy = 1;
  p->store_len = 0;
  p->target = p->target_len = 0;
  p->nslots = 0;
  p->value_open = 0;
  p->te_count = p->te_bad = 0;
  return 0;
}

static int on_target(llhttp_t *ll, const char *at, size_t len) {
  rill_http_parser_t *p = from_ll(ll);
  if (store_add(p, at, len, 0)) return cb_fail(p, UV_ENOMEM, "ENOMEM", "out of memory");
  p->target_len += len;
  return 0;
}

static int on_target_complete(llhttp_t *ll) {
  rill_http_parser_t *p = from_ll(ll);
  if (store_add(p, "", 1, 0)) return cb_fail(p, UV_ENOMEM, "ENOMEM", "out of memory");
  return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len) {
  rill_http_parser_t *p = from_ll(ll);
  if (!p->in_head) return 0; /* chunked trailers are parsed (and checked) but not kept */
  if (p->nslots == 0 || p->slots[p->nslots - 1].value_len != (size_t)-1) {
    /* A new header (a name cut across two pieces of input arrives in two spans). */
    if (p->nslots == p->slots_cap) {
      size_t cap = p->slots_cap ? p->slots_cap * 2 : 16;
      hdr_slot_t *s = realloc(p->slots, cap * sizeof *s);
      if (s == NULL) return cb_fail(p, UV_ENOMEM, "ENOMEM", "out of memory");
      p->slots = s;
      p->slots_cap = cap;
    }
    hdr_slot_t *h = &p->slots[p->nslots++];
    h->name = p->store_len;
    h->name_len = 0;
    h->value = 0;
    h->value_len = (size_t)-1; /* no value yet */
  }
  if (store_add(p, at, len, 1)) return cb_fail(p, UV_ENOMEM, "ENOMEM", "out of memory");
  p->slots[p->nslots - 1].name_len += len;
  return 0;
}

static int on_header_field_complete(llhttp_t *ll) {
  rill_http_parser_t *p = from_ll(ll);
  if (!p->in_head) return 0;
  /* llhttp lets ": x" through as a header with an empty name. */
  if (p->nslots == 0 || p->slots[p->nslots - 1].value_len != (size_t)-1 ||
      p->slots[p->nslots - 1].name_len == 0)
    return cb_fail(p, RILL_EHTTP_PARSE, "HPE_INVALID_HEADER_TOKEN", "empty header name");
  if (store_add(p, "", 1, 0)) return cb_fail(p, UV_ENOMEM, "ENOMEM", "out of memory");
  hdr_slot_t *h = &p->slots[p->nslots - 1];
  h->value = p->store_len;
  h->value_len = 0;
  p->value_open = 0;
  return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len) {
  rill_http_parser_t *p = from_ll(ll);
  /* llhttp (even strict) accepts obs-fold, passing the continuation line as a second span of
   * the same value. A value also arrives in several spans when the input was cut inside it,
   * but then the earlier span ends exactly where that piece of input ended. */
  if (p->value_open && !p->value_at_end)
    return cb_fail(p, RILL_EHTTP_PARSE, "HPE_INVALID_HEADER_TOKEN",
                   "obsolete line folding in a header");
  p->value_open = 1;
  p->value_at_end = at + len == p->feed_end;
  if (!p->in_head) return 0;
  if (store_add(p, at, len, 0)) return cb_fail(p, UV_ENOMEM, "ENOMEM", "out of memory");
  p->slots[p->nslots - 1].value_len += len;
  return 0;
}

static int on_header_value_complete(llhttp_t *ll) {
  rill_http_parser_t *p = from_ll(ll);
  p->value_open = 0;
  if (!p->in_head) return 0;
  assert(p->nslots > 0); /* llhttp completes a name before any value */
  hdr_slot_t *h = &p->slots[p->nslots - 1];
  /* llhttp drops leading whitespace; trailing whitespace is not part of the value either. */
  while (h->value_len > 0 && (p->store[h->value + h->value_len - 1] == ' ' ||
                              p->store[h->value + h->value_len - 1] == '\t')) {
    h->value_len--;
    p->store_len--;
  }
  if (store_add(p, "", 1, 0)) return cb_fail(p, UV_ENOMEM, "ENOMEM", "out of memory");
  const char *name = p->store + h->name;
  if (h->name_len == 17 && memcmp(name, "transfer-encoding", 17) == 0) {
    if (p->te_count < 255) p->te_count++;
    if (h->value_len != 7 || strncasecmp(p->store + h->value, "chunked", 7) != 0) p->te_bad = 1;
  }
  return 0;
}

static int on_headers_complete(llhttp_t *ll) {
  rill_http_parser_t *p = from_ll(ll);
  p->in_head = 0;
  p->head_done = 1;
  if (ll->http_major != 1 || ll->http_minor > 1) {
    fail(p, RILL_EHTTP_PARSE, "HPE_INVALID_VERSION", "unsupported HTTP version");
    return -1;
  }
  /* A request body must be framed without doubt: chunked is the only transfer coding a server
   * can be sure to agree on with every proxy in front of it ("eee, chunked" is an error). */
  if (p->type == RILL_HTTP_REQUEST && (ll->flags & F_TRANSFER_ENCODING) &&
      (p->te_count != 1 || p->te_bad)) {
    fail(p, RILL_EHTTP_PARSE, "HPE_INVALID_TRANSFER_ENCODING",
         "unsupported Transfer-Encoding in a request");
    return -1;
  }
  if (p->nslots > p->headers_cap) {
    rill_http_header_t *h = realloc(p->headers, p->nslots * sizeof *h);
    if (h == NULL) {
      fail(p, UV_ENOMEM, "ENOMEM", "out of memory");
      return -1;
    }
    p->headers = h;
    p->headers_cap = p->nslots;
  }
  rill_http_head_t *hd = &p->head;
  memset(hd, 0, sizeof *hd);
  for (size_t i = 0; i < p->nslots; i++) {
    hdr_slot_t *s = &p->slots[i];
    rill_http_header_t *h = &p->headers[i];
    h->name = p->store + s->name;
    h->name_len = s->name_len;
    h->value = p->store + s->value;
    h->value_len = s->value_len;
    if (s->name_len == 6 && memcmp(h->name, "expect", 6) == 0 && s->value_len == 12 &&
        strncasecmp(h->value, "100-continue", 12) == 0)
      hd->expect_continue = 1;
  }
  hd->nheaders = p->nslots;
  hd->headers = p->headers;
  const char *target = p->target_len ? p->store + p->target : "";
  if (p->type == RILL_HTTP_REQUEST) {
    hd->method = llhttp_method_name((llhttp_method_t)ll->method);
    hd->path = target;
    hd->reason = "";
  } else {
    hd->status = ll->status_code;
    hd->reason = target;
    hd->path = "";
  }
  hd->version_major = ll->http_major;
  hd->version_minor = ll->http_minor;
  hd->chunked = (ll->flags & F_CHUNKED) != 0;
  hd->content_length = (ll->flags & F_CONTENT_LENGTH) ? (int64_t)ll->content_length : -1;
  hd->upgrade = ll->upgrade != 0;
  hd->keep_alive = llhttp_should_keep_alive(ll) && !hd->upgrade;
  int skip = p->type == RILL_HTTP_RESPONSE && p->skip_body && hd->status >= 200;
  if (p->cb.on_head) {
    int r = p->cb.on_head(p->ud, hd);
    if (r) {
      fail(p, r, rill_err_name(r), rill_strerror(r));
      return -1;
    }
  }
  return skip ? 1 : 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len) {
  rill_http_parser_t *p = from_ll(ll);
  if (p->cb.on_body) {
    int r = p->cb.on_body(p->ud, at, len);
    if (r) return cb_fail(p, r, rill_err_name(r), rill_strerror(r));
  }
  return 0;
}

static int on_message_complete(llhttp_t *ll) {
  rill_http_parser_t *p = from_ll(ll);
  p->busy = 0;
  p->in_head = 1;
  p->head_bytes = 0;
  p->msg_done = 1;
  if (p->head.status >= 200 || p->type == RILL_HTTP_REQUEST) p->skip_body = 0;
  if (ll->upgrade) p->upgraded = 1;
  if (p->cb.on_end) {
    int r = p->cb.on_end(p->ud);
    if (r) {
      fail(p, r, rill_err_name(r), rill_strerror(r));
      return -1;
    }
  }
  return HPE_PAUSED; /* one message per execute */
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_target,
    .on_url_complete = on_target_complete,
    .on_status = on_target,
    .on_status_complete = on_target_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- public ---- */

int rill_http_parser_new(rill_http_parser_t **out, const rill_http_parser_opts_t *opts,
                         const rill_http_callbacks_t *cb, void *ud) {
  if (out == NULL || opts == NULL || cb == NULL) return UV_EINVAL;
  if (opts->type != RILL_HTTP_REQUEST && opts->type != RILL_HTTP_RESPONSE) return UV_EINVAL;
  rill_http_parser_t *p = calloc(1, sizeof *p);
  if (p == NULL) return UV_ENOMEM;
  llhttp_init(&p->ll, opts->type == RILL_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE,
              (llhttp_settings_t *)&settings);
  p->ll.data = p;
  p->cb = *cb;
  p->ud = ud;
  p->type = opts->type;
  p->max_head = opts->max_header_size ? opts->max_header_size : RILL_HTTP_MAX_HEADER_SIZE;
  p->in_head = 1;
  p->err_code = p->err_reason = "";
  *out = p;
  return 0;
}

void rill_http_parser_free(rill_http_parser_t *p) {
  if (p == NULL) return;
  free(p->store);
  free(p->slots);
  free(p->headers);
  free(p);
}

int rill_http_parser_execute(rill_http_parser_t *p, const char *data, size_t len,
                             size_t *consumed) {
  *consumed = 0;
  if (p->err) return p->err;
  if (len == 0) return 0;
  if (p->upgraded)
    return fail(p, RILL_EHTTP_PARSE, "HPE_PAUSED_UPGRADE", "data after a protocol upgrade");
  if (p->eof) return fail(p, RILL_EHTTP_PARSE, "HPE_CLOSED_CONNECTION", "data after the end");
  size_t off = 0;
  while (off < len) {
    size_t take = len - off;
    if (p->in_head) {
      /* Feed no more than the head may still grow by, so that an oversized head is caught
       * at exactly the limit, however the bytes arrive. */
      size_t allow = p->max_head - p->head_bytes;
      if (allow == 0)
        return fail(p, RILL_EHTTP_HEADER_OVERFLOW, "HPE_HEADER_OVERFLOW", "header block too large");
      if (take > allow) take = allow;
    }
    const char *piece = data + off;
    p->feed_end = piece + take;
    p->head_done = p->msg_done = 0;
    int was_head = p->in_head;
    llhttp_errno_t e = llhttp_execute(&p->ll, piece, take);
    size_t used = take;
    if (e == HPE_PAUSED) {
      used = (size_t)(llhttp_get_error_pos(&p->ll) - piece);
      llhttp_resume(&p->ll);
    } else if (e != HPE_OK) {
      const char *pos = llhttp_get_error_pos(&p->ll);
      if (pos != NULL && pos >= piece && pos <= piece + take)
        *consumed = off + (size_t)(pos - piece);
      if (p->err) return p->err;
      return fail(p, RILL_EHTTP_PARSE, llhttp_errno_name(e), llhttp_get_error_reason(&p->ll));
    }
    if (was_head && !p->head_done && !p->msg_done) p->head_bytes += used;
    off += used;
    if (p->msg_done) break;
  }
  *consumed = off;
  return 0;
}

int rill_http_parser_finish(rill_http_parser_t *p) {
  if (p->err) return p->err;
  if (p->eof) return 0;
  p->eof = 1;
  /* Between messages there is nothing to finish (llhttp's own flag would still say "unsafe"
   * right after a message, since execute stops inside its end callback). */
  if (!p->busy) return 0;
  p->msg_done = 0;
  llhttp_errno_t e = llhttp_finish(&p->ll);
  if (e == HPE_OK || e == HPE_PAUSED) {
    if (e == HPE_PAUSED) llhttp_resume(&p->ll);
    if (!p->busy) return 0;
  }
  if (p->err) return p->err;
  return fail(p, RILL_EHTTP_PARSE, "HPE_INVALID_EOF_STATE",
              "connection closed before the message was complete");
}

void rill_http_parser_skip_body(rill_http_parser_t *p) {
  p->skip_body = 1;
}

int rill_http_parser_busy(const rill_http_parser_t *p) {
  return p->busy;
}

const char *rill_http_parser_error_code(const rill_http_parser_t *p) {
  return p->err_code;
}

const char *rill_http_parser_error_reason(const rill_http_parser_t *p) {
  return p->err_reason;
}
