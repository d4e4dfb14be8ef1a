#!/usr/bin/env python3
"""bench/run.py: runs rill and its anchors (Node.js, plain Lua) on the same job in the same run
and prints each figure with the ratio against the anchors.

usage: bench/run.py [--rill build/rill] [--data DIR] [JOB ...]
Jobs: startup, buffer (more are added by bench/jobs/*.py as issues land). Data for the I/O jobs
comes from ../shared/anchors/gen_data.py (made on demand in --data)."""
import argparse, os, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def timeit(cmd, runs, **kw):
    """Median wall time of cmd over runs, after one warm-up run."""
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def job_startup(a):
    runs = 40
    r = timeit([a.rill, "-e", "x=1"], runs)
    n = timeit(["node", "-e", "x=1"], runs)
    l = timeit(["lua5.4", "-e", "x=1"], runs)
    print(f"startup rill -e 'x=1'       {r*1000:8.2f} ms")
    print(f"startup node -e 'x=1'       {n*1000:8.2f} ms   rill is {n/r:5.1f}x faster than node")
    print(f"startup lua5.4 -e 'x=1'     {l*1000:8.2f} ms   rill - lua5.4 = {(r-l)*1000:+.2f} ms")


def job_buffer(a):
    """Runs bench/buffer.lua (codecs, find) under rill; it prints its own figures."""
    script = os.path.join(HERE, "buffer.lua")
    if not os.path.exists(script):
        print("buffer: bench/buffer.lua not present, skipped")
        return
    subprocess.run([a.rill, script], check=True)


JOBS = {"startup": job_startup, "buffer": job_buffer}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rill", default=os.path.join(ROOT, "build", "rill"))
    p.add_argument("--data", default="/tmp/rilldata")
    p.add_argument("jobs", nargs="*")
    a = p.parse_args()
    extra = os.path.join(HERE, "jobs.py")
    if os.path.exists(extra):
        sys.path.insert(0, HERE)
        import jobs  # noqa: E402  (jobs added by later issues)
        JOBS.update(jobs.JOBS)
    for name in a.jobs or list(JOBS):
        if name not in JOBS:
            sys.exit(f"unknown job {name}; jobs: {', '.join(JOBS)}")
        print(f"== {name}")
        JOBS[name](a)


if __name__ == "__main__":
    main()
