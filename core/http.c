/* core/http.c: the HTTP/1.1 server: connections, exchanges, request and response streams. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "splice.h"
#include "tcp.h"

typedef struct conn_s conn_t;
typedef struct exch_s exch_t;

struct rill_http_server_s {
  rill_loop_t *loop;
  rill_tcp_server_t *tcp;
  rill_http_request_cb cb;
  void *arg;
  size_t max_head;
  unsigned headers_ms, keepalive_ms;
  conn_t *conns; /* open connections */
  int closed;
};

struct conn_s {
  conn_t *prev, *next;
  rill_http_server_t *srv; /* NULL once the server was freed */
  rill_stream_t *sock;     /* one reference */
  rill_listener_t l;
  rill_http_parser_t *p;
  rill_chain_t in;        /* received, not parsed yet */
  const rill_view_t *cur; /* while parsing: the view the parser's data points into */
  exch_t *ex;             /* the exchange whose request is parsed or answered now */
  int refs;               /* the socket's close, parse ticks, in-flight callbacks */
  int blocked;            /* the request body stream is full: the socket is paused */
  int waiting;            /* a request ended; its response has not */
  int dead;               /* no more requests: failed, closing, or closed */
  int parsing;
  int peer_ended; /* the client half-closed: answer what was asked, then close */
  /* One timer: the head must be complete headers_ms after it began (or after the connection
   * opened), and an idle keep-alive connection closes after keepalive_ms. */
  uv_timer_t timer;
  rill_handle_t th;
  unsigned headers_ms, keepalive_ms;
  int head_timed;   /* the headers deadline is running */
  char peer_ip[48]; /* the client's address, read once at accept ("" if unknown) */
  int peer_port;
};

struct exch_s {
  conn_t *c; /* NULL once detached from its connection */
  rill_stream_t *req, *res;
  int refs; /* streams not yet freed */
  int req_done, res_done, discard;
  int head_only, keep_alive, minor, expect, continued;
  int status;
  char *hbuf; /* response header lines set so far */
  size_t hlen, hcap;
  int has_len, conn_close, chunked, head_sent, write_wait, has_date;
  int64_t content_length; /* the Content-Length header's value; -1 when absent or unreadable */
  int64_t body_bytes;     /* written so far */
};

static const rill_stream_impl_t req_impl, res_impl;

/* Once our side of a connection is shut down, the peer has this long to read the last answer
 * and close; then the socket closes anyway, so a client that never closes holds no descriptor
 * (nginx's lingering close, bounded). */
#define LINGER_MS 1000

/* ---- small helpers ---- */

static void conn_unref(conn_t *c) {
  if (--c->refs > 0) return;
  rill_http_parser_free(c->p);
  rill_chain_clear(&c->in);
  free(c);
}

static void conn_fail(conn_t *c, int code, int err);

static void timer_cb(uv_timer_t *t) {
  conn_t *c = RILL_CONTAINER_OF(t, conn_t, timer);
  if (c->ex) return;
  if (!c->dead && c->head_timed) {
    /* The head did not arrive in time (slowloris): 408, as Node answers, then close. */
    conn_fail(c, 408, UV_ETIMEDOUT);
    return;
  }
  /* An idle keep-alive connection closes quietly; a lingering one closes now. */
  c->dead = 1;
  rill_stream_destroy(c->sock, NULL);
}

static void timer_closed(rill_handle_t *h) {
  conn_unref(RILL_CONTAINER_OF(h, conn_t, th));
}

static void arm(conn_t *c, unsigned ms) {
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_timer_start(&c->timer, timer_cb, ms, 0);
}

/* The end of our side went out (or failed): start the linger. */
static void ended_cb(rill_stream_t *s, rill_err_t *err, void *arg) {
  conn_t *c = arg;
  (void)s;
  if (err == NULL) arm(c, LINGER_MS);
  conn_unref(c);
}

/* No more requests on c: shut our side down once what is queued went out, keep reading (and
 * dropping) until the peer closes or the linger ends. */
static void conn_end(conn_t *c) {
  c->dead = 1;
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_timer_stop(&c->timer);
  c->refs++;
  if (rill_stream_end(c->sock, NULL, ended_cb, c) != 0) conn_unref(c);
}

