/* core/http_client.c: HTTP/1.1 requests with streaming request and response bodies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "http.h"
#include "tcp.h"

typedef struct {
  rill_stream_t *sock, *req, *res; /* one reference each while in use */
  rill_listener_t l;
  rill_http_parser_t *p;
  rill_http_response_cb cb;
  void *arg;
  const rill_view_t *cur; /* while parsing: the view the parser's data points into */
  int refs;               /* socket close, request free, response free, timer close */
  int cb_done, chunked, skip_msg, finished, failed, blocked, write_wait;
  uv_timer_t timer;
  rill_handle_t th;
  int timer_on;
  int own_req, own_res; /* the exchange holds a reference on req / res */
} cli_t;

static const rill_stream_impl_t creq_impl, cres_impl;

static void cli_unref(cli_t *c) {
  if (--c->refs > 0) return;
  rill_http_parser_free(c->p);
  free(c);
}

static void stop_timer(cli_t *c) {
  if (c->timer_on) {
    c->timer_on = 0;
    rill_handle_close(&c->th);
  }
}

/* The exchange failed: the caller hears about it once, through cb or the response stream. */
static void cli_fail(cli_t *c, int code) {
  if (c->failed || c->finished) return;
  c->failed = 1;
  stop_timer(c);
  /* A parse failure says what was wrong ("Invalid status code", "connection closed before the
   * message was complete"). */
  const char *why = code == RILL_EHTTP_PARSE ? rill_http_parser_error_reason(c->p) : NULL;
  rill_err_t *e = rill_err_new(code, NULL, NULL, why && why[0] ? why : NULL);
  if (!c->cb_done) {
    c->cb_done = 1;
    c->cb(NULL, NULL, e, c->arg);
  } else if (c->res) {
    rill_stream_destroy(c->res, e);
  }
  if (c->req) rill_stream_destroy(c->req, e);
  rill_err_unref(e);
  if (c->sock) rill_stream_destroy(c->sock, NULL);
}

static void timer_cb(uv_timer_t *t) {
  cli_t *c = RILL_CONTAINER_OF(t, cli_t, timer);
  if (!c->cb_done) cli_fail(c, UV_ETIMEDOUT);
}

static void timer_closed(rill_handle_t *h) {
  cli_unref(RILL_CONTAINER_OF(h, cli_t, th));
}

/* ---- response parsing ---- */

static int on_head(void *ud, const rill_http_head_t *h) {
  cli_t *c = ud;
  c->skip_msg = h->status < 200; /* 100 Continue and friends: the real answer follows */
  if (c->skip_msg || c->failed) return 0;
  stop_timer(c);
  rill_stream_opts_t ro = {RILL_STREAM_READABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  int r = rill_stream_new(rill_stream_loop(c->sock), &cres_impl, c, &ro, &c->res);
  if (r) return r;
  c->refs++;
  c->own_res = 1;
  c->cb_done = 1;
  rill_stream_ref(c->res); /* the callback's */
  c->cb(c->res, h, NULL, c->arg);
  return 0;
}

static int on_body(void *ud, const char *at, size_t len) {
  cli_t *c = ud;
  if (c->skip_msg || c->res == NULL || (rill_stream_state(c->res) & RILL_SS_DESTROYED)) return 0;
  rill_view_t piece;
  rill_view_slice(&piece, c->cur, (size_t)(at - (const char *)rill_view_data(c->cur)), len);
  rill_chunk_t ch;
  rill_chunk_from_view(&ch, &piece);
  if (rill_stream_push(c->res, &ch) == 0) {
    c->blocked = 1;
    rill_stream_pause(c->sock);
  }
  return 0;
}

static int on_end(void *ud) {
  cli_t *c = ud;
  if (c->skip_msg) {
    c->skip_msg = 0;
    return 0;
  }
  c->finished = 1;
  if (c->res) rill_stream_push(c->res, NULL);
  /* One request per connection: it has served its purpose. */
  rill_stream_destroy(c->sock, NULL);
  return 0;
}

static const rill_http_callbacks_t parser_cbs = {on_head, on_body, on_end};

static void sock_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  cli_t *c = RILL_CONTAINER_OF(l, cli_t, l);
  switch (ev->type) {
    case RILL_EV_DATA: {
      if (c->finished || c->failed) break;
      const rill_view_t *v = &ev->chunk->view;
      size_t off = 0;
      while (off < v->len && !c->finished && !c->failed) {
        size_t used = 0;
        c->cur = v;
        int r = rill_http_parser_execute(c->p, (const char *)rill_view_data(v) + off, v->len - off,
                                         &used);
        c->cur = NULL;
        if (r) {
          cli_fail(c, r);
          break;
        }
        off += used;
      }
      break;
    }
    case RILL_EV_DRAIN:
      if (c->write_wait && c->req) {
        c->write_wait = 0;
        rill_stream_write_done(c->req, NULL);
      }
      break;
    case RILL_EV_END:
      /* A body that runs to the end of the connection ends here; anything else is cut. */
      if (!c->finished && !c->failed) {
        int r = rill_http_parser_finish(c->p);
        if (r == 0 && !c->finished) r = RILL_EHTTP_PARSE; /* closed before any response */
        if (r) cli_fail(c, r == RILL_EHTTP_PARSE && !c->cb_done ? UV_ECONNRESET : r);
      }
      break;
    case RILL_EV_ERROR:
      cli_fail(c, ev->err ? ev->err->code : UV_ECONNRESET);
      break;
    case RILL_EV_CLOSE:
      if (!c->finished) cli_fail(c, UV_ECONNRESET);
      stop_timer(c);
      rill_stream_unlisten(&c->l);
      rill_stream_unref(c->sock);
      c->sock = NULL;
      if (c->req && !(rill_stream_state(c->req) & RILL_SS_FINISHED) && !c->finished)
        rill_stream_destroy_code(c->req, UV_ECONNRESET);
      /* The connection is over: drop the exchange's own references (the caller keeps its). */
      c->refs++;
      if (c->own_req) {
        c->own_req = 0;
        rill_stream_unref(c->req);
      }
      if (c->own_res) {
        c->own_res = 0;
        rill_stream_unref(c->res);
      }
      cli_unref(c);
      cli_unref(c);
      break;
    default:
      break;
  }
}

