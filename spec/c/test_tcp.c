/* spec/c/test_tcp.c: TCP servers and connections: echo, half-close, refused, reset, teardown. */
#include <stdlib.h>
#include <string.h>

#include "pipe.h"
#include "tcp.h"
#include "test.h"

static rill_loop_t loop;

static void run(void) {
  rill_loop_run(&loop, UV_RUN_DEFAULT);
}

/* A sink that keeps what it gets. */
typedef struct {
  char buf[1 << 16];
  size_t len;
  int ended;
} sink_t;

static void sink_write(rill_stream_t *s, const rill_chunk_t *c) {
  sink_t *k = rill_stream_data(s);
  size_t n = c->view.len;
  if (k->len + n <= sizeof k->buf) memcpy(k->buf + k->len, rill_view_data(&c->view), n);
  k->len += n;
  rill_stream_write_done(s, NULL);
}

static void sink_final(rill_stream_t *s) {
  sink_t *k = rill_stream_data(s);
  k->ended = 1;
  rill_stream_final_done(s, NULL);
}

static const rill_stream_impl_t sink_impl = {.write = sink_write, .final = sink_final};

static rill_stream_t *sink_new(sink_t *k) {
  memset(k, 0, sizeof *k);
  rill_stream_t *s;
  rill_stream_opts_t o = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  CHECK_INT(rill_stream_new(&loop, &sink_impl, k, &o, &s), 0);
  return s;
}

/* Echo server: each connection is piped into a transform-free loopback (read then write). */
typedef struct {
  rill_stream_t *conn;
  rill_listener_t l;
} echo_t;

static int conns;

static void echo_event(rill_listener_t *l, rill_stream_t *s, const rill_event_t *ev) {
  if (ev->type == RILL_EV_DATA) {
    rill_chunk_t c;
    rill_chunk_dup(&c, ev->chunk);
    rill_stream_write(s, &c, NULL, NULL);
  } else if (ev->type == RILL_EV_END) {
    rill_stream_end(s, NULL, NULL, NULL);
  } else if (ev->type == RILL_EV_CLOSE) {
    echo_t *e = RILL_CONTAINER_OF(l, echo_t, l);
    rill_stream_unlisten(l);
    rill_stream_unref(e->conn);
    free(e);
  }
}

static void on_conn(rill_tcp_server_t *srv, int status, rill_stream_t *conn, void *arg) {
  CHECK_INT(status, 0);
  conns++;
  rill_tcp_server_close(srv, NULL, NULL); /* one connection is all this test wants */
  echo_t *e = calloc(1, sizeof *e);
  e->conn = conn;
  e->l.mask = RILL_EVBIT(RILL_EV_DATA) | RILL_EVBIT(RILL_EV_END) | RILL_EVBIT(RILL_EV_CLOSE);
  e->l.cb = echo_event;
  rill_stream_listen(conn, &e->l);
  rill_stream_watch(conn, RILL_EV_DATA, +1);
}

typedef struct {
  int called, code;
  char msg[128];
} conn_res_t;

static void connected(rill_stream_t *s, rill_err_t *err, void *arg) {
  conn_res_t *r = arg;
  r->called++;
  r->code = err ? err->code : 0;
  if (err) snprintf(r->msg, sizeof r->msg, "%s", rill_err_message(err));
}

static void test_echo(void) {
  rill_tcp_server_t *srv;
  CHECK_INT(rill_tcp_listen(&loop, "127.0.0.1", 0, 16, RILL_TCP_HALF_OPEN, on_conn, NULL, &srv), 0);
  int port = rill_tcp_server_port(srv);
  CHECK(port > 0);
  CHECK_STR(rill_tcp_server_host(srv), "127.0.0.1");
  sink_t k;
  rill_stream_t *out = sink_new(&k);
  rill_stream_t *c;
  conn_res_t r = {0, 0, ""};
  CHECK_INT(rill_tcp_connect(&loop, "localhost", port, RILL_TCP_HALF_OPEN, connected, &r, &c), 0);
  CHECK_INT(r.called, 0); /* never inside the call */
  CHECK_INT(rill_stream_pipe(c, out, 1), 0);
  CHECK_INT(rill_stream_write_bytes(c, "hello ", 6, NULL, NULL), 0);
  rill_chunk_t last;
  CHECK_INT(rill_chunk_from_bytes(&last, "world", 5), 0);
  CHECK_INT(rill_stream_end(c, &last, NULL, NULL), 0); /* half-close: the echo still comes back */
  run();
  CHECK_INT(r.called, 1);
  CHECK_INT(r.code, 0);
  CHECK_INT(k.len, 11);
  CHECK(memcmp(k.buf, "hello world", 11) == 0);
  CHECK_INT(k.ended, 1);
  char ip[64];
  int p;
  (void)rill_tcp_address(c, 0, ip, sizeof ip, &p); /* closed by now: any answer, no crash */
  rill_stream_unref(c);
  rill_stream_unref(out);
  rill_tcp_server_free(srv);
  run();
  CHECK_INT(conns, 1);
}

static void test_refused_and_errors(void) {
  rill_tcp_server_t *srv;
  CHECK_INT(rill_tcp_listen(&loop, "127.0.0.1", 0, 16, 0, on_conn, NULL, &srv), 0);
  int port = rill_tcp_server_port(srv);
  /* the port is taken */
  rill_tcp_server_t *again;
  CHECK_INT(rill_tcp_listen(&loop, "127.0.0.1", port, 16, 0, on_conn, NULL, &again), UV_EADDRINUSE);
  rill_tcp_server_free(srv);
  run();
  for (int i = 0; i < 200; i++) {
    rill_stream_t *c;
    conn_res_t r = {0, 0, ""};
    CHECK_INT(rill_tcp_connect(&loop, "127.0.0.1", port, 0, connected, &r, &c), 0);
    run();
    CHECK_INT(r.called, 1);
    CHECK_INT(r.code, UV_ECONNREFUSED);
    CHECK(strstr(r.msg, "ECONNREFUSED 127.0.0.1:") != NULL);
    CHECK(rill_stream_state(c) & RILL_SS_CLOSED);
    rill_stream_unref(c);
  }
  /* bad arguments change nothing */
  rill_stream_t *c;
  CHECK_INT(rill_tcp_connect(&loop, "127.0.0.1", 0, 0, NULL, NULL, &c), UV_EINVAL);
  CHECK_INT(rill_tcp_listen(&loop, "not-an-ip", 0, 16, 0, on_conn, NULL, &srv), UV_EINVAL);
  CHECK_INT(rill_tcp_listen(&loop, "127.0.0.1", 70000, 16, 0, on_conn, NULL, &srv), UV_EINVAL);
}

/* Destroyed while connecting: the callback still comes, once, with an error. */
static void test_destroy_while_connecting(void) {
  rill_stream_t *c;
  conn_res_t r = {0, 0, ""};
  CHECK_INT(rill_tcp_connect(&loop, "10.255.255.1", 9, 0, connected, &r, &c), 0);
  rill_stream_destroy(c, NULL);
  run();
  CHECK_INT(r.called, 1);
  CHECK(r.code != 0);
  rill_stream_unref(c);
}

int main(void) {
  CHECK_INT(rill_loop_init(&loop, NULL), 0);
  RUN(test_echo);
  RUN(test_refused_and_errors);
  RUN(test_destroy_while_connecting);
  rill_loop_free(&loop); /* asserts that every handle was closed */
  rill_slab_pool_trim();
  return 0;
}