static void exch_unref(exch_t *ex) {
  if (--ex->refs > 0) return;
  free(ex->hbuf);
  free(ex);
}

static int sock_write(conn_t *c, const void *p, size_t n) {
  return rill_stream_write_bytes(c->sock, p, n, NULL, NULL);
}

static const char *reason_of(int code) {
  switch (code) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

/* "Date: <IMF-fixdate>\r\n" for now, remade at most once a second (nginx caches its time
 * strings the same way); names spelled out, as strftime's follow the locale. */
static const char *date_line(void) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  static _Thread_local time_t last = (time_t)-1;
  static _Thread_local char line[48];
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(line, sizeof line, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    last = now;
  }
  return line;
}

static int hbuf_add(exch_t *ex, const char *p, size_t n) {
  if (n > ex->hcap - ex->hlen) {
    size_t cap = ex->hcap ? ex->hcap : 256;
    while (cap - ex->hlen < n) cap *= 2;
    char *b = realloc(ex->hbuf, cap);
    if (b == NULL) return UV_ENOMEM;
    ex->hbuf = b;
    ex->hcap = cap;
  }
  memcpy(ex->hbuf + ex->hlen, p, n);
  ex->hlen += n;
  return 0;
}

/* ---- connection flow ---- */

static void parse(conn_t *c);

static void parse_tick(void *arg) {
  conn_t *c = arg;
  parse(c);
  conn_unref(c);
}

static void schedule_parse(conn_t *c) {
  c->refs++;
  if (rill_loop_next_tick(rill_stream_loop(c->sock), parse_tick, c) != 0) conn_unref(c);
}

/* Reads from the socket only while a request may use the bytes. */
static void update_flow(conn_t *c) {
  if (c->dead) {
    /* Nothing more is parsed, but the socket must see the peer's end to close. */
    if (!(rill_stream_state(c->sock) & RILL_SS_DESTROYED)) rill_stream_resume(c->sock);
    return;
  }
  if (c->waiting || c->blocked)
    rill_stream_pause(c->sock);
  else
    rill_stream_resume(c->sock);
}

/* The exchange is over for the connection: its streams live on for their owners. */
static void exch_detach(exch_t *ex) {
  conn_t *c = ex->c;
  if (c == NULL) return;
  ex->c = NULL;
  if (c->ex == ex) c->ex = NULL;
  rill_stream_t *req = ex->req, *res = ex->res;
  ex->req = ex->res = NULL;
  /* A body nobody read is dropped, as Node's _dump does: flowing with no listener, it ends and
   * closes, and does not wait for the garbage collector. */
  if (!(rill_stream_state(req) & (RILL_SS_DESTROYED | RILL_SS_END_EMITTED)))
    rill_stream_resume(req);
  rill_stream_unref(req);
  rill_stream_unref(res);
  conn_unref(c);
}

/* The request and its response have both ended: on to the next one, or close. */
static void exch_done(exch_t *ex) {
  conn_t *c = ex->c;
  int keep = ex->keep_alive && !(c && c->peer_ended);
  exch_detach(ex);
  if (c == NULL || c->dead) return;
  c->waiting = 0;
  c->blocked = 0;
  if (!keep) {
    conn_end(c);
    update_flow(c);
    return;
  }
  c->head_timed = 0;
  arm(c, c->keepalive_ms);
  schedule_parse(c);
}

/* The connection cannot go on: a bad request (answered with code, when no response started)
 * or a lost peer. The current exchange's streams fail with err. */
static void conn_fail(conn_t *c, int code, int err) {
  c->dead = 1;
  exch_t *ex = c->ex;
  int head_sent = ex && ex->head_sent;
  if (ex) {
    if (ex->req && !ex->req_done) rill_stream_destroy_code(ex->req, err);
    /* As in Node, a response whose client went away closes without an "error": a pipe into it
     * just stops, pipeline and finished see a premature close. */
    if (ex->res && !ex->res_done) rill_stream_destroy(ex->res, NULL);
    exch_detach(ex);
  }
  if (code && !head_sent && !(rill_stream_state(c->sock) & RILL_SS_DESTROYED)) {
    char line[160];
    int n = snprintf(line, sizeof line,
                     "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", code,
                     reason_of(code));
    sock_write(c, line, (size_t)n);
    conn_end(c);
  } else if (code) {
    rill_stream_destroy(c->sock, NULL);
  }
  update_flow(c);
}

