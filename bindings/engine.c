/* bindings/engine.c: the embedding API (include/rill.h): an engine is a Lua state plus a loop,
 * optionally sandboxed (modules left out, a memory cap, an instruction cap). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lrill.h"
#include "rill.h"

#include <lualib.h>

/* ---- small blocks: free lists per engine ----
 * A per-line Lua filter makes and drops a string per line: glibc's malloc and free (whose
 * per-thread cache keeps only 7 blocks of each size, the rest going through its bins) cost about
 * a fifth of the instructions of such a loop. Blocks up to POOL_MAX bytes freed by Lua go to a
 * free list of their 16-byte class instead and are handed out again from there (LIFO: the block
 * reused is the one freed last, still in cache). A list keeps at most POOL_KEEP blocks; past that,
 * and at close, blocks go back to malloc, so a large heap that is freed does not stay scattered
 * in the lists. Blocks come from malloc with their class's size, and Lua gives a block's size on
 * every free and resize, so blocks carry no header; the state is made with this allocator
 * (lua_newstate), so every block Lua frees was allocated here. Left out under AddressSanitizer,
 * which must see every block. */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_MAX 0
#else
#define POOL_MAX 256
#endif
#define POOL_CLASSES 16
#define POOL_KEEP 2048

typedef struct {
  void *free[POOL_CLASSES];
  unsigned count[POOL_CLASSES];
} pool_t;

static size_t pool_class(size_t n) {
  return (n - 1) >> 4;
}

static void *pool_get(pool_t *p, size_t n) {
  size_t c = pool_class(n);
  void *b = p->free[c];
  if (b == NULL) return malloc((c + 1) << 4);
  p->free[c] = *(void **)b;
  p->count[c]--;
  return b;
}

static void pool_put(pool_t *p, void *b, size_t n) {
  size_t c = pool_class(n);
  if (p->count[c] >= POOL_KEEP) {
    free(b);
    return;
  }
  *(void **)b = p->free[c];
  p->free[c] = b;
  p->count[c]++;
}

static void pool_free_all(pool_t *p) {
  for (size_t c = 0; c < POOL_CLASSES; c++) {
    while (p->free[c]) {
      void *b = p->free[c];
      p->free[c] = *(void **)b;
      free(b);
    }
    p->count[c] = 0;
  }
}

/* Lua's realloc contract over the pool and malloc: old is the block's size (0 without one). */
static void *block_resize(pool_t *pool, void *ptr, size_t old, size_t nsize) {
  if (nsize == 0) {
    if (old && old <= POOL_MAX) {
      pool_put(pool, ptr, old);
    } else {
      free(ptr);
    }
    return NULL;
  }
  int was_pooled = old && old <= POOL_MAX;
  if (nsize > POOL_MAX && !was_pooled) return realloc(ptr, nsize);
  if (nsize <= POOL_MAX && was_pooled && pool_class(old) == pool_class(nsize)) return ptr;
  void *p = nsize <= POOL_MAX ? pool_get(pool, nsize) : malloc(nsize);
  if (p == NULL || ptr == NULL) return p;
  memcpy(p, ptr, old < nsize ? old : nsize);
  block_resize(pool, ptr, old, 0);
  return p;
}

struct rill_engine_s {
  lua_State *L;
  rill_ctx_t *ctx;
  char *errmsg;
  rill_options opts; /* a copy; deny_modules points into owned storage */
  /* Memory: the Lua heap's bytes, mirrored from the allocator's osize/nsize (Lua's own count),
   * plus the buffer slabs charged to acct (core/buf.h). Past the cap an allocation fails (Lua
   * raises "not enough memory" where the script runs); then a grace above the cap lets error
   * handling allocate; past the grace, small allocations still succeed (a failure in C code
   * outside a protected call would abort the host) but the count hook stops any Lua code until
   * usage is back under cap + grace. The heap count is atomic only because a buffer made in
   * another thread (a parallel worker) reads it when charging: this thread alone writes it. */
  atomic_size_t heap;
  rill_slab_account_t *acct;
  size_t mem_grace;
  int mem_over;      /* the cap refused an allocation and usage has not come back below it */
  int mem_overdrawn; /* usage is past cap + grace */
  int mem_hit;       /* the cap refused an allocation since the last error was reported */
  void *refused_ptr; /* the last refused request: Lua retries it once after an emergency GC, */
  size_t refused_osize, refused_nsize; /* and the retry must meet the strict cap */
  /* Instructions: counted by a count hook, reset at every turn of the loop. */
  unsigned long steps;
  int period; /* the count hook's period: the cap's granularity */
  rill_handle_t prep_h, check_h;
  uv_prepare_t prep;
  uv_check_t check;
  pool_t pool;
};

