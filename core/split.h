/* core/split.h: streaming record splitter (lines or a byte separator) over chunks of bytes. */
#ifndef RILL_SPLIT_H
#define RILL_SPLIT_H

#include <stddef.h>

#include "buf.h"

/* A splitter turns a sequence of chunks into records. The output never depends on where the
 * chunks were cut:
 * - Lines mode (no separator): a record ends at "\n"; a "\r" just before that "\n" is dropped
 *   (also when the "\r" ends one chunk and the "\n" starts the next). A lone "\r" is data.
 * - Separator mode: a record ends at the first occurrence of sep (1..N arbitrary bytes, matched
 *   leftmost and without overlap), and sep is dropped.
 * - Empty records are records. At the end, the bytes after the last break or separator form a
 *   last record only if they are not empty: "a\n" gives "a", "" gives nothing, "\n" gives "",
 *   "a,b," gives "a", "b".
 * - max_len (0 = unlimited) bounds a record's length, counted without its break or separator:
 *   a longer record fails the splitter with RILL_ELINE_TOO_LONG after every record before it
 *   was delivered, and it stays failed. A carried partial record never holds more than about
 *   max_len + seplen bytes, so the limit also bounds memory.
 * Speed: memchr for "\n"; for a longer separator, memchr for its rarest byte then memcmp, handing
 * over to memmem (linear on any input) when false candidates pile up. Each byte is searched once:
 * a record that straddles chunks is copied into a carry buffer that grows geometrically, and only
 * the last seplen-1 carried bytes are looked at again. A record that lies within one chunk,
 * separator included, is a slice of that chunk (no copy). Records that leave the carry share its
 * slab (a bump allocation), so short straddling records do not cost a slab each. */
/* The fields are private but for reading scanned. The struct holds no pointer into itself, so it
 * may be embedded anywhere and moved. */
typedef struct {
  unsigned char *sep; /* the separator when longer than sep_inl (heap), else NULL */
  size_t seplen;
  size_t rare; /* index of the separator byte that memchr looks for */
  size_t max_len;
  int lines;                 /* lines mode: sep is "\n" and a "\r" before it is dropped */
  int err;                   /* sticky failure: every later call returns it */
  rill_slab_t *carry;        /* holds the start of a record that straddles chunks; one ref */
  size_t cbase, clen;        /* carried bytes are carry->data[cbase, cbase + clen) */
  size_t scanned;            /* bytes looked at by searches so far (a statistic; tests use it) */
  unsigned char sep_inl[16]; /* the separator when short ("\n" in lines mode) */
} rill_split_t;

/* One record as a raw (pointer, length) pair, for callers that copy it out at once (the Lua
 * binding makes it a string) and want no refcounting per record. */
typedef struct {
  const unsigned char *p;
  size_t len;
} rill_split_rec_t;

/* Receives one record and takes its reference (also when it returns nonzero). Returns 0 to go
 * on, or a negative error to stop (a positive value stands for RILL_ECALLBACK): the splitter
 * then fails with it. It must not call into s. */
typedef int (*rill_split_cb)(void *arg, rill_view_t *rec);

/* Initialises s; sep == NULL (with seplen 0) selects lines mode, else sep[0..seplen) is copied.
 * 0, UV_EINVAL (seplen 0 with a sep, or a seplen without one), or UV_ENOMEM; s is untouched on
 * failure. A splitter never initialised (all zero) or freed refuses work with UV_EINVAL. */
int rill_split_init(rill_split_t *s, const void *sep, size_t seplen, size_t max_len);
/* Releases the carry and the separator; idempotent. s may be initialised again afterwards. */
void rill_split_free(rill_split_t *s);

/* Splits one chunk (borrows it), passing each record that ends in it to cb as a new view: a
 * slice of chunk when the record lies within it, else a view of the carry (an empty record is
 * an empty view, slab NULL). The unfinished tail is carried. 0, a negative error
 * (RILL_ELINE_TOO_LONG, UV_ENOMEM; UV_EINVAL for bad arguments), or cb's stop value. */
int rill_split_feed(rill_split_t *s, const rill_view_t *chunk, rill_split_cb cb, void *arg);
/* Ends the input: passes the last record, if any, to cb, and leaves s empty and ready for a new
 * input. 0, a negative error, or cb's stop value. */
int rill_split_end(rill_split_t *s, rill_split_cb cb, void *arg);

/* The same splitting, one record per call, for raw memory: looks for the next record in
 * data[*pos, len) (borrows data) and advances *pos past it. Returns 1 with *rec filled, 0 when
 * data is used up (its unfinished tail is then carried), or a negative error. Call it with
 * *pos == 0 for each new chunk and until it returns 0. rec->p points into data, or into the
 * carry, where it stays valid only until the next call on s. */
int rill_split_next(rill_split_t *s, const void *data, size_t len, size_t *pos,
                    rill_split_rec_t *rec);
/* Ends the input for rill_split_next users: 1 with the last record in *rec (valid until the next
 * call on s), 0 when there is none, or a negative error. Leaves s ready for a new input. */
int rill_split_finish(rill_split_t *s, rill_split_rec_t *rec);

/* Test hook: when nonzero, the next allocation made by the splitter fails (and it is reset). */
extern int rill__split_nomem;

#endif