static void parse(conn_t *c) {
  if (c->parsing || c->dead) return;
  c->parsing = 1;
  c->refs++;
  rill_view_t *v;
  while (!c->dead && !c->waiting && (v = rill_chain_peek(&c->in)) != NULL) {
    size_t used = 0;
    c->cur = v;
    int r = rill_http_parser_execute(c->p, (const char *)rill_view_data(v), v->len, &used);
    c->cur = NULL;
    if (r) {
      conn_fail(c, r == RILL_EHTTP_HEADER_OVERFLOW ? 431 : 400, r);
      break;
    }
    rill_chain_consume(&c->in, used);
    if (c->ex == NULL && !c->head_timed && rill_http_parser_busy(c->p)) {
      c->head_timed = 1; /* a new head began: it has headers_ms to arrive */
      arm(c, c->headers_ms);
    }
  }
  update_flow(c);
  c->parsing = 0;
  conn_unref(c);
}

/* ---- parser callbacks ---- */

static int on_head(void *ud, const rill_http_head_t *h) {
  conn_t *c = ud;
  exch_t *ex = calloc(1, sizeof *ex);
  if (ex == NULL) return UV_ENOMEM;
  ex->status = 200;
  ex->content_length = -1;
  ex->head_only = strcmp(h->method, "HEAD") == 0;
  ex->keep_alive = h->keep_alive;
  ex->minor = h->version_minor;
  ex->expect = h->expect_continue;
  rill_loop_t *loop = rill_stream_loop(c->sock);
  rill_stream_opts_t ro = {RILL_STREAM_READABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  rill_stream_opts_t wo = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  int r = rill_stream_new(loop, &req_impl, ex, &ro, &ex->req);
  if (r == 0) {
    ex->refs++;
    r = rill_stream_new(loop, &res_impl, ex, &wo, &ex->res);
    if (r == 0) ex->refs++;
  }
  if (r) {
    if (ex->req) {
      rill_stream_unref(ex->req); /* frees ex through its free hook */
    } else {
      free(ex);
    }
    return r;
  }
  ex->c = c;
  c->refs++;
  c->ex = ex;
  uv_timer_stop(&c->timer);
  /* The callback gets references of its own; the exchange keeps one of each. */
  rill_stream_ref(ex->req);
  rill_stream_ref(ex->res);
  rill_http_server_t *srv = c->srv;
  if (srv && srv->cb) {
    srv->cb(srv, ex->req, ex->res, h, srv->arg);
  } else {
    rill_stream_unref(ex->req);
    rill_stream_unref(ex->res);
  }
  return 0;
}

static int on_body(void *ud, const char *at, size_t len) {
  conn_t *c = ud;
  exch_t *ex = c->ex;
  if (ex == NULL || ex->discard || ex->req == NULL ||
      (rill_stream_state(ex->req) & RILL_SS_DESTROYED))
    return 0;
  rill_view_t piece;
  const char *base = (const char *)rill_view_data(c->cur);
  rill_view_slice(&piece, c->cur, (size_t)(at - base), len); /* no copy */
  rill_chunk_t ch;
  rill_chunk_from_view(&ch, &piece);
  if (rill_stream_push(ex->req, &ch) == 0) c->blocked = 1;
  return 0;
}

static int on_end(void *ud) {
  conn_t *c = ud;
  exch_t *ex = c->ex;
  if (ex == NULL) return 0;
  ex->req_done = 1;
  if (ex->req && !ex->discard) rill_stream_push(ex->req, NULL);
  c->blocked = 0;
  if (ex->res_done) {
    exch_done(ex);
  } else {
    c->waiting = 1;
  }
  return 0;
}

static const rill_http_callbacks_t parser_cbs = {on_head, on_body, on_end};

/* ---- socket events ---- */

static void sock_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  conn_t *c = RILL_CONTAINER_OF(l, conn_t, l);
  switch (ev->type) {
    case RILL_EV_DATA: {
      if (c->dead) break;
      rill_chunk_t ch;
      rill_chunk_dup(&ch, ev->chunk);
      if (rill_chain_push(&c->in, &ch.view) != 0) {
        rill_chunk_release(&ch);
        conn_fail(c, 0, UV_ENOMEM);
        rill_stream_destroy(c->sock, NULL);
        break;
      }
      parse(c);
      break;
    }
    case RILL_EV_DRAIN: {
      exch_t *ex = c->ex;
      if (ex && ex->write_wait) {
        ex->write_wait = 0;
        rill_stream_write_done(ex->res, NULL);
      }
      break;
    }
    case RILL_EV_END:
      /* The peer is done sending: a request cut short fails; otherwise the response (if any)
       * still goes out. */
      c->peer_ended = 1;
      if (!c->dead && rill_http_parser_finish(c->p) != 0) {
        conn_fail(c, 0, RILL_ESTREAM_PREMATURE_CLOSE);
        rill_stream_destroy(c->sock, NULL);
      } else if (c->ex == NULL && !c->dead) {
        conn_end(c);
      }
      break;
    case RILL_EV_ERROR:
    case RILL_EV_CLOSE: {
      int err = ev->type == RILL_EV_ERROR && ev->err ? ev->err->code : UV_ECONNRESET;
      if (c->ex) {
        exch_t *ex = c->ex;
        c->dead = 1;
        if (ex->req && !ex->req_done) rill_stream_destroy_code(ex->req, err);
        /* As in Node, a response whose client went away closes without an "error": a pipe into it
         * just stops, pipeline and finished see a premature close. */
        if (ex->res && !ex->res_done) rill_stream_destroy(ex->res, NULL);
        exch_detach(ex);
      }
      c->dead = 1;
      if (ev->type == RILL_EV_CLOSE) {
        rill_stream_unlisten(&c->l);
        rill_handle_close(&c->th);
        if (c->srv) {
          if (c->prev)
            c->prev->next = c->next;
          else
            c->srv->conns = c->next;
          if (c->next) c->next->prev = c->prev;
        }
        c->srv = NULL;
        rill_stream_unref(c->sock);
        conn_unref(c);
      }
      break;
    }
    default:
      break;
  }
}

