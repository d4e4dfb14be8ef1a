"""bench/jobs.py: benchmark jobs added by later issues, merged into bench/run.py's JOBS.

stream (issue 3): runs bench/stream.lua under rill, which prints its own figures and ratios.
copy, grep, chunks, rss, tcp, stdpipe (issue 4, native I/O): each job runs rill and its anchors (../shared/anchors/) on the same data, side by side: the
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


def cpu_race(contenders, runs=RUNS):
    """Like race, with CPU time (user + system, the process and what it waited for):
    {label: (median wall s, median CPU s)}."""
    walls = {c[0]: [] for c in contenders}
    cpus = {c[0]: [] for c in contenders}
    for _ in range(runs):
        for label, cmd, env in contenders:
            e = dict(os.environ)
            e.update(env or {})
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            walls[label].append(time.perf_counter() - t0)
            if status != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({status})")
            cpus[label].append(ru.ru_utime + ru.ru_stime)
    return {k: (statistics.median(walls[k]), statistics.median(cpus[k])) for k in walls}


def job_gzip(a):
    """gzip level 6 of 256 MiB of text: rill (one thread, and zlib.gzip{threads = 2}) against
    node_gzip.js (Node's zlib, same level); wall and CPU time, outputs checked with gzip -dc."""
    src = data(a, "lines256.txt")
    with tempfile.TemporaryDirectory(prefix="rillbench-") as tmp:
        outs = {k: os.path.join(tmp, k + ".gz") for k in ("rill", "rill2", "node")}
        script = os.path.join(HERE, "zlib_gzip.lua")
        res = cpu_race([
            ("rill zlib_gzip.lua", [a.rill, script, src, outs["rill"]], None),
            ("rill zlib_gzip.lua threads=2", [a.rill, script, src, outs["rill2"], "2"], None),
            ("node node_gzip.js", ["node", os.path.join(ANCHORS, "node_gzip.js"), src, outs["node"]], None),
        ])
        want = md5(src)
        ok = all(subprocess.run(f"gzip -dc '{p}' | md5sum", shell=True, capture_output=True,
                                text=True).stdout.split()[0] == want for p in outs.values())
        sizes = {k: os.path.getsize(p) for k, p in outs.items()}
    for label, (w, c) in res.items():
        print(f"  {label:34s} {w:8.3f} s wall   {c:8.3f} s CPU")
    print(f"  outputs gunzip to the input: {ok}; sizes: " +
          ", ".join(f"{k} {v / 1048576:.1f} MiB" for k, v in sizes.items()))
    r, n = res["rill zlib_gzip.lua"], res["node node_gzip.js"]
    verdict("gzip: wall time against Node (one thread)", n[0] / r[0], 1)
    verdict("gzip: CPU time against Node (one thread)", n[1] / r[1], 1)
    verdict("gzip: wall time against Node (threads = 2)",
            n[0] / res["rill zlib_gzip.lua threads=2"][0], 1)


def proc_cpu(pid):
    """CPU seconds (user + system) a process used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, secs):
    """requests/s and bytes/s of one wrk -t1 -c50 run."""
    out = subprocess.run(["wrk", "-t1", "-c50", f"-d{secs}s", url], capture_output=True,
                         text=True, check=True).stdout
    rps = bps = 0.0
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        elif line.startswith("Transfer/sec:"):
            v = line.split()[1]
            unit = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
            for u in ("GB", "MB", "KB", "B"):
                if v.endswith(u):
                    bps = float(v[: -len(u)]) * unit[u]
                    break
        elif "Socket errors" in line or "Non-2xx" in line:
            print(f"    wrk: {line.strip()}")
    return rps, bps


def job_http(a):
    """scripts/static_server.lua against node_http_static.js, wrk -t1 -c50, a 1 KiB and a 1 MiB
    file, the runs alternating (RILL_BENCH_HTTP_SECS per run, default 5); with the servers' CPU
    seconds per 1000 requests."""
    secs = int(os.environ.get("RILL_BENCH_HTTP_SECS", "5"))
    goals = {"1k": ("requests/s", 0, 2.0), "1m": ("throughput", 1, 1.5)}
    with tempfile.TemporaryDirectory(prefix="rillbench-") as tmp:
        for name, size in (("1k", 1024), ("1m", 1 << 20)):
            path = os.path.join(tmp, f"{name}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            rp, np_ = free_port(), free_port()
            servers = {
                "rill": subprocess.Popen([a.rill, os.path.join(ROOT, "scripts", "static_server.lua"),
                                          tmp, str(rp)], stderr=subprocess.DEVNULL),
                "node": subprocess.Popen(["node", os.path.join(ANCHORS, "node_http_static.js"),
                                          path, str(np_)]),
            }
            urls = {"rill": f"http://127.0.0.1:{rp}/{name}.bin", "node": f"http://127.0.0.1:{np_}/"}
            got = {k: [] for k in servers}
            cpu = {k: [] for k in servers}
            try:
                wait_port(rp, servers["rill"])
                wait_port(np_, servers["node"])
                for k in servers:  # warm-up
                    wrk(urls[k], 1)
                for _ in range(RUNS):
                    for k, p in servers.items():
                        c0 = proc_cpu(p.pid)
                        rps, bps = wrk(urls[k], secs)
                        got[k].append((rps, bps))
                        cpu[k].append((proc_cpu(p.pid) - c0) / (rps * secs) * 1000 if rps else 0)
            finally:
                for p in servers.values():
                    p.terminate()
                    p.wait()
            med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
                   for k, v in got.items()}
            for k in servers:
                rps, bps = med[k]
                runs = ", ".join(f"{x[0]:.0f}" for x in got[k])
                print(f"  {name} {k:5s} {rps:10.0f} req/s {bps / 1048576:9.1f} MiB/s   "
                      f"server CPU {statistics.median(cpu[k]):6.3f} s per 1000 requests   (runs: {runs})")
            what, i, goal = goals[name]
            verdict(f"http {name} file: {what} against Node", med["rill"][i] / med["node"][i], goal)


def job_stdpipe(a):
    """cat 1 GiB | X | cat >/dev/null, X being rill's pipeline(stdin, stdout) (splice fast path, and
    RILL_NO_FASTPATH=1) or cat itself: the whole pipeline's wall time and X's own CPU time."""
    src = data(a, "rand.bin")
    code = "rill.stream.pipeline(rill.stdin, rill.stdout)"
    mids = [
        ("rill pipeline(stdin, stdout)", [a.rill, "-e", code], {}),
        ("rill, RILL_NO_FASTPATH=1", [a.rill, "-e", code], {"RILL_NO_FASTPATH": "1"}),
        ("cat", ["cat"], {}),
    ]
    walls = {m[0]: [] for m in mids}
    cpus = {m[0]: [] for m in mids}
    with tempfile.TemporaryDirectory(prefix="rillbench-") as tmp:
        tfile = os.path.join(tmp, "t")
        for _ in range(RUNS):
            for label, cmd, env in mids:
                e = dict(os.environ)
                e.update(env)
                mid = " ".join(f"'{x}'" for x in [GNU_TIME, "-o", tfile, "-f", "%U %S"] + cmd)
                t0 = time.perf_counter()
                subprocess.run(["bash", "-c", f"set -o pipefail; cat '{src}' | {mid} | cat >/dev/null"],
                               env=e, check=True)
                walls[label].append(time.perf_counter() - t0)
                with open(tfile) as f:
                    u, sy = f.read().split()[-2:]
                cpus[label].append(float(u) + float(sy))
    for label in walls:
        print(f"  {label:34s} {statistics.median(walls[label]):8.3f} s   its CPU "
              f"{statistics.median(cpus[label]):6.3f} s")
    r, c = statistics.median(walls[mids[0][0]]), statistics.median(walls["cat"])
    rc, cc = statistics.median(cpus[mids[0][0]]), statistics.median(cpus["cat"])
    print(f"  stdin to stdout: wall {c / r:5.2f}x cat's speed, CPU {cc / rc:5.2f}x less than cat's")


JOBS = {"stream": job_stream, "copy": job_copy, "grep": job_grep, "chunks": job_chunks, "rss": job_rss, "tcp": job_tcp,
        "gzip": job_gzip, "http": job_http, "stdpipe": job_stdpipe}
