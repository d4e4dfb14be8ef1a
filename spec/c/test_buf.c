/* spec/c/test_buf.c: slab pool reuse, refcounts, views, and chains across ring wrap-around. */
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "test.h"

static size_t refs(const rill_slab_t *s) {
  return atomic_load(&((rill_slab_t *)s)->refs);
}

/* Slabs of RILL_SLAB_SIZE come back from the pool: no malloc once the pool is warm. */
static void test_pool_reuse(void) {
  rill_slab_pool_trim();
  rill_slab_t *a = rill_slab_new(RILL_SLAB_SIZE);
  CHECK(a != NULL);
  CHECK_INT(a->cap, RILL_SLAB_SIZE);
  CHECK_INT(a->used, 0);
  CHECK_INT(refs(a), 1);
  rill_slab_unref(a);
  CHECK_INT(rill_slab_pool_count(), 1);
  size_t m0 = rill_slab_mallocs();
  for (int i = 0; i < 1000; i++) {
    rill_slab_t *b = rill_slab_new(RILL_SLAB_SIZE);
    CHECK(b == a); /* the same memory, straight from the pool */
    CHECK_INT(refs(b), 1);
    CHECK_INT(b->used, 0);
    rill_slab_unref(b);
  }
  CHECK_INT(rill_slab_mallocs(), m0);
  rill_slab_pool_trim();
  CHECK_INT(rill_slab_pool_count(), 0);
}

/* The pool is bounded, and only exact RILL_SLAB_SIZE slabs enter it. */
static void test_pool_bounds(void) {
  rill_slab_pool_trim();
  rill_slab_t *s[100];
  for (int i = 0; i < 100; i++) CHECK((s[i] = rill_slab_new(RILL_SLAB_SIZE)) != NULL);
  for (int i = 0; i < 100; i++) rill_slab_unref(s[i]);
  CHECK_INT(rill_slab_pool_count(), 64);
  rill_slab_t *small = rill_slab_new(10);
  CHECK(small != NULL);
  CHECK_INT(small->cap, 10);
  rill_slab_t *big = rill_slab_new(RILL_SLAB_SIZE + 1);
  CHECK(big != NULL);
  rill_slab_unref(small);
  rill_slab_unref(big);
  CHECK_INT(rill_slab_pool_count(), 64);
  rill_slab_pool_trim();
  rill_slab_pool_trim(); /* idempotent */
  CHECK_INT(rill_slab_pool_count(), 0);
}

static void test_overflow(void) {
  CHECK(rill_slab_new(SIZE_MAX) == NULL);
  CHECK(rill_slab_new(SIZE_MAX - 8) == NULL);
  rill_view_t v = {(rill_slab_t *)1, 1, 1}; /* garbage that must be overwritten or kept */
  v.slab = NULL;
  CHECK_INT(rill_view_alloc(&v, SIZE_MAX), UV_ENOMEM);
  CHECK_INT(rill_view_from(&v, "x", SIZE_MAX - 4), UV_ENOMEM);
  rill_chain_t c;
  rill_chain_init(&c);
  CHECK_INT(rill_chain_append(&c, "abc", 3), 0);
  CHECK_INT(rill_chain_append(&c, "x", SIZE_MAX - 1), UV_ENOMEM); /* bytes would wrap */
  CHECK_INT(c.bytes, 3);
  CHECK_INT(c.count, 1);
  rill_view_t w = {NULL, 0, SIZE_MAX - 1}; /* never dereferenced: rejected first */
  CHECK_INT(rill_chain_push(&c, &w), UV_ENOMEM);
  CHECK_INT(w.len, SIZE_MAX - 1); /* untouched on failure */
  rill_chain_clear(&c);
  rill_slab_pool_trim();
}