static void on_connection(rill_tcp_server_t *tcp, int status, rill_stream_t *sock, void *arg) {
  rill_http_server_t *srv = arg;
  if (status < 0) return; /* EMFILE and friends: keep listening */
  conn_t *c = calloc(1, sizeof *c);
  rill_http_parser_opts_t po = {RILL_HTTP_REQUEST, srv->max_head};
  if (c == NULL || rill_http_parser_new(&c->p, &po, &parser_cbs, c) != 0) {
    free(c);
    rill_stream_destroy(sock, NULL);
    rill_stream_unref(sock);
    return;
  }
  c->srv = srv;
  c->sock = sock;
  c->refs = 1; /* released at the socket's close */
  rill_chain_init(&c->in);
  c->headers_ms = srv->headers_ms;
  c->keepalive_ms = srv->keepalive_ms;
  if (rill_tcp_address(sock, 1, c->peer_ip, sizeof c->peer_ip, &c->peer_port) != 0)
    c->peer_ip[0] = 0;
  rill_loop_t *loop = rill_stream_loop(sock);
  uv_timer_init(loop->uv, &c->timer);
  rill_handle_track(loop, &c->th, (uv_handle_t *)&c->timer, timer_closed);
  c->refs++; /* released when the timer is closed */
  c->head_timed = 1;
  arm(c, c->headers_ms);
  c->next = srv->conns;
  if (c->next) c->next->prev = c;
  srv->conns = c;
  c->l.mask = RILL_EVBIT(RILL_EV_DATA) | RILL_EVBIT(RILL_EV_DRAIN) | RILL_EVBIT(RILL_EV_END) |
              RILL_EVBIT(RILL_EV_ERROR) | RILL_EVBIT(RILL_EV_CLOSE);
  c->l.cb = sock_event;
  rill_stream_listen(sock, &c->l);
  rill_stream_watch(sock, RILL_EV_ERROR, 1); /* errors are handled here */
  rill_stream_watch(sock, RILL_EV_DATA, 1);  /* flowing */
}

/* ---- request body stream ---- */

static void send_continue(exch_t *ex) {
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  if (ex->expect && !ex->continued && !ex->head_sent && ex->c && !ex->c->dead) {
    ex->continued = 1;
    sock_write(ex->c, cont, sizeof cont - 1);
  }
}