/* ---- request body ---- */

static void creq_write(rill_stream_t *s, const rill_chunk_t *chunk) {
  cli_t *c = rill_stream_data(s);
  if (c->sock == NULL || c->failed) {
    rill_err_t *e = rill_err_new(UV_ECONNRESET, NULL, NULL, NULL);
    rill_stream_write_done(s, e);
    rill_err_unref(e);
    return;
  }
  if (chunk->view.len == 0) {
    rill_stream_write_done(s, NULL);
    return;
  }
  if (c->chunked) {
    char line[32];
    int n = snprintf(line, sizeof line, "%zx\r\n", chunk->view.len);
    rill_stream_write_bytes(c->sock, line, (size_t)n, NULL, NULL);
  }
  rill_chunk_t dup;
  rill_chunk_dup(&dup, chunk);
  int r = rill_stream_write(c->sock, &dup, NULL, NULL);
  if (c->chunked && r >= 0) r = rill_stream_write_bytes(c->sock, "\r\n", 2, NULL, NULL);
  if (r < 0) {
    rill_err_t *e = rill_err_new(r, NULL, NULL, NULL);
    rill_stream_write_done(s, e);
    rill_err_unref(e);
  } else if (r == 1) {
    c->write_wait = 1;
  } else {
    rill_stream_write_done(s, NULL);
  }
}

static void creq_final(rill_stream_t *s) {
  cli_t *c = rill_stream_data(s);
  if (c->chunked && c->sock && !c->failed)
    rill_stream_write_bytes(c->sock, "0\r\n\r\n", 5, NULL, NULL);
  rill_stream_final_done(s, NULL);
}

static void creq_destroy(rill_stream_t *s, rill_err_t *err) {
  cli_t *c = rill_stream_data(s);
  /* Aborted before it was all sent: the exchange cannot go on. */
  if (!(rill_stream_state(s) & RILL_SS_FINISHED) && !c->finished && !c->failed)
    cli_fail(c, err ? err->code : RILL_ESTREAM_DESTROYED);
  rill_stream_destroy_done(s, err);
}

static void creq_free(rill_stream_t *s) {
  cli_t *c = rill_stream_data(s);
  c->req = NULL;
  cli_unref(c);
}

static const rill_stream_impl_t creq_impl = {
    .write = creq_write, .final = creq_final, .destroy = creq_destroy, .free = creq_free};

/* ---- response body ---- */

static void cres_read(rill_stream_t *s, size_t size) {
  cli_t *c = rill_stream_data(s);
  if (c->blocked && c->sock) {
    c->blocked = 0;
    rill_stream_resume(c->sock);
  }
}

static void cres_destroy(rill_stream_t *s, rill_err_t *err) {
  cli_t *c = rill_stream_data(s);
  if (!c->finished && c->sock) {
    c->failed = 1; /* the caller gave up on the body */
    rill_stream_destroy(c->sock, NULL);
  }
  rill_stream_destroy_done(s, err);
}

static void cres_free(rill_stream_t *s) {
  cli_t *c = rill_stream_data(s);
  c->res = NULL;
  cli_unref(c);
}

static const rill_stream_impl_t cres_impl = {
    .read = cres_read, .destroy = cres_destroy, .free = cres_free};

/* ---- request ---- */

static int bad_text(const char *s) {
  return s == NULL || strpbrk(s, "\r\n") != NULL;
}