static void test_views(void) {
  rill_view_t v, s, e;
  CHECK_INT(rill_view_from(&v, "hello world", 11), 0);
  CHECK_INT(refs(v.slab), 1);
  CHECK_INT(v.slab->cap, 11); /* small buffers are exact, not 64 KiB */
  rill_view_slice(&s, &v, 6, 5);
  CHECK_INT(refs(v.slab), 2);
  CHECK(s.slab == v.slab);
  CHECK(memcmp(rill_view_data(&s), "world", 5) == 0);
  rill_view_release(&v);
  rill_view_release(&v); /* idempotent */
  CHECK(v.slab == NULL && v.len == 0);
  CHECK_INT(refs(s.slab), 1);
  CHECK(memcmp(rill_view_data(&s), "world", 5) == 0); /* the slice outlives its parent */
  rill_view_slice(&e, &s, 5, 0);
  CHECK(e.slab == NULL && e.len == 0);
  CHECK_INT(refs(s.slab), 1);
  CHECK(rill_view_data(&e) != NULL);
  rill_view_slice(&s, &s, 1, 3); /* narrowing in place keeps the one ref */
  CHECK_INT(refs(s.slab), 1);
  CHECK(memcmp(rill_view_data(&s), "orl", 3) == 0);
  rill_view_slice(&s, &s, 3, 0);
  CHECK(s.slab == NULL);
  CHECK_INT(rill_view_alloc(&e, 0), 0);
  CHECK(e.slab == NULL && e.len == 0);
  rill_view_release(&e);
  CHECK_INT(rill_view_alloc(&v, RILL_SLAB_SIZE), 0);
  CHECK_INT(v.slab->used, RILL_SLAB_SIZE);
  rill_view_release(&v);
  rill_slab_unref(NULL);
  rill_slab_pool_trim();
}

static void check_chain(rill_chain_t *c, const char *want) {
  size_t n = strlen(want), seen = 0, sum = 0;
  CHECK_INT(c->bytes, n);
  uv_buf_t iov[64];
  size_t k = rill_chain_iov(c, iov, 64);
  CHECK_INT(k, c->count);
  for (size_t i = 0; i < k; i++) {
    CHECK(iov[i].len > 0);
    CHECK(memcmp(iov[i].base, want + seen, iov[i].len) == 0);
    seen += iov[i].len;
  }
  CHECK_INT(seen, n);
  for (size_t i = 0; i < k; i++) sum += iov[i].len;
  CHECK_INT(sum, c->bytes);
}

/* push/shift across the ring's wrap-around, and growth from inline to heap storage. */
static void test_chain_ring(void) {
  rill_chain_t c;
  rill_chain_init(&c);
  CHECK(rill_chain_peek(&c) == NULL);
  rill_view_t out;
  CHECK_INT(rill_chain_shift(&c, &out), UV_EOF);
  char expect[256] = "";
  size_t elen = 0;
  int next = 0;
  /* Keep 3 entries in an inline ring of 4 while pushing 20: head wraps several times. */
  for (int round = 0; round < 20; round++) {
    char ch = (char)('a' + next++ % 26);
    rill_view_t v;
    CHECK_INT(rill_view_from(&v, &ch, 1), 0);
    rill_view_t keep = v;
    CHECK_INT(rill_chain_push(&c, &v), 0);
    CHECK(v.slab == NULL && v.len == 0); /* the reference moved into the chain */
    CHECK_INT(refs(keep.slab), 1);
    expect[elen++] = ch;
    expect[elen] = 0;
    if (c.count > 3) {
      CHECK_INT(rill_chain_shift(&c, &out), 0);
      CHECK_INT(out.len, 1);
      CHECK_INT(rill_view_data(&out)[0], expect[0]);
      memmove(expect, expect + 1, elen--);
      rill_view_release(&out);
    }
    CHECK(c.v == c.inl);
    check_chain(&c, expect);
  }
  /* Now grow past the inline storage while head is in the middle of the ring. */
  for (int i = 0; i < 30; i++) {
    char ch = (char)('A' + i % 26);
    rill_view_t v;
    CHECK_INT(rill_view_from(&v, &ch, 1), 0);
    CHECK_INT(rill_chain_push(&c, &v), 0);
    expect[elen++] = ch;
    expect[elen] = 0;
  }
  CHECK(c.v != c.inl);
  check_chain(&c, expect);
  CHECK(rill_chain_peek(&c) != NULL);
  CHECK_INT(rill_view_data(rill_chain_peek(&c))[0], expect[0]);
  /* Empty views are accepted and dropped. */
  rill_view_t z = {NULL, 0, 0};
  size_t cnt = c.count;
  CHECK_INT(rill_chain_push(&c, &z), 0);
  CHECK_INT(c.count, cnt);
  rill_chain_clear(&c);
  CHECK_INT(c.count, 0);
  CHECK_INT(c.bytes, 0);
  CHECK(c.v == c.inl);
  /* Reusable after clear. */
  CHECK_INT(rill_chain_append(&c, "xyz", 3), 0);
  check_chain(&c, "xyz");
  rill_chain_clear(&c);
  rill_slab_pool_trim();
}

