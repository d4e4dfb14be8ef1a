/* spec/c/test_splice.c: the native fast path: file to file, device, socket; errors; cancel. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "pipe.h"
#include "splice.h"
#include "tcp.h"
#include "test.h"

static rill_loop_t loop;
static char tmpdir[] = "/tmp/rill_test_splice_XXXXXX";

static void path_of(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", tmpdir, name);
}

static unsigned char byte_at(size_t i) {
  return (unsigned char)(((i * 2654435761u) >> 11) & 0xff);
}

static void make_file(const char *path, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  for (size_t i = 0; i < n; i++) fputc(byte_at(i), f);
  fclose(f);
}

/* Checks that path holds bytes [from, from+n) of the pattern. */
static void check_file(const char *path, size_t from, size_t n) {
  struct stat st;
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_size, n);
  FILE *f = fopen(path, "rb");
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)fgetc(f) != byte_at(from + i)) CHECK_INT(i, -1);
  fclose(f);
}

typedef struct {
  int called, code;
  const char *syscall;
} pl_t;

static void pl_cb(rill_err_t *err, void *arg) {
  pl_t *p = arg;
  p->called++;
  p->code = err ? err->code : 0;
  p->syscall = err ? err->syscall : NULL;
}

static void run(void) {
  rill_loop_run(&loop, UV_RUN_DEFAULT);
}

static pl_t copy(const char *from, const char *to, int64_t start, int64_t stop) {
  rill_file_read_opts_t o = RILL_FILE_READ_OPTS_INIT;
  o.start = start;
  o.stop = stop;
  rill_stream_t *st[2];
  CHECK_INT(rill_file_reader_new(&loop, from, &o, &st[0]), 0);
  CHECK_INT(rill_file_writer_new(&loop, to, NULL, &st[1]), 0);
  pl_t pl = {0, 0, NULL};
  CHECK_INT(rill_pipeline(st, 2, pl_cb, &pl), 0);
  rill_stream_unref(st[0]);
  rill_stream_unref(st[1]);
  run();
  CHECK_INT(pl.called, 1);
  return pl;
}

static void test_file_to_file(void) {
  char a[256], b[256];
  path_of(a, sizeof a, "a.bin");
  path_of(b, sizeof b, "b.bin");
  size_t n = 40 * 1000 * 1000 + 3; /* more than two 16 MiB steps */
  make_file(a, n);
  int fds = test_fd_count();
  unsigned long before = rill_splice_count();
  pl_t pl = copy(a, b, 1, -1);
  CHECK_INT(pl.code, 0);
  CHECK_INT(rill_splice_count(), before + 1);
  check_file(b, 0, n);
  pl = copy(a, b, 1000001, 30000000);
  CHECK_INT(pl.code, 0);
  check_file(b, 1000000, 29000000);
  pl = copy(a, b, -10, -1);
  CHECK_INT(pl.code, 0);
  check_file(b, n - 10, 10);
  pl = copy(a, b, 5, 4); /* empty range */
  CHECK_INT(pl.code, 0);
  check_file(b, 0, 0);
  CHECK_INT(test_fd_count(), fds);
}

static void test_devices(void) {
  char a[256];
  path_of(a, sizeof a, "d.bin");
  make_file(a, 3 * 1000 * 1000);
  int fds = test_fd_count();
  pl_t pl = copy(a, "/dev/null", 1, -1);
  CHECK_INT(pl.code, 0);
  /* /dev/full takes no splice: the copy loop gets its ENOSPC, reported as a write error */
  pl = copy(a, "/dev/full", 1, -1);
  CHECK_INT(pl.code, UV_ENOSPC);
  CHECK_STR(pl.syscall, "write");
  CHECK_INT(test_fd_count(), fds);
}

/* A FIFO source is not a regular file: the plain pipe copies it. */
static void test_fifo_falls_back(void) {
  char fifo[256], out[256];
  path_of(fifo, sizeof fifo, "fifo");
  path_of(out, sizeof out, "fifo.out");
  CHECK_INT(mkfifo(fifo, 0600), 0);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(fifo, O_WRONLY);
    for (int i = 0; i < 100; i++) {
      unsigned char buf[1000];
      for (int k = 0; k < 1000; k++) buf[k] = byte_at((size_t)(i * 1000 + k));
      if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) _exit(1);
    }
    _exit(0);
  }
  unsigned long before = rill_splice_count();
  pl_t pl = copy(fifo, out, 1, -1);
  CHECK_INT(pl.code, 0);
  CHECK_INT(rill_splice_count(), before);
  check_file(out, 0, 100000);
}

/* File to socket with a range: the peer gets exactly that range. */
typedef struct {
  size_t got;
  size_t from;
  int bad;
  int closed;
} peer_t;

static void peer_write(rill_stream_t *s, const rill_chunk_t *c) {
  peer_t *p = rill_stream_data(s);
  const unsigned char *d = rill_view_data(&c->view);
  for (size_t i = 0; i < c->view.len; i++)
    if (d[i] != byte_at(p->from + p->got + i)) p->bad = 1;
  p->got += c->view.len;
  rill_stream_write_done(s, NULL);
}

static const rill_stream_impl_t peer_impl = {.write = peer_write};

static peer_t peer;
static rill_stream_t *peer_sink;