/* The request head; NULL when out of memory. */
static char *make_head(const rill_http_request_opts_t *o, size_t *len) {
  size_t cap = 256 + strlen(o->method) + strlen(o->path) + strlen(o->host);
  for (size_t i = 0; i < 2 * o->nheaders; i++) cap += strlen(o->headers[i]) + 4;
  char *h = malloc(cap);
  if (h == NULL) return NULL;
  int has_host = 0;
  for (size_t i = 0; i < o->nheaders; i++)
    if (strcasecmp(o->headers[2 * i], "host") == 0) has_host = 1;
  size_t n = (size_t)snprintf(h, cap, "%s %s HTTP/1.1\r\n", o->method, o->path);
  if (!has_host) {
    if (o->port == 80)
      n += (size_t)snprintf(h + n, cap - n, "Host: %s\r\n", o->host);
    else
      n += (size_t)snprintf(h + n, cap - n, "Host: %s:%d\r\n", o->host, o->port);
  }
  for (size_t i = 0; i < o->nheaders; i++)
    n += (size_t)snprintf(h + n, cap - n, "%s: %s\r\n", o->headers[2 * i], o->headers[2 * i + 1]);
  if (o->content_length >= 0)
    n += (size_t)snprintf(h + n, cap - n, "Content-Length: %lld\r\n", (long long)o->content_length);
  else if (o->content_length == RILL_HTTP_CHUNKED)
    n += (size_t)snprintf(h + n, cap - n, "Transfer-Encoding: chunked\r\n");
  n += (size_t)snprintf(h + n, cap - n, "Connection: close\r\n\r\n");
  *len = n;
  return h;
}

int rill_http_request(rill_loop_t *loop, const rill_http_request_opts_t *o,
                      rill_http_response_cb cb, void *arg, rill_stream_t **req) {
  if (loop == NULL || o == NULL || cb == NULL || req == NULL || o->port <= 0 || o->port > 65535 ||
      bad_text(o->method) || bad_text(o->host) || bad_text(o->path) || o->method[0] == 0 ||
      strchr(o->method, ' ') || o->path[0] == 0 || strchr(o->path, ' ') ||
      o->content_length < RILL_HTTP_NO_BODY)
    return UV_EINVAL;
  for (size_t i = 0; i < 2 * o->nheaders; i++)
    if (bad_text(o->headers[i]) ||
        (i % 2 == 0 && (o->headers[i][0] == 0 || strchr(o->headers[i], ':'))))
      return UV_EINVAL;
  cli_t *c = calloc(1, sizeof *c);
  if (c == NULL) return UV_ENOMEM;
  c->cb = cb;
  c->arg = arg;
  c->chunked = o->content_length == RILL_HTTP_CHUNKED;
  rill_http_parser_opts_t po = {RILL_HTTP_RESPONSE, 0};
  size_t hlen;
  char *head = make_head(o, &hlen);
  int r = head ? rill_http_parser_new(&c->p, &po, &parser_cbs, c) : UV_ENOMEM;
  if (r) {
    free(head);
    free(c);
    return r;
  }
  if (strcmp(o->method, "HEAD") == 0) rill_http_parser_skip_body(c->p);
  rill_stream_opts_t wo = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  r = rill_stream_new(loop, &creq_impl, c, &wo, &c->req);
  if (r == 0)
    r = rill_tcp_connect(loop, o->host, o->port, RILL_TCP_HALF_OPEN, NULL, NULL, &c->sock);
  if (r) {
    free(head);
    if (c->req) {
      c->refs = 1;
      c->cb_done = c->failed = 1;
      rill_stream_unref(c->req); /* frees c through its free hook */
    } else {
      rill_http_parser_free(c->p);
      free(c);
    }
    return r;
  }
  c->refs = 2; /* the socket's close and the request stream */
  c->own_req = 1;
  rill_stream_write_bytes(c->sock, head, hlen, NULL, NULL); /* goes out once connected */
  free(head);
  c->l.mask = RILL_EVBIT(RILL_EV_DATA) | RILL_EVBIT(RILL_EV_DRAIN) | RILL_EVBIT(RILL_EV_END) |
              RILL_EVBIT(RILL_EV_ERROR) | RILL_EVBIT(RILL_EV_CLOSE);
  c->l.cb = sock_event;
  rill_stream_listen(c->sock, &c->l);
  rill_stream_watch(c->sock, RILL_EV_ERROR, 1);
  rill_stream_watch(c->sock, RILL_EV_DATA, 1);
  if (o->timeout_ms) {
    uv_timer_init(loop->uv, &c->timer);
    rill_handle_track(loop, &c->th, (uv_handle_t *)&c->timer, timer_closed);
    uv_timer_start(&c->timer, timer_cb, o->timeout_ms, 0);
    c->timer_on = 1;
    c->refs++;
  }
  rill_stream_ref(c->req); /* the caller's */
  *req = c->req;
  return 0;
}
