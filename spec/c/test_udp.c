/* spec/c/test_udp.c: UDP sockets: messages as object-mode items, EMSGSIZE, closing. */
#include <string.h>

#include "udp.h"
#include "test.h"

static rill_loop_t loop;

static void run(void) {
  rill_loop_run(&loop, UV_RUN_DEFAULT);
}

typedef struct {
  int got;
  char last[64];
  int port;
  rill_stream_t *sock;
} recv_t;

static void on_event(rill_stream_t *s, const rill_event_t *ev, void *arg) {
  recv_t *r = arg;
  if (ev->type != RILL_EV_DATA) return;
  CHECK(ev->chunk->ops == &rill_udp_msg_ops);
  rill_udp_msg_t *m = ev->chunk->item;
  CHECK_STR(m->host, "127.0.0.1");
  r->port = m->port;
  snprintf(r->last, sizeof r->last, "%.*s", (int)m->data.len, (char *)rill_view_data(&m->data));
  if (++r->got == 100) rill_stream_destroy(s, NULL); /* enough: closing ends the run */
}

static void test_send_receive(void) {
  rill_stream_t *a, *b;
  CHECK_INT(rill_udp_bind(&loop, "127.0.0.1", 0, 0, &a), 0);
  CHECK_INT(rill_udp_bind(&loop, NULL, 0, RILL_UDP_REUSEADDR, &b), 0);
  CHECK(rill_udp_is(a));
  char ip[64];
  int pa, pb;
  CHECK_INT(rill_udp_address(a, ip, sizeof ip, &pa), 0);
  CHECK_INT(rill_udp_address(b, ip, sizeof ip, &pb), 0);
  CHECK_STR(ip, "0.0.0.0");
  recv_t r;
  memset(&r, 0, sizeof r);
  rill_stream_set_hook(a, on_event, &r);
  rill_stream_watch(a, RILL_EV_DATA, +1);
  for (int i = 0; i < 100; i++) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "m%d", i);
    rill_view_t v;
    CHECK_INT(rill_view_from(&v, msg, (size_t)n), 0);
    int rc = rill_udp_send(b, &v, "127.0.0.1", pa, NULL, NULL);
    CHECK(rc == 0 || rc == 1);
    rill_view_release(&v);
  }
  /* too big for one datagram: an error now, and the socket still works */
  rill_view_t big;
  CHECK_INT(rill_view_alloc(&big, 70000), 0);
  memset(rill_view_data(&big), 'x', 70000);
  CHECK_INT(rill_udp_send(b, &big, "127.0.0.1", pa, NULL, NULL), UV_EMSGSIZE);
  CHECK_INT(rill_udp_send(b, &big, "not-an-ip", pa, NULL, NULL), UV_EINVAL);
  rill_view_release(&big);
  run();
  CHECK_INT(r.got, 100);
  CHECK_STR(r.last, "m99");
  CHECK_INT(r.port, pb);
  rill_view_t v = {NULL, 0, 0};
  CHECK_INT(rill_udp_send(a, &v, "127.0.0.1", pb, NULL, NULL), UV_EBADF);
  rill_stream_set_hook(a, NULL, NULL);
  rill_stream_unref(a);
  rill_stream_unref(b); /* destroys it, closing its handle */
  run();
}

static void test_bind_errors(void) {
  rill_stream_t *a, *b;
  CHECK_INT(rill_udp_bind(&loop, "127.0.0.1", 0, 0, &a), 0);
  char ip[64];
  int pa;
  CHECK_INT(rill_udp_address(a, ip, sizeof ip, &pa), 0);
  CHECK_INT(rill_udp_bind(&loop, "127.0.0.1", pa, 0, &b), UV_EADDRINUSE);
  CHECK_INT(rill_udp_bind(&loop, "bogus", 0, 0, &b), UV_EINVAL);
  CHECK_INT(rill_udp_bind(&loop, "127.0.0.1", -1, 0, &b), UV_EINVAL);
  rill_stream_unref(a);
  run();
}

int main(void) {
  CHECK_INT(rill_loop_init(&loop, NULL), 0);
  RUN(test_send_receive);
  RUN(test_bind_errors);
  rill_loop_free(&loop);
  rill_slab_pool_trim();
  return 0;
}
