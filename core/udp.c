/* core/udp.c: UDP sockets: an object-mode readable of received messages, plus send. */
#include "udp.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages ---- */

static void *msg_dup(const rill_item_ops_t *ops, void *item) {
  rill_udp_msg_t *m = item;
  m->refs++;
  return m;
}

static void msg_drop(const rill_item_ops_t *ops, void *item) {
  rill_udp_msg_t *m = item;
  if (--m->refs > 0) return;
  rill_view_release(&m->data);
  free(m);
}

static int msg_bytes(const rill_item_ops_t *ops, void *item, rill_view_t *out, const char **msg) {
  rill_udp_msg_t *m = item;
  if (m->data.len) {
    rill_view_slice(out, &m->data, 0, m->data.len);
  } else {
    *out = (rill_view_t){NULL, 0, 0};
  }
  return 0;
}

const rill_item_ops_t rill_udp_msg_ops = {msg_dup, msg_drop, msg_bytes};

/* ---- socket ---- */

typedef struct {
  uv_udp_t udp;
  rill_handle_t h;
  rill_stream_t *s;
  rill_loop_t *loop;
  rill_slab_t *slab;
  unsigned receiving : 1, destroying : 1, closed : 1;
  rill_err_t *derr;
} sock_t;

typedef struct {
  uv_udp_send_t req;
  rill_view_t data;
  rill_stream_t *s;
  rill_udp_send_cb cb;
  void *arg;
} send_t;

static const rill_stream_impl_t udp_impl;

static int addr_of(const char *host, int port, struct sockaddr_storage *ss) {
  if (port < 0 || port > 65535) return UV_EINVAL;
  if (host == NULL || *host == '\0') host = "0.0.0.0";
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sock_t *k = RILL_CONTAINER_OF(h->data, sock_t, h);
  /* A datagram may be up to 64 KiB, so a receive needs that much room (libuv reports
   * truncation otherwise); a 256 KiB slab holds many small datagrams before it is replaced. */
  if (k->slab == NULL || k->slab->cap - k->slab->used < 65536) {
    rill_slab_unref(k->slab);
    k->slab = rill_slab_new(4 * 65536);
    if (k->slab == NULL) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
  }
  *buf =
      uv_buf_init((char *)k->slab->data + k->slab->used, (unsigned)(k->slab->cap - k->slab->used));
}

static void stop_recv(sock_t *k) {
  if (k->receiving) {
    uv_udp_recv_stop(&k->udp);
    k->receiving = 0;
  }
}

static void recv_cb(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags) {
  sock_t *k = RILL_CONTAINER_OF(((uv_handle_t *)u)->data, sock_t, h);
  if (n == 0 && addr == NULL) return; /* nothing more for now */
  rill_stream_ref(k->s);
  if (n < 0) {
    stop_recv(k);
    rill_err_t *e = rill_err_new((int)n, "recvmsg", NULL, NULL);
    rill_stream_destroy(k->s, e);
    rill_err_unref(e);
  } else {
    rill_udp_msg_t *m = calloc(1, sizeof *m);
    if (m == NULL) {
      stop_recv(k);
      rill_stream_destroy_code(k->s, UV_ENOMEM);
    } else {
      m->refs = 1;
      if (n > 0) {
        m->data = (rill_view_t){k->slab, k->slab->used, (size_t)n};
        rill_slab_ref(k->slab);
        k->slab->used += (size_t)n;
      }
      if (addr->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)addr, m->host, sizeof m->host);
        m->port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
      } else {
        uv_ip4_name((const struct sockaddr_in *)addr, m->host, sizeof m->host);
        m->port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
      }
      rill_chunk_t c;
      rill_chunk_from_item(&c, m, &rill_udp_msg_ops);
      if (rill_stream_push(k->s, &c) != 1) stop_recv(k);
    }
  }
  rill_stream_unref(k->s);
}

static void udp_read(rill_stream_t *s, size_t size) {
  sock_t *k = rill_stream_data(s);
  if (k->receiving || k->destroying || k->closed) return;
  int e = uv_udp_recv_start(&k->udp, alloc_cb, recv_cb);
  if (e) {
    rill_err_t *err = rill_err_new(e, "recvmsg", NULL, NULL);
    rill_stream_destroy(s, err);
    rill_err_unref(err);
    return;
  }
  k->receiving = 1;
}

static void udp_closed(rill_handle_t *h) {
  sock_t *k = RILL_CONTAINER_OF(h, sock_t, h);
  k->closed = 1;
  k->receiving = 0;
  if (k->destroying) {
    rill_err_t *e = k->derr;
    k->derr = NULL;
    rill_stream_destroy_done(k->s, e);
    rill_err_unref(e);
  }
}

