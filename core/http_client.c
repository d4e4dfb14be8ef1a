/* core/http_client.c: HTTP/1.1 requests with streaming request and response bodies. */
#define _GNU_SOURCE /* strcasestr */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "http.h"
#include "tcp.h"

/* ---- the agent: idle connections by host and port ---- */

typedef struct idle_s idle_t;

struct rill_http_agent_s {
  rill_loop_t *loop;
  unsigned idle_ms;
  size_t max_idle;
  idle_t *idle; /* most recently pooled first */
  size_t nidle;
  int refs; /* the owner's hold and one per request that uses it */
  int freed;
};

struct idle_s {
  idle_t *prev, *next;
  rill_http_agent_t *agent; /* NULL once out of the pool */
  rill_stream_t *sock;      /* one reference while pooled */
  rill_listener_t l;
  uv_timer_t timer;
  rill_handle_t th;
  int port;
  char host[256];
};

static void agent_unref(rill_http_agent_t *a) {
  if (--a->refs == 0) free(a);
}

/* Takes e out of the pool (its timer closes and frees it); returns the socket's reference. */
static rill_stream_t *idle_unlink(idle_t *e) {
  rill_http_agent_t *a = e->agent;
  if (e->prev)
    e->prev->next = e->next;
  else
    a->idle = e->next;
  if (e->next) e->next->prev = e->prev;
  a->nidle--;
  e->agent = NULL;
  rill_stream_unlisten(&e->l);
  rill_stream_t *s = e->sock;
  e->sock = NULL;
  return s;
}

static void idle_drop(idle_t *e) {
  rill_stream_t *s = idle_unlink(e);
  rill_handle_close(&e->th);
  rill_stream_destroy(s, NULL);
  rill_stream_unref(s);
}

static void idle_closed(rill_handle_t *h) {
  idle_t *e = RILL_CONTAINER_OF(h, idle_t, th);
  if (e->agent) {
    /* Engine teardown closed the timer of a pooled connection: the connection goes too. */
    rill_stream_t *s = idle_unlink(e);
    rill_stream_destroy(s, NULL);
    rill_stream_unref(s);
  }
  free(e);
}

static void idle_timer_cb(uv_timer_t *t) {
  idle_drop(RILL_CONTAINER_OF(t, idle_t, timer));
}

/* Anything on an idle connection ends its use: the server closed it or failed, or sent bytes
 * nobody asked for. */
static void idle_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  (void)s;
  (void)ev;
  idle_drop(RILL_CONTAINER_OF(l, idle_t, l));
}

/* Pools sock (takes its reference), or closes it when the pool for host:port is full. */
static void agent_put(rill_http_agent_t *a, const char *host, int port, rill_stream_t *sock) {
  size_t same = 0;
  for (idle_t *e = a->idle; e; e = e->next)
    if (e->port == port && strcmp(e->host, host) == 0) same++;
  idle_t *e = !a->freed && same < a->max_idle ? calloc(1, sizeof *e) : NULL;
  if (e == NULL) {
    rill_stream_destroy(sock, NULL);
    rill_stream_unref(sock);
    return;
  }
  e->agent = a;
  e->sock = sock;
  e->port = port;
  snprintf(e->host, sizeof e->host, "%s", host);
  uv_timer_init(a->loop->uv, &e->timer);
  uv_unref((uv_handle_t *)&e->timer);
  rill_handle_track(a->loop, &e->th, (uv_handle_t *)&e->timer, idle_closed);
  uv_timer_start(&e->timer, idle_timer_cb, a->idle_ms, 0);
  e->next = a->idle;
  if (e->next) e->next->prev = e;
  a->idle = e;
  a->nidle++;
  e->l.mask = RILL_EVBIT(RILL_EV_DATA) | RILL_EVBIT(RILL_EV_END) | RILL_EVBIT(RILL_EV_ERROR) |
              RILL_EVBIT(RILL_EV_CLOSE);
  e->l.cb = idle_event;
  rill_stream_listen(sock, &e->l);
  rill_tcp_set_ref(sock, 0);
  rill_stream_resume(sock); /* a paused socket would not see the server's close */
}

/* The most recently pooled connection to host:port (a new reference), or NULL. */
static rill_stream_t *agent_take(rill_http_agent_t *a, const char *host, int port) {
  for (idle_t *e = a->idle, *next; e; e = next) {
    next = e->next;
    if (e->port != port || strcmp(e->host, host) != 0) continue;
    rill_stream_t *s = idle_unlink(e);
    rill_handle_close(&e->th);
    if (rill_stream_state(s) & (RILL_SS_DESTROYED | RILL_SS_READ_ENDED | RILL_SS_ENDING)) {
      rill_stream_destroy(s, NULL);
      rill_stream_unref(s);
      continue;
    }
    rill_tcp_set_ref(s, 1);
    return s;
  }
  return NULL;
}

