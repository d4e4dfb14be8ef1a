/* examples/engine_cost.c: what an engine costs: time of rill_new + rill_free, and memory per
 * idle engine (Lua heap, all heap, and resident set). usage: engine_cost [N] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rill.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Resident set size in KiB, from /proc/self/status. */
static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
  if (f) fclose(f);
  return kib;
}

static size_t heap_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  if (n < 1) n = 1;
  /* Warm up (first-use costs of the allocator and libuv), then time create + free. */
  for (int i = 0; i < 10; i++) rill_free(rill_new(NULL));
  double t0 = now_ms();
  for (int i = 0; i < n; i++) rill_free(rill_new(NULL));
  double own = (now_ms() - t0) / n;
  uv_loop_t loop;
  uv_loop_init(&loop);
  t0 = now_ms();
  for (int i = 0; i < n; i++) rill_free(rill_new(&loop));
  double host = (now_ms() - t0) / n;
  rill_options sb = {.deny = RILL_DENY_ALL, .max_memory = 8 << 20, .max_instructions = 1000000};
  t0 = now_ms();
  for (int i = 0; i < n; i++) rill_free(rill_new_ex(NULL, &sb));
  double sandboxed = (now_ms() - t0) / n;
  printf("rill_new + rill_free, own loop:          %8.3f ms\n", own);
  printf("rill_new + rill_free, host loop:         %8.3f ms\n", host);
  printf("rill_new_ex (sandboxed) + rill_free:     %8.3f ms\n", sandboxed);

  /* Memory: keep m idle engines alive (each after a full collection) and divide. */
  int m = n < 200 ? n : 200;
  rill_engine **es = calloc((size_t)m, sizeof *es);
  size_t heap0 = heap_bytes();
  long rss0 = rss_kib();
  size_t lua_heap = 0;
  for (int i = 0; i < m; i++) {
    es[i] = rill_new(&loop);
    lua_gc(rill_lua(es[i]), LUA_GCCOLLECT);
    lua_heap += rill_memory(es[i]);
  }
  size_t heap1 = heap_bytes();
  long rss1 = rss_kib();
  printf("idle engine (host loop, after a full GC), mean of %d:\n", m);
  printf("  Lua heap:  %8.1f KiB\n", lua_heap / 1024.0 / m);
  printf("  all heap:  %8.1f KiB (malloc'd bytes in use)\n", (heap1 - heap0) / 1024.0 / m);
  printf("  RSS:       %8.1f KiB\n", (double)(rss1 - rss0) / m);
  /* A script that touched a few modules first. */
  for (int i = 0; i < m; i++) rill_free(es[i]);
  heap0 = heap_bytes();
  for (int i = 0; i < m; i++) {
    es[i] = rill_new(&loop);
    rill_dostring(es[i], "local b = rill.buffer; rill.timeout(1e9, function() end)");
    lua_gc(rill_lua(es[i]), LUA_GCCOLLECT);
  }
  printf("  all heap with rill.buffer loaded and a timer: %8.1f KiB\n",
         (heap_bytes() - heap0) / 1024.0 / m);
  for (int i = 0; i < m; i++) rill_free(es[i]);
  heap0 = heap_bytes();
  for (int i = 0; i < m; i++) {
    es[i] = rill_new(&loop);
    rill_dostring(es[i], "local s = rill.stream");
    lua_gc(rill_lua(es[i]), LUA_GCCOLLECT);
  }
  printf("  all heap with rill.stream loaded:             %8.1f KiB\n",
         (heap_bytes() - heap0) / 1024.0 / m);
  for (int i = 0; i < m; i++) rill_free(es[i]);
  free(es);
  uv_loop_close(&loop);
  return 0;
}
