/* spec/c/test_file.c: file readers and writers, whole-file ops, their errors and descriptors. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "pipe.h"
#include "test.h"

static rill_loop_t loop;
static char tmpdir[] = "/tmp/rill_test_file_XXXXXX";

static void path_of(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", tmpdir, name);
}

/* Deterministic content: byte i is a mix of i so that misplaced chunks show. */
static void make_file(const char *path, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  for (size_t i = 0; i < n; i++) fputc((int)((i * 2654435761u) >> 13) & 0xff, f);
  fclose(f);
}

static unsigned char expected_byte(size_t i) {
  return (unsigned char)(((i * 2654435761u) >> 13) & 0xff);
}

/* ---- a collecting sink ---- */

typedef struct {
  unsigned char *data;
  size_t len, cap, chunks, max_chunk;
  int finished, closed, errors;
  int err_code;
  const char *err_syscall;
  char err_path[256];
} sink_t;

static void sink_write(rill_stream_t *s, const rill_chunk_t *c) {
  sink_t *k = rill_stream_data(s);
  size_t n = c->view.len;
  if (k->len + n > k->cap) {
    k->cap = (k->len + n) * 2;
    k->data = realloc(k->data, k->cap);
  }
  memcpy(k->data + k->len, rill_view_data(&c->view), n);
  k->len += n;
  k->chunks++;
  if (n > k->max_chunk) k->max_chunk = n;
  rill_stream_write_done(s, NULL);
}

static const rill_stream_impl_t sink_impl = {.write = sink_write};

static void watch_hook(rill_stream_t *s, const rill_event_t *ev, void *arg) {
  sink_t *k = arg;
  if (ev->type == RILL_EV_FINISH) k->finished++;
  if (ev->type == RILL_EV_CLOSE) k->closed++;
  if (ev->type == RILL_EV_ERROR) {
    k->errors++;
    k->err_code = ev->err->code;
    k->err_syscall = ev->err->syscall;
    snprintf(k->err_path, sizeof k->err_path, "%s", ev->err->path ? ev->err->path : "");
  }
}

static rill_stream_t *sink_new(sink_t *k) {
  memset(k, 0, sizeof *k);
  rill_stream_t *s;
  rill_stream_opts_t o = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  CHECK_INT(rill_stream_new(&loop, &sink_impl, k, &o, &s), 0);
  return s;
}

typedef struct {
  int called;
  int code;
} pl_t;

static void pl_cb(rill_err_t *err, void *arg) {
  pl_t *p = arg;
  p->called++;
  p->code = err ? err->code : 0;
}

static void run(void) {
  rill_loop_run(&loop, UV_RUN_DEFAULT);
}

/* ---- tests ---- */

static void test_read_whole(void) {
  char p[256];
  path_of(p, sizeof p, "a.bin");
  size_t n = 3 * 65536 + 123;
  make_file(p, n);
  size_t sizes[] = {0, 1, 4096, 65536, 100000, 1 << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    rill_file_read_opts_t o = RILL_FILE_READ_OPTS_INIT;
    o.chunk_size = sizes[k] == 1 ? 7 : sizes[k];
    rill_stream_t *r, *w;
    CHECK_INT(rill_file_reader_new(&loop, p, &o, &r), 0);
    sink_t sk;
    w = sink_new(&sk);
    pl_t pl = {0, 0};
    rill_stream_t *st[2] = {r, w};
    CHECK_INT(rill_pipeline(st, 2, pl_cb, &pl), 0);
    rill_stream_unref(r);
    rill_stream_unref(w);
    run();
    CHECK_INT(pl.called, 1);
    CHECK_INT(pl.code, 0);
    CHECK_INT(sk.len, n);
    for (size_t i = 0; i < n; i++)
      if (sk.data[i] != expected_byte(i)) CHECK_INT(i, -1);
    size_t want_max = o.chunk_size ? o.chunk_size : 65536;
    CHECK(sk.max_chunk <= want_max);
    free(sk.data);
  }
}

static void read_range(const char *p, int64_t start, int64_t stop, size_t from, size_t len) {
  rill_file_read_opts_t o = RILL_FILE_READ_OPTS_INIT;
  o.start = start;
  o.stop = stop;
  rill_stream_t *r, *w;
  CHECK_INT(rill_file_reader_new(&loop, p, &o, &r), 0);
  sink_t sk;
  w = sink_new(&sk);
  pl_t pl = {0, 0};
  rill_stream_t *st[2] = {r, w};
  CHECK_INT(rill_pipeline(st, 2, pl_cb, &pl), 0);
  rill_stream_unref(r);
  rill_stream_unref(w);
  run();
  CHECK_INT(pl.called, 1);
  CHECK_INT(pl.code, 0);
  CHECK_INT(sk.len, len);
  for (size_t i = 0; i < len; i++)
    if (sk.data[i] != expected_byte(from + i)) CHECK_INT(i, -1);
  free(sk.data);
}