static void req_read(rill_stream_t *s, size_t size) {
  exch_t *ex = rill_stream_data(s);
  conn_t *c = ex->c;
  if (c == NULL) return;
  send_continue(ex);
  if (c->blocked) {
    c->blocked = 0;
    update_flow(c);
  }
}

static void req_destroy(rill_stream_t *s, rill_err_t *err) {
  exch_t *ex = rill_stream_data(s);
  /* Nobody wants the rest of the body: it is read and dropped (keep-alive stays possible). */
  ex->discard = 1;
  if (ex->c && ex->c->blocked) {
    ex->c->blocked = 0;
    update_flow(ex->c);
  }
  rill_stream_destroy_done(s, err);
}

static void exch_free(rill_stream_t *s) {
  exch_unref(rill_stream_data(s));
}

static const rill_stream_impl_t req_impl = {
    .read = req_read, .destroy = req_destroy, .free = exch_free};

/* ---- response stream ---- */

/* Settles the framing and lays the head out in buf (small: a stack buffer of n bytes) or a new
 * allocation; *out gets the head, *len its length. 0 or UV_ENOMEM. */
static int build_head(exch_t *ex, int ending, char *small, size_t n_small, char **out,
                      size_t *len) {
  ex->head_sent = 1;
  if (!ex->has_len && !ex->chunked) {
    if (ending) {
      /* The whole body is known to be empty. */
      if (!ex->head_only && ex->status >= 200 && ex->status != 204 && ex->status != 304)
        hbuf_add(ex, "Content-Length: 0\r\n", 19);
      ex->has_len = 1;
    } else if (ex->minor >= 1) {
      ex->chunked = 1;
      if (!ex->head_only) hbuf_add(ex, "Transfer-Encoding: chunked\r\n", 28);
    } else {
      ex->keep_alive = 0; /* HTTP/1.0 without a length: the end of the body is the close */
    }
  }
  if (ex->conn_close) ex->keep_alive = 0;
  char line[128];
  int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", ex->status, reason_of(ex->status));
  const char *conn = "";
  if (!ex->conn_close) {
    if (!ex->keep_alive)
      conn = "Connection: close\r\n";
    else if (ex->minor == 0)
      conn = "Connection: keep-alive\r\n";
  }
  const char *date = ex->has_date ? "" : date_line();
  size_t cl = strlen(conn), dl = strlen(date), total = (size_t)n + dl + ex->hlen + cl + 2;
  char *h = small && total <= n_small ? small : malloc(total);
  if (h == NULL) return UV_ENOMEM;
  memcpy(h, line, (size_t)n);
  memcpy(h + n, date, dl);
  if (ex->hlen) memcpy(h + n + dl, ex->hbuf, ex->hlen);
  memcpy(h + (size_t)n + dl + ex->hlen, conn, cl);
  memcpy(h + total - 2, "\r\n", 2);
  *out = h;
  *len = total;
  return 0;
}

static int send_head(exch_t *ex, int ending) {
  /* One write for the whole head: one slab and one iovec, not one per line. */
  char small[1024], *h;
  size_t len;
  int r = build_head(ex, ending, small, sizeof small, &h, &len);
  if (r) return r;
  r = sock_write(ex->c, h, len);
  if (h != small) free(h);
  return r;
}

static void res_write(rill_stream_t *s, const rill_chunk_t *chunk) {
  exch_t *ex = rill_stream_data(s);
  conn_t *c = ex->c;
  if (c == NULL || (rill_stream_state(c->sock) & RILL_SS_DESTROYED)) {
    rill_err_t *e = rill_err_new(UV_ECONNRESET, NULL, NULL, NULL);
    rill_stream_write_done(s, e);
    rill_err_unref(e);
    return;
  }
  if (!ex->head_sent) send_head(ex, 0);
  if (ex->head_only || chunk->view.len == 0) {
    rill_stream_write_done(s, NULL);
    return;
  }
  ex->body_bytes += (int64_t)chunk->view.len;
  if (ex->chunked) {
    char line[32];
    int n = snprintf(line, sizeof line, "%zx\r\n", chunk->view.len);
    sock_write(c, line, (size_t)n);
  }
  rill_chunk_t dup;
  rill_chunk_dup(&dup, chunk);
  int r = rill_stream_write(c->sock, &dup, NULL, NULL);
  if (ex->chunked && r >= 0) r = sock_write(c, "\r\n", 2);
  if (r < 0) {
    rill_err_t *e = rill_err_new(r, NULL, NULL, NULL);
    rill_stream_write_done(s, e);
    rill_err_unref(e);
  } else if (r == 1) {
    ex->write_wait = 1; /* acknowledged at the socket's drain: backpressure */
  } else {
    rill_stream_write_done(s, NULL);
  }
}

