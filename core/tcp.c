/* core/tcp.c: TCP servers and client connections; connections are duplex native streams. */
#include "tcp.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "uvstream.h"

/* ---- addresses ---- */

/* Fills *ss from a numeric host (or "localhost", or NULL for any). 0 or UV_EINVAL. */
static int numeric_addr(const char *host, int port, struct sockaddr_storage *ss) {
  if (port < 0 || port > 65535) return UV_EINVAL;
  if (host == NULL || *host == '\0') host = "0.0.0.0";
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL;
}

static void addr_name(const struct sockaddr *sa, char *ip, size_t n, int *port) {
  if (sa->sa_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)sa, ip, n);
    *port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  } else {
    uv_ip4_name((const struct sockaddr_in *)sa, ip, n);
    *port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
  }
}

/* ---- server ---- */

struct rill_tcp_server_s {
  uv_tcp_t tcp;
  rill_handle_t h;
  rill_loop_t *loop;
  unsigned flags;
  rill_tcp_connection_cb cb;
  void *arg;
  int port;
  char host[64];
  int closing, closed, released;
  void (*close_cb)(void *arg);
  void *close_arg;
};

static void server_closed(rill_handle_t *h) {
  rill_tcp_server_t *srv = RILL_CONTAINER_OF(h, rill_tcp_server_t, h);
  srv->closed = 1;
  void (*cb)(void *) = srv->close_cb;
  srv->close_cb = NULL;
  if (cb) cb(srv->close_arg);
  if (srv->released) free(srv);
}

static void on_connection(uv_stream_t *server, int status) {
  rill_tcp_server_t *srv = RILL_CONTAINER_OF(((uv_handle_t *)server)->data, rill_tcp_server_t, h);
  if (srv->closing) return;
  if (status < 0) {
    srv->cb(srv, status, NULL, srv->arg);
    return;
  }
  rill_uvs_t *u;
  rill_stream_t *s = NULL;
  unsigned f =
      RILL_STREAM_DUPLEX | (srv->flags & RILL_TCP_HALF_OPEN ? 0 : RILL_STREAM_NO_HALF_OPEN);
  int e = rill_uvs_new(srv->loop, RILL_UVS_TCP, f, 0, &u, &s);
  if (e == 0) e = uv_accept(server, &u->u.stream);
  if (e) {
    if (s) rill_stream_unref(s);
    srv->cb(srv, e, NULL, srv->arg);
    return;
  }
  uv_tcp_nodelay(&u->u.tcp, 1);
  rill_uvs_ready(u);
  srv->cb(srv, 0, s, srv->arg);
}

int rill_tcp_listen(rill_loop_t *loop, const char *host, int port, int backlog, unsigned flags,
                    rill_tcp_connection_cb cb, void *arg, rill_tcp_server_t **out) {
  if (loop == NULL || cb == NULL || out == NULL) return UV_EINVAL;
  struct sockaddr_storage ss;
  int e = numeric_addr(host, port, &ss);
  if (e) return e;
  rill_tcp_server_t *srv = calloc(1, sizeof *srv);
  if (srv == NULL) return UV_ENOMEM;
  srv->loop = loop;
  srv->flags = flags;
  srv->cb = cb;
  srv->arg = arg;
  e = uv_tcp_init(loop->uv, &srv->tcp);
  if (e) {
    free(srv);
    return e;
  }
  rill_handle_track(loop, &srv->h, (uv_handle_t *)&srv->tcp, server_closed);
  e = uv_tcp_bind(&srv->tcp, (const struct sockaddr *)&ss, 0);
  if (e == 0) e = uv_listen((uv_stream_t *)&srv->tcp, backlog > 0 ? backlog : 511, on_connection);
  if (e == 0) {
    struct sockaddr_storage bound;
    int len = sizeof bound;
    e = uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&bound, &len);
    if (e == 0) addr_name((struct sockaddr *)&bound, srv->host, sizeof srv->host, &srv->port);
  }
  if (e) {
    /* Failed after the handle exists: close it; the memory goes in the close callback. */
    srv->released = 1;
    srv->closing = 1;
    rill_handle_close(&srv->h);
    return e;
  }
  *out = srv;
  return 0;
}

int rill_tcp_server_port(const rill_tcp_server_t *srv) {
  return srv->port;
}

const char *rill_tcp_server_host(const rill_tcp_server_t *srv) {
  return srv->host;
}

void rill_tcp_server_close(rill_tcp_server_t *srv, void (*cb)(void *arg), void *arg) {
  if (srv->closing) {
    if (cb && !srv->closed && srv->close_cb == NULL) {
      srv->close_cb = cb;
      srv->close_arg = arg;
    } else if (cb) {
      cb(arg); /* already closed (documented: runs once the socket is closed) */
    }
    return;
  }
  srv->closing = 1;
  srv->close_cb = cb;
  srv->close_arg = arg;
  if (srv->closed) {
    /* Closed by engine teardown already. */
    srv->close_cb = NULL;
    if (cb) cb(arg);
    return;
  }
  rill_handle_close(&srv->h);
}

void rill_tcp_server_free(rill_tcp_server_t *srv) {
  if (srv == NULL) return;
  srv->close_cb = NULL;
  srv->released = 1;
  if (srv->closed) {
    free(srv);
    return;
  }
  if (!srv->closing) {
    srv->closing = 1;
    rill_handle_close(&srv->h);
  }
}

/* ---- client ---- */

typedef struct {
  uv_connect_t creq;
  uv_getaddrinfo_t gai;
  int port;
  int resolving, connecting;
  int late; /* the error of a connect that could not even start */
  rill_tcp_connect_cb cb;
  void *arg;
  char host[256];
} conn_t;

