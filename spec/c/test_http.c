/* spec/c/test_http.c: the native HTTP server and client together on one loop, from C. */
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "error.h"
#include "http.h"
#include "loop.h"
#include "pipe.h"
#include "stream.h"
#include "tcp.h"
#include "test.h"

static rill_loop_t L;
static rill_http_server_t *srv;

/* ---- a collecting sink ---- */

typedef struct {
  char got[1 << 16];
  size_t len;
  int done;
  int code;
} sink_t;

static void sink_write(rill_stream_t *s, const rill_chunk_t *c) {
  sink_t *k = rill_stream_data(s);
  size_t n = c->view.len;
  if (k->len + n < sizeof k->got) memcpy(k->got + k->len, rill_view_data(&c->view), n);
  k->len += n;
  rill_stream_write_done(s, NULL);
}

static const rill_stream_impl_t sink_impl = {.write = sink_write};

static void sink_done(rill_err_t *err, void *arg) {
  sink_t *k = arg;
  k->done = 1;
  k->code = err ? err->code : 0;
}

/* Pipes src into a new sink k; the pipeline takes src's reference. */
static void collect(rill_stream_t *src, sink_t *k) {
  rill_stream_opts_t o = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  rill_stream_t *dst;
  CHECK_INT(rill_stream_new(&L, &sink_impl, k, &o, &dst), 0);
  rill_stream_t *st[2] = {src, dst};
  CHECK_INT(rill_pipeline(st, 2, sink_done, k), 0);
  rill_stream_unref(src);
  rill_stream_unref(dst);
}

/* ---- the server: echoes the body after "method path:" ---- */

typedef struct {
  rill_stream_t *res;
  sink_t body;
  char prefix[256];
} job_t;

static int requests;
static int last_peer_port; /* the client port of the latest request */

static void job_body_done(rill_err_t *err, void *arg) {
  job_t *j = arg;
  if (err == NULL) {
    CHECK_INT(rill_http_res_header(j->res, "X-Test", "1"), 0);
    CHECK_INT(rill_http_res_header(j->res, "Bad\r\nName", "1"), UV_EINVAL);
    CHECK_INT(rill_http_res_status(j->res, 99), UV_EINVAL);
    CHECK_INT(rill_http_res_status(j->res, 201), 0);
    rill_stream_write_bytes(j->res, j->prefix, strlen(j->prefix), NULL, NULL);
    if (j->body.len) rill_stream_write_bytes(j->res, j->body.got, j->body.len, NULL, NULL);
    CHECK(rill_http_res_head_sent(j->res));
    CHECK_INT(rill_http_res_status(j->res, 500), RILL_ESTREAM_ALREADY_FINISHED);
    rill_stream_end(j->res, NULL, NULL, NULL);
  }
  rill_stream_unref(j->res);
  free(j);
}

static void on_request(rill_http_server_t *s, rill_stream_t *req, rill_stream_t *res,
                       const rill_http_head_t *head, void *arg) {
  requests++;
  char ip[64];
  CHECK_INT(rill_http_peer(req, ip, sizeof ip, &last_peer_port), 0);
  CHECK_STR(ip, "127.0.0.1");
  job_t *j = calloc(1, sizeof *j);
  j->res = res;
  snprintf(j->prefix, sizeof j->prefix, "%s %s:", head->method, head->path);
  rill_stream_opts_t o = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  rill_stream_t *dst;
  CHECK_INT(rill_stream_new(&L, &sink_impl, &j->body, &o, &dst), 0);
  rill_stream_t *st[2] = {req, dst};
  CHECK_INT(rill_pipeline(st, 2, job_body_done, j), 0);
  rill_stream_unref(req);
  rill_stream_unref(dst);
}

/* ---- client side ---- */

typedef struct {
  int called, status, code;
  sink_t body;
} resp_t;

static void on_response(rill_stream_t *res, const rill_http_head_t *head, rill_err_t *err,
                        void *arg) {
  resp_t *r = arg;
  r->called++;
  if (err) {
    r->code = err->code;
    return;
  }
  r->status = head->status;
  collect(res, &r->body);
}

static rill_http_agent_t *agent; /* requests go through it when set */

static void request(const char *method, const char *path, const char *body, int64_t len, int port,
                    unsigned timeout, resp_t *r) {
  memset(r, 0, sizeof *r);
  const char *hdrs[] = {"X-Client", "c"};
  rill_http_request_opts_t o = {method, "127.0.0.1", port, path, hdrs, 1, len, timeout, agent};
  rill_stream_t *req;
  CHECK_INT(rill_http_request(&L, &o, on_response, r, &req), 0);
  if (body) rill_stream_write_bytes(req, body, strlen(body), NULL, NULL);
  rill_stream_end(req, NULL, NULL, NULL);
  rill_stream_unref(req);
}