static void res_final(rill_stream_t *s) {
  exch_t *ex = rill_stream_data(s);
  conn_t *c = ex->c;
  if (c == NULL || (rill_stream_state(c->sock) & RILL_SS_DESTROYED)) {
    rill_err_t *e = rill_err_new(UV_ECONNRESET, NULL, NULL, NULL);
    rill_stream_final_done(s, e);
    rill_err_unref(e);
    return;
  }
  if (!ex->head_sent) send_head(ex, 1);
  if (ex->chunked && !ex->head_only) sock_write(c, "0\r\n\r\n", 5);
  /* A body shorter than its Content-Length: the client learns it from the close, instead of
   * waiting for bytes that never come while the connection carries the next response. */
  if (ex->content_length >= 0 && ex->body_bytes < ex->content_length && !ex->head_only &&
      ex->status != 204 && ex->status != 304)
    ex->keep_alive = 0;
  ex->res_done = 1;
  rill_stream_final_done(s, NULL);
  if (ex->req_done) {
    exch_done(ex);
  } else {
    /* The response ended first: the rest of the request body is read and dropped. */
    ex->discard = 1;
    c->blocked = 0;
    update_flow(c);
  }
}

static void res_destroy(rill_stream_t *s, rill_err_t *err) {
  exch_t *ex = rill_stream_data(s);
  conn_t *c = ex->c;
  if (c && !ex->res_done && !c->dead) {
    /* The handler gave up on the response: the connection cannot be reused. */
    conn_fail(c, ex->head_sent ? 0 : 500, err ? err->code : RILL_ESTREAM_DESTROYED);
    if (ex->head_sent) rill_stream_destroy(c->sock, NULL);
  }
  rill_stream_destroy_done(s, err);
}

static const rill_stream_impl_t res_impl = {
    .write = res_write, .final = res_final, .destroy = res_destroy, .free = exch_free};

static exch_t *res_exch(const rill_stream_t *res) {
  if (res == NULL || rill_stream_impl(res) != &res_impl) return NULL;
  return rill_stream_data(res);
}

int rill_http_res_status(rill_stream_t *res, int code) {
  exch_t *ex = res_exch(res);
  if (ex == NULL || code < 100 || code > 999) return UV_EINVAL;
  if (ex->head_sent) return RILL_ESTREAM_ALREADY_FINISHED;
  ex->status = code;
  return 0;
}

static int bad_text(const char *s) {
  for (; *s; s++)
    if (*s == '\r' || *s == '\n') return 1;
  return 0;
}

int rill_http_res_header(rill_stream_t *res, const char *name, const char *value) {
  exch_t *ex = res_exch(res);
  if (ex == NULL || name == NULL || value == NULL || name[0] == 0 || bad_text(name) ||
      bad_text(value) || strchr(name, ':'))
    return UV_EINVAL;
  if (ex->head_sent) return RILL_ESTREAM_ALREADY_FINISHED;
  size_t nl = strlen(name), vl = strlen(value);
  size_t old = ex->hlen;
  if (hbuf_add(ex, name, nl) || hbuf_add(ex, ": ", 2) || hbuf_add(ex, value, vl) ||
      hbuf_add(ex, "\r\n", 2)) {
    ex->hlen = old;
    return UV_ENOMEM;
  }
  if (strcasecmp(name, "content-length") == 0) {
    char *end;
    long long n = strtoll(value, &end, 10);
    ex->content_length = !ex->has_len && end != value && *end == 0 && n >= 0 ? n : -1;
    ex->has_len = 1;
  }
  if (strcasecmp(name, "transfer-encoding") == 0 && strcasecmp(value, "chunked") == 0)
    ex->chunked = 1;
  if (strcasecmp(name, "connection") == 0 && strcasecmp(value, "close") == 0) ex->conn_close = 1;
  if (strcasecmp(name, "date") == 0) ex->has_date = 1;
  return 0;
}

