/* bench/split_bench.c: raw speed of the record splitter over a file held in memory. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "split.h"

/* usage: split_bench FILE [SEP [CHUNK [REPEAT]]]; SEP "" (the default) means lines mode. The
 * file is read once, then split from memory in CHUNK-byte views (default 64 KiB), so the figures
 * are the splitter's alone, without I/O. Best of REPEAT (default 3) runs, in CPU seconds. */

/* Thread CPU time rather than wall time: on a shared machine the figure then leaves out the time
 * spent waiting for a core. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
  size_t n, bytes;
} count_t;

static int count_cb(void *arg, rill_view_t *rec) {
  count_t *c = arg;
  c->n++;
  c->bytes += rec->len;
  rill_view_release(rec);
  return 0;
}

int main(int argc, char **argv) {
  const char *sep = argc > 2 && argv[2][0] ? argv[2] : NULL;
  size_t chunk = argc > 3 ? strtoull(argv[3], NULL, 10) : RILL_SLAB_SIZE;
  int repeat = argc > 4 ? atoi(argv[4]) : 3, r, mode;
  rill_view_t whole, v;
  FILE *f;
  long size;
  if (argc < 2 || chunk == 0) {
    fprintf(stderr, "usage: %s FILE [SEP [CHUNK [REPEAT]]]\n", argv[0]);
    return 2;
  }
  if (!(f = fopen(argv[1], "rb")) || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0) {
    perror(argv[1]);
    return 1;
  }
  rewind(f);
  if (rill_view_alloc(&whole, (size_t)size) != 0 ||
      fread(rill_view_data(&whole), 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "cannot read %s\n", argv[1]);
    return 1;
  }
  fclose(f);
  /* Mode 2 is the floor to compare with: a bare memchr loop over the buffer, lines mode only. */
  for (mode = 0; mode < (sep ? 2 : 3); mode++) {
    double best = 1e30;
    count_t c = {0, 0};
    for (r = 0; r < repeat; r++) {
      rill_split_t s;
      rill_split_rec_t rec;
      size_t off, pos;
      double t0;
      if (rill_split_init(&s, sep, sep ? strlen(sep) : 0, 0) != 0) return 1;
      memset(&c, 0, sizeof c);
      t0 = now();
      for (off = 0; off < whole.len; off += chunk) {
        size_t len = whole.len - off < chunk ? whole.len - off : chunk;
        if (mode == 2) {
          const unsigned char *d = rill_view_data(&whole) + off, *e = d + len, *m;
          for (; (m = memchr(d, '\n', (size_t)(e - d))) != NULL; d = m + 1) c.n++;
        } else if (mode == 0) { /* raw: (pointer, length) records, as the Lua binding uses them */
          const unsigned char *d = rill_view_data(&whole) + off;
          pos = 0;
          while (rill_split_next(&s, d, len, &pos, &rec) > 0) {
            c.n++;
            c.bytes += rec.len;
          }
        } else { /* views: one refcounted slice per record */
          rill_view_slice(&v, &whole, off, len);
          if (rill_split_feed(&s, &v, count_cb, &c) != 0) return 1;
          rill_view_release(&v);
        }
      }
      if (mode == 2) {
      } else if (mode == 0) {
        if (rill_split_finish(&s, &rec) > 0) {
          c.n++;
          c.bytes += rec.len;
        }
      } else if (rill_split_end(&s, count_cb, &c) != 0) {
        return 1;
      }
      t0 = now() - t0;
      if (t0 < best) best = t0;
      rill_split_free(&s);
    }
    printf(
        "%-5s sep=%-6s chunk=%zu: %zu records, %.1f MB/s, %.2f M records/s (best of %d, %.3f s "
        "cpu)\n",
        mode == 0   ? "raw"
        : mode == 1 ? "views"
                    : "memchr",
        sep ? sep : "lines", chunk, c.n, (double)whole.len / best / 1e6, (double)c.n / best / 1e6,
        repeat, best);
  }
  rill_view_release(&whole);
  rill_slab_pool_trim();
  return 0;
}
