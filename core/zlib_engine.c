/* core/zlib_engine.c: the zlib engine: input chains in, bounded output views out of slabs. */
#include "zlib_engine.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "error.h"

/* Decompression states: inside a stream, just after one (the next byte decides: a new gzip
 * member, zero padding, or garbage), and in zero padding (only zeros may follow). */
enum { ST_STREAM, ST_AFTER, ST_PADDING };

/* A fresh slab is taken rather than handing out a sliver of the current one, so that output
 * views stay large; the bytes left behind in the old slab are at most this many. */
#define MIN_ROOM 1024

static int is_compress(rill_zlib_mode_t m) {
  return m == RILL_ZLIB_DEFLATE || m == RILL_ZLIB_GZIP;
}

int rill_zlib_init(rill_zlib_t *z, const rill_zlib_opts_t *opts) {
  if (opts == NULL) return UV_EINVAL;
  rill_zlib_mode_t mode = opts->mode;
  if (mode != RILL_ZLIB_DEFLATE && mode != RILL_ZLIB_INFLATE && mode != RILL_ZLIB_GZIP &&
      mode != RILL_ZLIB_GUNZIP)
    return UV_EINVAL;
  if (is_compress(mode) && (opts->level < -1 || opts->level > 9)) return UV_EINVAL;
  memset(z, 0, sizeof *z);
  z->mode = mode;
  z->max_output = opts->max_output;
  rill_chain_init(&z->in);
  int r;
  /* windowBits 15 is the zlib format; +16 makes it gzip. memLevel 8 is zlib's (and Node's)
   * default, so the same level gives the same output size as Node. */
  switch (mode) {
    case RILL_ZLIB_DEFLATE:
      r = deflateInit2(&z->zs, opts->level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY);
      break;
    case RILL_ZLIB_GZIP:
      r = deflateInit2(&z->zs, opts->level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
      break;
    case RILL_ZLIB_INFLATE:
      r = inflateInit2(&z->zs, 15);
      break;
    default:
      r = inflateInit2(&z->zs, 15 + 16);
      break;
  }
  if (r != Z_OK) return r == Z_MEM_ERROR ? UV_ENOMEM : UV_EINVAL;
  z->inited = 1;
  return 0;
}

void rill_zlib_close(rill_zlib_t *z) {
  if (z->inited) {
    if (is_compress(z->mode))
      deflateEnd(&z->zs);
    else
      inflateEnd(&z->zs);
    z->inited = 0;
  }
  rill_chain_clear(&z->in);
  rill_slab_unref(z->slab);
  z->slab = NULL;
}

/* Records a sticky error with its message; returns it. */
static int fail(rill_zlib_t *z, int err, const char *msg) {
  z->err = err;
  snprintf(z->msg, sizeof z->msg, "%s", msg != NULL ? msg : rill_strerror(err));
  return err;
}

static int check_write(rill_zlib_t *z) {
  if (z->err) return z->err;
  if (z->ended) return RILL_ESTREAM_WRITE_AFTER_END;
  return 0;
}

int rill_zlib_write(rill_zlib_t *z, const rill_view_t *in) {
  int r = check_write(z);
  if (r) return r;
  if (in->len == 0) return 0;
  rill_view_t v;
  rill_view_slice(&v, in, 0, in->len);
  r = rill_chain_push(&z->in, &v);
  if (r) rill_view_release(&v);
  return r;
}

int rill_zlib_write_bytes(rill_zlib_t *z, const void *p, size_t len) {
  int r = check_write(z);
  if (r) return r;
  return rill_chain_append(&z->in, p, len);
}

int rill_zlib_end(rill_zlib_t *z) {
  if (z->err) return z->err;
  z->ended = 1;
  return 0;
}

size_t rill_zlib_pending(const rill_zlib_t *z) {
  return z->in.bytes;
}

const char *rill_zlib_message(const rill_zlib_t *z) {
  return z->err ? z->msg : "";
}

/* Decompression after the end of a stream: decides from the next input bytes whether a new gzip
 * member starts, zero padding follows, or the input is garbage. Returns 0 to go on (the state
 * may have changed), 1 when more input is needed or all input is done, or an error. */
static int after_stream(rill_zlib_t *z) {
  rill_view_t *v = rill_chain_peek(&z->in);
  if (v == NULL) {
    if (z->ended) z->finished = 1;
    return 1;
  }
  const unsigned char *p = rill_view_data(v);
  if (z->state == ST_AFTER) {
    if (p[0] != 0) {
      if (z->mode != RILL_ZLIB_GUNZIP)
        return fail(z, RILL_EZLIB, "invalid trailing data after the end of the zlib stream");
      /* Another gzip member: zlib checks its header as it would the first one's. */
      if (inflateReset(&z->zs) != Z_OK) return fail(z, RILL_EZLIB, "inflateReset failed");
      z->state = ST_STREAM;
      return 0;
    }
    z->state = ST_PADDING;
  }
  for (size_t i = 0; i < v->len; i++) {
    if (p[i] != 0) {
      return fail(z, RILL_EZLIB,
                  z->mode == RILL_ZLIB_GUNZIP ? "invalid trailing data after the last gzip member"
                                              : "invalid trailing data after the zlib stream");
    }
  }
  z->bytes_in += v->len;
  rill_chain_consume(&z->in, v->len);
  return 0;
}

/* Makes sure z->slab has room for output and returns how much may be produced into it now:
 * at most max, and one byte past max_output so that going over it is noticed. */
static int prepare_out(rill_zlib_t *z, size_t max, size_t *room) {
  size_t have = z->slab ? z->slab->cap - z->slab->used : 0;
  if (have == 0 || (have < MIN_ROOM && have < max)) {
    rill_slab_t *s = rill_slab_new(RILL_SLAB_SIZE);
    if (s == NULL) return UV_ENOMEM;
    rill_slab_unref(z->slab);
    z->slab = s;
    have = s->cap;
  }
  size_t n = have < max ? have : max;
  if (z->max_output) {
    uint64_t left = z->max_output - z->bytes_out; /* bytes_out never passes max_output */
    if (left < n) n = (size_t)left + 1;
  }
  /* zlib counts in uInt. */
  if (n > UINT32_MAX) n = UINT32_MAX;
  *room = n;
  return 0;
}

/* Runs zlib until room is full, input runs out, the stream ends, or an error; the output goes
 * to z->slab past its used mark. Returns 0 or an error (recorded as sticky). */
static int run(rill_zlib_t *z) {
  int compress = is_compress(z->mode);
  while (z->zs.avail_out > 0 && !z->finished) {
    if (!compress && z->state != ST_STREAM) {
      int r = after_stream(z);
      if (r < 0) return r;
      if (r == 1) break;
      continue;
    }
    rill_view_t *v = rill_chain_peek(&z->in);
    /* Called even without input: zlib may hold output it could not fit last time. */
    z->zs.next_in = v ? rill_view_data(v) : NULL;
    z->zs.avail_in = v ? (v->len > UINT32_MAX ? UINT32_MAX : (uInt)v->len) : 0;
    uInt avail_in = z->zs.avail_in, avail_out = z->zs.avail_out;
    int zr;
    if (compress) {
      /* Z_FINISH only once the last input view is being fed, and then on every later call. */
      int flush = z->ended && z->in.count <= 1 ? Z_FINISH : Z_NO_FLUSH;
      zr = deflate(&z->zs, flush);
    } else {
      zr = inflate(&z->zs, Z_NO_FLUSH);
    }
    size_t used = avail_in - z->zs.avail_in;
    z->bytes_in += used;
    rill_chain_consume(&z->in, used);
    int progress = used > 0 || z->zs.avail_out != avail_out;
    switch (zr) {
      case Z_OK:
        if (!progress) return 0;
        break;
      case Z_STREAM_END:
        if (compress)
          z->finished = 1;
        else
          z->state = ST_AFTER;
        break;
      case Z_BUF_ERROR: /* no progress was possible */
        if (v != NULL) return 0;
        if (!compress && z->ended) return fail(z, RILL_EZLIB_TRUNCATED, NULL);
        return 0;
      case Z_NEED_DICT:
        return fail(z, RILL_EZLIB, "a preset dictionary is needed");
      case Z_MEM_ERROR:
        return fail(z, UV_ENOMEM, NULL);
      default: /* Z_DATA_ERROR, Z_STREAM_ERROR */
        return fail(z, RILL_EZLIB, z->zs.msg != NULL ? z->zs.msg : "invalid data");
    }
  }
  return 0;
}

int rill_zlib_read(rill_zlib_t *z, rill_view_t *out, size_t max) {
  out->slab = NULL;
  out->off = out->len = 0;
  if (max == 0) return UV_EINVAL;
  if (z->err) return z->err;
  if (!z->inited) return UV_EINVAL;
  if (z->finished) return UV_EOF;
  size_t room;
  int r = prepare_out(z, max, &room);
  if (r) return r;
  unsigned char *start = z->slab->data + z->slab->used;
  z->zs.next_out = start;
  z->zs.avail_out = (uInt)room;
  r = run(z);
  size_t n = room - z->zs.avail_out;
  z->zs.next_out = NULL;
  z->zs.avail_out = 0;
  if (z->max_output && z->bytes_out + n > z->max_output) {
    /* The one byte too many is dropped; what fits the limit is still handed out. */
    n = (size_t)(z->max_output - z->bytes_out);
    if (!z->err) fail(z, RILL_EOUTPUT_LIMIT, NULL);
    r = 0;
  }
  if (n > 0) {
    rill_slab_ref(z->slab);
    out->slab = z->slab;
    out->off = z->slab->used;
    out->len = n;
    z->slab->used += n;
    z->bytes_out += n;
    return 0; /* an error, if any, is reported by the next call */
  }
  if (r) return r;
  if (z->err) return z->err;
  return z->finished ? UV_EOF : 0;
}