static void connect_report(rill_uvs_t *u, int status, const char *syscall) {
  conn_t *c = u->owner;
  rill_tcp_connect_cb cb = c->cb;
  c->cb = NULL;
  rill_stream_t *s = u->s;
  rill_stream_ref(s);
  rill_err_t *e = NULL;
  if (status) {
    char msg[320];
    snprintf(msg, sizeof msg, "%s %s %s:%d", syscall, uv_err_name(status), c->host, c->port);
    e = rill_err_new(status, syscall, NULL, msg);
    rill_stream_destroy(s, e);
  } else {
    rill_uvs_ready(u);
  }
  if (cb) cb(s, e, c->arg);
  rill_err_unref(e);
  rill_stream_unref(s);
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = RILL_CONTAINER_OF(req, conn_t, creq);
  rill_uvs_t *u = req->data;
  c->connecting = 0;
  /* Closed by engine teardown without a destroy: nobody is there to tell. */
  if (status == UV_ECANCELED && !(rill_stream_state(u->s) & RILL_SS_DESTROYED)) {
    c->cb = NULL;
    return;
  }
  connect_report(u, status, "connect");
}

static int start_connect(rill_uvs_t *u, const struct sockaddr *sa) {
  conn_t *c = u->owner;
  c->creq.data = u;
  int e = uv_tcp_connect(&c->creq, &u->u.tcp, sa, on_connect);
  if (e == 0) c->connecting = 1;
  return e;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  conn_t *c = RILL_CONTAINER_OF(req, conn_t, gai);
  rill_uvs_t *u = req->data;
  c->resolving = 0;
  unsigned st = rill_stream_state(u->s);
  if (st & RILL_SS_DESTROYED) {
    /* Destroyed while resolving: the waiting caller still gets its answer. */
    uv_freeaddrinfo(res);
    if (c->cb) connect_report(u, UV_ECANCELED, "connect");
    rill_stream_unref(u->s);
    return;
  }
  int e = status;
  if (e == 0) e = start_connect(u, res->ai_addr);
  uv_freeaddrinfo(res);
  if (e) connect_report(u, e, status ? "getaddrinfo" : "connect");
  rill_stream_unref(u->s);
}

static void late_report(rill_stream_t *s, void *arg) {
  rill_uvs_t *u = arg;
  conn_t *c = u->owner;
  connect_report(u, c->late, "connect");
}

static void conn_destroyed(rill_uvs_t *u) {
  conn_t *c = u->owner;
  /* Closing the handle cancels a connect in flight (on_connect reports it); a lookup in the
   * threadpool is canceled if it has not started, and reports when it ends otherwise. */
  if (c->resolving) uv_cancel((uv_req_t *)&c->gai);
}

int rill_tcp_connect(rill_loop_t *loop, const char *host, int port, unsigned flags,
                     rill_tcp_connect_cb cb, void *arg, rill_stream_t **out) {
  if (loop == NULL || host == NULL || out == NULL || port <= 0 || port > 65535 ||
      strlen(host) >= sizeof(((conn_t *)0)->host))
    return UV_EINVAL;
  rill_uvs_t *u;
  rill_stream_t *s;
  unsigned f = RILL_STREAM_DUPLEX | (flags & RILL_TCP_HALF_OPEN ? 0 : RILL_STREAM_NO_HALF_OPEN);
  int e = rill_uvs_new(loop, RILL_UVS_TCP, f, sizeof(conn_t), &u, &s);
  if (e) return e;
  conn_t *c = u->owner;
  c->cb = cb;
  c->arg = arg;
  c->port = port;
  snprintf(c->host, sizeof c->host, "%s", host);
  u->on_destroy = conn_destroyed;
  uv_tcp_nodelay(&u->u.tcp, 1);
  struct sockaddr_storage ss;
  if (numeric_addr(host, port, &ss) == 0) {
    e = start_connect(u, (struct sockaddr *)&ss);
  } else {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    c->gai.data = u;
    e = uv_getaddrinfo(loop->uv, &c->gai, on_resolved, host, service, &hints);
    if (e == 0) {
      c->resolving = 1;
      rill_stream_ref(s); /* the lookup may end after a destroy: keep the adapter alive */
    }
  }
  if (e) {
    /* Report from the next tick, as promised. */
    c->late = e;
    if (rill__stream_tick(s, late_report, u) != 0) {
      rill_stream_unref(s);
      return UV_ENOMEM;
    }
  }
  *out = s;
  return 0;
}

int rill_tcp_address(rill_stream_t *s, int remote, char *ip, size_t n, int *port) {
  rill_uvs_t *u = rill_uvs_of(s);
  if (u == NULL || u->kind != RILL_UVS_TCP) return UV_EINVAL;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int e = remote ? uv_tcp_getpeername(&u->u.tcp, (struct sockaddr *)&ss, &len)
                 : uv_tcp_getsockname(&u->u.tcp, (struct sockaddr *)&ss, &len);
  if (e) return e;
  addr_name((struct sockaddr *)&ss, ip, n, port);
  return 0;
}

int rill_tcp_set_ref(rill_stream_t *s, int ref) {
  rill_uvs_t *u = rill_uvs_of(s);
  if (u == NULL || u->kind != RILL_UVS_TCP) return UV_EINVAL;
  if (ref)
    uv_ref(&u->u.handle);
  else
    uv_unref(&u->u.handle);
  return 0;
}

int rill_tcp_reset(rill_stream_t *s) {
  rill_uvs_t *u = rill_uvs_of(s);
  if (u == NULL || u->kind != RILL_UVS_TCP) return UV_EINVAL;
  uv_os_fd_t fd;
  if (uv_fileno(&u->u.handle, &fd) == 0) {
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  rill_stream_destroy(s, NULL);
  return 0;
}