static void test_read_range(void) {
  char p[256];
  path_of(p, sizeof p, "r.bin");
  make_file(p, 200000);
  read_range(p, 1, 10, 0, 10); /* first ten bytes */
  read_range(p, 11, 20, 10, 10);
  read_range(p, -100, -1, 199900, 100); /* last hundred */
  read_range(p, 65530, 131080, 65529, 65551);
  read_range(p, 5, 4, 0, 0); /* empty, like string.sub */
  read_range(p, 199999, 500000, 199998, 2);
  read_range(p, -500000, 3, 0, 3); /* clamped */
}

static void expect_reader_error(const char *path, int code, const char *syscall) {
  rill_stream_t *r, *w;
  CHECK_INT(rill_file_reader_new(&loop, path, NULL, &r), 0);
  sink_t rk, sk;
  memset(&rk, 0, sizeof rk);
  rill_stream_set_hook(r, watch_hook, &rk);
  w = sink_new(&sk);
  pl_t pl = {0, 0};
  rill_stream_t *st[2] = {r, w};
  CHECK_INT(rill_pipeline(st, 2, pl_cb, &pl), 0);
  run();
  CHECK_INT(pl.called, 1);
  CHECK_INT(pl.code, code);
  CHECK_INT(rk.errors, 1);
  CHECK_INT(rk.closed, 1);
  CHECK_INT(rk.err_code, code);
  CHECK_STR(rk.err_syscall, syscall);
  CHECK_STR(rk.err_path, path);
  CHECK_INT(sk.len, 0);
  rill_stream_set_hook(r, NULL, NULL);
  rill_stream_unref(r);
  rill_stream_unref(w);
  free(sk.data);
}

static void test_reader_errors(void) {
  char p[256];
  path_of(p, sizeof p, "missing");
  int before = test_fd_count();
  expect_reader_error(p, UV_ENOENT, "open");
  expect_reader_error(tmpdir, UV_EISDIR, "read");
  for (int i = 0; i < 1000; i++) {
    rill_stream_t *r;
    CHECK_INT(rill_file_reader_new(&loop, i % 2 ? p : tmpdir, NULL, &r), 0);
    rill_stream_resume(r);
    rill_stream_unref(r);
  }
  run();
  CHECK_INT(test_fd_count(), before);
}

static void expect_writer_error(const char *path, size_t bytes, int code, const char *syscall) {
  rill_stream_t *r, *w;
  rill_view_t v;
  CHECK_INT(rill_view_alloc(&v, bytes), 0);
  memset(rill_view_data(&v), 'x', bytes);
  CHECK_INT(rill_stream_new_source(&loop, &v, 0, &r), 0);
  rill_view_release(&v);
  CHECK_INT(rill_file_writer_new(&loop, path, NULL, &w), 0);
  sink_t wk;
  memset(&wk, 0, sizeof wk);
  rill_stream_set_hook(w, watch_hook, &wk);
  pl_t pl = {0, 0};
  rill_stream_t *st[2] = {r, w};
  CHECK_INT(rill_pipeline(st, 2, pl_cb, &pl), 0);
  run();
  CHECK_INT(pl.called, 1);
  CHECK_INT(pl.code, code);
  CHECK_INT(wk.errors, 1);
  CHECK_INT(wk.closed, 1);
  CHECK_INT(wk.err_code, code);
  CHECK_STR(wk.err_syscall, syscall);
  CHECK_STR(wk.err_path, path);
  rill_stream_set_hook(w, NULL, NULL);
  rill_stream_unref(r);
  rill_stream_unref(w);
}

static void test_writer_errors(void) {
  int before = test_fd_count();
  expect_writer_error("/dev/full", 1 << 20, UV_ENOSPC, "write");
  expect_writer_error("/dev/full", 10, UV_ENOSPC, "write"); /* small: written at turn's end */
  char p[256];
  path_of(p, sizeof p, "no/such/dir/x");
  expect_writer_error(p, 10, UV_ENOENT, "open");
  expect_writer_error(tmpdir, 10, UV_EISDIR, "open");
  for (int i = 0; i < 500; i++) {
    rill_stream_t *w;
    CHECK_INT(rill_file_writer_new(&loop, i % 2 ? p : "/dev/full", NULL, &w), 0);
    rill_stream_write_bytes(w, "abc", 3, NULL, NULL);
    rill_stream_end(w, NULL, NULL, NULL);
    rill_stream_unref(w);
  }
  run();
  CHECK_INT(test_fd_count(), before);
}