int rill_http_agent_new(rill_loop_t *loop, const rill_http_agent_opts_t *o,
                        rill_http_agent_t **out) {
  if (loop == NULL || out == NULL) return UV_EINVAL;
  rill_http_agent_t *a = calloc(1, sizeof *a);
  if (a == NULL) return UV_ENOMEM;
  a->loop = loop;
  a->idle_ms = o && o->idle_timeout_ms ? o->idle_timeout_ms : 4000;
  a->max_idle = o && o->max_idle ? o->max_idle : 64;
  a->refs = 1;
  *out = a;
  return 0;
}

void rill_http_agent_close(rill_http_agent_t *a) {
  while (a->idle) idle_drop(a->idle);
}

void rill_http_agent_free(rill_http_agent_t *a) {
  if (a == NULL) return;
  a->freed = 1;
  rill_http_agent_close(a);
  agent_unref(a);
}

size_t rill_http_agent_idle(const rill_http_agent_t *a) {
  return a->nidle;
}

/* ---- one exchange ---- */

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
  /* Connection reuse */
  rill_loop_t *loop;
  rill_http_agent_t *agent; /* one reference, or NULL */
  int keep;                 /* the connection may go back to the agent (so far) */
  int reused;               /* the connection came from the agent */
  int retry_ok;             /* the request may be sent again (idempotent, not retried yet) */
  int req_done;             /* the whole request was written */
  int got_bytes;            /* some of the response arrived */
  rill_chain_t kept;        /* body chunks sent on a reused connection, kept for a retry */
  char *head;               /* the request head, kept for a retry */
  size_t hlen;
  int port;
  char host[256];
} cli_t;

static const rill_stream_impl_t creq_impl, cres_impl;

/* Body bytes kept for sending again: past this, a request is not retried. */
#define RETRY_KEEP ((size_t)64 << 10)

static void cli_free(cli_t *c) {
  rill_chain_clear(&c->kept);
  rill_http_parser_free(c->p);
  if (c->agent) agent_unref(c->agent);
  free(c->head);
  free(c);
}

static void cli_unref(cli_t *c) {
  if (--c->refs > 0) return;
  cli_free(c);
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
  if (!h->keep_alive || h->upgrade) c->keep = 0;
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
  return 0;
}

static const rill_http_callbacks_t parser_cbs = {on_head, on_body, on_end};

static void sock_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev);

static void attach(cli_t *c, rill_stream_t *sock, int fresh) {
  c->sock = sock;
  c->l.mask = RILL_EVBIT(RILL_EV_DATA) | RILL_EVBIT(RILL_EV_DRAIN) | RILL_EVBIT(RILL_EV_END) |
              RILL_EVBIT(RILL_EV_ERROR) | RILL_EVBIT(RILL_EV_CLOSE);
  c->l.cb = sock_event;
  rill_stream_listen(sock, &c->l);
  if (fresh) {
    /* A pooled connection keeps these from its first exchange. */
    rill_stream_watch(sock, RILL_EV_ERROR, 1);
    rill_stream_watch(sock, RILL_EV_DATA, 1);
  }
}

/* A connection from the agent, else a new one, with the request head written to it. */
static int open_conn(cli_t *c) {
  rill_stream_t *s = c->agent && c->keep ? agent_take(c->agent, c->host, c->port) : NULL;
  int fresh = s == NULL;
  c->reused = !fresh;
  if (fresh) {
    int r = rill_tcp_connect(c->loop, c->host, c->port, RILL_TCP_HALF_OPEN, NULL, NULL, &s);
    if (r) return r;
  }
  rill_stream_write_bytes(s, c->head, c->hlen, NULL, NULL); /* goes out once connected */
  attach(c, s, fresh);
  return 0;
}

/* The exchange no longer has a connection: drop its own references (the caller keeps its). */
static void sock_gone(cli_t *c) {
  stop_timer(c);
  c->refs++;
  if (c->own_req) {
    c->own_req = 0;
    rill_stream_unref(c->req);
  }
  if (c->own_res) {
    c->own_res = 0;
    rill_stream_unref(c->res);
  }
  c->refs--; /* the socket's share: the hold taken above keeps c alive */
  cli_unref(c);
}

/* The response is complete: the connection goes back to the agent when both sides allow it,
 * else it closes (its "close" event ends the exchange). clean: nothing followed the response. */
