/* core/split.c: the streaming record splitter: one search per byte, a carry for straddlers. */
#define _GNU_SOURCE /* memmem */
#include "split.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "error.h"

int rill__split_nomem;

/* Lets tests reach the out-of-memory paths without starving the whole process. */
static int nomem_hook(void) {
  if (!rill__split_nomem) return 0;
  rill__split_nomem = 0;
  return 1;
}

static int byte_rank(unsigned char c);

/* The separator lives inline when short, so that the struct stays movable. */
static const unsigned char *sep_of(const rill_split_t *s) {
  return s->seplen <= sizeof s->sep_inl ? s->sep_inl : s->sep;
}

int rill_split_init(rill_split_t *s, const void *sep, size_t seplen, size_t max_len) {
  unsigned char *heap = NULL;
  size_t i;
  if (!s || (sep == NULL) != (seplen == 0)) return UV_EINVAL;
  if (seplen > sizeof s->sep_inl) { /* the only step that can fail comes before any change */
    if (nomem_hook() || !(heap = malloc(seplen))) return UV_ENOMEM;
    memcpy(heap, sep, seplen);
  }
  memset(s, 0, sizeof *s);
  s->sep = heap;
  if (!sep) {
    s->lines = 1;
    s->sep_inl[0] = '\n';
    seplen = 1;
  } else if (!heap) {
    memcpy(s->sep_inl, sep, seplen);
  }
  s->seplen = seplen;
  s->max_len = max_len;
  s->rare = 0;
  for (i = 1; i < seplen; i++)
    if (byte_rank(sep_of(s)[i]) < byte_rank(sep_of(s)[s->rare])) s->rare = i;
  return 0;
}

void rill_split_free(rill_split_t *s) {
  if (!s) return;
  rill_slab_unref(s->carry);
  free(s->sep);
  memset(s, 0, sizeof *s);
  s->err = UV_EINVAL; /* a freed splitter refuses work until it is initialised again */
}

/* A callback's stop value, kept negative so that it never reads as "1 = a record". */
static int stop_code(int rc) {
  return rc < 0 ? rc : RILL_ECALLBACK;
}

/* Every failure is sticky: the carry no longer matches the input, so no later record could be
 * trusted. The carry's memory goes back at once. */
static int fail(rill_split_t *s, int err) {
  s->err = err;
  rill_slab_unref(s->carry);
  s->carry = NULL;
  s->cbase = s->clen = 0;
  return err;
}

/* Whether a partial record of total carried bytes already exceeds max_len whatever comes next:
 * up to `slack` of its last bytes may still turn out to be (part of) the break ("\r" before "\n",
 * or the first seplen-1 bytes of the separator). */
static int too_long(const rill_split_t *s, size_t total) {
  size_t slack = s->lines ? 1 : s->seplen - 1;
  return s->max_len && total > s->max_len && total - s->max_len > slack;
}

/* Makes room for add more carried bytes. Growth is geometric so that a huge line arriving in
 * small chunks costs linear time. A slab that views handed out still share is never written
 * below cbase + clen; one we own alone is reused from the start. */
static int carry_reserve(rill_split_t *s, size_t add) {
  rill_slab_t *c = s->carry, *n;
  size_t need = s->clen + add, cap;
  int alone = c && atomic_load(&c->refs) == 1;
  if (need < add) return UV_ENOMEM;
  if (alone && s->clen == 0) s->cbase = 0;
  if (c && c->cap - s->cbase >= need) return 0;
  if (alone && need <= c->cap) {
    /* Each byte slides at most once: a second slide needs cbase > 0 again, which only a record
     * leaving the carry (taking every carried byte with it) brings about. */
    memmove(c->data, c->data + s->cbase, s->clen);
    s->cbase = 0;
    c->used = s->clen;
    return 0;
  }
  cap = need <= RILL_SLAB_SIZE ? RILL_SLAB_SIZE : need + need / 2;
  if (cap < need) cap = need;
  n = nomem_hook() ? NULL : rill_slab_new(cap);
  if (!n) return UV_ENOMEM;
  if (s->clen) memcpy(n->data, c->data + s->cbase, s->clen);
  n->used = s->clen;
  rill_slab_unref(c);
  s->carry = n;
  s->cbase = 0;
  return 0;
}

