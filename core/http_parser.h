/* core/http_parser.h: incremental, strict HTTP/1.1 request and response parsing on llhttp. */
#ifndef RILL_HTTP_PARSER_H
#define RILL_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

typedef enum { RILL_HTTP_REQUEST, RILL_HTTP_RESPONSE } rill_http_type_t;

/* Node's default limit for the start line and headers together. */
#define RILL_HTTP_MAX_HEADER_SIZE (16 * 1024)

typedef struct {
  const char *name;  /* lower-cased, NUL-terminated */
  const char *value; /* NUL-terminated, without surrounding spaces or tabs */
  size_t name_len, value_len;
} rill_http_header_t;

/* A message head. Every pointer is borrowed from the parser and valid until the next message
 * begins (the next rill_http_parser_execute that goes past this message's end). */
typedef struct {
  const char *method; /* requests: "GET", "POST", ... (static); responses: NULL */
  const char *path;   /* requests: the request target as sent; responses: "" */
  int status;         /* responses: the status code; requests: 0 */
  const char *reason; /* responses: the reason phrase; requests: "" */
  int version_major, version_minor;
  int keep_alive;         /* the connection may carry another message after this one */
  int chunked;            /* the body is in chunked transfer coding */
  int64_t content_length; /* -1 when there is no Content-Length header */
  int expect_continue;    /* requests: "Expect: 100-continue" */
  int upgrade;            /* a protocol upgrade (or CONNECT): no further HTTP/1 messages */
  size_t nheaders;
  const rill_http_header_t *headers; /* in the order received, duplicates kept */
} rill_http_head_t;

/* What the parser reports. Each callback returns 0, or a negative error that stops parsing:
 * execute then returns that error, and the parser is failed for good. */
typedef struct {
  int (*on_head)(void *ud, const rill_http_head_t *head);
  /* Body bytes, already de-chunked: at points into the data passed to execute (borrowed for
   * the call), so the caller can slice its own view instead of copying. */
  int (*on_body)(void *ud, const char *at, size_t len);
  /* The message is complete; execute returns right after this. */
  int (*on_end)(void *ud);
} rill_http_callbacks_t;

typedef struct {
  rill_http_type_t type;
  size_t max_header_size; /* start line + headers, in bytes; 0 means RILL_HTTP_MAX_HEADER_SIZE */
} rill_http_parser_opts_t;

typedef struct rill_http_parser_s rill_http_parser_t;

/* Makes a parser in *out; cb is copied, ud is borrowed. 0, UV_EINVAL or UV_ENOMEM. */
int rill_http_parser_new(rill_http_parser_t **out, const rill_http_parser_opts_t *opts,
                         const rill_http_callbacks_t *cb, void *ud);
/* Frees p and everything it holds; NULL is a no-op. Not from inside one of p's callbacks. */
void rill_http_parser_free(rill_http_parser_t *p);

/* Parses data[0..len), calling back as heads, body bytes and message ends are found; borrows
 * data for the call. Stops right after a message ends, so that pipelined messages are taken
 * one at a time: *consumed says how far it got (call again with the rest when ready). Returns 0,
 * or an error, after which every call fails the same way:
 *   RILL_EHTTP_HEADER_OVERFLOW  the start line and headers exceed max_header_size (431);
 *   RILL_EHTTP_PARSE            a malformed or ambiguous message (400): bad tokens, bare CR or
 *                               LF, obs-fold, bad chunk sizes or framing, Content-Length with
 *                               Transfer-Encoding, transfer codings other than chunked in a
 *                               request, two Content-Length headers, a bad length, a version
 *                               other than 1.x, data after a "Connection: close" message or
 *                               after an upgrade;
 *   or the error a callback returned. */
int rill_http_parser_execute(rill_http_parser_t *p, const char *data, size_t len, size_t *consumed);
/* The peer closed its side: completes a message whose body runs to the end of the connection
 * (responses without a length). 0 when the input ended between messages or completed one;
 * RILL_EHTTP_PARSE when it ended inside a message (a short body, a cut head). */
int rill_http_parser_finish(rill_http_parser_t *p);
/* Responses: the next final (non-1xx) response has no body whatever its headers say, as the
 * answer to a HEAD request. */
void rill_http_parser_skip_body(rill_http_parser_t *p);
/* True while a message is in progress (its first byte was seen and it has not ended). */
int rill_http_parser_busy(const rill_http_parser_t *p);

/* The failure: a short code such as "HPE_INVALID_HEADER_TOKEN" and a readable reason; both ""
 * when the parser has not failed. Borrowed, valid while p lives. */
const char *rill_http_parser_error_code(const rill_http_parser_t *p);
const char *rill_http_parser_error_reason(const rill_http_parser_t *p);

#endif
