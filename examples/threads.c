/* examples/threads.c: several engines at once, one per thread, each with its own loop. */
#include <pthread.h>
#include <stdio.h>

#include <lauxlib.h>
#include <rill.h>

#define THREADS 4

static void *worker(void *arg) {
  long id = (long)arg;
  rill_engine *e = rill_new(NULL);
  if (e == NULL) return (void *)1;
  lua_State *L = rill_lua(e);
  lua_pushinteger(L, id);
  lua_setglobal(L, "id");
  /* Tasks that sleep and join: the engine's loop interleaves them within this thread. */
  int status =
      rill_dostring(e,
                    "local tasks = {}\n"
                    "for i = 1, 100 do\n"
                    "  tasks[i] = rill.spawn(function() rill.sleep(i % 7); return i * id end)\n"
                    "end\n"
                    "local sum = 0\n"
                    "for i = 1, 100 do sum = sum + tasks[i]:join() end\n"
                    "result = sum");
  if (status == RILL_OK) status = rill_run(e, RILL_RUN_DEFAULT);
  lua_getglobal(L, "result");
  long long got = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (status != RILL_OK) fprintf(stderr, "engine %ld: %s\n", id, rill_errmsg(e));
  rill_free(e);
  return got == 5050 * id && status == RILL_OK ? NULL : (void *)1;
}

int main(void) {
  pthread_t t[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(i + 1));
  int failed = 0;
  for (int i = 0; i < THREADS; i++) {
    void *res;
    pthread_join(t[i], &res);
    failed += res != NULL;
  }
  printf("%d engines in %d threads: %s\n", THREADS, THREADS, failed ? "FAILED" : "ok");
  return failed != 0;
}