static int carry_append(rill_split_t *s, const unsigned char *p, size_t n) {
  int rc;
  if (n == 0) return 0;
  if ((rc = carry_reserve(s, n)) < 0) return rc;
  memcpy(s->carry->data + s->cbase + s->clen, p, n);
  s->clen += n;
  if (s->carry->used < s->cbase + s->clen)
    s->carry->used = s->cbase + s->clen; /* bytes we may hand out: no in-place append over them */
  return 0;
}

/* Carries the unfinished tail of a chunk, or fails when it is already too long. */
static int carry_tail(rill_split_t *s, const unsigned char *p, size_t n) {
  int rc;
  if (too_long(s, s->clen + n)) return fail(s, RILL_ELINE_TOO_LONG);
  if ((rc = carry_append(s, p, n)) < 0) return fail(s, rc);
  return 0;
}

/* How common a byte is in text and logs, higher meaning more common. It only decides which byte
 * of a separator memchr looks for (the rarest: '[' in " [", '\r' in "\r\n"), never a result. */
static int byte_rank(unsigned char c) {
  if (c == ' ') return 255;
  if (c >= 'a' && c <= 'z') return 200;
  if (c >= '0' && c <= '9') return 150;
  if (c >= 'A' && c <= 'Z') return 120;
  if (c == 0) return 30;
  if (c == '\n' || strchr(".,-:/_=\"", c)) return 110;
  if (c >= 0x80) return 80;
  if (c > ' ' && c < 0x7f) return 60;
  return c == '\t' ? 60 : c == '\r' ? 40 : 10;
}

/* The first separator in p[0, n) (2+ bytes): memchr for its rarest byte, then memcmp. When
 * false candidates have cost more than twice the distance covered (a byte that is common here
 * after all, or hostile input) the rest goes to memmem, which is linear whatever the input. */
static const unsigned char *find_sep(const rill_split_t *s, const unsigned char *p, size_t n) {
  const unsigned char *sep = sep_of(s), *q = p, *last, *hit;
  size_t k = s->seplen, j = s->rare, work = 0;
  if (n < k) return NULL;
  last = p + n - k; /* the last place where a separator can start */
  while (q <= last) {
    hit = memchr(q + j, sep[j], (size_t)(last - q) + 1);
    if (!hit) return NULL;
    q = hit - j;
    if (memcmp(q, sep, k) == 0) return q;
    q++;
    work += k;
    if (work > 2 * (size_t)(q - p) + 256) return memmem(q, (size_t)(p + n - q), sep, k);
  }
  return NULL;
}

/* The next separator in p[0, n), or NULL. */
static const unsigned char *find(rill_split_t *s, const unsigned char *p, size_t n) {
  const unsigned char *m;
  if (s->seplen == 1)
    m = memchr(p, s->sep_inl[0], n);
  else
    m = find_sep(s, p, n);
  s->scanned += m ? (size_t)(m - p) + s->seplen : n;
  return m;
}

/* Hands the whole carry out as one record; the caller has put its end at clen. */
static int emit_carry(rill_split_t *s, rill_split_rec_t *rec, int *from_carry, int strip_cr) {
  unsigned char *p = s->carry ? s->carry->data + s->cbase : (unsigned char *)"";
  size_t len = s->clen;
  if (strip_cr && len && p[len - 1] == '\r') len--;
  if (s->max_len && len > s->max_len) return fail(s, RILL_ELINE_TOO_LONG);
  rec->p = p;
  rec->len = len;
  *from_carry = 1;
  s->cbase += s->clen; /* the bytes stay put (a view or rec->p may point at them) */
  s->clen = 0;
  return 1;
}

/* The one scanning core behind both the view and the raw interfaces. Invariant between calls:
 * the carry holds no complete separator, so in a new chunk only a separator that starts in the
 * carry's last seplen-1 bytes needs the carry looked at again. */
