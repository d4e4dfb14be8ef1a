/* core/pgzip.c: gzip compression on worker threads (see pgzip.h for the scheme). */
#include "pgzip.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <zlib.h>

#include "workers.h"

#define DICT_MAX (32 * 1024) /* deflate's window: the most a match can reach back */

/* Per-pool state, owned by the pool (freed by fini after every thread is joined), so that
 * workers never touch the stream, which may be gone first. */
typedef struct {
  int level;
  unsigned n;
  struct pgz_s *owner; /* NULL once the stream let go of the pool */
  z_stream *zs;        /* one deflate state per worker, reset between blocks */
  unsigned char *inited;
} shared_t;

typedef struct {
  rill_job_t job;
  rill_view_t in;   /* the block: in.len is its size */
  rill_view_t dict; /* the 32 KiB before it (empty for the first block) */
  int last;
  unsigned char *out; /* malloc'd by the worker */
  size_t out_len;
  uLong crc;
  int zerr; /* zlib's error, or 0 */
} block_t;

typedef struct pgz_s {
  rill_stream_t *s;
  rill_workers_t *pool;
  shared_t *sh;
  rill_view_t cur;            /* the block being filled (capacity RILL_PGZIP_BLOCK) */
  size_t cur_len;             /* bytes in cur so far */
  rill_view_t dict;           /* the last 32 KiB of the block submitted last */
  const rill_chunk_t *wchunk; /* the write being taken in, borrowed until write_done */
  size_t woff;
  uLong crc;
  uint64_t bytes_in, bytes_out, isize;
  unsigned writing : 1, ending : 1, last_sent : 1, header_sent : 1, full : 1, done : 1, pumping : 1;
} pgz_t;

static const rill_stream_impl_t pgz_impl;

static void block_free(block_t *b) {
  rill_view_release(&b->in);
  rill_view_release(&b->dict);
  free(b->out);
  free(b);
}

/* ---- worker side ---- */

