-- bench/io_copy.lua SRC DST: pipeline(fs.reader, fs.writer) (native; the kernel moves the bytes
-- where it can, unless RILL_NO_FASTPATH=1).
assert(rill.stream.pipeline(rill.fs.reader(rill.argv[1]), rill.fs.writer(rill.argv[2])))