static int split_next(rill_split_t *s, const unsigned char *d, size_t n, size_t *pos,
                      rill_split_rec_t *rec, int *from_carry) {
  size_t i = *pos, k = s->seplen, len;
  const unsigned char *m;
  int rc;
  if (s->err) return s->err;
  if (i > n || k == 0) return UV_EINVAL; /* k == 0: never initialised */
  if (i == 0 && s->clen > 0) {
    size_t old = s->clen;
    if (k > 1) {
      /* A straddling separator ends within the first k-1 bytes of d: append those (the probe)
       * and search the seam in the carry. */
      size_t probe = n < k - 1 ? n : k - 1, from = old > k - 1 ? old - (k - 1) : 0;
      if ((rc = carry_append(s, d, probe)) < 0) return fail(s, rc);
      m = find(s, s->carry->data + s->cbase + from, s->clen - from);
      if (m) {
        s->clen = (size_t)(m - (s->carry->data + s->cbase));
        *pos = s->clen + k - old;
        return emit_carry(s, rec, from_carry, 0);
      }
      if (probe == n) { /* too short to hold a separator: all of d is carried */
        *pos = n;
        return too_long(s, s->clen) ? fail(s, RILL_ELINE_TOO_LONG) : 0;
      }
      s->clen = old;
    }
    m = find(s, d, n);
    if (!m) {
      *pos = n;
      return carry_tail(s, d, n);
    }
    len = (size_t)(m - d);
    if (too_long(s, old + len)) return fail(s, RILL_ELINE_TOO_LONG);
    if ((rc = carry_append(s, d, len)) < 0) return fail(s, rc);
    *pos = len + k;
    return emit_carry(s, rec, from_carry, s->lines);
  }
  if (i == n) return 0;
  m = find(s, d + i, n - i);
  if (!m) {
    *pos = n;
    return carry_tail(s, d + i, n - i);
  }
  len = (size_t)(m - (d + i));
  if (s->lines && len && m[-1] == '\r') len--;
  if (s->max_len && len > s->max_len) return fail(s, RILL_ELINE_TOO_LONG);
  rec->p = d + i;
  rec->len = len;
  *from_carry = 0;
  *pos = (size_t)(m - d) + k;
  return 1;
}

int rill_split_next(rill_split_t *s, const void *data, size_t len, size_t *pos,
                    rill_split_rec_t *rec) {
  int from_carry;
  if (!s || (!data && len) || !pos || !rec) return UV_EINVAL;
  return split_next(s, data ? data : "", len, pos, rec, &from_carry);
}

int rill_split_finish(rill_split_t *s, rill_split_rec_t *rec) {
  int from_carry;
  if (!s || !rec) return UV_EINVAL;
  if (s->err) return s->err;
  if (s->seplen == 0) return UV_EINVAL;
  if (s->clen == 0) return 0;
  return emit_carry(s, rec, &from_carry, 0);
}

/* Wraps a found record in a view: a slice of the chunk, or a new reference on the carry. */
static void rec_view(rill_split_t *s, const rill_view_t *chunk, const rill_split_rec_t *rec,
                     int from_carry, rill_view_t *v) {
  if (rec->len == 0) {
    v->slab = NULL;
    v->off = v->len = 0;
  } else if (from_carry) {
    rill_slab_ref(s->carry);
    v->slab = s->carry;
    v->off = (size_t)(rec->p - s->carry->data);
    v->len = rec->len;
  } else {
    rill_view_slice(v, chunk, (size_t)(rec->p - rill_view_data(chunk)), rec->len);
  }
}

int rill_split_feed(rill_split_t *s, const rill_view_t *chunk, rill_split_cb cb, void *arg) {
  const unsigned char *d;
  rill_split_rec_t rec = {NULL, 0}; /* set whenever split_next returns 1; gcc cannot tell */
  rill_view_t v;
  size_t pos = 0;
  int rc, from_carry = 0;
  if (!s || !chunk || !cb) return UV_EINVAL;
  d = rill_view_data(chunk);
  while ((rc = split_next(s, d, chunk->len, &pos, &rec, &from_carry)) > 0) {
    rec_view(s, chunk, &rec, from_carry, &v);
    if ((rc = cb(arg, &v)) != 0) return fail(s, stop_code(rc));
  }
  return rc;
}

int rill_split_end(rill_split_t *s, rill_split_cb cb, void *arg) {
  rill_split_rec_t rec = {NULL, 0};
  rill_view_t v;
  int rc;
  if (!s || !cb) return UV_EINVAL;
  if ((rc = rill_split_finish(s, &rec)) <= 0) return rc;
  rec_view(s, NULL, &rec, 1, &v);
  if ((rc = cb(arg, &v)) != 0) return fail(s, stop_code(rc));
  return 0;
}
