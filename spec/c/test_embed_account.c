/* spec/c/test_embed_account.c: slab accounts (core/buf.h), the buffer half of an engine's memory
 * cap: charges, refusals, uncharging on free and pool return, on any thread, and lifetimes. */
#include <pthread.h>
#include <uv.h>

#include "../../core/buf.h" /* relative: test_embed* link rill_static, which exports include/ only */
#include "test.h"

static void test_charge_and_refuse(void) {
  rill_slab_account_t *a = rill_slab_account_new(200 * 1024, NULL);
  CHECK(rill_slab_account_use(a) == NULL);
  rill_slab_t *s1 = rill_slab_new(RILL_SLAB_SIZE); /* pooled size */
  rill_slab_t *s2 = rill_slab_new(100);            /* exact malloc */
  CHECK(s1 && s2);
  CHECK_INT(rill_slab_account_used(a), RILL_SLAB_SIZE + 100);
  CHECK(rill_slab_new(150 * 1024) == NULL); /* would pass the limit */
  CHECK_INT(rill_slab_account_refused(a), 1);
  CHECK_INT(rill_slab_account_refused(a), 0); /* cleared once read */
  CHECK_INT(rill_slab_account_used(a), RILL_SLAB_SIZE + 100);
  rill_view_t v;
  CHECK_INT(rill_view_alloc(&v, 1 << 20), UV_ENOMEM); /* what a buffer binding sees */
  /* Refs do not charge again; the last unref uncharges, also when the slab goes to the pool. */
  rill_slab_ref(s1);
  rill_slab_unref(s1);
  CHECK_INT(rill_slab_account_used(a), RILL_SLAB_SIZE + 100);
  rill_slab_unref(s1);
  rill_slab_unref(s2);
  CHECK_INT(rill_slab_account_used(a), 0);
  /* A pooled slab taken again is charged to whichever account is current then. */
  CHECK(rill_slab_account_use(NULL) == a);
  rill_slab_t *s3 = rill_slab_new(RILL_SLAB_SIZE);
  CHECK_INT(rill_slab_account_used(a), 0);
  rill_slab_unref(s3);
  rill_slab_account_release(a);
  rill_slab_pool_trim();
}

/* The limit counts bytes charged elsewhere too (an engine's Lua heap). */
static void test_shared_limit(void) {
  atomic_size_t heap;
  atomic_init(&heap, 90 * 1024);
  rill_slab_account_t *a = rill_slab_account_new(100 * 1024, &heap);
  rill_slab_account_use(a);
  CHECK(rill_slab_new(20 * 1024) == NULL);
  rill_slab_t *s = rill_slab_new(5 * 1024);
  CHECK(s != NULL);
  atomic_store(&heap, 0);
  rill_slab_t *t = rill_slab_new(50 * 1024);
  CHECK(t != NULL);
  rill_slab_unref(s);
  rill_slab_unref(t);
  rill_slab_account_use(NULL);
  rill_slab_account_release(a);
}

/* An account outlives its owner while slabs are charged to it; those may die in other threads. */
static void *unref_in_thread(void *arg) {
  rill_slab_unref(arg);
  rill_slab_pool_trim(); /* this thread's pool got the slab */
  return NULL;
}

static void test_lifetime_across_threads(void) {
  rill_slab_account_t *a = rill_slab_account_new(0, NULL); /* no limit: counting only */
  rill_slab_account_use(a);
  rill_slab_t *s = rill_slab_new(RILL_SLAB_SIZE);
  rill_slab_t *big = rill_slab_new(1 << 20);
  CHECK_INT(rill_slab_account_used(a), RILL_SLAB_SIZE + (1 << 20));
  /* Release makes it current nowhere and refuses later charges. */
  rill_slab_account_release(a);
  CHECK(rill_slab_account_use(NULL) == NULL);
  pthread_t th;
  CHECK_INT(pthread_create(&th, NULL, unref_in_thread, s), 0);
  pthread_join(th, NULL);
  rill_slab_unref(big); /* the last charged slab frees the account (valgrind checks) */
  rill_slab_pool_trim();
}

int main(void) {
  RUN(test_charge_and_refuse);
  RUN(test_shared_limit);
  RUN(test_lifetime_across_threads);
  return 0;
}
