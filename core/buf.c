/* core/buf.c: refcounted slabs with a per-thread pool, views over them, and chains of views. */
#include "buf.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <uv.h>

/* Slabs of exactly RILL_SLAB_SIZE are the streaming currency (reads, appends), so only they are
 * pooled: a small buffer kept by Lua must not pin 64 KiB, and odd sizes would fragment the pool.
 * The pool is per thread, so taking and giving back needs no lock; a slab freed by another
 * thread than the one that made it simply joins that thread's pool. The bound keeps an idle
 * thread from holding more than RILL_SLAB_POOL_MAX * 64 KiB (4 MiB). */
#define RILL_SLAB_POOL_MAX 64

typedef struct {
  rill_slab_t *head; /* free slabs linked through their first data bytes */
  size_t count;
  size_t mallocs; /* slab allocations made by this thread, for the tests */
} slab_pool_t;

static _Thread_local slab_pool_t pool;

/* ---- accounts ---- */

struct rill_slab_account_s {
  atomic_size_t used;
  atomic_size_t refs; /* the owner's, plus one per charged slab */
  atomic_int refused;
  size_t limit;
  const atomic_size_t *also;
};

static _Thread_local rill_slab_account_t *current;

rill_slab_account_t *rill_slab_account_new(size_t limit, const atomic_size_t *also) {
  rill_slab_account_t *a = malloc(sizeof *a);
  if (a == NULL) return NULL;
  atomic_init(&a->used, 0);
  atomic_init(&a->refs, 1);
  atomic_init(&a->refused, 0);
  a->limit = limit;
  a->also = also;
  return a;
}

static void account_unref(rill_slab_account_t *a) {
  if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) free(a);
}

void rill_slab_account_release(rill_slab_account_t *a) {
  if (a == NULL) return;
  if (current == a) current = NULL;
  a->also = NULL;
  a->limit = 1; /* nothing more fits */
  account_unref(a);
}

size_t rill_slab_account_used(rill_slab_account_t *a) {
  return atomic_load_explicit(&a->used, memory_order_relaxed);
}

int rill_slab_account_refused(rill_slab_account_t *a) {
  return atomic_exchange_explicit(&a->refused, 0, memory_order_relaxed);
}

rill_slab_account_t *rill_slab_account_use(rill_slab_account_t *a) {
  rill_slab_account_t *prev = current;
  current = a;
  return prev;
}

/* Charges n bytes to the current account, if any; 0, or -1 when it would pass the limit. */
static int charge(rill_slab_account_t *a, size_t n) {
  size_t old = atomic_fetch_add_explicit(&a->used, n, memory_order_relaxed);
  size_t also = a->also ? atomic_load_explicit(a->also, memory_order_relaxed) : 0;
  if (a->limit && (n > a->limit || old + n + also > a->limit)) {
    atomic_fetch_sub_explicit(&a->used, n, memory_order_relaxed);
    atomic_store_explicit(&a->refused, 1, memory_order_relaxed);
    return -1;
  }
  atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
  return 0;
}

static void uncharge(rill_slab_t *s) {
  rill_slab_account_t *a = s->acct;
  s->acct = NULL;
  atomic_fetch_sub_explicit(&a->used, s->cap, memory_order_relaxed);
  account_unref(a);
}

static rill_slab_t *pool_next(rill_slab_t *s) {
  rill_slab_t *next;
  memcpy(&next, s->data, sizeof next);
  return next;
}

/* Large slabs ask for transparent huge pages: touching fresh memory page by page costs more
 * than filling it (about 1 GB/s on a VM, 4x faster with 2 MiB pages), and a big buffer is
 * usually filled at once (a decoded file, a concatenation). Only whole 2 MiB ranges inside the
 * allocation are advised, so nothing outside it is affected. */
#define RILL_HUGE_PAGE ((uintptr_t)2 << 20)
#define RILL_HUGE_MIN ((size_t)4 << 20)