static void release_conn(cli_t *c, int clean) {
  rill_stream_t *s = c->sock;
  if (!(clean && c->keep && c->agent && !c->agent->freed && c->req_done &&
        !(rill_stream_state(s) & (RILL_SS_DESTROYED | RILL_SS_READ_ENDED | RILL_SS_ENDING)))) {
    rill_stream_destroy(s, NULL);
    return;
  }
  rill_stream_unlisten(&c->l);
  c->sock = NULL;
  agent_put(c->agent, c->host, c->port, s);
  sock_gone(c);
}

/* A reused connection that the server closed before answering (it timed the connection out
 * as we reused it) may be tried again on a new one, once, when sending the request again is
 * safe: an idempotent method, and a body (if any) small enough to have been kept. */
static int may_retry(const cli_t *c) {
  return c->reused && c->retry_ok && !c->got_bytes && !c->failed && !c->finished;
}

static void retry(cli_t *c) {
  rill_stream_t *old = c->sock;
  rill_stream_unlisten(&c->l);
  c->sock = NULL;
  c->retry_ok = 0;
  rill_stream_destroy(old, NULL);
  rill_stream_unref(old);
  c->keep = 0; /* open_conn takes a new connection */
  int r = open_conn(c);
  c->keep = 1;
  if (r) {
    cli_fail(c, r);
    sock_gone(c);
    return;
  }
  /* The body as far as it was written, framed again. */
  int full = 0;
  rill_view_t v;
  while (rill_chain_shift(&c->kept, &v) == 0) {
    if (c->chunked) {
      char line[32];
      int n = snprintf(line, sizeof line, "%zx\r\n", v.len);
      rill_stream_write_bytes(c->sock, line, (size_t)n, NULL, NULL);
    }
    rill_chunk_t ch;
    rill_chunk_from_view(&ch, &v);
    full = rill_stream_write(c->sock, &ch, NULL, NULL) == 1;
    if (c->chunked) full = rill_stream_write_bytes(c->sock, "\r\n", 2, NULL, NULL) == 1;
  }
  if (c->req_done && c->chunked) rill_stream_write_bytes(c->sock, "0\r\n\r\n", 5, NULL, NULL);
  /* A write that waited for the old socket's drain waits for the new one's, or is done. */
  if (c->write_wait && !full && c->req) {
    c->write_wait = 0;
    rill_stream_write_done(c->req, NULL);
  }
}

