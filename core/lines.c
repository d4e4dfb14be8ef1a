/* core/lines.c: the record-splitting transform (stream.lines(), stream.split(sep)) in C. */
#include "lines.h"

#include <stdlib.h>

#include "split.h"

static int push_record(void *arg, rill_view_t *rec) {
  rill_stream_t *s = arg;
  rill_chunk_t c;
  rill_chunk_from_view(&c, rec);
  /* Every record of a chunk is pushed: backpressure holds the next write, as in Node. */
  int r = rill_stream_push(s, &c);
  return r < 0 ? r : 0;
}

static void lines_transform(rill_stream_t *s, const rill_chunk_t *chunk) {
  rill_split_t *sp = rill_stream_data(s);
  int r = rill_split_feed(sp, &chunk->view, push_record, s);
  rill_err_t *e = r ? rill_err_new(r, NULL, NULL, NULL) : NULL;
  rill_stream_write_done(s, e);
  rill_err_unref(e);
}

static void lines_flush(rill_stream_t *s) {
  rill_split_t *sp = rill_stream_data(s);
  int r = rill_split_end(sp, push_record, s);
  rill_err_t *e = r ? rill_err_new(r, NULL, NULL, NULL) : NULL;
  rill_stream_final_done(s, e);
  rill_err_unref(e);
}

static void lines_free(rill_stream_t *s) {
  rill_split_t *sp = rill_stream_data(s);
  rill_split_free(sp);
  free(sp);
}

static const rill_stream_impl_t lines_impl = {
    .transform = lines_transform, .flush = lines_flush, .free = lines_free};

int rill_lines_new(rill_loop_t *loop, const void *sep, size_t seplen, size_t max_len,
                   rill_stream_t **out) {
  if ((sep == NULL) != (seplen == 0)) return UV_EINVAL;
  rill_split_t *sp = malloc(sizeof *sp);
  if (sp == NULL) return UV_ENOMEM;
  int r = rill_split_init(sp, sep, seplen, max_len);
  if (r) {
    free(sp);
    return r;
  }
  rill_stream_opts_t o = {RILL_STREAM_DUPLEX | RILL_STREAM_OBJECT_READ | RILL_STREAM_RECORDS,
                          RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  r = rill_stream_new(loop, &lines_impl, sp, &o, out);
  if (r) {
    rill_split_free(sp);
    free(sp);
  }
  return r;
}
