"""bench/jobs.py: benchmark jobs added by later issues, merged into bench/run.py's JOBS.
Each job runs a bench script under rill (it prints its own figures and ratios)."""
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def job_stream(a):
    """bench/stream.lua: chunks/s through a Lua transform and lines/s through r:lines(), against
    Node.js (bench/node_stream.js) and lua5.4 io.lines, in the same run."""
    subprocess.run([a.rill, os.path.join(HERE, "stream.lua")], check=True)


JOBS = {"stream": job_stream}