static size_t heap_bytes(rill_engine *e) {
  return atomic_load_explicit(&e->heap, memory_order_relaxed);
}

static size_t mem_total(rill_engine *e) {
  return heap_bytes(e) + rill_slab_account_used(e->acct);
}

static void set_errmsg(rill_engine *e, const char *msg) {
  free(e->errmsg);
  e->errmsg = NULL;
  if (msg == NULL) return;
  int capped = e->mem_hit | rill_slab_account_refused(e->acct);
  if (capped && strstr(msg, "not enough memory") != NULL) {
    /* Lua's memory error is one preallocated string: say here that it was the engine's cap. */
    size_t n = strlen(msg) + 128;
    e->errmsg = malloc(n);
    if (e->errmsg)
      snprintf(e->errmsg, n, "memory cap reached (the engine may hold %zu bytes): %s",
               e->opts.max_memory, msg);
  } else {
    e->errmsg = strdup(msg);
  }
  e->mem_hit = 0;
}

/* ---- the memory cap: a lua_Alloc that counts ---- */

/* Small enough to allow past cap + grace: Lua's error handling (messages, tracebacks) fits. */
#define MEM_SMALL (16 * 1024)

static void *refuse(rill_engine *e, void *ptr, size_t osize, size_t nsize) {
  e->refused_ptr = ptr;
  e->refused_osize = osize;
  e->refused_nsize = nsize;
  e->mem_over = e->mem_hit = 1;
  return NULL; /* Lua collects and retries once, then raises "not enough memory" */
}

static void mem_update(rill_engine *e) {
  size_t cap = e->opts.max_memory, total = mem_total(e);
  if (e->mem_over && total < cap) e->mem_over = 0;
  if (e->mem_overdrawn && total <= cap + e->mem_grace) e->mem_overdrawn = 0;
}

static void *engine_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  rill_engine *e = ud;
  size_t old = ptr ? osize : 0; /* without ptr, osize is the kind of object, not a size */
  /* The engine whose Lua code runs is the one making buffers: a buffer's slab is made right
   * after its userdata, so marking the engine's account current on every Lua allocation
   * charges buffers to the right engine even when several engines share a thread. */
  rill_slab_account_use(e->acct);
  if (nsize == 0) {
    block_resize(&e->pool, ptr, old, 0);
    atomic_store_explicit(&e->heap, heap_bytes(e) - old, memory_order_relaxed);
    if (e->mem_overdrawn || e->mem_over) mem_update(e);
    return NULL;
  }
  size_t cap = e->opts.max_memory;
  if (cap && nsize > old) {
    size_t want = mem_total(e) - old + nsize;
    int retry = ptr == e->refused_ptr && osize == e->refused_osize && nsize == e->refused_nsize;
    e->refused_ptr = NULL;
    e->refused_osize = e->refused_nsize = 0;
    if (want > cap && (!e->mem_over || retry)) return refuse(e, ptr, osize, nsize);
    if (want > cap + e->mem_grace) {
      if (nsize - old > MEM_SMALL) return refuse(e, ptr, osize, nsize);
      e->mem_overdrawn = 1;
    }
  }
  void *p = block_resize(&e->pool, ptr, old, nsize);
  if (p == NULL) return NULL;
  if (nsize > old && nsize > POOL_MAX) rill_mem_advise_huge(p, nsize);
  atomic_store_explicit(&e->heap, heap_bytes(e) - old + nsize, memory_order_relaxed);
  if (e->mem_overdrawn || e->mem_over) mem_update(e);
  return p;
}

/* An error outside any protected call: say so on stderr; Lua then aborts. */
static int panic(lua_State *L) {
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n",
          msg ? msg : "error object is not a string");
  fflush(stderr);
  return 0;
}