static void work(rill_workers_t *p, rill_job_t *job, unsigned worker) {
  shared_t *sh = rill_workers_arg(p);
  block_t *b = RILL_CONTAINER_OF(job, block_t, job);
  z_stream *z = &sh->zs[worker];
  int r;
  if (!sh->inited[worker]) {
    r = deflateInit2(z, sh->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    if (r != Z_OK) {
      b->zerr = r;
      return;
    }
    sh->inited[worker] = 1;
  } else {
    deflateReset(z);
  }
  if (b->dict.len) deflateSetDictionary(z, rill_view_data(&b->dict), (uInt)b->dict.len);
  size_t cap = deflateBound(z, (uLong)b->in.len) + 64;
  b->out = malloc(cap);
  if (b->out == NULL) {
    b->zerr = Z_MEM_ERROR;
    return;
  }
  z->next_in = rill_view_data(&b->in);
  z->avail_in = (uInt)b->in.len;
  z->next_out = b->out;
  z->avail_out = (uInt)cap;
  int flush = b->last ? Z_FINISH : Z_SYNC_FLUSH;
  for (;;) {
    r = deflate(z, flush);
    if (r == Z_STREAM_END || (r == Z_OK && !b->last && z->avail_out > 0 && z->avail_in == 0)) break;
    if (r != Z_OK && r != Z_BUF_ERROR) {
      b->zerr = r;
      return;
    }
    /* The bound was not enough (it does not count every flush marker): grow and go on. */
    size_t used = cap - z->avail_out;
    unsigned char *bigger = realloc(b->out, cap * 2);
    if (bigger == NULL) {
      b->zerr = Z_MEM_ERROR;
      return;
    }
    b->out = bigger;
    z->next_out = bigger + used;
    z->avail_out = (uInt)(cap * 2 - used);
    cap *= 2;
  }
  b->out_len = cap - z->avail_out;
  b->crc = crc32(0, rill_view_data(&b->in), (uInt)b->in.len);
}

/* ---- loop side ---- */

static void pump(pgz_t *g);

static int push_bytes(pgz_t *g, const void *p, size_t len) {
  rill_view_t v;
  if (rill_view_from(&v, p, len) != 0) return UV_ENOMEM;
  rill_chunk_t c;
  rill_chunk_from_view(&c, &v);
  g->bytes_out += len;
  if (rill_stream_push(g->s, &c) != 1) g->full = 1;
  return 0;
}

static void fail(pgz_t *g, int code, const char *msg) {
  g->done = 1;
  rill_err_t *e = rill_err_new(code, NULL, NULL, msg);
  rill_stream_destroy(g->s, e);
  rill_err_unref(e);
}

static void put_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static void done(rill_workers_t *p, rill_job_t *job, int status) {
  block_t *b = RILL_CONTAINER_OF(job, block_t, job);
  shared_t *sh = rill_workers_arg(p);
  pgz_t *g = sh->owner;
  if (status != 0 || g == NULL || g->done) {
    block_free(b);
    return;
  }
  rill_stream_ref(g->s);
  int r = 0;
  if (b->zerr) {
    fail(g, b->zerr == Z_MEM_ERROR ? UV_ENOMEM : RILL_EZLIB, zError(b->zerr));
  } else {
    if (!g->header_sent) {
      /* mtime 0 and OS 3 (Unix), as Node writes; XFL marks the extreme levels. */
      unsigned char h[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
      h[8] = sh->level == 9 ? 2 : sh->level == 1 ? 4 : 0;
      g->header_sent = 1;
      r = push_bytes(g, h, sizeof h);
    }
    g->crc = crc32_combine(g->crc, b->crc, (z_off_t)b->in.len);
    g->isize += b->in.len;
    if (r == 0 && b->out_len) r = push_bytes(g, b->out, b->out_len);
    /* A consumer may destroy the stream from a push: then nothing more goes out. */
    if (r == 0 && b->last && !g->done) {
      unsigned char t[8];
      put_le32(t, (uint32_t)g->crc);
      put_le32(t + 4, (uint32_t)g->isize);
      r = push_bytes(g, t, sizeof t);
      if (r == 0 && !g->done) {
        g->done = 1;
        rill_stream_push(g->s, NULL);
        rill_stream_final_done(g->s, NULL);
      }
    }
    if (r && !g->done) fail(g, r, NULL);
  }
  block_free(b);
  pump(g);
  rill_stream_unref(g->s);
}

static void fini(rill_workers_t *p) {
  shared_t *sh = rill_workers_arg(p);
  for (unsigned i = 0; i < sh->n; i++)
    if (sh->inited[i]) deflateEnd(&sh->zs[i]);
  free(sh->zs);
  free(sh->inited);
  free(sh);
}

static const rill_workers_ops_t ops = {.work = work, .done = done, .fini = fini};

/* Hands the filled block to the pool. 1 when it went; 0 when it must wait (the pool is at
 * capacity or the consumer is behind): done or read calls pump again. */
static int submit(pgz_t *g, int last) {
  if (g->full || rill_workers_in_flight(g->pool) >= rill_workers_capacity(g->pool)) return 0;
  block_t *b = calloc(1, sizeof *b);
  if (b == NULL) {
    fail(g, UV_ENOMEM, NULL);
    return 0;
  }
  b->last = last;
  if (g->cur_len) rill_view_slice(&b->in, &g->cur, 0, g->cur_len);
  b->dict = g->dict; /* moves */
  g->dict = (rill_view_t){0};
  if (!last) {
    size_t d = g->cur_len < DICT_MAX ? g->cur_len : DICT_MAX;
    rill_view_slice(&g->dict, &g->cur, g->cur_len - d, d);
  }
  int r = rill_workers_submit(g->pool, &b->job);
  if (r) {
    block_free(b);
    fail(g, r, NULL);
    return 0;
  }
  rill_view_release(&g->cur);
  g->cur_len = 0;
  if (last) g->last_sent = 1;
  return 1;
}

/* Takes in the pending write block by block, then ends the stream once final was called. A
 * write_done may bring the next write in re-entrantly: the guard makes the outer call go on. */
static void pump(pgz_t *g) {
  if (g->pumping) return;
  g->pumping = 1;
  while (!g->done) {
    if (g->writing) {
      const rill_view_t *v = &g->wchunk->view;
      while (g->woff < v->len) {
        if (g->cur_len == RILL_PGZIP_BLOCK && !submit(g, 0)) goto out;
        if (g->cur.slab == NULL && rill_view_alloc(&g->cur, RILL_PGZIP_BLOCK) != 0) {
          fail(g, UV_ENOMEM, NULL);
          goto out;
        }
        size_t n = v->len - g->woff;
        if (n > RILL_PGZIP_BLOCK - g->cur_len) n = RILL_PGZIP_BLOCK - g->cur_len;
        memcpy(rill_view_data(&g->cur) + g->cur_len, rill_view_data(v) + g->woff, n);
        g->cur_len += n;
        g->woff += n;
        g->bytes_in += n;
      }
      g->writing = 0;
      g->wchunk = NULL;
      rill_stream_write_done(g->s, NULL);
      continue;
    }
    if (g->ending && !g->last_sent) {
      /* A full block goes first as an ordinary one, so the last may be empty. */
      if (g->cur_len == RILL_PGZIP_BLOCK && !submit(g, 0)) break;
      if (!submit(g, 1)) break;
      continue;
    }
    break;
  }
out:
  g->pumping = 0;
}

static void pgz_write(rill_stream_t *s, const rill_chunk_t *chunk) {
  pgz_t *g = rill_stream_data(s);
  g->wchunk = chunk;
  g->woff = 0;
  g->writing = 1;
  pump(g);
}

static void pgz_final(rill_stream_t *s) {
  pgz_t *g = rill_stream_data(s);
  g->ending = 1;
  pump(g);
}

static void pgz_read(rill_stream_t *s, size_t size) {
  pgz_t *g = rill_stream_data(s);
  g->full = 0;
  pump(g);
}

static void let_go(pgz_t *g) {
  if (g->pool) {
    g->sh->owner = NULL;
    rill_workers_close(g->pool);
    g->pool = NULL;
  }
  rill_view_release(&g->cur);
  rill_view_release(&g->dict);
}

static void pgz_destroy(rill_stream_t *s, rill_err_t *err) {
  pgz_t *g = rill_stream_data(s);
  g->done = 1;
  let_go(g);
  rill_stream_destroy_done(s, err);
}

static void pgz_free(rill_stream_t *s) {
  pgz_t *g = rill_stream_data(s);
  let_go(g);
  free(g);
}

static const rill_stream_impl_t pgz_impl = {
    .read = pgz_read,
    .write = pgz_write,
    .final = pgz_final,
    .destroy = pgz_destroy,
    .free = pgz_free,
};

int rill_pgzip_new(rill_loop_t *loop, int level, unsigned threads, rill_stream_t **out) {
  if (loop == NULL || out == NULL || level < -1 || level > 9 || threads > RILL_WORKERS_MAX)
    return UV_EINVAL;
  if (threads == 0) threads = rill_workers_default_count();
  pgz_t *g = calloc(1, sizeof *g);
  shared_t *sh = calloc(1, sizeof *sh);
  if (g == NULL || sh == NULL) goto nomem;
  sh->level = level < 0 ? Z_DEFAULT_COMPRESSION : level;
  if (sh->level == Z_DEFAULT_COMPRESSION) sh->level = 6;
  sh->n = threads;
  sh->zs = calloc(threads, sizeof *sh->zs);
  sh->inited = calloc(threads, 1);
  if (sh->zs == NULL || sh->inited == NULL) goto nomem;
  g->crc = crc32(0, NULL, 0);
  g->sh = sh;
  rill_stream_opts_t so = {RILL_STREAM_DUPLEX, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  int r = rill_stream_new(loop, &pgz_impl, g, &so, &g->s);
  if (r) goto fail_r;
  r = rill_workers_new(loop, threads, 2, &ops, sh, &g->pool);
  if (r) {
    /* The stream frees g; the pool never existed, so sh is still ours. */
    rill_stream_t *s = g->s;
    g->sh = NULL;
    rill_stream_destroy(s, NULL);
    rill_stream_unref(s);
    free(sh->zs);
    free(sh->inited);
    free(sh);
    return r;
  }
  sh->owner = g;
  *out = g->s;
  return 0;
nomem:
  r = UV_ENOMEM;
fail_r:
  if (sh) {
    free(sh->zs);
    free(sh->inited);
  }
  free(sh);
  free(g);
  return r;
}

int rill_pgzip_stats(const rill_stream_t *s, uint64_t *in, uint64_t *out) {
  if (rill_stream_impl(s) != &pgz_impl) return 0;
  const pgz_t *g = rill_stream_data(s);
  *in = g->bytes_in;
  *out = g->bytes_out;
  return 1;
}
