/* core/pgzip.h: gzip compression on worker threads, as one native duplex stream. */
#ifndef RILL_PGZIP_H
#define RILL_PGZIP_H

#include "stream.h"

/* How it works
 * ------------
 * Input is cut into blocks of RILL_PGZIP_BLOCK bytes. Each block is compressed on a worker
 * thread as raw deflate, primed with the last 32 KiB of the block before it (so matches reach
 * across the cut, as a single deflate stream's would) and ended with a sync flush, which leaves
 * it byte-aligned; the last block ends the deflate stream. Blocks come back in order on the loop
 * thread and are concatenated behind one gzip header, with a trailer whose CRC-32 is combined
 * from the blocks' own. The result is one ordinary gzip member that any gunzip reads; it is a
 * few bytes per block larger than zlib's single-threaded output at the same level.
 *
 * Memory is bounded: at most 2 blocks per thread are in flight, a write is acknowledged only
 * once its bytes sit in a block, and no new block starts while the readable side is above its
 * high-water mark. The loop thread only copies bytes and combines CRCs, so it stays responsive
 * even with one thread. */

#define RILL_PGZIP_BLOCK (128 * 1024)

/* Creates the stream: level 0..9 or -1 (zlib's default, 6), threads 1..RILL_WORKERS_MAX or 0
 * (one per core). *out gets a new reference. 0, UV_EINVAL, UV_ENOMEM, or the error of thread
 * creation. */
int rill_pgzip_new(rill_loop_t *loop, int level, unsigned threads, rill_stream_t **out);

/* Input bytes taken and output bytes produced so far by a stream made by rill_pgzip_new: 1;
 * for any other stream: 0. */
int rill_pgzip_stats(const rill_stream_t *s, uint64_t *in, uint64_t *out);

#endif
