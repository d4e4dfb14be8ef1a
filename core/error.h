/* core/error.h: engine error codes, in a range above libuv's, with names and messages. */
#ifndef RILL_ERROR_H
#define RILL_ERROR_H

/* Core functions return 0 or a negative code: a libuv UV_E* value, or one of these. */
#define RILL_ERRNO_MAP(XX)                                                                       \
  XX(STREAM_DESTROYED, "ERR_STREAM_DESTROYED", "cannot call write after a stream was destroyed") \
  XX(STREAM_PREMATURE_CLOSE, "ERR_STREAM_PREMATURE_CLOSE", "premature close")                    \
  XX(STREAM_PUSH_AFTER_EOF, "ERR_STREAM_PUSH_AFTER_EOF", "stream.push() after EOF")              \
  XX(STREAM_WRITE_AFTER_END, "ERR_STREAM_WRITE_AFTER_END", "write after end")                    \
  XX(STREAM_ALREADY_FINISHED, "ERR_STREAM_ALREADY_FINISHED", "stream already finished")          \
  XX(MULTIPLE_CALLBACK, "ERR_MULTIPLE_CALLBACK", "callback called multiple times")               \
  XX(INVALID_ARG_TYPE, "ERR_INVALID_ARG_TYPE", "invalid argument type")                          \
  XX(INVALID_ENCODING, "ERR_INVALID_ENCODING", "invalid encoded data")                           \
  XX(UNKNOWN_ENCODING, "ERR_UNKNOWN_ENCODING", "unknown encoding")                               \
  XX(LINE_TOO_LONG, "ERR_LINE_TOO_LONG", "line longer than max_line_length")                     \
  XX(CALLBACK, "ERR_CALLBACK", "error raised by a callback")                                     \
  XX(NOT_IN_TASK, "ERR_NOT_IN_TASK", "must be called from a task")                               \
  XX(ZLIB, "ERR_ZLIB", "zlib error")                                                             \
  XX(ZLIB_TRUNCATED, "Z_BUF_ERROR", "unexpected end of file")                                    \
  XX(OUTPUT_LIMIT, "ERR_BUFFER_TOO_LARGE", "output exceeds max_output")                          \
  XX(HTTP_PARSE, "HPE_INVALID", "malformed HTTP message")                                        \
  XX(HTTP_HEADER_OVERFLOW, "HPE_HEADER_OVERFLOW", "header block too large")                      \
  XX(DENIED, "ERR_ACCESS_DENIED", "denied by the engine's sandbox")

#define RILL_ERRNO_BASE (-30000)
enum {
  RILL__ERRNO_FIRST = RILL_ERRNO_BASE,
#define XX(name, code, msg) RILL_E##name,
  RILL_ERRNO_MAP(XX)
#undef XX
      RILL__ERRNO_LAST
};

/* The code's name ("ENOENT", "ERR_STREAM_DESTROYED"); never NULL. */
const char *rill_err_name(int err);
/* The code's message ("no such file or directory"); never NULL. */
const char *rill_strerror(int err);

#endif
