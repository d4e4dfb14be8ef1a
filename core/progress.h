/* core/progress.h: a pass-through stream that draws a progress bar (rate, ETA) on a terminal. */
#ifndef RILL_PROGRESS_H
#define RILL_PROGRESS_H

#include <stdint.h>

#include "stream.h"

/* The bar is drawn on fd (stderr by default) only when it is a terminal (or when force is set),
 * at most every interval_ms, and a last time, with a newline, when the stream ends. Chunks pass
 * through untouched: the same views, no copy. With total, the bar shows the share done and an
 * ETA; without, the bytes so far and the rate. */
typedef struct {
  uint64_t total;       /* expected bytes, 0: unknown */
  const char *label;    /* shown first (copied), or NULL */
  int fd;               /* where to draw (-1: 2) */
  int force;            /* draw even when fd is not a terminal (tests, logs) */
  unsigned interval_ms; /* 0: 100 ms */
  unsigned width;       /* columns (0: the terminal's, else 80) */
} rill_progress_opts_t;

#define RILL_PROGRESS_OPTS_INIT \
  { 0, NULL, -1, 0, 0, 0 }

/* Creates the pass-through (a byte-mode transform); *out gets a new reference. 0, UV_EINVAL or
 * UV_ENOMEM. */
int rill_progress_new(rill_loop_t *loop, const rill_progress_opts_t *o, rill_stream_t **out);
/* Bytes that went through so far. */
uint64_t rill_progress_bytes(rill_stream_t *s);
/* Formats one line of the bar into buf (n bytes) for done bytes after secs seconds: shared with
 * the tests. Returns the length. */
size_t rill_progress_format(char *buf, size_t n, const char *label, uint64_t done, uint64_t total,
                            double secs, unsigned width);

#endif