static void advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
  if (n < RILL_HUGE_MIN) return;
  uintptr_t a = ((uintptr_t)p + RILL_HUGE_PAGE - 1) & ~(RILL_HUGE_PAGE - 1);
  uintptr_t e = ((uintptr_t)p + n) & ~(RILL_HUGE_PAGE - 1);
  if (e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE); /* only a hint: errors are fine */
#endif
}

void rill_mem_advise_huge(void *p, size_t n) {
  advise_huge(p, n);
}

static rill_slab_t *slab_malloc(size_t cap) {
  if (cap > SIZE_MAX - sizeof(rill_slab_t)) return NULL;
  rill_slab_t *s = malloc(sizeof(rill_slab_t) + cap);
  if (s == NULL) return NULL;
  advise_huge(s, sizeof(rill_slab_t) + cap);
  pool.mallocs++;
  s->cap = cap;
  return s;
}

#ifdef RILL_FAULT_INJECTION
/* Test-only fault injection, compiled in only with -DRILL_FAULT_INJECTION=ON (spec/faults_spec.lua
 * drives it through a child `rill`): the environment, read once, says which slab requests fail,
 * as if malloc or the memory cap had refused them. Unarmed (none of these set), a request costs
 * one predictable branch more: the sanitizer run in CI has the hook compiled in.
 *   RILL_FAULT_SLAB_SIZE=n  every request for a slab of exactly n bytes fails;
 *   RILL_FAULT_SLAB_NTH=k   the k-th request of the process (1-based, any thread) fails, once;
 *   RILL_FAULT_SLAB_COUNT=1 at exit, "rill-fault: slab requests N" goes to stderr (the range
 *                           of k worth trying). */
#include <pthread.h>
#include <stdio.h>

static int fault_armed;
static size_t fault_size;
static long fault_nth;
static atomic_long fault_count;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void fault_report(void) {
  fprintf(stderr, "rill-fault: slab requests %ld\n", atomic_load(&fault_count));
}

static void fault_init(void) {
  int count = getenv("RILL_FAULT_SLAB_COUNT") != NULL;
  if (count) atexit(fault_report);
  const char *v = getenv("RILL_FAULT_SLAB_SIZE");
  if (v) fault_size = (size_t)strtoull(v, NULL, 10);
  v = getenv("RILL_FAULT_SLAB_NTH");
  if (v) fault_nth = strtol(v, NULL, 10);
  fault_armed = count || fault_size || fault_nth;
}

static int fault_slab(size_t cap) {
  pthread_once(&fault_once, fault_init);
  if (!fault_armed) return 0;
  long n = atomic_fetch_add(&fault_count, 1) + 1;
  if (fault_size && cap == fault_size) return 1;
  return n == fault_nth;
}
#endif

rill_slab_t *rill_slab_new(size_t cap) {
  rill_slab_t *s;
#ifdef RILL_FAULT_INJECTION
  if (fault_slab(cap)) return NULL;
#endif
  rill_slab_account_t *a = current;
  if (a && charge(a, cap) != 0) return NULL;
  if (cap == RILL_SLAB_SIZE && pool.head != NULL) {
    s = pool.head;
    pool.head = pool_next(s);
    pool.count--;
  } else {
    s = slab_malloc(cap);
    if (s == NULL) {
      if (a) {
        atomic_fetch_sub_explicit(&a->used, cap, memory_order_relaxed);
        account_unref(a);
      }
      return NULL;
    }
  }
  s->acct = a;
  atomic_init(&s->refs, 1);
  s->used = 0;
  return s;
}

