/* examples/host_loop.c: a host that owns the uv loop: its own timer runs next to the engine's
 * timers and tasks, the host decides when to stop, and after rill_free the host's loop closes
 * cleanly. */
#include <stdio.h>

#include <rill.h>

static int host_ticks;

static void host_tick(uv_timer_t *t) {
  (void)t;
  host_ticks++;
}

/* The host stops its loop (and the engine with it) after a while, work pending or not. */
static void host_deadline(uv_timer_t *t) {
  printf("host: deadline after %d host ticks\n", host_ticks);
  uv_stop(t->loop);
}

int main(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_timer_t tick, deadline;
  uv_timer_init(&loop, &tick);
  uv_timer_init(&loop, &deadline);
  uv_timer_start(&tick, host_tick, 5, 5);
  uv_timer_start(&deadline, host_deadline, 200, 0);

  rill_engine *e = rill_new(&loop); /* the engine runs on the host's loop */
  int status = rill_dostring(
      e,
      "local n = 0\n"
      "rill.interval(10, function() n = n + 1 end)\n"
      "rill.spawn(function()\n"
      "  for i = 1, 3 do rill.sleep(20); print('engine: task step ' .. i) end\n"
      "end)\n"
      "rill.timeout(100, function() print('engine: timeout, interval ran', n > 3) end)\n"
      "rill.spawn(function() rill.sleep(60000) end) -- still waiting at the end\n");
  if (status != RILL_OK) {
    fprintf(stderr, "%s\n", rill_errmsg(e));
    return 1;
  }
  /* The host drives the loop itself. An uncaught error in the engine stops it too (uv_stop):
   * rill_status says whether that is why uv_run returned. */
  uv_run(&loop, UV_RUN_DEFAULT);
  status = rill_status(e);
  if (status == RILL_ERRRUN) fprintf(stderr, "engine failed: %s\n", rill_errmsg(e));
  fflush(stdout);
  printf("host: engine still has work: %s\n", rill_alive(e) ? "yes" : "no");

  rill_free(e); /* closes the engine's interval, timers and the waiting task's timer */
  uv_close((uv_handle_t *)&tick, NULL);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  int r = uv_loop_close(&loop);
  printf("host: uv_loop_close: %d\n", r);
  return r == 0 && status == RILL_OK ? 0 : 1;
}
