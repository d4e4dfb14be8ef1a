"""bench/jobs.py: benchmark jobs added by later issues, merged into bench/run.py's JOBS.

stream (issue 3): runs bench/stream.lua under rill, which prints its own figures and ratios.
copy, grep, chunks, rss, tcp (issue 4, native I/O): each job runs rill and its anchors (../shared/anchors/) on the same data, side by side: the
contenders take turns, RILL_BENCH_RUNS times each (default 3), and the medians are compared
against the goals the issue sets. Data comes from ../shared/anchors/gen_data.py (made on
demand in --data) and is read once first so that every contender finds it in the page cache.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ANCHORS = os.environ.get("RILL_ANCHORS") or os.path.join(ROOT, "..", "shared", "anchors")
RUNS = int(os.environ.get("RILL_BENCH_RUNS", "3"))


def job_stream(a):
    """bench/stream.lua: chunks/s through a Lua transform and lines/s through r:lines(), against
    Node.js (bench/node_stream.js) and lua5.4 io.lines, in the same run."""
    subprocess.run([a.rill, os.path.join(HERE, "stream.lua")], check=True)


def data(a, name):
    """Path of a data file, generating the set when missing; read once to warm the cache."""
    path = os.path.join(a.data, name)
    if not os.path.exists(path):
        print(f"  (generating benchmark data in {a.data})", flush=True)
        subprocess.run([sys.executable, os.path.join(ANCHORS, "gen_data.py"), a.data], check=True)
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
    return path


GNU_TIME = "/usr/bin/time"


def measure(cmd, env=None, stdout=subprocess.DEVNULL):
    """Wall time (s) and peak RSS (KiB) of one run; raises if it fails. The RSS comes from GNU
    time's %M: a child forked from this Python process would count Python's pages in its own
    ru_maxrss until it execs."""
    e = dict(os.environ)
    if env:
        e.update(env)
    wrapped = os.path.exists(GNU_TIME)
    if not wrapped and not getattr(measure, "warned", False):
        measure.warned = True
        print("  (no /usr/bin/time: install the Debian package 'time' for exact peak RSS)")
    full = [GNU_TIME, "-f", "@@rss %M", "--"] + cmd if wrapped else cmd
    t0 = time.perf_counter()
    p = subprocess.Popen(full, env=e, stdout=stdout, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({status}): {err.strip()[-500:]}")
    rss = ru.ru_maxrss
    if wrapped:
        for line in err.splitlines():
            if line.startswith("@@rss "):
                rss = int(line.split()[1])
    return dt, rss


def race(contenders, runs=RUNS):
    """Runs the contenders in turn, runs times each; returns {label: (median s, max RSS KiB)}."""
    times = {c[0]: [] for c in contenders}
    rss = {c[0]: 0 for c in contenders}
    for _ in range(runs):
        for label, cmd, env in contenders:
            t, m = measure(cmd, env)
            times[label].append(t)
            rss[label] = max(rss[label], m)
    return {k: (statistics.median(v), rss[k]) for k, v in times.items()}


def show(res):
    for label, (t, m) in res.items():
        print(f"  {label:34s} {t:8.3f} s   peak RSS {m / 1024:7.1f} MiB")


def verdict(what, got, goal):
    ok = "meets" if got >= goal else "MISSES"
    print(f"  {what:58s} {got:6.2f}x   (goal >= {goal}x: {ok})")


def md5(path):
    return subprocess.run(["md5sum", path], capture_output=True, text=True).stdout.split()[0]


def job_copy(a):
    """1 GiB cached file to /dev/null through pipeline(fs.reader, fs.writer)."""
    src = data(a, "rand.bin")
    script = os.path.join(HERE, "io_copy.lua")
    res = race([
        ("rill (native fast path)", [a.rill, script, src, "/dev/null"], None),
        ("rill (RILL_NO_FASTPATH=1)", [a.rill, script, src, "/dev/null"], {"RILL_NO_FASTPATH": "1"}),
        ("node node_copy.js", ["node", os.path.join(ANCHORS, "node_copy.js"), src, "/dev/null"], None),
        ("dd bs=64k", ["dd", f"if={src}", "of=/dev/null", "bs=64k", "status=none"], None),
    ])
    show(res)
    r, rn = res["rill (native fast path)"][0], res["rill (RILL_NO_FASTPATH=1)"][0]
    n, d = res["node node_copy.js"][0], res["dd bs=64k"][0]
    verdict("copy: faster than Node", n / r, 5)
    verdict("copy: speed relative to dd bs=64k", d / r, 0.7)
    verdict("copy without the fast path: faster than Node", n / rn, 5)
    verdict("copy without the fast path: speed relative to dd", d / rn, 0.7)


def job_grep(a):
    """A Lua per-line filter over 512 MiB of log lines against Node and plain Lua."""
    src = data(a, "lines.txt")
    with tempfile.TemporaryDirectory(prefix="rillbench-") as tmp:
        outs = {k: os.path.join(tmp, k) for k in ("rill", "node", "lua")}
        res = race([
            ("rill io_grep.lua (lines())", [a.rill, os.path.join(HERE, "io_grep.lua"), src, outs["rill"]], None),
            ("node node_grep_transform.js", ["node", os.path.join(ANCHORS, "node_grep_transform.js"), src, outs["node"]], None),
            ("lua5.4 lua_grep_iolines.lua", ["lua5.4", os.path.join(ANCHORS, "lua_grep_iolines.lua"), src, outs["lua"]], None),
        ])
        sums = {k: md5(p) for k, p in outs.items()}
    show(res)
    print(f"  outputs identical: {len(set(sums.values())) == 1}")
    r = res["rill io_grep.lua (lines())"][0]
    verdict("grep: faster than node_grep_transform.js", res["node node_grep_transform.js"][0] / r, 2)
    verdict("grep: faster than lua_grep_iolines.lua", res["lua5.4 lua_grep_iolines.lua"][0] / r, 1.5)


def job_chunks(a):
    """4 KiB chunks through a Lua transform, 1 GiB."""
    src = data(a, "rand.bin")
    res = race([
        ("rill io_chunks.lua (Lua transform)", [a.rill, os.path.join(HERE, "io_chunks.lua"), src, "/dev/null"], None),
        ("node node_chunks.js", ["node", os.path.join(ANCHORS, "node_chunks.js"), src, "/dev/null"], None),
    ])
    show(res)
    verdict("chunks: faster than node_chunks.js",
            res["node node_chunks.js"][0] / res["rill io_chunks.lua (Lua transform)"][0], 10)


def job_rss(a):
    """Peak RSS while streaming 1 GiB (bytes through user space: no kernel fast path)."""
    src = data(a, "rand.bin")
    copy = os.path.join(HERE, "io_copy.lua")
    res = race([
        ("rill copy (chunks through the engine)", [a.rill, copy, src, "/dev/null"], {"RILL_NO_FASTPATH": "1"}),
        ("rill 4 KiB chunks via a Lua transform", [a.rill, os.path.join(HERE, "io_chunks.lua"), src, "/dev/null"], None),
        ("node node_copy.js", ["node", os.path.join(ANCHORS, "node_copy.js"), src, "/dev/null"], None),
    ], runs=1)
    show(res)
    n = res["node node_copy.js"][1]
    verdict("rss: below Node's (engine copy)", n / res["rill copy (chunks through the engine)"][1], 8)
    verdict("rss: below Node's (Lua transform)", n / res["rill 4 KiB chunks via a Lua transform"][1], 8)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def job_tcp(a):
    """TCP echo of 256 MiB over loopback: rill server and client against Node's."""
    src = data(a, "lines256.txt")
    np_, rp = free_port(), free_port()
    servers = [
        subprocess.Popen(["node", os.path.join(ANCHORS, "node_tcp_echo.js"), str(np_)]),
        subprocess.Popen([a.rill, os.path.join(HERE, "io_tcp_echo.lua"), str(rp)], stdout=subprocess.DEVNULL),
    ]
    try:
        wait_port(np_, servers[0])
        wait_port(rp, servers[1])
        res = race([
            ("rill client -> rill server", [a.rill, os.path.join(HERE, "io_tcp_client.lua"), src, str(rp)], None),
            ("node client -> node server", ["node", os.path.join(ANCHORS, "node_tcp_client.js"), src, str(np_)], None),
        ])
    finally:
        for s in servers:
            s.terminate()
            s.wait()
    show(res)
    verdict("tcp echo: faster than Node",
            res["node client -> node server"][0] / res["rill client -> rill server"][0], 1.5)


JOBS = {"stream": job_stream, "copy": job_copy, "grep": job_grep, "chunks": job_chunks, "rss": job_rss, "tcp": job_tcp}