void rill_slab_ref(rill_slab_t *s) {
  /* Relaxed is enough: the caller already holds a reference, so the slab cannot die here. */
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void rill_slab_unref(rill_slab_t *s) {
  if (s == NULL) return;
  size_t old = atomic_fetch_sub_explicit(&s->refs, 1, memory_order_release);
  assert(old > 0);
  if (old != 1) return;
  /* Every other thread's writes to the bytes happen before we reuse or free them. */
  atomic_thread_fence(memory_order_acquire);
  if (s->acct) uncharge(s);
  if (s->cap == RILL_SLAB_SIZE && pool.count < RILL_SLAB_POOL_MAX) {
    memcpy(s->data, &pool.head, sizeof pool.head);
    pool.head = s;
    pool.count++;
    return;
  }
  free(s);
}

void rill_slab_pool_trim(void) {
  while (pool.head != NULL) {
    rill_slab_t *s = pool.head;
    pool.head = pool_next(s);
    free(s);
  }
  pool.count = 0;
}

size_t rill_slab_pool_count(void) {
  return pool.count;
}

size_t rill_slab_mallocs(void) {
  return pool.mallocs;
}

/* ---- views ---- */

int rill_view_alloc(rill_view_t *v, size_t len) {
  if (len == 0) {
    v->slab = NULL;
    v->off = v->len = 0;
    return 0;
  }
  rill_slab_t *s = rill_slab_new(len);
  if (s == NULL) return UV_ENOMEM;
  s->used = len;
  v->slab = s;
  v->off = 0;
  v->len = len;
  return 0;
}

int rill_view_from(rill_view_t *v, const void *p, size_t len) {
  int r = rill_view_alloc(v, len);
  if (r == 0 && len > 0) memcpy(v->slab->data, p, len);
  return r;
}

void rill_view_slice(rill_view_t *dst, const rill_view_t *src, size_t off, size_t len) {
  assert(off <= src->len && len <= src->len - off);
  if (dst == src) {
    /* Slicing a view into itself narrows it: its one reference stays its own. */
    if (len == 0) {
      rill_view_release(dst);
    } else {
      dst->off += off;
      dst->len = len;
    }
    return;
  }
  if (len == 0) {
    /* An empty slice holds nothing, so it does not keep the slab alive. */
    dst->slab = NULL;
    dst->off = dst->len = 0;
    return;
  }
  rill_slab_ref(src->slab);
  dst->slab = src->slab;
  dst->off = src->off + off;
  dst->len = len;
}

void rill_view_release(rill_view_t *v) {
  rill_slab_unref(v->slab);
  v->slab = NULL;
  v->off = v->len = 0;
}

/* ---- chains ---- */

/* The ring's storage. Inline storage is recognised by its capacity, not by the pointer, so a
 * chain that was moved (memcpy of its struct) still finds its own inline array. */
static rill_view_t *ring(rill_chain_t *c) {
  if (c->cap <= RILL_CHAIN_INLINE) c->v = c->inl;
  return c->v;
}

static rill_view_t *slot(rill_chain_t *c, size_t i) {
  size_t k = c->head + i;
  if (k >= c->cap) k -= c->cap;
  return &ring(c)[k];
}

void rill_chain_init(rill_chain_t *c) {
  memset(c, 0, sizeof *c);
  c->v = c->inl;
  c->cap = RILL_CHAIN_INLINE;
}

void rill_chain_clear(rill_chain_t *c) {
  for (size_t i = 0; i < c->count; i++) rill_view_release(slot(c, i));
  if (ring(c) != c->inl) free(c->v);
  rill_chain_init(c);
}

/* Makes room for at least want entries in total; 0 or UV_ENOMEM with the chain unchanged. */
static int chain_reserve(rill_chain_t *c, size_t want) {
  if (want <= c->cap) return 0;
  size_t ncap = c->cap;
  while (ncap < want) {
    if (ncap > SIZE_MAX / 2 / sizeof(rill_view_t)) return UV_ENOMEM;
    ncap *= 2;
  }
  rill_view_t *nv = malloc(ncap * sizeof *nv);
  if (nv == NULL) return UV_ENOMEM;
  for (size_t i = 0; i < c->count; i++) nv[i] = *slot(c, i);
  if (ring(c) != c->inl) free(c->v);
  c->v = nv;
  c->cap = ncap;
  c->head = 0;
  return 0;
}

int rill_chain_push(rill_chain_t *c, rill_view_t *v) {
  if (v->len > SIZE_MAX - c->bytes) return UV_ENOMEM;
  if (v->len == 0) {
    /* Empty views carry no bytes: dropping them keeps peek/shift from ever seeing one. */
    rill_view_release(v);
    return 0;
  }
  if (c->count == SIZE_MAX) return UV_ENOMEM;
  int r = chain_reserve(c, c->count + 1);
  if (r) return r;
  *slot(c, c->count) = *v;
  c->count++;
  c->bytes += v->len;
  v->slab = NULL;
  v->off = v->len = 0;
  return 0;
}

/* Removes and releases the last view (the rollback step of a failed append). */
static void chain_pop_tail(rill_chain_t *c) {
  rill_view_t *t = slot(c, c->count - 1);
  c->bytes -= t->len;
  c->count--;
  rill_view_release(t);
}

int rill_chain_append(rill_chain_t *c, const void *p, size_t len) {
  if (len == 0) return 0;
  if (len > SIZE_MAX - c->bytes) return UV_ENOMEM;
  const unsigned char *src = p;
  rill_view_t *tail = c->count ? slot(c, c->count - 1) : NULL;
  size_t room = 0;
  /* The tail slab can grow in place only if nobody else can see its spare bytes: the chain's
   * view is its only reference and ends exactly where the slab's handed-out bytes end. */
  if (tail != NULL && tail->off + tail->len == tail->slab->used &&
      atomic_load_explicit(&tail->slab->refs, memory_order_acquire) == 1) {
    room = tail->slab->cap - tail->slab->used;
  }
  size_t first = len < room ? len : room;
  size_t rest = len - first;
  size_t count0 = c->count;
  /* New slabs come first, so that a failure leaves the chain exactly as it was. */
  while (rest > 0) {
    size_t n = rest < RILL_SLAB_SIZE ? rest : RILL_SLAB_SIZE;
    rill_view_t v;
    int r = rill_view_alloc(&v, RILL_SLAB_SIZE);
    if (r == 0) {
      v.len = n;
      v.slab->used = n;
      memcpy(v.slab->data, src + (len - rest), n);
      r = rill_chain_push(c, &v);
      if (r) rill_view_release(&v);
    }
    if (r) {
      while (c->count > count0) chain_pop_tail(c);
      return r;
    }
    rest -= n;
  }
  if (first > 0) {
    tail = slot(c, count0 - 1); /* the ring may have moved */
    memcpy(tail->slab->data + tail->slab->used, src, first);
    tail->slab->used += first;
    tail->len += first;
    c->bytes += first;
  }
  return 0;
}

rill_view_t *rill_chain_peek(rill_chain_t *c) {
  return c->count ? slot(c, 0) : NULL;
}

int rill_chain_shift(rill_chain_t *c, rill_view_t *out) {
  if (c->count == 0) return UV_EOF;
  rill_view_t *h = slot(c, 0);
  *out = *h;
  h->slab = NULL;
  h->off = h->len = 0;
  c->head = c->head + 1 == c->cap ? 0 : c->head + 1;
  c->count--;
  c->bytes -= out->len;
  if (c->count == 0) c->head = 0;
  return 0;
}

void rill_chain_consume(rill_chain_t *c, size_t n) {
  assert(n <= c->bytes);
  while (n > 0 && c->count > 0) {
    rill_view_t *h = slot(c, 0);
    if (n < h->len) {
      h->off += n;
      h->len -= n;
      c->bytes -= n;
      return;
    }
    n -= h->len;
    rill_view_t v;
    rill_chain_shift(c, &v);
    rill_view_release(&v);
  }
}

size_t rill_chain_iov(rill_chain_t *c, void *uv_bufs, size_t n) {
  uv_buf_t *b = uv_bufs;
  size_t k = n < c->count ? n : c->count;
  for (size_t i = 0; i < k; i++) {
    rill_view_t *v = slot(c, i);
    /* Set the fields directly: uv_buf_init takes an unsigned int length, uv_buf_t holds size_t. */
    b[i].base = (char *)rill_view_data(v);
    b[i].len = v->len;
  }
  return k;
}