int rill_http_peer(rill_stream_t *s, char *ip, size_t n, int *port) {
  if (s == NULL || (rill_stream_impl(s) != &res_impl && rill_stream_impl(s) != &req_impl))
    return UV_EINVAL;
  exch_t *ex = rill_stream_data(s);
  if (ex->c == NULL || ex->c->peer_ip[0] == 0) return UV_ENOTCONN;
  if (strlen(ex->c->peer_ip) >= n) return UV_ENOBUFS;
  strcpy(ip, ex->c->peer_ip);
  *port = ex->c->peer_port;
  return 0;
}

int rill_http_res_head_sent(const rill_stream_t *res) {
  exch_t *ex = res_exch(res);
  return ex ? ex->head_sent : 0;
}

/* ---- the native fast path (core/splice.h): a file piped into a response ---- */

/* The socket of a response that may take a file through sendfile now: a known length (so the
 * end of the copy is the end of the body, no chunk framing), a body that will be sent (not
 * HEAD), nothing written to it yet, and a live connection. */
static rill_stream_t *sink_socket(rill_stream_t *res) {
  exch_t *ex = res_exch(res);
  if (ex == NULL || ex->c == NULL || ex->c->dead || !ex->has_len || ex->content_length < 0 ||
      ex->chunked || ex->head_only || ex->body_bytes || ex->write_wait ||
      (rill_stream_state(ex->c->sock) & (RILL_SS_DESTROYED | RILL_SS_ENDING)))
    return NULL;
  return ex->c->sock;
}

static int sink_begin(rill_stream_t *res, rill_splice_sink_t *out) {
  exch_t *ex = res_exch(res);
  out->prefix = NULL;
  out->prefix_len = 0;
  if (!ex->head_sent && build_head(ex, 0, NULL, 0, &out->prefix, &out->prefix_len) != 0) {
    ex->head_sent = 0; /* nothing changed: the plain pipe sends it */
    return 0;
  }
  out->max = ex->content_length;
  ex->body_bytes = ex->content_length; /* what the copy is to send */
  return 1;
}

static const rill_splice_sink_ops_t sink_ops = {sink_socket, sink_begin};

/* ---- server ---- */

int rill_http_listen(rill_loop_t *loop, const rill_http_server_opts_t *o, rill_http_request_cb cb,
                     void *arg, rill_http_server_t **out) {
  if (loop == NULL || o == NULL || cb == NULL || out == NULL) return UV_EINVAL;
  rill_http_server_t *srv = calloc(1, sizeof *srv);
  if (srv == NULL) return UV_ENOMEM;
  srv->loop = loop;
  srv->cb = cb;
  srv->arg = arg;
  srv->max_head = o->max_header_size;
  srv->headers_ms = o->headers_timeout_ms ? o->headers_timeout_ms : 60000;
  srv->keepalive_ms = o->keepalive_timeout_ms ? o->keepalive_timeout_ms : 5000;
  rill__splice_add_sink(&sink_ops);
  /* Half-open: a client that half-closes after its request still gets the response. */
  int r = rill_tcp_listen(loop, o->host, o->port, 511, RILL_TCP_HALF_OPEN, on_connection, srv,
                          &srv->tcp);
  if (r) {
    free(srv);
    return r;
  }
  *out = srv;
  return 0;
}

int rill_http_server_port(const rill_http_server_t *srv) {
  return srv->tcp ? rill_tcp_server_port(srv->tcp) : 0;
}

void rill_http_server_close(rill_http_server_t *srv) {
  if (srv->closed) return;
  srv->closed = 1;
  rill_tcp_server_close(srv->tcp, NULL, NULL);
}

void rill_http_server_free(rill_http_server_t *srv) {
  if (srv == NULL) return;
  rill_tcp_server_free(srv->tcp);
  srv->tcp = NULL;
  for (conn_t *c = srv->conns, *next; c; c = next) {
    next = c->next;
    c->srv = NULL;
    c->prev = c->next = NULL;
    rill_stream_destroy(c->sock, NULL);
  }
  free(srv);
}
