/* core/buf.h: pooled refcounted slabs, views over them, and chains (FIFO queues) of views. */
#ifndef RILL_BUF_H
#define RILL_BUF_H

#include <stdatomic.h>
#include <stddef.h>

/* A slab is one allocation: a header then the bytes. Its refcount is atomic so that a slab can
 * cross threads (parallel stages) without copying. Slabs of exactly RILL_SLAB_SIZE come from a
 * per-thread pool (bounded), so steady-state streaming does not call malloc; other sizes are
 * exact mallocs, so a small buffer kept by Lua does not pin 64 KiB. */
#define RILL_SLAB_SIZE (64 * 1024)

typedef struct rill_slab_account_s rill_slab_account_t;

typedef struct rill_slab_s {
  atomic_size_t refs;
  rill_slab_account_t *acct; /* the account charged with this slab, or NULL */
  size_t cap;                /* bytes available in data[] */
  size_t used;               /* bytes handed out: the sole owner may append in place */
  unsigned char data[];
} rill_slab_t;

/* A view is (slab, offset, length) holding one reference on its slab. A zero-length view may
 * have slab == NULL. Views are plain values: copy the struct only together with a ref. */
typedef struct {
  rill_slab_t *slab;
  size_t off;
  size_t len;
} rill_view_t;

/* Returns a new reference to a slab of at least cap bytes, or NULL when out of memory. */
rill_slab_t *rill_slab_new(size_t cap);
/* Takes one more reference. */
void rill_slab_ref(rill_slab_t *s);
/* Drops one reference; the last one returns the slab to the pool or frees it. NULL is a no-op. */
void rill_slab_unref(rill_slab_t *s);
/* Frees this thread's pooled slabs (call at thread or engine exit so valgrind sees no leak). */
void rill_slab_pool_trim(void);
/* Hints that fresh memory [p, p+n) from malloc will be filled at once: blocks of a few MiB and
 * more get transparent huge pages (a Lua string of a whole encoded file, a big concatenation). */
void rill_mem_advise_huge(void *p, size_t n);
/* Slabs waiting in this thread's pool, and slab mallocs made by this thread so far (for tests
 * and stats: steady-state streaming should leave the second unchanged). */
size_t rill_slab_pool_count(void);
size_t rill_slab_mallocs(void);

/* Accounts cap the slab memory of a sandboxed engine. While an account is current on a thread,
 * every slab that thread makes is charged to it, or refused (NULL, as when out of memory) when
 * the account's bytes plus *also would pass its limit. A slab is uncharged when it is freed or
 * goes back to a pool, on whatever thread. Slabs hold references on their account, so it
 * outlives its owner's rill_slab_account_release as long as any is charged to it. */
/* Returns a new account (the owner's reference) of limit bytes (0: none) shared with the bytes
 * counted at also (may be NULL; read when charging), or NULL when out of memory. */
rill_slab_account_t *rill_slab_account_new(size_t limit, const atomic_size_t *also);
/* Drops the owner's reference; later charges fail, so make it current nowhere first. */
void rill_slab_account_release(rill_slab_account_t *a);
/* Bytes of slabs charged to a now. */
size_t rill_slab_account_used(rill_slab_account_t *a);
/* Nonzero once a charge was refused (then cleared). */
int rill_slab_account_refused(rill_slab_account_t *a);
/* Makes a the current account of this thread (NULL: none); returns the previous one. */
rill_slab_account_t *rill_slab_account_use(rill_slab_account_t *a);

static inline unsigned char *rill_view_data(const rill_view_t *v) {
  return v->slab ? v->slab->data + v->off : (unsigned char *)"";
}

/* Fills *v with a new view of len uninitialised bytes; 0 or UV_ENOMEM. */
int rill_view_alloc(rill_view_t *v, size_t len);
/* Fills *v with a new view holding a copy of p[0..len); 0 or UV_ENOMEM. */
int rill_view_from(rill_view_t *v, const void *p, size_t len);
/* Fills *dst with src's bytes [off, off+len) sharing memory; takes a reference. Asserts bounds. */
void rill_view_slice(rill_view_t *dst, const rill_view_t *src, size_t off, size_t len);
/* Drops the view's reference and empties it; idempotent. */
void rill_view_release(rill_view_t *v);

/* A chain is a FIFO of views with a running byte count. Small arrays inline, heap growth after. */
#define RILL_CHAIN_INLINE 4
typedef struct {
  rill_view_t *v; /* ring buffer of cap entries, starting at head */
  size_t head, count, cap;
  size_t bytes; /* sum of the lengths of all views */
  rill_view_t inl[RILL_CHAIN_INLINE];
} rill_chain_t;

void rill_chain_init(rill_chain_t *c);
/* Releases every view and any heap storage; the chain is empty and reusable afterwards. */
void rill_chain_clear(rill_chain_t *c);
/* Appends v, taking its reference (*v is emptied); 0 or UV_ENOMEM (then *v is untouched). */
int rill_chain_push(rill_chain_t *c, rill_view_t *v);
/* Appends a copy of p[0..len): into the tail slab's spare room when the chain is its only owner,
 * else into a new pooled slab. This is how many small writes become few large ones. */
int rill_chain_append(rill_chain_t *c, const void *p, size_t len);
/* Borrows the first view, or NULL when empty. */
rill_view_t *rill_chain_peek(rill_chain_t *c);
/* Moves the first view into *out (gives its reference); 0, or UV_EOF when empty. */
int rill_chain_shift(rill_chain_t *c, rill_view_t *out);
/* Drops n bytes from the front (n <= bytes), trimming the first view(s). */
void rill_chain_consume(rill_chain_t *c, size_t n);
/* Fills up to n iovecs-like (base, len) pairs from the front without consuming; returns count. */
size_t rill_chain_iov(rill_chain_t *c, void *uv_bufs, size_t n);

#endif
