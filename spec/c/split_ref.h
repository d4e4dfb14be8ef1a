/* spec/c/split_ref.h: a deliberately naive one-shot splitter, the oracle for tests and fuzzing. */
#ifndef RILL_SPLIT_REF_H
#define RILL_SPLIT_REF_H

#include <stddef.h>
#include <string.h>

#include "../../core/error.h" /* also found from fuzz/ */

/* A record of the input: its bytes are in[start, start + len); end is where the next record
 * starts (after the break or separator), or the input's length for a last unterminated record. */
typedef struct {
  size_t start, len, end;
  int terminated;
} ref_rec_t;

/* Splits in[0, n) byte by byte as split.h specifies (sep == NULL: lines). out needs room for
 * n + 1 records. Returns the count; *err is 0 or RILL_ELINE_TOO_LONG for the record that
 * follows the last one returned. */
static inline size_t ref_split(const unsigned char *in, size_t n, const unsigned char *sep,
                               size_t k, size_t max_len, ref_rec_t *out, int *err) {
  int lines = sep == NULL;
  size_t start = 0, i = 0, nr = 0, len;
  if (lines) {
    sep = (const unsigned char *)"\n";
    k = 1;
  }
  *err = 0;
  while (i + k <= n) {
    if (memcmp(in + i, sep, k) != 0) {
      i++;
      continue;
    }
    len = i - start;
    if (lines && len > 0 && in[i - 1] == '\r') len--;
    if (max_len && len > max_len) {
      *err = RILL_ELINE_TOO_LONG;
      return nr;
    }
    out[nr].start = start;
    out[nr].len = len;
    out[nr].end = i + k;
    out[nr].terminated = 1;
    nr++;
    i += k;
    start = i;
  }
  if (start < n) {
    if (max_len && n - start > max_len) {
      *err = RILL_ELINE_TOO_LONG;
      return nr;
    }
    out[nr].start = start;
    out[nr].len = n - start;
    out[nr].end = n;
    out[nr].terminated = 0;
    nr++;
  }
  return nr;
}

#endif
