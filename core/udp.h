/* core/udp.h: UDP sockets: an object-mode readable of received messages, plus send. */
#ifndef RILL_UDP_H
#define RILL_UDP_H

#include "stream.h"

/* A received datagram: an object-mode item (refcounted through rill_udp_msg_ops), bytes-like
 * (to_bytes gives its data), so a UDP socket can also feed a byte stream. */
typedef struct {
  int refs;
  rill_view_t data; /* the payload: a view into a pooled receive slab */
  char host[46];
  int port;
} rill_udp_msg_t;

extern const rill_item_ops_t rill_udp_msg_ops;

enum { RILL_UDP_REUSEADDR = 1, RILL_UDP_IPV6ONLY = 2 };

/* Binds a socket to host:port (port 0: any free port; host NULL: 0.0.0.0) and returns it as an
 * object-mode readable of rill_udp_msg_t items (*out: a new reference). Reading stops while
 * the stream's buffer is full (the kernel drops what does not fit, as UDP does). 0, UV_EINVAL,
 * UV_ENOMEM or the bind error. */
int rill_udp_bind(rill_loop_t *loop, const char *host, int port, unsigned flags,
                  rill_stream_t **out);

typedef void (*rill_udp_send_cb)(rill_stream_t *s, int status, void *arg);

/* Sends data (borrowed; a reference is kept while the send is queued) as one datagram to
 * host:port (numeric or "localhost"). Returns 0 when sent at once (cb is not called), 1 when
 * queued (cb runs later with the outcome), or an error now: UV_EMSGSIZE (too big for one
 * datagram), UV_EINVAL (bad address, not a UDP socket), UV_EBADF (closed socket). */
int rill_udp_send(rill_stream_t *s, const rill_view_t *data, const char *host, int port,
                  rill_udp_send_cb cb, void *arg);
/* The bound address. 0 or an error. */
int rill_udp_address(rill_stream_t *s, char *ip, size_t n, int *port);
/* Nonzero when s is a UDP socket stream. */
int rill_udp_is(const rill_stream_t *s);

#endif