/* warn(): ignored until warn("@on"), then written to stderr as "Lua warning: ..." (pieces of
 * one message as they come), until warn("@off"): the stand-alone interpreter's behaviour. */
static void warn_on(void *ud, const char *msg, int tocont);
static void warn_off(void *ud, const char *msg, int tocont);

static int warn_control(lua_State *L, const char *msg, int tocont) {
  if (tocont || msg[0] != '@') return 0;
  if (strcmp(msg + 1, "off") == 0) lua_setwarnf(L, warn_off, L);
  if (strcmp(msg + 1, "on") == 0) lua_setwarnf(L, warn_on, L);
  return 1;
}

static void warn_off(void *ud, const char *msg, int tocont) {
  warn_control(ud, msg, tocont);
}

static void warn_cont(void *ud, const char *msg, int tocont) {
  fputs(msg, stderr);
  if (tocont) {
    lua_setwarnf(ud, warn_cont, ud);
  } else {
    fputs("\n", stderr);
    fflush(stderr);
    lua_setwarnf(ud, warn_on, ud);
  }
}

static void warn_on(void *ud, const char *msg, int tocont) {
  if (warn_control(ud, msg, tocont)) return;
  fputs("Lua warning: ", stderr);
  warn_cont(ud, msg, tocont);
}

/* ---- the instruction cap: a count hook, reset when the loop turns ---- */

static rill_engine *engine_of(lua_State *L) {
  return *(rill_engine **)lua_getextraspace(L);
}

/* Runs every e->period instructions of each thread (period 1 while a cap is being enforced, so
 * that a pcall around the offending code cannot swallow the error: every further instruction
 * fails too, until the loop turns or memory is freed). */
static void count_hook(lua_State *L, lua_Debug *ar) {
  rill_engine *e = engine_of(L);
  int period = lua_gethookcount(L);
  e->steps += (unsigned long)period;
  if (e->mem_overdrawn) lua_gc(L, LUA_GCCOLLECT); /* garbage of a failed script may be enough */
  if (e->mem_overdrawn) {
    if (period != 1) lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    e->mem_hit = 0; /* this message says it itself */
    luaL_error(L, "memory cap reached: the engine may hold %I bytes (rill_options.max_memory)",
               (lua_Integer)e->opts.max_memory);
  }
  if (e->opts.max_instructions && e->steps > e->opts.max_instructions) {
    if (period != 1) lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    luaL_error(L,
               "instruction cap reached: more than %I Lua instructions without returning to "
               "the loop (rill_options.max_instructions)",
               (lua_Integer)e->opts.max_instructions);
  }
  if (period != e->period) lua_sethook(L, count_hook, LUA_MASKCOUNT, e->period);
}

static void prep_cb(uv_prepare_t *h) {
  RILL_CONTAINER_OF(h, rill_engine, prep)->steps = 0;
}

static void check_cb(uv_check_t *h) {
  RILL_CONTAINER_OF(h, rill_engine, check)->steps = 0;
}

/* Starts the handles that reset the instruction count once per turn: in the prepare phase
 * (before the loop waits for I/O) and the check phase (after it). They never keep the loop
 * alive, and rill_free closes them with the engine's other handles. */
static void start_turn_handles(rill_engine *e) {
  rill_loop_t *l = &e->ctx->loop;
  uv_prepare_init(l->uv, &e->prep);
  uv_check_init(l->uv, &e->check);
  rill_handle_track(l, &e->prep_h, (uv_handle_t *)&e->prep, NULL);
  rill_handle_track(l, &e->check_h, (uv_handle_t *)&e->check, NULL);
  uv_prepare_start(&e->prep, prep_cb);
  uv_check_start(&e->check, check_cb);
  uv_unref((uv_handle_t *)&e->prep);
  uv_unref((uv_handle_t *)&e->check);
}

/* ---- creation ---- */

