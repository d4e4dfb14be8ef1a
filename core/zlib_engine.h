/* core/zlib_engine.h: incremental, consumer-paced zlib engine: gzip, gunzip, deflate, inflate. */
#ifndef RILL_ZLIB_ENGINE_H
#define RILL_ZLIB_ENGINE_H

#include <stdint.h>
#include <zlib.h>

#include "buf.h"

typedef enum {
  RILL_ZLIB_DEFLATE, /* compress to the zlib format (RFC 1950) */
  RILL_ZLIB_INFLATE, /* decompress the zlib format */
  RILL_ZLIB_GZIP,    /* compress to one gzip member (RFC 1952) */
  RILL_ZLIB_GUNZIP,  /* decompress gzip: one or more concatenated members */
} rill_zlib_mode_t;

typedef struct {
  rill_zlib_mode_t mode;
  int level;           /* compression level 0..9, or -1 for zlib's default (6) */
  uint64_t max_output; /* 0: unlimited; otherwise producing more fails with RILL_EOUTPUT_LIMIT */
} rill_zlib_opts_t;

/* The engine does not pull input or push output by itself: the caller writes input views (kept
 * by reference, not copied) and reads output views of at most the size it asks for. Input is
 * consumed only as far as needed to produce the output asked for, so a consumer that stops
 * reading stops decompression, and a gzip bomb never holds more than one output slab.
 *
 * Decompressed input may hold several gzip members back to back (all are decoded). After the
 * last member (or after the zlib stream, for inflate) only zero bytes may follow, which are
 * ignored as padding, as Node.js does; any other trailing byte is an error, so data is never
 * silently dropped. Input that ends inside a stream, including empty input, fails with
 * RILL_EZLIB_TRUNCATED ("unexpected end of file"). Corrupt data (bad header, bad CRC or length
 * trailer, bad block) fails with RILL_EZLIB, and rill_zlib_message() gives zlib's own text. */
typedef struct {
  z_stream zs;
  rill_zlib_mode_t mode;
  unsigned char inited;   /* zs is initialised (deflateEnd/inflateEnd needed) */
  unsigned char ended;    /* rill_zlib_end was called: no more input */
  unsigned char finished; /* all output was produced */
  unsigned char state;    /* decompression: inside a stream, after one, or in zero padding */
  int err;                /* sticky error, reported by every later call */
  uint64_t bytes_in;      /* input bytes consumed so far */
  uint64_t bytes_out;     /* output bytes handed out so far */
  uint64_t max_output;
  rill_chain_t in;   /* input written but not yet consumed */
  rill_slab_t *slab; /* output slab being filled past slab->used; one reference */
  char msg[96];      /* the message of err */
} rill_zlib_t;

/* Initialises z; 0, UV_EINVAL for a bad mode or level (z untouched), or UV_ENOMEM. */
int rill_zlib_init(rill_zlib_t *z, const rill_zlib_opts_t *opts);
/* Releases every resource of z; idempotent. Views already read stay valid (they hold refs). */
void rill_zlib_close(rill_zlib_t *z);

/* Queues input; borrows *in and takes its own reference on it (no copy). 0, UV_ENOMEM, the
 * sticky error, or RILL_ESTREAM_WRITE_AFTER_END after rill_zlib_end. Empty views are ignored. */
int rill_zlib_write(rill_zlib_t *z, const rill_view_t *in);
/* Queues a copy of p[0..len); same results as rill_zlib_write. */
int rill_zlib_write_bytes(rill_zlib_t *z, const void *p, size_t len);
/* Marks the end of input (compression then finishes the stream); idempotent. 0 or the error. */
int rill_zlib_end(rill_zlib_t *z);

/* Produces output: fills *out with a new reference to between 1 and max bytes and returns 0;
 * or returns 0 with out->len == 0 when all queued input is consumed and more is needed; or
 * UV_EOF once the input has ended and every output byte was read; or an error (UV_EINVAL for
 * max == 0, UV_ENOMEM, RILL_EZLIB, RILL_EZLIB_TRUNCATED, RILL_EOUTPUT_LIMIT). Output produced
 * before an error is returned first and the error comes from the next call; errors are sticky.
 * With max_output, exactly max_output bytes are handed out before RILL_EOUTPUT_LIMIT. One call
 * yields at most one slab (RILL_SLAB_SIZE bytes). On error *out is empty. */
int rill_zlib_read(rill_zlib_t *z, rill_view_t *out, size_t max);

/* Input bytes queued but not consumed yet. */
size_t rill_zlib_pending(const rill_zlib_t *z);
/* The message of the sticky error (zlib's text for RILL_EZLIB), or "" when there is none;
 * borrowed, valid until z changes. */
const char *rill_zlib_message(const rill_zlib_t *z);

#endif
