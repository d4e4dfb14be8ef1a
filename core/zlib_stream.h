/* core/zlib_stream.h: the zlib engine as a native duplex stream (gzip, gunzip, deflate, inflate).
 */
#ifndef RILL_ZLIB_STREAM_H
#define RILL_ZLIB_STREAM_H

#include "stream.h"
#include "zlib_engine.h"

/* Written bytes go into the engine; the readable side gives its output. Unlike a transform,
 * which must push everything a chunk produces before taking the next, this stream produces
 * output only while its readable side is below the high-water mark, and goes on when the
 * consumer reads: a written chunk is acknowledged once the engine has consumed all of it. So a
 * gzip bomb inflates at the pace of its consumer and never fills memory. Output chunks are
 * views of pooled slabs of up to 64 KiB. Engine errors (RILL_EZLIB with zlib's message,
 * RILL_EZLIB_TRUNCATED, RILL_EOUTPUT_LIMIT) fail the stream; the readable side ends after the
 * writable side has ended and all output was produced. */

/* Creates the stream; *out gets a new reference. 0, UV_EINVAL (bad options), or UV_ENOMEM. */
int rill_zlib_stream_new(rill_loop_t *loop, const rill_zlib_opts_t *opts, rill_stream_t **out);
/* The engine of a stream made by rill_zlib_stream_new (borrowed; read its bytes_in and
 * bytes_out), or NULL for any other stream. */
const rill_zlib_t *rill_zlib_stream_engine(const rill_stream_t *s);

#endif
