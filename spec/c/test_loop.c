/* spec/c/test_loop.c: next-tick and immediate ordering, tracked handles, loop teardown. */
#include "loop.h"
#include "error.h"
#include "test.h"

static char trace[64];
static size_t ntrace;

static void mark(void *arg) {
  trace[ntrace++] = *(const char *)arg;
}

static rill_loop_t *g_loop;

static void tick_queues_tick(void *arg) {
  mark(arg);
  rill_loop_next_tick(g_loop, mark, "b");
}

static void imm_queues_imm(void *arg) {
  mark(arg);
  rill_loop_immediate(g_loop, mark, "z");
}

static void timer_cb(uv_timer_t *t) {
  trace[ntrace++] = 'T';
  rill_handle_close(t->data);
}

static int closed;
static void on_close(rill_handle_t *h) {
  closed++;
}

typedef struct {
  rill_handle_t h;
  uv_timer_t t;
} owned_timer;

static void test_order(void) {
  rill_loop_t l;
  ntrace = 0;
  g_loop = &l;
  CHECK_INT(rill_loop_init(&l, NULL), 0);
  owned_timer ot;
  uv_timer_init(l.uv, &ot.t);
  rill_handle_track(&l, &ot.h, (uv_handle_t *)&ot.t, on_close);
  uv_timer_start(&ot.t, timer_cb, 0, 0);
  rill_loop_immediate(&l, imm_queues_imm, "x");
  rill_loop_immediate(&l, mark, "y");
  rill_loop_next_tick(&l, tick_queues_tick, "a");
  rill_loop_run(&l, UV_RUN_DEFAULT);
  trace[ntrace] = 0;
  /* ticks first (including those queued by ticks), timers, then immediates; an immediate queued
   * by an immediate waits for the next turn. */
  CHECK_STR(trace, "abTxyz");
  CHECK_INT(closed, 1);
  rill_loop_free(&l);
}

static void test_many_ticks(void) {
  rill_loop_t l;
  ntrace = 0;
  CHECK_INT(rill_loop_init(&l, NULL), 0);
  static char c = '.';
  for (int i = 0; i < 50; i++) CHECK_INT(rill_loop_next_tick(&l, mark, &c), 0);
  rill_loop_drain(&l);
  CHECK_INT(ntrace, 50);
  CHECK_INT(rill_loop_pending(&l), 0);
  rill_loop_free(&l);
}

/* Freeing an engine loop on a host's loop closes only the engine's handles; the host's stay
 * usable and the host's uv_loop_close then succeeds. */
static void test_host_loop(void) {
  uv_loop_t host;
  uv_loop_init(&host);
  uv_timer_t host_timer;
  uv_timer_init(&host, &host_timer);
  rill_loop_t l;
  CHECK_INT(rill_loop_init(&l, &host), 0);
  owned_timer *ot = malloc(sizeof *ot);
  uv_timer_init(&host, &ot->t);
  closed = 0;
  rill_handle_track(&l, &ot->h, (uv_handle_t *)&ot->t, on_close);
  uv_timer_start(&ot->t, timer_cb, 100000, 0);
  rill_loop_next_tick(&l, mark, "q"); /* dropped by free */
  rill_loop_free(&l);
  CHECK_INT(closed, 1);
  CHECK(!uv_is_closing((uv_handle_t *)&host_timer));
  free(ot);
  uv_close((uv_handle_t *)&host_timer, NULL);
  uv_run(&host, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&host), 0);
}

static void test_errors(void) {
  CHECK_STR(rill_err_name(RILL_ESTREAM_DESTROYED), "ERR_STREAM_DESTROYED");
  CHECK_STR(rill_strerror(RILL_ESTREAM_PREMATURE_CLOSE), "premature close");
  CHECK_STR(rill_err_name(UV_ENOENT), "ENOENT");
  CHECK_STR(rill_strerror(UV_EPIPE), "broken pipe");
}

int main(void) {
  RUN(test_order);
  RUN(test_many_ticks);
  RUN(test_host_loop);
  RUN(test_errors);
  return 0;
}