static void on_conn(rill_tcp_server_t *srv, int status, rill_stream_t *conn, void *arg) {
  CHECK_INT(status, 0);
  CHECK_INT(rill_stream_pipe(conn, peer_sink, 1), 0);
  rill_stream_unref(conn);
  rill_tcp_server_close(srv, NULL, NULL);
}

static void test_file_to_socket(void) {
  char a[256];
  path_of(a, sizeof a, "sock.bin");
  size_t n = 20 * 1000 * 1000;
  make_file(a, n);
  /* The first listen opens libuv's spare descriptor (for EMFILE), kept until the loop ends. */
  rill_tcp_server_t *warm;
  CHECK_INT(rill_tcp_listen(&loop, "127.0.0.1", 0, 16, 0, on_conn, NULL, &warm), 0);
  rill_tcp_server_free(warm);
  run();
  int fds = test_fd_count();
  memset(&peer, 0, sizeof peer);
  peer.from = 12345;
  rill_stream_opts_t po = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  CHECK_INT(rill_stream_new(&loop, &peer_impl, &peer, &po, &peer_sink), 0);
  rill_tcp_server_t *srv;
  CHECK_INT(rill_tcp_listen(&loop, "127.0.0.1", 0, 16, 0, on_conn, NULL, &srv), 0);
  rill_stream_t *st[2];
  rill_file_read_opts_t o = RILL_FILE_READ_OPTS_INIT;
  o.start = 12346;
  o.stop = (int64_t)n - 1000;
  CHECK_INT(rill_file_reader_new(&loop, a, &o, &st[0]), 0);
  CHECK_INT(rill_tcp_connect(&loop, "127.0.0.1", rill_tcp_server_port(srv), 0, NULL, NULL, &st[1]),
            0);
  unsigned long before = rill_splice_count();
  pl_t pl = {0, 0, NULL};
  CHECK_INT(rill_pipeline(st, 2, pl_cb, &pl), 0);
  /* The socket closes (and the pipeline reports) once the peer's end was read too. */
  rill_stream_resume(st[1]);
  rill_stream_unref(st[0]);
  rill_stream_unref(st[1]);
  run();
  CHECK_INT(pl.called, 1);
  CHECK_INT(pl.code, 0);
  CHECK_INT(rill_splice_count(), before + 1);
  CHECK_INT(peer.got, n - 1000 - 12345);
  CHECK_INT(peer.bad, 0);
  rill_stream_unref(peer_sink);
  rill_tcp_server_free(srv);
  run();
  CHECK_INT(test_fd_count(), fds);
}

/* Destroying either end mid-copy cancels the job; descriptors close; the pipeline reports once. */
typedef struct {
  rill_stream_t *victim;
  uv_timer_t t;
} killer_t;

static void kill_cb(uv_timer_t *t) {
  killer_t *k = t->data;
  rill_stream_destroy_code(k->victim, RILL_ESTREAM_PREMATURE_CLOSE);
  uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void) {
  char a[256];
  path_of(a, sizeof a, "big.bin");
  make_file(a, 64 * 1000 * 1000);
  int fds = test_fd_count();
  for (int side = 0; side < 2; side++) {
    /* a FIFO reader that never reads makes the copy block: only the cancel ends it */
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/slow%d", tmpdir, side);
    CHECK_INT(mkfifo(fifo, 0600), 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK);
    CHECK(rfd >= 0);
    rill_stream_t *st[2];
    CHECK_INT(rill_file_reader_new(&loop, a, NULL, &st[0]), 0);
    CHECK_INT(rill_file_writer_new(&loop, fifo, NULL, &st[1]), 0);
    pl_t pl = {0, 0, NULL};
    CHECK_INT(rill_pipeline(st, 2, pl_cb, &pl), 0);
    killer_t k;
    k.victim = st[side];
    uv_timer_init(loop.uv, &k.t);
    k.t.data = &k;
    uv_update_time(loop.uv); /* making the file took a while: the loop's clock is behind */
    uv_timer_start(&k.t, kill_cb, 150, 0);
    rill_stream_unref(st[0]);
    rill_stream_unref(st[1]);
    run();
    CHECK_INT(pl.called, 1);
    CHECK_INT(pl.code, RILL_ESTREAM_PREMATURE_CLOSE);
    close(rfd);
  }
  CHECK_INT(test_fd_count(), fds);
}

static void test_disabled(void) {
  char a[256], b[256];
  path_of(a, sizeof a, "a.bin");
  path_of(b, sizeof b, "nofast.bin");
  setenv("RILL_NO_FASTPATH", "1", 1);
  unsigned long before = rill_splice_count();
  pl_t pl = copy(a, b, 1, 5000000);
  unsetenv("RILL_NO_FASTPATH");
  CHECK_INT(pl.code, 0);
  CHECK_INT(rill_splice_count(), before);
  check_file(b, 0, 5000000);
}

int main(void) {
  CHECK(mkdtemp(tmpdir) != NULL);
  CHECK_INT(rill_loop_init(&loop, NULL), 0);
  RUN(test_file_to_file);
  RUN(test_devices);
  RUN(test_fifo_falls_back);
  RUN(test_file_to_socket);
  RUN(test_cancel);
  RUN(test_disabled);
  rill_loop_free(&loop);
  rill_slab_pool_trim();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  CHECK_INT(system(cmd), 0);
  return 0;
}