/* Opens the standard libraries and rill in L, sets the global `rill`, then the sandbox. */
static int open_all(lua_State *L) {
  uv_loop_t *uv = lua_touserdata(L, 1);
  const rill_options *o = lua_touserdata(L, 2);
  luaL_openlibs(L);
  rill_ctx_t *ctx = rill__ctx_open(L, uv);
  luaL_requiref(L, "rill", rill__open_core, 1);
  lua_pop(L, 1);
  if (o->deny || o->deny_modules || o->max_instructions || o->max_memory) {
    ctx->sandbox = o;
    rill__sandbox_open(L, o);
  }
  return 0;
}

static int valid_options(const rill_options *o) {
  if (o->deny & ~(unsigned)RILL_DENY_ALL) return 0;
  for (const char *const *m = o->deny_modules; m && *m; m++)
    if (**m == '\0' || strlen(*m) > 64) return 0;
  return 1;
}

/* Copies the host's NULL-terminated list of names into one allocation the engine owns. */
static const char *const *copy_names(const char *const *names) {
  if (names == NULL) return NULL;
  size_t n = 0, bytes = 0;
  for (; names[n]; n++) bytes += strlen(names[n]) + 1;
  char **out = malloc((n + 1) * sizeof *out + bytes);
  if (out == NULL) return NULL;
  char *p = (char *)(out + n + 1);
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(names[i]) + 1;
    memcpy(p, names[i], len);
    out[i] = p;
    p += len;
  }
  out[n] = NULL;
  return (const char *const *)out;
}

RILL_API rill_engine *rill_new_ex(uv_loop_t *loop, const rill_options *opts) {
  static const rill_options none = {0};
  if (opts == NULL) opts = &none;
  if (!valid_options(opts)) return NULL;
  rill_engine *e = calloc(1, sizeof *e);
  if (e == NULL) return NULL;
  e->opts = *opts;
  e->opts.deny_modules = copy_names(opts->deny_modules);
  if (opts->deny_modules && e->opts.deny_modules == NULL) goto fail;
  if (e->opts.max_memory) e->mem_grace = e->opts.max_memory / 16 + 32 * 1024;
  /* Our allocator from the first block (the pool must see every block it is given back), with
   * the panic and warning behaviour luaL_newstate would set. */
  e->acct = rill_slab_account_new(e->opts.max_memory, &e->heap);
  if (e->acct == NULL) goto fail;
  atomic_init(&e->heap, 0);
  e->L = lua_newstate(engine_alloc, e);
  if (e->L == NULL) goto fail;
  lua_atpanic(e->L, panic);
  lua_setwarnf(e->L, warn_off, e->L);
  /* Every thread copies the main thread's extra space: the hook finds the engine there. */
  *(rill_engine **)lua_getextraspace(e->L) = e;
  if (e->opts.max_instructions || e->opts.max_memory) {
    /* A count hook every period instructions: the cap's granularity, and its cost (a C call
     * per 1000 instructions at most). */
    unsigned long p = e->opts.max_instructions ? e->opts.max_instructions / 16 : 1000;
    e->period = p < 1 ? 1 : p > 1000 ? 1000 : (int)p;
    lua_sethook(e->L, count_hook, LUA_MASKCOUNT, e->period);
  }
  lua_pushcfunction(e->L, open_all);
  lua_pushlightuserdata(e->L, loop);
  lua_pushlightuserdata(e->L, &e->opts);
  if (lua_pcall(e->L, 2, 0, 0) != LUA_OK) goto fail;
  e->ctx = rill__ctx(e->L);
  if (e->opts.max_instructions) start_turn_handles(e);
  e->mem_hit = 0;
  return e;
fail:
  if (e->L) lua_close(e->L);
  pool_free_all(&e->pool);
  rill_slab_account_release(e->acct);
  free((void *)e->opts.deny_modules);
  free(e);
  return NULL;
}

RILL_API rill_engine *rill_new(uv_loop_t *loop) {
  return rill_new_ex(loop, NULL);
}

RILL_API lua_State *rill_lua(rill_engine *e) {
  return e->L;
}

RILL_API uv_loop_t *rill_loop(rill_engine *e) {
  return e->ctx->loop.uv;
}

/* ---- running code ---- */

/* Runs the chunk at 1 as the main task; raises what the task raised before its first wait. */
static int pstart(lua_State *L) {
  if (rill__task_start_main(L, 0) != LUA_OK) return lua_error(L);
  return 0;
}