static void test_chain_consume(void) {
  rill_chain_t c;
  rill_chain_init(&c);
  const char *parts[] = {"hello", " ", "brave", " new ", "world"};
  for (int i = 0; i < 5; i++) {
    rill_view_t v;
    CHECK_INT(rill_view_from(&v, parts[i], strlen(parts[i])), 0);
    CHECK_INT(rill_chain_push(&c, &v), 0);
  }
  check_chain(&c, "hello brave new world");
  rill_chain_consume(&c, 0);
  check_chain(&c, "hello brave new world");
  rill_chain_consume(&c, 3); /* inside the first view */
  check_chain(&c, "lo brave new world");
  CHECK_INT(c.count, 5);
  rill_chain_consume(&c, 2 + 1 + 2); /* exactly two views and a bit */
  check_chain(&c, "ave new world");
  CHECK_INT(c.count, 3);
  rill_chain_consume(&c, 3 + 5); /* exactly to a view boundary */
  check_chain(&c, "world");
  CHECK_INT(c.count, 1);
  rill_chain_consume(&c, 5);
  CHECK_INT(c.count, 0);
  CHECK_INT(c.bytes, 0);
  /* iov with fewer slots than views */
  for (int i = 0; i < 5; i++) {
    rill_view_t v;
    CHECK_INT(rill_view_from(&v, parts[i], strlen(parts[i])), 0);
    CHECK_INT(rill_chain_push(&c, &v), 0);
  }
  uv_buf_t iov[2];
  CHECK_INT(rill_chain_iov(&c, iov, 2), 2);
  CHECK_INT(iov[0].len, 5);
  CHECK_INT(iov[1].len, 1);
  CHECK_INT(rill_chain_iov(&c, iov, 0), 0);
  rill_chain_clear(&c);
  rill_slab_pool_trim();
}