static void test_copy(void) {
  char a[256], b[256];
  path_of(a, sizeof a, "src.bin");
  path_of(b, sizeof b, "dst.bin");
  size_t n = 5 * 1000 * 1000 + 17;
  make_file(a, n);
  int before = test_fd_count();
  rill_stream_t *r, *w;
  CHECK_INT(rill_file_reader_new(&loop, a, NULL, &r), 0);
  CHECK_INT(rill_file_writer_new(&loop, b, NULL, &w), 0);
  pl_t pl = {0, 0};
  rill_stream_t *st[2] = {r, w};
  CHECK_INT(rill_pipeline(st, 2, pl_cb, &pl), 0);
  rill_stream_unref(r);
  rill_stream_unref(w);
  run();
  CHECK_INT(pl.called, 1);
  CHECK_INT(pl.code, 0);
  CHECK_INT(test_fd_count(), before);
  struct stat st1;
  CHECK_INT(stat(b, &st1), 0);
  CHECK_INT(st1.st_size, n);
  FILE *f = fopen(b, "rb");
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)fgetc(f) != expected_byte(i)) CHECK_INT(i, -1);
  fclose(f);
}

/* Many small writes become few system calls and keep their order. */
static void test_small_writes(void) {
  char p[256];
  path_of(p, sizeof p, "small.txt");
  rill_file_write_opts_t o = RILL_FILE_WRITE_OPTS_INIT;
  o.mode = 0600;
  rill_stream_t *w;
  CHECK_INT(rill_file_writer_new(&loop, p, &o, &w), 0);
  char line[32];
  size_t total = 0;
  for (int i = 0; i < 1000; i++) {
    int k = snprintf(line, sizeof line, "line %d\n", i);
    total += (size_t)k;
    int r = rill_stream_write_bytes(w, line, (size_t)k, NULL, NULL);
    CHECK(r == 0 || r == 1);
  }
  sink_t wk;
  memset(&wk, 0, sizeof wk);
  rill_stream_set_hook(w, watch_hook, &wk);
  rill_stream_end(w, NULL, NULL, NULL);
  run();
  CHECK_INT(wk.finished, 1);
  CHECK_INT(wk.closed, 1);
  rill_stream_set_hook(w, NULL, NULL);
  rill_stream_unref(w);
  struct stat st;
  CHECK_INT(stat(p, &st), 0);
  CHECK_INT(st.st_size, total);
  CHECK_INT(st.st_mode & 0777, 0600);
  FILE *f = fopen(p, "r");
  for (int i = 0; i < 1000; i++) {
    char buf[32];
    CHECK(fgets(buf, sizeof buf, f) != NULL);
    snprintf(line, sizeof line, "line %d\n", i);
    CHECK_STR(buf, line);
  }
  fclose(f);
  /* append */
  rill_file_write_opts_t ao = RILL_FILE_WRITE_OPTS_INIT;
  ao.append = 1;
  CHECK_INT(rill_file_writer_new(&loop, p, &ao, &w), 0);
  rill_stream_write_bytes(w, "end\n", 4, NULL, NULL);
  rill_stream_end(w, NULL, NULL, NULL);
  rill_stream_unref(w);
  run();
  CHECK_INT(stat(p, &st), 0);
  CHECK_INT(st.st_size, total + 4);
}

/* More than 1024 separate chunks queued behind a write in flight: the batches that complete at
 * once (32 KiB and more) must not strand the rest (the writer would wait for ever). */
static void test_many_chunks(void) {
  char p[256];
  path_of(p, sizeof p, "many.txt");
  rill_stream_t *w;
  CHECK_INT(rill_file_writer_new(&loop, p, NULL, &w), 0);
  size_t total = 0;
  for (int i = 0; i < 5000; i++) {
    char line[64];
    int k = snprintf(line, sizeof line, "%032d\n", i);
    rill_chunk_t c;
    CHECK_INT(rill_chunk_from_bytes(&c, line, (size_t)k), 0);
    int r = rill_stream_write(w, &c, NULL, NULL);
    CHECK(r == 0 || r == 1);
    total += (size_t)k;
  }
  sink_t wk;
  memset(&wk, 0, sizeof wk);
  rill_stream_set_hook(w, watch_hook, &wk);
  rill_stream_end(w, NULL, NULL, NULL);
  run();
  CHECK_INT(wk.finished, 1);
  rill_stream_set_hook(w, NULL, NULL);
  rill_stream_unref(w);
  run();
  struct stat st;
  CHECK_INT(stat(p, &st), 0);
  CHECK_INT(st.st_size, total);
}

