/* core/tcp.h: TCP servers and client connections; connections are duplex native streams. */
#ifndef RILL_TCP_H
#define RILL_TCP_H

#include "stream.h"

/* A connection is a core/uvstream.h stream over a uv_tcp_t: reads into pooled slabs, writev,
 * half-close through final (uv_shutdown). Unless RILL_TCP_HALF_OPEN is given, the end of the
 * peer's data also ends our side once the pending writes are out (Node's allowHalfOpen =
 * false). */
enum { RILL_TCP_HALF_OPEN = 1 };

typedef struct rill_tcp_server_s rill_tcp_server_t;

/* A new connection (conn: a new reference passed to cb), or an accept error (status < 0,
 * conn NULL: EMFILE when out of descriptors; the server keeps listening). */
typedef void (*rill_tcp_connection_cb)(rill_tcp_server_t *srv, int status, rill_stream_t *conn,
                                       void *arg);

/* Listens on host:port (port 0 picks a free port; host numeric or "localhost", NULL for
 * 0.0.0.0). *out gets the server, owned by the caller until rill_tcp_server_free. 0, UV_EINVAL
 * (bad address or port), UV_ENOMEM, or the bind/listen error (EADDRINUSE, EACCES). */
int rill_tcp_listen(rill_loop_t *loop, const char *host, int port, int backlog, unsigned flags,
                    rill_tcp_connection_cb cb, void *arg, rill_tcp_server_t **out);
/* The bound port and address (for port 0). */
int rill_tcp_server_port(const rill_tcp_server_t *srv);
const char *rill_tcp_server_host(const rill_tcp_server_t *srv);
/* Stops accepting (idempotent); open connections are not touched. cb (optional) runs once the
 * listening socket is closed. */
void rill_tcp_server_close(rill_tcp_server_t *srv, void (*cb)(void *arg), void *arg);
/* Closes (if needed) and releases the caller's hold; the memory goes after the close. */
void rill_tcp_server_free(rill_tcp_server_t *srv);

/* Connection outcome: err is NULL once connected, else the error (borrowed; ECONNREFUSED,
 * ENOTFOUND-like getaddrinfo errors, ECANCELED when the stream was destroyed meanwhile). */
typedef void (*rill_tcp_connect_cb)(rill_stream_t *s, rill_err_t *err, void *arg);

/* Connects to host:port (names are resolved in the background). *out gets the stream at once
 * (a new reference): writes made before the connection is up wait for it; a failure fails
 * the stream with its error too. cb (optional) runs exactly once, after this call returned,
 * unless the engine is torn down first. 0, UV_EINVAL or UV_ENOMEM. */
int rill_tcp_connect(rill_loop_t *loop, const char *host, int port, unsigned flags,
                     rill_tcp_connect_cb cb, void *arg, rill_stream_t **out);

/* Fills ip (at least 46 bytes) and *port with the peer's (remote != 0) or our address.
 * 0, UV_EINVAL (not a TCP stream) or the getpeername error (ENOTCONN). */
int rill_tcp_address(rill_stream_t *s, int remote, char *ip, size_t n, int *port);
/* Whether the connection keeps the loop running (libuv's uv_ref/uv_unref): an idle pooled
 * connection must not. 0, or UV_EINVAL when s is not a TCP stream. */
int rill_tcp_set_ref(rill_stream_t *s, int ref);
/* Resets the connection (RST instead of FIN: SO_LINGER 0), destroying the stream. */
int rill_tcp_reset(rill_stream_t *s);

#endif