static void test_round_trips(void) {
  CHECK_INT(rill_loop_init(&L, NULL), 0);
  rill_http_server_opts_t so = {"127.0.0.1", 0, 0, 0, 0};
  CHECK_INT(rill_http_listen(&L, &so, on_request, NULL, &srv), 0);
  int port = rill_http_server_port(srv);
  CHECK(port > 0);
  resp_t a, b, c, d;
  request("GET", "/a?x=1", NULL, RILL_HTTP_NO_BODY, port, 0, &a);
  request("POST", "/b", "hello", 5, port, 0, &b);
  request("PUT", "/c", "chunked body", RILL_HTTP_CHUNKED, port, 0, &c);
  request("HEAD", "/d", NULL, RILL_HTTP_NO_BODY, port, 0, &d);
  while (!(a.body.done && b.body.done && c.body.done && d.body.done))
    rill_loop_run(&L, UV_RUN_ONCE);
  CHECK_INT(a.status, 201);
  a.body.got[a.body.len] = 0;
  CHECK_STR(a.body.got, "GET /a?x=1:");
  b.body.got[b.body.len] = 0;
  CHECK_STR(b.body.got, "POST /b:hello");
  c.body.got[c.body.len] = 0;
  CHECK_STR(c.body.got, "PUT /c:chunked body");
  CHECK_INT(d.status, 201);
  CHECK_INT(d.body.len, 0);
  CHECK_INT(requests, 4);
  rill_http_server_free(srv);
  rill_loop_run(&L, UV_RUN_DEFAULT);
  CHECK_INT(rill_loop_pending(&L), 0);
  rill_loop_free(&L);
  rill_slab_pool_trim();
}

static void test_client_errors(void) {
  CHECK_INT(rill_loop_init(&L, NULL), 0);
  resp_t r;
  rill_http_request_opts_t bad = {"GET", "127.0.0.1",       80, "/a b", NULL,
                                  0,     RILL_HTTP_NO_BODY, 0,  NULL};
  rill_stream_t *req = NULL;
  CHECK_INT(rill_http_request(&L, &bad, on_response, &r, &req), UV_EINVAL);
  bad.path = "/";
  bad.port = 0;
  CHECK_INT(rill_http_request(&L, &bad, on_response, &r, &req), UV_EINVAL);
  CHECK(req == NULL);
  /* Refused: a port that was just free. */
  rill_http_server_opts_t so = {"127.0.0.1", 0, 0, 0, 0};
  CHECK_INT(rill_http_listen(&L, &so, on_request, NULL, &srv), 0);
  int port = rill_http_server_port(srv);
  rill_http_server_free(srv);
  rill_loop_run(&L, UV_RUN_NOWAIT);
  request("GET", "/", NULL, RILL_HTTP_NO_BODY, port, 0, &r);
  rill_loop_run(&L, UV_RUN_DEFAULT);
  CHECK_INT(r.called, 1);
  CHECK_INT(r.code, UV_ECONNREFUSED);
  rill_loop_free(&L);
  rill_slab_pool_trim();
}

/* A listener that accepts and never answers: the client times out. */
static rill_stream_t *silent_conn;
static void silent_cb(rill_tcp_server_t *s, int status, rill_stream_t *conn, void *arg) {
  if (conn) silent_conn = conn;
}

static void test_client_timeout(void) {
  CHECK_INT(rill_loop_init(&L, NULL), 0);
  rill_tcp_server_t *t;
  CHECK_INT(rill_tcp_listen(&L, "127.0.0.1", 0, 16, 0, silent_cb, NULL, &t), 0);
  resp_t r;
  request("GET", "/", NULL, RILL_HTTP_NO_BODY, rill_tcp_server_port(t), 100, &r);
  while (!r.called) rill_loop_run(&L, UV_RUN_ONCE);
  CHECK_INT(r.code, UV_ETIMEDOUT);
  if (silent_conn) {
    rill_stream_destroy(silent_conn, NULL);
    rill_stream_unref(silent_conn);
  }
  rill_tcp_server_free(t);
  rill_loop_run(&L, UV_RUN_DEFAULT);
  rill_loop_free(&L);
  rill_slab_pool_trim();
}

/* Through an agent, one request after the other uses one connection; freeing the agent closes
 * it. */
static void test_agent_reuse(void) {
  CHECK_INT(rill_loop_init(&L, NULL), 0);
  rill_http_server_opts_t so = {"127.0.0.1", 0, 0, 0, 0};
  CHECK_INT(rill_http_listen(&L, &so, on_request, NULL, &srv), 0);
  int port = rill_http_server_port(srv);
  rill_http_agent_opts_t ao = {0, 0};
  CHECK_INT(rill_http_agent_new(&L, &ao, &agent), 0);
  int ports[3];
  for (int i = 0; i < 3; i++) {
    resp_t r;
    request(i == 1 ? "POST" : "GET", "/r", i == 1 ? "body" : NULL, i == 1 ? 4 : RILL_HTTP_NO_BODY,
            port, 0, &r);
    while (!r.body.done) rill_loop_run(&L, UV_RUN_ONCE);
    CHECK_INT(r.status, 201);
    ports[i] = last_peer_port;
    CHECK_INT(rill_http_agent_idle(agent), 1);
  }
  CHECK_INT(ports[0], ports[1]);
  CHECK_INT(ports[0], ports[2]);
  rill_http_agent_free(agent);
  agent = NULL;
  rill_http_server_free(srv);
  rill_loop_run(&L, UV_RUN_DEFAULT);
  CHECK_INT(rill_loop_pending(&L), 0);
  rill_loop_free(&L);
  rill_slab_pool_trim();
}

int main(void) {
  RUN(test_round_trips);
  RUN(test_agent_reuse);
  RUN(test_client_errors);
  RUN(test_client_timeout);
  fprintf(stderr, "test_http: all passed\n");
  return 0;
}