/* Destroying a reader and a writer mid-stream closes their descriptors. */
static void test_destroy_midway(void) {
  char a[256], b[256];
  path_of(a, sizeof a, "mid.bin");
  path_of(b, sizeof b, "mid.out");
  make_file(a, 1 << 20);
  int before = test_fd_count();
  for (int i = 0; i < 200; i++) {
    rill_stream_t *r, *w;
    CHECK_INT(rill_file_reader_new(&loop, a, NULL, &r), 0);
    CHECK_INT(rill_file_writer_new(&loop, b, NULL, &w), 0);
    CHECK_INT(rill_stream_pipe(r, w, 1), 0);
    rill_loop_run(&loop, UV_RUN_ONCE);
    rill_stream_destroy_code(r, RILL_ESTREAM_PREMATURE_CLOSE);
    rill_stream_destroy(w, NULL);
    rill_stream_unref(r);
    rill_stream_unref(w);
  }
  run();
  CHECK_INT(test_fd_count(), before);
}

/* ---- whole-file ops ---- */

typedef struct {
  int called, code;
  const char *syscall;
  size_t len;
  unsigned char first;
  rill_stat_t st;
} res_t;

static void rf_cb(rill_err_t *err, rill_view_t *data, void *arg) {
  res_t *r = arg;
  r->called++;
  r->code = err ? err->code : 0;
  r->syscall = err ? err->syscall : NULL;
  if (data) {
    r->len = data->len;
    r->first = data->len ? rill_view_data(data)[0] : 0;
  }
}

static void wf_cb(rill_err_t *err, void *arg) {
  res_t *r = arg;
  r->called++;
  r->code = err ? err->code : 0;
  r->syscall = err ? err->syscall : NULL;
}

static void st_cb(rill_err_t *err, const rill_stat_t *st, void *arg) {
  res_t *r = arg;
  r->called++;
  r->code = err ? err->code : 0;
  r->syscall = err ? err->syscall : NULL;
  if (st) r->st = *st;
}

static void test_whole_file(void) {
  char p[256], m[256];
  path_of(p, sizeof p, "whole.txt");
  path_of(m, sizeof m, "nope/x");
  rill_view_t v;
  CHECK_INT(rill_view_from(&v, "hello world", 11), 0);
  res_t r = {0};
  CHECK_INT(rill_fs_write_file(&loop, p, &v, 0, wf_cb, &r), 0);
  rill_view_release(&v);
  run();
  CHECK_INT(r.called, 1);
  CHECK_INT(r.code, 0);
  memset(&r, 0, sizeof r);
  CHECK_INT(rill_fs_read_file(&loop, p, rf_cb, &r), 0);
  run();
  CHECK_INT(r.called, 1);
  CHECK_INT(r.len, 11);
  CHECK_INT(r.first, 'h');
  memset(&r, 0, sizeof r);
  CHECK_INT(rill_fs_stat(&loop, p, 0, st_cb, &r), 0);
  run();
  CHECK_INT(r.code, 0);
  CHECK_INT(r.st.size, 11);
  CHECK_INT(r.st.type, 'f');
  memset(&r, 0, sizeof r);
  CHECK_INT(rill_fs_stat(&loop, tmpdir, 0, st_cb, &r), 0);
  run();
  CHECK_INT(r.st.type, 'd');
  int before = test_fd_count();
  for (int i = 0; i < 300; i++) {
    memset(&r, 0, sizeof r);
    CHECK_INT(rill_fs_read_file(&loop, m, rf_cb, &r), 0);
    run();
    CHECK_INT(r.code, UV_ENOENT);
    CHECK_STR(r.syscall, "open");
    memset(&r, 0, sizeof r);
    CHECK_INT(rill_fs_read_file(&loop, tmpdir, rf_cb, &r), 0);
    run();
    CHECK_INT(r.code, UV_EISDIR);
    memset(&r, 0, sizeof r);
    CHECK_INT(rill_view_from(&v, "x", 1), 0);
    CHECK_INT(rill_fs_write_file(&loop, "/dev/full", &v, 0, wf_cb, &r), 0);
    rill_view_release(&v);
    run();
    CHECK_INT(r.code, UV_ENOSPC);
    CHECK_STR(r.syscall, "write");
    memset(&r, 0, sizeof r);
    CHECK_INT(rill_fs_stat(&loop, m, 0, st_cb, &r), 0);
    run();
    CHECK_INT(r.code, UV_ENOENT);
    CHECK_STR(r.syscall, "stat");
  }
  CHECK_INT(test_fd_count(), before);
  /* An empty file reads as zero bytes. */
  CHECK_INT(rill_view_from(&v, "", 0), 0);
  memset(&r, 0, sizeof r);
  CHECK_INT(rill_fs_write_file(&loop, p, &v, 0, wf_cb, &r), 0);
  run();
  memset(&r, 0, sizeof r);
  r.len = 99;
  CHECK_INT(rill_fs_read_file(&loop, p, rf_cb, &r), 0);
  run();
  CHECK_INT(r.code, 0);
  CHECK_INT(r.len, 0);
}