static void sock_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  cli_t *c = RILL_CONTAINER_OF(l, cli_t, l);
  switch (ev->type) {
    case RILL_EV_DATA: {
      if (c->finished || c->failed) break;
      if (!c->got_bytes) {
        c->got_bytes = 1;
        rill_chain_clear(&c->kept); /* no retry any more */
      }
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
      if (c->finished && !c->failed) release_conn(c, off == v->len); /* may free c */
      break;
    }
    case RILL_EV_DRAIN:
      if (c->write_wait && c->req) {
        c->write_wait = 0;
        rill_stream_write_done(c->req, NULL);
      }
      break;
    case RILL_EV_END:
      if (may_retry(c)) {
        retry(c);
        break;
      }
      /* A body that runs to the end of the connection ends here; anything else is cut. */
      if (!c->finished && !c->failed) {
        int r = rill_http_parser_finish(c->p);
        if (r == 0 && !c->finished) r = RILL_EHTTP_PARSE; /* closed before any response */
        if (r) {
          cli_fail(c, r == RILL_EHTTP_PARSE && !c->cb_done ? UV_ECONNRESET : r);
        } else {
          rill_stream_destroy(c->sock, NULL);
        }
      }
      break;
    case RILL_EV_ERROR:
      if (may_retry(c)) {
        retry(c);
        break;
      }
      cli_fail(c, ev->err ? ev->err->code : UV_ECONNRESET);
      break;
    case RILL_EV_CLOSE:
      if (may_retry(c)) {
        retry(c);
        break;
      }
      if (!c->finished) cli_fail(c, UV_ECONNRESET);
      rill_stream_unlisten(&c->l);
      rill_stream_unref(c->sock);
      c->sock = NULL;
      if (c->req && !(rill_stream_state(c->req) & RILL_SS_FINISHED) && !c->finished)
        rill_stream_destroy_code(c->req, UV_ECONNRESET);
      sock_gone(c);
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
  if (c->reused && c->retry_ok && !c->got_bytes) {
    /* Kept (a reference, no copy) in case the connection turns out closed under us. */
    rill_view_t v;
    rill_view_slice(&v, &chunk->view, 0, chunk->view.len);
    if (c->kept.bytes + v.len > RETRY_KEEP || rill_chain_push(&c->kept, &v) != 0) {
      rill_view_release(&v);
      rill_chain_clear(&c->kept);
      c->retry_ok = 0;
    }
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
  c->req_done = 1;
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

/* The request head; NULL when out of memory. "Connection" is added unless the caller set one:
 * keep-alive when the connection may be reused, else close. */
static char *make_head(const rill_http_request_opts_t *o, int keep, size_t *len) {
  size_t cap = 256 + strlen(o->method) + strlen(o->path) + strlen(o->host);
  for (size_t i = 0; i < 2 * o->nheaders; i++) cap += strlen(o->headers[i]) + 4;
  char *h = malloc(cap);
  if (h == NULL) return NULL;
  int has_host = 0, has_conn = 0;
  for (size_t i = 0; i < o->nheaders; i++) {
    if (strcasecmp(o->headers[2 * i], "host") == 0) has_host = 1;
    if (strcasecmp(o->headers[2 * i], "connection") == 0) has_conn = 1;
  }
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
  if (!has_conn)
    n += (size_t)snprintf(h + n, cap - n, "Connection: %s\r\n", keep ? "keep-alive" : "close");
  n += (size_t)snprintf(h + n, cap - n, "\r\n");
  *len = n;
  return h;
}

/* A "close" token in a Connection header of the caller's. */
static int asks_close(const rill_http_request_opts_t *o) {
  for (size_t i = 0; i < o->nheaders; i++) {
    if (strcasecmp(o->headers[2 * i], "connection") != 0) continue;
    const char *v = o->headers[2 * i + 1];
    for (const char *p = v; (p = strcasestr(p, "close")) != NULL; p += 5) {
      int starts = p == v || p[-1] == ',' || p[-1] == ' ' || p[-1] == '\t';
      int ends = p[5] == 0 || p[5] == ',' || p[5] == ' ' || p[5] == '\t';
      if (starts && ends) return 1;
    }
  }
  return 0;
}

/* Methods that RFC 9110 calls idempotent: sending them twice does no harm. */
static int idempotent(const char *m) {
  static const char *const list[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
    if (strcmp(m, list[i]) == 0) return 1;
  return 0;
}

int rill_http_request(rill_loop_t *loop, const rill_http_request_opts_t *o,
                      rill_http_response_cb cb, void *arg, rill_stream_t **req) {
  if (loop == NULL || o == NULL || cb == NULL || req == NULL || o->port <= 0 || o->port > 65535 ||
      bad_text(o->method) || bad_text(o->host) || bad_text(o->path) || o->method[0] == 0 ||
      strchr(o->method, ' ') || o->path[0] == 0 || strchr(o->path, ' ') ||
      o->content_length < RILL_HTTP_NO_BODY || strlen(o->host) >= sizeof(((cli_t *)0)->host))
    return UV_EINVAL;
  for (size_t i = 0; i < 2 * o->nheaders; i++)
    if (bad_text(o->headers[i]) ||
        (i % 2 == 0 && (o->headers[i][0] == 0 || strchr(o->headers[i], ':'))))
      return UV_EINVAL;
  cli_t *c = calloc(1, sizeof *c);
  if (c == NULL) return UV_ENOMEM;
  c->cb = cb;
  c->arg = arg;
  c->loop = loop;
  rill_chain_init(&c->kept);
  c->port = o->port;
  snprintf(c->host, sizeof c->host, "%s", o->host);
  c->chunked = o->content_length == RILL_HTTP_CHUNKED;
  if (o->agent && !o->agent->freed) {
    c->agent = o->agent;
    c->agent->refs++;
  }
  c->keep = c->agent && !asks_close(o);
  c->retry_ok = idempotent(o->method);
  rill_http_parser_opts_t po = {RILL_HTTP_RESPONSE, 0};
  c->head = make_head(o, c->keep, &c->hlen);
  int r = c->head ? rill_http_parser_new(&c->p, &po, &parser_cbs, c) : UV_ENOMEM;
  if (r) {
    cli_free(c);
    return r;
  }
  if (strcmp(o->method, "HEAD") == 0) rill_http_parser_skip_body(c->p);
  rill_stream_opts_t wo = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  r = rill_stream_new(loop, &creq_impl, c, &wo, &c->req);
  if (r == 0) r = open_conn(c);
  if (r) {
    if (c->req) {
      c->refs = 1;
      c->cb_done = c->failed = 1;
      rill_stream_unref(c->req); /* frees c through its free hook */
    } else {
      cli_free(c);
    }
    return r;
  }
  c->refs = 2; /* the socket's close and the request stream */
  c->own_req = 1;
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