/* Many small appends pack into few pooled slabs, growing the tail view in place. */
static void test_chain_append(void) {
  rill_slab_pool_trim();
  rill_chain_t c;
  rill_chain_init(&c);
  static char line[] = "0123456789abcdefghijklmnopqrstuvwxyz\n";
  size_t n = sizeof line - 1;
  size_t total = 0;
  for (int i = 0; i < 10000; i++) {
    CHECK_INT(rill_chain_append(&c, line, n), 0);
    total += n;
  }
  CHECK_INT(c.bytes, total);
  CHECK_INT(c.count, (total + RILL_SLAB_SIZE - 1) / RILL_SLAB_SIZE);
  rill_view_t *h = rill_chain_peek(&c);
  CHECK_INT(h->len, RILL_SLAB_SIZE); /* full slabs: appends straddle slab boundaries */
  CHECK_INT(h->slab->used, RILL_SLAB_SIZE);
  /* Content check through iov. */
  uv_buf_t iov[16];
  size_t k = rill_chain_iov(&c, iov, 16);
  size_t pos = 0;
  for (size_t i = 0; i < k; i++)
    for (size_t j = 0; j < iov[i].len; j++, pos++) CHECK_INT(iov[i].base[j], line[pos % n]);
  CHECK_INT(pos, total);
  rill_chain_clear(&c);

  /* Steady state: write ~1 MiB then drain it, 50 times: the pool serves every slab. */
  size_t m0 = 0;
  for (int round = 0; round < 50; round++) {
    if (round == 1) m0 = rill_slab_mallocs();
    for (int i = 0; i < 1000; i++) CHECK_INT(rill_chain_append(&c, line, n), 0);
    rill_view_t v;
    while (rill_chain_shift(&c, &v) == 0) rill_view_release(&v);
  }
  CHECK_INT(rill_slab_mallocs(), m0);
  rill_chain_clear(&c);

  /* A tail slab shared with someone else is not appended into: its bytes stay theirs. */
  CHECK_INT(rill_chain_append(&c, "abc", 3), 0);
  rill_view_t shared;
  rill_view_slice(&shared, rill_chain_peek(&c), 0, 3);
  CHECK_INT(rill_chain_append(&c, "def", 3), 0);
  CHECK_INT(c.count, 2);
  CHECK_INT(shared.slab->used, 3);
  check_chain(&c, "abcdef");
  rill_view_release(&shared);
  /* The tail ("def") is a fresh slab that the chain alone owns: appends grow it. */
  CHECK_INT(rill_chain_append(&c, "ghi", 3), 0);
  CHECK_INT(c.count, 2);
  check_chain(&c, "abcdefghi");
  /* A tail view that ends before the slab's used mark is not grown either. */
  rill_chain_clear(&c);
  rill_view_t v;
  CHECK_INT(rill_view_from(&v, "0123456789", 10), 0);
  rill_view_t part;
  rill_view_slice(&part, &v, 0, 4);
  rill_view_release(&v);
  CHECK_INT(rill_chain_push(&c, &part), 0);
  CHECK_INT(rill_chain_append(&c, "XY", 2), 0);
  CHECK_INT(c.count, 2);
  check_chain(&c, "0123XY");
  /* An exact-size slab with no spare room gets a new slab. */
  rill_chain_clear(&c);
  CHECK_INT(rill_view_from(&v, "full", 4), 0);
  CHECK_INT(rill_chain_push(&c, &v), 0);
  CHECK_INT(rill_chain_append(&c, "!", 1), 0);
  CHECK_INT(c.count, 2);
  check_chain(&c, "full!");
  CHECK_INT(rill_chain_append(&c, "", 0), 0);
  CHECK_INT(c.count, 2);
  /* A large append is split over pooled slabs, after filling the tail's spare room. */
  size_t big = 3 * RILL_SLAB_SIZE + 17;
  char *p = malloc(big);
  for (size_t i = 0; i < big; i++) p[i] = (char)(i * 7);
  CHECK_INT(rill_chain_append(&c, p, big), 0);
  CHECK_INT(c.bytes, 5 + big);
  rill_chain_consume(&c, 5);
  k = rill_chain_iov(&c, iov, 16);
  pos = 0;
  for (size_t i = 0; i < k; i++) {
    CHECK(memcmp(iov[i].base, p + pos, iov[i].len) == 0);
    pos += iov[i].len;
  }
  CHECK_INT(pos, big);
  free(p);
  rill_chain_clear(&c);
  rill_slab_pool_trim();
}

/* A moved chain (struct copied) still finds its inline storage. */
static void test_chain_move(void) {
  rill_chain_t a, b;
  rill_chain_init(&a);
  CHECK_INT(rill_chain_append(&a, "moved", 5), 0);
  memcpy(&b, &a, sizeof b);
  memset(&a, 0xAB, sizeof a);
  check_chain(&b, "moved");
  CHECK_INT(rill_chain_append(&b, "!", 1), 0);
  check_chain(&b, "moved!");
  rill_chain_clear(&b);
  rill_slab_pool_trim();
}

int main(void) {
  RUN(test_pool_reuse);
  RUN(test_pool_bounds);
  RUN(test_overflow);
  RUN(test_views);
  RUN(test_chain_ring);
  RUN(test_chain_consume);
  RUN(test_chain_append);
  RUN(test_chain_move);
  return 0;
}