/* A job still running when the loop is freed calls nobody back. */
static int late_called;
static void late_cb(rill_err_t *err, const rill_stat_t *st, void *arg) {
  late_called++;
}

static void test_teardown_pending(void) {
  rill_loop_t l2;
  CHECK_INT(rill_loop_init(&l2, NULL), 0);
  CHECK_INT(rill_fs_stat(&l2, "/", 0, late_cb, NULL), 0);
  rill_loop_free(&l2);
  CHECK_INT(late_called, 0);
}

/* Follow mode: appended bytes arrive, truncation restarts, rotation moves to the new file. */
typedef struct {
  sink_t sk;
  int step;
  char path[256], rot[256];
  uv_timer_t t;
} follow_t;

static void append_to(const char *p, const char *s) {
  FILE *f = fopen(p, "ab");
  fputs(s, f);
  fclose(f);
}

static rill_stream_t *follow_reader;

static void follow_step(uv_timer_t *t) {
  follow_t *f = t->data;
  const char *seen = (const char *)f->sk.data;
  size_t len = f->sk.len;
  if (f->step == 0 && len == 4 && memcmp(seen, "one\n", 4) == 0) {
    append_to(f->path, "two\n");
    f->step = 1;
  } else if (f->step == 1 && len == 8) {
    FILE *x = fopen(f->path, "wb"); /* truncate and write less */
    fputs("3\n", x);
    fclose(x);
    f->step = 2;
  } else if (f->step == 2 && len == 10) {
    CHECK_INT(rename(f->path, f->rot), 0);
    append_to(f->path, "four\n");
    f->step = 3;
  } else if (f->step == 3 && len == 15) {
    CHECK(memcmp(seen, "one\ntwo\n3\nfour\n", 15) == 0);
    f->step = 4;
    rill_stream_destroy(follow_reader, NULL);
    uv_close((uv_handle_t *)t, NULL);
  }
}

static void test_follow(void) {
  follow_t f;
  memset(&f, 0, sizeof f);
  path_of(f.path, sizeof f.path, "follow.log");
  path_of(f.rot, sizeof f.rot, "follow.log.1");
  FILE *x = fopen(f.path, "wb");
  fputs("one\n", x);
  fclose(x);
  rill_file_read_opts_t o = RILL_FILE_READ_OPTS_INIT;
  o.follow = 1;
  o.poll_ms = 5;
  rill_stream_t *w = sink_new(&f.sk);
  CHECK_INT(rill_file_reader_new(&loop, f.path, &o, &follow_reader), 0);
  CHECK_INT(rill_stream_pipe(follow_reader, w, 1), 0);
  uv_timer_init(loop.uv, &f.t);
  f.t.data = &f;
  uv_timer_start(&f.t, follow_step, 10, 10);
  run();
  CHECK_INT(f.step, 4);
  rill_stream_unref(follow_reader);
  rill_stream_unref(w);
  run();
  free(f.sk.data);
}

int main(void) {
  CHECK(mkdtemp(tmpdir) != NULL);
  CHECK_INT(rill_loop_init(&loop, NULL), 0);
  RUN(test_read_whole);
  RUN(test_read_range);
  RUN(test_reader_errors);
  RUN(test_writer_errors);
  RUN(test_copy);
  RUN(test_small_writes);
  RUN(test_many_chunks);
  RUN(test_destroy_midway);
  RUN(test_whole_file);
  RUN(test_teardown_pending);
  RUN(test_follow);
  rill_loop_free(&loop);
  rill_slab_pool_trim();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  CHECK_INT(system(cmd), 0);
  return 0;
}