/* Runs the chunk on top of the stack as the main task. Protected: a memory error while the
 * task is being made must not reach Lua's panic. */
static int run_main(rill_engine *e) {
  lua_State *L = e->L;
  e->steps = 0; /* the host hands the engine a fresh turn */
  lua_pushcfunction(L, pstart);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    set_errmsg(e, rill__errstring(L, -1));
    lua_pop(L, 2);
    return RILL_ERRRUN;
  }
  rill_loop_drain(&e->ctx->loop);
  if (e->ctx->exiting) return RILL_EXIT;
  if (e->ctx->failed) {
    /* A tick run by the drain failed: report it now rather than at the next rill_run. */
    set_errmsg(e, rill__take_failure(L));
    lua_pop(L, 1);
    return RILL_ERRRUN;
  }
  return RILL_OK;
}

RILL_API int rill_dostring(rill_engine *e, const char *code) {
  if (luaL_loadbuffer(e->L, code, strlen(code), "=(command line)") != LUA_OK) {
    set_errmsg(e, lua_tostring(e->L, -1));
    lua_pop(e->L, 1);
    return RILL_ERRSYNTAX;
  }
  return run_main(e);
}

RILL_API int rill_dofile(rill_engine *e, const char *path) {
  /* A sandbox that denies binary chunks holds for the host's files too. */
  const char *mode = e->opts.deny & RILL_DENY_BYTECODE ? "t" : NULL;
  int r = luaL_loadfilex(e->L, path, mode);
  if (r != LUA_OK) {
    set_errmsg(e, lua_tostring(e->L, -1));
    lua_pop(e->L, 1);
    return r == LUA_ERRFILE ? RILL_ERRFILE : RILL_ERRSYNTAX;
  }
  return run_main(e);
}

RILL_API int rill_run(rill_engine *e, int mode) {
  uv_run_mode m = mode == RILL_RUN_ONCE     ? UV_RUN_ONCE
                  : mode == RILL_RUN_NOWAIT ? UV_RUN_NOWAIT
                                            : UV_RUN_DEFAULT;
  e->steps = 0;
  int r = rill__run(e->ctx, m);
  if (r == RILL_ERRRUN) {
    set_errmsg(e, rill__take_failure(e->L));
    lua_pop(e->L, 1);
  }
  return r;
}

RILL_API int rill_status(rill_engine *e) {
  if (e->ctx->exiting) return RILL_EXIT;
  if (!e->ctx->failed) return RILL_OK;
  set_errmsg(e, rill__take_failure(e->L));
  lua_pop(e->L, 1);
  return RILL_ERRRUN;
}

RILL_API int rill_alive(rill_engine *e) {
  rill_loop_t *l = &e->ctx->loop;
  if (rill_loop_pending(l)) return 1;
  for (rill_handle_t *h = l->handles.next; h != &l->handles; h = h->next)
    if (uv_is_active(h->uv) && uv_has_ref(h->uv) && !uv_is_closing(h->uv)) return 1;
  return 0;
}

RILL_API const char *rill_errmsg(rill_engine *e) {
  return e->errmsg;
}

RILL_API int rill_exit_code(rill_engine *e) {
  return e->ctx->exit_code;
}

static int pset_argv(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushvalue(L, -1);
  lua_setglobal(L, "arg"); /* as lua.c does */
  lua_getglobal(L, "rill");
  lua_insert(L, -2);
  lua_setfield(L, -2, "argv"); /* rill.argv = argv */
  return 0;
}

RILL_API void rill_set_argv(rill_engine *e, int argc, char **argv) {
  lua_State *L = e->L;
  lua_pushcfunction(L, pset_argv);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    set_errmsg(e, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

RILL_API size_t rill_memory(rill_engine *e) {
  return mem_total(e);
}

RILL_API void rill_free(rill_engine *e) {
  if (e == NULL) return;
  lua_close(e->L); /* its anchor closes every handle the engine opened */
  pool_free_all(&e->pool);
  rill_slab_account_release(e->acct); /* freed once no slab is charged to it */
  free((void *)e->opts.deny_modules);
  free(e->errmsg);
  free(e);
}
