/* core/lines.h: a native transform that splits bytes into records (lines or a separator). */
#ifndef RILL_LINES_H
#define RILL_LINES_H

#include "stream.h"

/* Creates a transform whose writable side takes bytes and whose readable side (object mode,
 * flag RILL_STREAM_RECORDS) gives one view per record, as core/split.h defines records: "\n"
 * or "\r\n" line breaks when sep is NULL, else the separator sep[0..seplen); the output does
 * not depend on how the input was chunked. Records are slices of the input chunks where they
 * can be (no copy). A record longer than max_len (0: no limit) fails the stream with
 * RILL_ELINE_TOO_LONG. *out gets a new reference. 0, UV_EINVAL or UV_ENOMEM. */
int rill_lines_new(rill_loop_t *loop, const void *sep, size_t seplen, size_t max_len,
                   rill_stream_t **out);

#endif
