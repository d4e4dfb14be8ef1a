/* core/http.h: an HTTP/1.1 server whose request and response bodies are native streams. */
#ifndef RILL_HTTP_H
#define RILL_HTTP_H

#include "http_parser.h"
#include "stream.h"

/* Each request gives two streams: req, a readable of the body (content-length or chunked,
 * de-chunked; ends at once when there is none), and res, a writable of the response body.
 * The response head goes out with the first write or the end: the status (default 200) and the
 * headers set before; without a Content-Length header the body is sent chunked (HTTP/1.1) or
 * delimited by closing the connection (HTTP/1.0). Responses to HEAD send the head only.
 *
 * Connections are kept alive and pipelined requests are handled one after the other: the next
 * request is parsed once the previous response has ended (a body its handler did not read is
 * read and dropped first). A request body that is not read stops the socket being read (TCP
 * backpressure); a response body goes out as fast as the socket takes it (res:write returns
 * "full" while the socket's buffer is above its mark). "Expect: 100-continue" is answered when
 * the body is first read. A malformed request gets 400, a head over max_header_size 431, then
 * the connection closes; a client that goes away destroys req and res (ECONNRESET or premature
 * close), so a file piped into res is closed. */
typedef struct rill_http_server_s rill_http_server_t;

typedef struct {
  const char *host;       /* NULL: 0.0.0.0 */
  int port;               /* 0: a free port */
  size_t max_header_size; /* 0: RILL_HTTP_MAX_HEADER_SIZE */
  /* A head must be complete this long after it began (or after the connection opened), else
   * the connection closes (slowloris); 0: 60 s. */
  unsigned headers_timeout_ms;
  unsigned keepalive_timeout_ms; /* an idle keep-alive connection closes after this; 0: 5 s */
} rill_http_server_opts_t;

/* A request: req and res are new references passed to the callback; head is borrowed for the
 * call. */
typedef void (*rill_http_request_cb)(rill_http_server_t *srv, rill_stream_t *req,
                                     rill_stream_t *res, const rill_http_head_t *head, void *arg);

/* Listens; *out is owned by the caller until rill_http_server_free. 0, UV_EINVAL, UV_ENOMEM, or
 * the bind/listen error. */
int rill_http_listen(rill_loop_t *loop, const rill_http_server_opts_t *opts,
                     rill_http_request_cb cb, void *arg, rill_http_server_t **out);
int rill_http_server_port(const rill_http_server_t *srv);
/* Stops accepting; connections finish their current exchange and close. Idempotent. */
void rill_http_server_close(rill_http_server_t *srv);
/* Closes the server and every connection now, then releases it. NULL is a no-op. */
void rill_http_server_free(rill_http_server_t *srv);

/* Response head, before it is sent: 0, UV_EINVAL (not a response stream, a bad code, or a name
 * or value with CR/LF), or RILL_ESTREAM_ALREADY_FINISHED once the head went out. */
int rill_http_res_status(rill_stream_t *res, int code);
int rill_http_res_header(rill_stream_t *res, const char *name, const char *value);
/* The client's address and port for a request or response stream of a connection that is still
 * open (read once when it was accepted). 0, UV_EINVAL (not an HTTP stream), UV_ENOTCONN, or
 * UV_ENOBUFS when ip (n bytes) is too small. */
int rill_http_peer(rill_stream_t *s, char *ip, size_t n, int *port);
/* Nonzero once the response head was sent. */
int rill_http_res_head_sent(const rill_stream_t *res);

/* ---- client ---- */

/* Requests. The request body is a writable returned at once (end it, even when empty); the
 * response head comes to cb with res, a readable of the body (a new reference), or cb gets the
 * error (borrowed) instead: connection errors (ECONNREFUSED, name errors), UV_ETIMEDOUT when no
 * response head came within timeout_ms, RILL_EHTTP_PARSE for a malformed response. A body cut
 * short (fewer bytes than Content-Length, a cut chunk) fails res with RILL_EHTTP_PARSE; never a
 * silently short body. cb runs once, after rill_http_request returned. Destroying the request
 * or the response aborts the exchange.
 *
 * Without an agent a request has a connection of its own ("Connection: close"). With one, the
 * connection goes back to the agent once the exchange is complete and both sides allow it (an
 * HTTP/1.1 response without "Connection: close", or HTTP/1.0 with "Connection: keep-alive"; the
 * whole request sent; no bytes after the response), and the next request to the same host and
 * port takes the most recently used idle one. Idle connections do not keep the loop running;
 * they close after the idle timeout, when the server closes them, or when they receive
 * anything. A request on a reused connection that ends or fails before any byte of the response
 * arrived (the server closed it meanwhile) is sent again, once, on a new connection, when that
 * is safe: an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) whose body, if any,
 * was at most 64 KiB so far (those bytes are kept, by reference, until the response begins). A
 * "Connection: close" header among the request's headers keeps the connection out of the pool. */
typedef struct rill_http_agent_s rill_http_agent_t;

typedef struct {
  unsigned idle_timeout_ms; /* an idle connection closes after this; 0: 4 s (below the 5 s of
                               common servers, so the server is rarely the one to close) */
  size_t max_idle;          /* idle connections kept per host and port; 0: 64 */
} rill_http_agent_opts_t;

/* Makes an agent in *out (o may be NULL); the caller holds it until rill_http_agent_free.
 * 0, UV_EINVAL or UV_ENOMEM. */
int rill_http_agent_new(rill_loop_t *loop, const rill_http_agent_opts_t *o,
                        rill_http_agent_t **out);
/* Closes the idle connections now; the agent stays usable. */
void rill_http_agent_close(rill_http_agent_t *a);
/* Closes the idle connections, pools nothing more, and releases the caller's hold (requests in
 * flight keep the memory until they end). NULL is a no-op. */
void rill_http_agent_free(rill_http_agent_t *a);
/* Idle connections now (all hosts). */
size_t rill_http_agent_idle(const rill_http_agent_t *a);

typedef void (*rill_http_response_cb)(rill_stream_t *res, const rill_http_head_t *head,
                                      rill_err_t *err, void *arg);

enum { RILL_HTTP_NO_BODY = -2, RILL_HTTP_CHUNKED = -1 };

typedef struct {
  const char *method; /* "GET" */
  const char *host;   /* name or address to connect to; also the Host header */
  int port;
  const char *path;           /* request target: "/x?y=1" */
  const char *const *headers; /* nheaders (name, value) pairs, flattened; borrowed */
  size_t nheaders;
  int64_t content_length;   /* >= 0, RILL_HTTP_CHUNKED, or RILL_HTTP_NO_BODY */
  unsigned timeout_ms;      /* 0: none */
  rill_http_agent_t *agent; /* NULL: a connection of its own, closed after the response */
} rill_http_request_opts_t;

/* Starts a request; *req gets the body stream (a new reference). 0, UV_EINVAL (bad options,
 * CR/LF in a header), or UV_ENOMEM. */
int rill_http_request(rill_loop_t *loop, const rill_http_request_opts_t *opts,
                      rill_http_response_cb cb, void *arg, rill_stream_t **req);

#endif
