// bench/node_stream.js: the Node.js side of bench/stream.lua, in memory like rill's side.
// node bench/node_stream.js chunks N        4 KiB chunks: Readable -> Transform -> Writable
// node bench/node_stream.js readline FILE   lines of FILE (read into memory first) via readline
// node bench/node_stream.js transform FILE  the same lines via a Transform that splits them
// Prints "name count cpu_seconds" (user + system CPU of the measured part).
'use strict';
const { Readable, Transform, Writable, pipeline } = require('stream');
const readline = require('readline');
const fs = require('fs');

const mode = process.argv[2];
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

if (mode === 'chunks') {
  const N = +process.argv[3];
  const chunk = Buffer.alloc(4096, 120);
  let i = 0, bytes = 0;
  const src = new Readable({ read() {
    while (i < N) { i++; if (!this.push(chunk)) return; }
    this.push(null);
  } });
  const t = new Transform({ transform(c, e, cb) { bytes += c.length; cb(null, c); } });
  const w = new Writable({ write(c, e, cb) { cb(); } });
  const t0 = cpu();
  pipeline(src, t, w, (err) => {
    if (err) throw err;
    if (bytes !== N * 4096) throw new Error('byte count');
    console.log(`chunks ${N} ${cpu() - t0}`);
  });
} else {
  const data = fs.readFileSync(process.argv[3]);
  // 64 KiB slices of the in-memory data, like rill's stream.from.
  const source = () => {
    let off = 0;
    return new Readable({ read() {
      while (off < data.length) {
        const end = Math.min(off + 65536, data.length);
        const ok = this.push(data.subarray(off, end));
        off = end;
        if (!ok) return;
      }
      this.push(null);
    } });
  };
  if (mode === 'readline') {
    (async () => {
      const t0 = cpu();
      let n = 0;
      const rl = readline.createInterface({ input: source(), crlfDelay: Infinity });
      for await (const l of rl) { if (l.length >= 0) n++; }
      console.log(`readline ${n} ${cpu() - t0}`);
    })();
  } else {
    // The fast Node way (the anchors' node_grep_transform.js): split in the Transform.
    let tail = '', n = 0;
    const t = new Transform({ transform(chunk, e, cb) {
      const lines = (tail + chunk.toString('latin1')).split('\n');
      tail = lines.pop();
      for (const l of lines) { if (l.length >= 0) n++; }
      cb();
    }, flush(cb) { if (tail.length) n++; cb(); } });
    const w = new Writable({ write(c, e, cb) { cb(); } });
    const t0 = cpu();
    pipeline(source(), t, w, (err) => {
      if (err) throw err;
      console.log(`transform ${n} ${cpu() - t0}`);
    });
  }
}
