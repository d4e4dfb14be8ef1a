/* core/zlib_stream.c: the zlib engine driven by a duplex stream, at its consumer's pace. */
#include "zlib_stream.h"

#include <stdlib.h>
#include <uv.h>

/* What the engine is working on. */
enum {
  PH_IDLE,      /* waiting for a write */
  PH_WRITING,   /* a written chunk is in the engine; its write is not acknowledged yet */
  PH_FINISHING, /* the writable side ended; the last output is being produced */
  PH_DONE,      /* everything was produced, or the stream failed */
};

typedef struct {
  rill_stream_t *s;
  rill_zlib_t z;
  int phase;
  int producing; /* inside produce(): calls from its own pushes must not re-enter */
  int closing;   /* destroyed while producing: close the engine on the way out */
} zstream_t;

static const rill_stream_impl_t zstream_impl;

static int destroyed(rill_stream_t *s) {
  return (rill_stream_state(s) & RILL_SS_DESTROYED) != 0;
}

/* Runs the engine while its output has room downstream. Stops when the readable side is full
 * (the next read call resumes), when the engine needs more input (the write is acknowledged),
 * or at the end. A push may run a consumer that writes, reads or destroys re-entrantly; those
 * calls only change the phase, and this loop carries on with it. */
static void produce(zstream_t *zs) {
  rill_stream_t *s = zs->s;
  if (zs->producing) return;
  zs->producing = 1;
  rill_stream_ref(s);
  while ((zs->phase == PH_WRITING || zs->phase == PH_FINISHING) && !destroyed(s)) {
    rill_view_t v;
    int r = rill_zlib_read(&zs->z, &v, RILL_SLAB_SIZE);
    if (r == 0 && v.len > 0) {
      rill_chunk_t c;
      rill_chunk_from_view(&c, &v);
      if (rill_stream_push(s, &c) != 1) break; /* full (or failed): wait for a read call */
      continue;
    }
    int phase = zs->phase;
    if (r == 0) {
      /* All written input is consumed: the write is done, and the next may come in at once. */
      zs->phase = PH_IDLE;
      rill_stream_write_done(s, NULL);
    } else if (r == UV_EOF) {
      zs->phase = PH_DONE;
      rill_stream_push(s, NULL);
      rill_stream_final_done(s, NULL);
    } else {
      zs->phase = PH_DONE;
      rill_err_t *e = rill_err_new(r, NULL, NULL, rill_zlib_message(&zs->z));
      if (phase == PH_WRITING)
        rill_stream_write_done(s, e);
      else
        rill_stream_final_done(s, e);
      rill_err_unref(e);
    }
  }
  zs->producing = 0;
  if (zs->closing) {
    zs->closing = 0;
    rill_zlib_close(&zs->z);
  }
  rill_stream_unref(s);
}

static void zs_write(rill_stream_t *s, const rill_chunk_t *chunk) {
  zstream_t *zs = rill_stream_data(s);
  int r = rill_zlib_write(&zs->z, &chunk->view);
  if (r) {
    zs->phase = PH_DONE;
    rill_err_t *e = rill_err_new(r, NULL, NULL, rill_zlib_message(&zs->z));
    rill_stream_write_done(s, e);
    rill_err_unref(e);
    return;
  }
  zs->phase = PH_WRITING;
  produce(zs);
}

static void zs_final(rill_stream_t *s) {
  zstream_t *zs = rill_stream_data(s);
  rill_zlib_end(&zs->z);
  zs->phase = PH_FINISHING;
  produce(zs);
}

static void zs_read(rill_stream_t *s, size_t size) {
  produce(rill_stream_data(s));
}

static void zs_destroy(rill_stream_t *s, rill_err_t *err) {
  zstream_t *zs = rill_stream_data(s);
  zs->phase = PH_DONE;
  /* The engine holds input views and zlib's state: give them back now, not at free time. */
  if (zs->producing)
    zs->closing = 1;
  else
    rill_zlib_close(&zs->z);
  rill_stream_destroy_done(s, err);
}

static void zs_free(rill_stream_t *s) {
  zstream_t *zs = rill_stream_data(s);
  rill_zlib_close(&zs->z);
  free(zs);
}

static const rill_stream_impl_t zstream_impl = {
    .read = zs_read,
    .write = zs_write,
    .final = zs_final,
    .destroy = zs_destroy,
    .free = zs_free,
};

int rill_zlib_stream_new(rill_loop_t *loop, const rill_zlib_opts_t *opts, rill_stream_t **out) {
  if (loop == NULL || opts == NULL || out == NULL) return UV_EINVAL;
  zstream_t *zs = calloc(1, sizeof *zs);
  if (zs == NULL) return UV_ENOMEM;
  int r = rill_zlib_init(&zs->z, opts);
  if (r) {
    free(zs);
    return r;
  }
  rill_stream_opts_t so = {RILL_STREAM_DUPLEX, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  r = rill_stream_new(loop, &zstream_impl, zs, &so, &zs->s);
  if (r) {
    rill_zlib_close(&zs->z);
    free(zs);
    return r;
  }
  *out = zs->s;
  return 0;
}

const rill_zlib_t *rill_zlib_stream_engine(const rill_stream_t *s) {
  if (rill_stream_impl(s) != &zstream_impl) return NULL;
  return &((zstream_t *)rill_stream_data(s))->z;
}