static void udp_destroy(rill_stream_t *s, rill_err_t *err) {
  sock_t *k = rill_stream_data(s);
  k->destroying = 1;
  k->derr = rill_err_ref(err);
  if (k->closed) {
    udp_closed(&k->h);
  } else {
    rill_handle_close(&k->h);
  }
}

static void udp_free(rill_stream_t *s) {
  sock_t *k = rill_stream_data(s);
  rill_slab_unref(k->slab);
  rill_err_unref(k->derr);
  free(k);
}

static const rill_stream_impl_t udp_impl = {
    .read = udp_read, .destroy = udp_destroy, .free = udp_free};

int rill_udp_bind(rill_loop_t *loop, const char *host, int port, unsigned flags,
                  rill_stream_t **out) {
  if (loop == NULL || out == NULL) return UV_EINVAL;
  struct sockaddr_storage ss;
  int e = addr_of(host, port, &ss);
  if (e) return e;
  sock_t *k = calloc(1, sizeof *k);
  if (k == NULL) return UV_ENOMEM;
  k->loop = loop;
  rill_stream_opts_t so = {RILL_STREAM_READABLE | RILL_STREAM_OBJECT_READ, RILL_HWM_DEFAULT,
                           RILL_HWM_DEFAULT};
  e = rill_stream_new(loop, &udp_impl, k, &so, &k->s);
  if (e) {
    free(k);
    return e;
  }
  e = uv_udp_init(loop->uv, &k->udp);
  if (e) {
    k->closed = 1;
    rill_stream_unref(k->s);
    return e;
  }
  rill_handle_track(loop, &k->h, (uv_handle_t *)&k->udp, udp_closed);
  unsigned bf = (flags & RILL_UDP_REUSEADDR ? UV_UDP_REUSEADDR : 0) |
                (flags & RILL_UDP_IPV6ONLY ? UV_UDP_IPV6ONLY : 0);
  e = uv_udp_bind(&k->udp, (struct sockaddr *)&ss, bf);
  if (e) {
    rill_stream_unref(k->s); /* destroys it, closing the handle */
    return e;
  }
  *out = k->s;
  return 0;
}

int rill_udp_is(const rill_stream_t *s) {
  return rill_stream_impl(s) == &udp_impl;
}

static void send_cb(uv_udp_send_t *req, int status) {
  send_t *q = RILL_CONTAINER_OF(req, send_t, req);
  sock_t *k = rill_stream_data(q->s);
  /* Canceled by a close: the owner is told only when the socket was destroyed (not at
   * engine teardown, when nobody may be called any more). */
  if (q->cb && !(status == UV_ECANCELED && !k->destroying)) q->cb(q->s, status, q->arg);
  rill_view_release(&q->data);
  rill_stream_unref(q->s);
  free(q);
}

int rill_udp_send(rill_stream_t *s, const rill_view_t *data, const char *host, int port,
                  rill_udp_send_cb cb, void *arg) {
  if (!rill_udp_is(s) || data == NULL) return UV_EINVAL;
  sock_t *k = rill_stream_data(s);
  if (k->destroying || k->closed) return UV_EBADF;
  struct sockaddr_storage ss;
  int e = addr_of(host, port, &ss);
  if (e) return e;
  if (port == 0) return UV_EINVAL;
  uv_buf_t b = uv_buf_init((char *)rill_view_data(data), (unsigned)data->len);
  e = uv_udp_try_send(&k->udp, &b, 1, (struct sockaddr *)&ss);
  if (e >= 0) return 0;
  if (e != UV_EAGAIN) return e;
  send_t *q = calloc(1, sizeof *q);
  if (q == NULL) return UV_ENOMEM;
  if (data->len) rill_view_slice(&q->data, data, 0, data->len);
  q->s = s;
  q->cb = cb;
  q->arg = arg;
  rill_stream_ref(s);
  e = uv_udp_send(&q->req, &k->udp, &b, 1, (struct sockaddr *)&ss, send_cb);
  if (e) {
    rill_view_release(&q->data);
    rill_stream_unref(s);
    free(q);
    return e;
  }
  return 1;
}

int rill_udp_address(rill_stream_t *s, char *ip, size_t n, int *port) {
  if (!rill_udp_is(s)) return UV_EINVAL;
  sock_t *k = rill_stream_data(s);
  if (k->closed) return UV_EBADF;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int e = uv_udp_getsockname(&k->udp, (struct sockaddr *)&ss, &len);
  if (e) return e;
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, n);
    *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, n);
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  return 0;
}
