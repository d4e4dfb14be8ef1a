/* spec/c/test_proc.c: child processes: stdio pipes, exit codes, signals, spawn failures. */
#include <signal.h>
#include <string.h>

#include "pipe.h"
#include "proc.h"
#include "test.h"

static rill_loop_t loop;

static void run(void) {
  rill_loop_run(&loop, UV_RUN_DEFAULT);
}

typedef struct {
  char buf[4096];
  size_t len;
} sink_t;

static void sink_write(rill_stream_t *s, const rill_chunk_t *c) {
  sink_t *k = rill_stream_data(s);
  size_t n = c->view.len;
  if (k->len + n < sizeof k->buf) memcpy(k->buf + k->len, rill_view_data(&c->view), n);
  k->len += n;
  rill_stream_write_done(s, NULL);
}

static const rill_stream_impl_t sink_impl = {.write = sink_write};

static rill_stream_t *sink_new(sink_t *k) {
  memset(k, 0, sizeof *k);
  rill_stream_t *s;
  rill_stream_opts_t o = {RILL_STREAM_WRITABLE, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  CHECK_INT(rill_stream_new(&loop, &sink_impl, k, &o, &s), 0);
  return s;
}

typedef struct {
  int called;
  int64_t status;
  int sig;
} exit_t;

static void exited(rill_proc_t *p, int64_t status, int sig, void *arg) {
  exit_t *x = arg;
  x->called++;
  x->status = status;
  x->sig = sig;
}

static void test_cat_roundtrip(void) {
  char *args[] = {"sh", "-c", "cat; exit 7", NULL};
  rill_proc_opts_t o = {"sh", args, NULL, "/", {RILL_PROC_PIPE, RILL_PROC_PIPE, RILL_PROC_IGNORE}};
  rill_proc_t *p;
  exit_t x = {0, 0, 0};
  CHECK_INT(rill_proc_spawn(&loop, &o, exited, &x, &p), 0);
  CHECK(rill_proc_pid(p) > 0);
  CHECK(rill_proc_stream(p, 2) == NULL);
  sink_t k;
  rill_stream_t *out = sink_new(&k);
  CHECK_INT(rill_stream_pipe(rill_proc_stream(p, 1), out, 1), 0);
  rill_stream_write_bytes(rill_proc_stream(p, 0), "ping", 4, NULL, NULL);
  rill_stream_end(rill_proc_stream(p, 0), NULL, NULL, NULL);
  run();
  CHECK_INT(x.called, 1);
  CHECK_INT(x.status, 7);
  CHECK_INT(x.sig, 0);
  CHECK_INT(k.len, 4);
  CHECK(memcmp(k.buf, "ping", 4) == 0);
  int64_t st;
  int sig;
  CHECK_INT(rill_proc_exited(p, &st, &sig), 1);
  CHECK_INT(rill_proc_kill(p, SIGTERM), UV_ESRCH);
  rill_proc_free(p);
  rill_stream_unref(out);
  run();
}

static void test_kill(void) {
  char *args[] = {"sleep", "30", NULL};
  rill_proc_opts_t o = {
      "sleep", args, NULL, NULL, {RILL_PROC_IGNORE, RILL_PROC_PIPE, RILL_PROC_IGNORE}};
  rill_proc_t *p;
  exit_t x = {0, 0, 0};
  CHECK_INT(rill_proc_spawn(&loop, &o, exited, &x, &p), 0);
  rill_stream_resume(rill_proc_stream(p, 1));
  CHECK_INT(rill_proc_kill(p, SIGKILL), 0);
  run();
  CHECK_INT(x.called, 1);
  CHECK_INT(x.sig, SIGKILL);
  CHECK(rill_stream_state(rill_proc_stream(p, 1)) & RILL_SS_CLOSED);
  rill_proc_free(p);
  run();
}

/* Freed while running: the child is still reaped when it exits (no zombie, no callback). */
static void test_free_while_running(void) {
  char *args[] = {"sleep", "0.05", NULL};
  rill_proc_opts_t o = {
      "sleep", args, NULL, NULL, {RILL_PROC_PIPE, RILL_PROC_PIPE, RILL_PROC_PIPE}};
  rill_proc_t *p;
  exit_t x = {0, 0, 0};
  CHECK_INT(rill_proc_spawn(&loop, &o, exited, &x, &p), 0);
  rill_proc_free(p);
  run();
  CHECK_INT(x.called, 0);
}

static void test_spawn_failures(void) {
  int fds = test_fd_count();
  for (int i = 0; i < 200; i++) {
    char *args[] = {"no-such-program-rill", NULL};
    rill_proc_opts_t o = {
        "no-such-program-rill", args, NULL, NULL, {RILL_PROC_PIPE, RILL_PROC_PIPE, RILL_PROC_PIPE}};
    rill_proc_t *p = NULL;
    CHECK_INT(rill_proc_spawn(&loop, &o, exited, NULL, &p), UV_ENOENT);
    CHECK(p == NULL);
    char *args2[] = {"x", NULL};
    rill_proc_opts_t o2 = {"/bin/sh",
                           args2,
                           NULL,
                           "/no/such/dir",
                           {RILL_PROC_PIPE, RILL_PROC_IGNORE, RILL_PROC_IGNORE}};
    CHECK_INT(rill_proc_spawn(&loop, &o2, exited, NULL, &p), UV_ENOENT);
  }
  run();
  CHECK_INT(test_fd_count(), fds);
  rill_proc_opts_t bad = {"x", NULL, NULL, NULL, {0, 0, 0}};
  rill_proc_t *p;
  CHECK_INT(rill_proc_spawn(&loop, &bad, NULL, NULL, &p), UV_EINVAL);
  char *args[] = {"x", NULL};
  rill_proc_opts_t bad2 = {"x", args, NULL, NULL, {0, 5, 0}};
  CHECK_INT(rill_proc_spawn(&loop, &bad2, NULL, NULL, &p), UV_EINVAL);
}

int main(void) {
  CHECK_INT(rill_loop_init(&loop, NULL), 0);
  RUN(test_cat_roundtrip);
  RUN(test_kill);
  RUN(test_free_while_running);
  RUN(test_spawn_failures);
  rill_loop_free(&loop);
  rill_slab_pool_trim();
  return 0;
}
