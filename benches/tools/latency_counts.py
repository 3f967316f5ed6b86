#!/usr/bin/env python3
"""Scan-to-event latency, measured the same way for any till daemon (a copy of
../shared/bench/latency.py that also counts the target's context switches and CPU time per
scan, and can attach a tracer for the measured scans only: AT_START, see scan_counts.sh).

A pty pair stands in for the serial scanner. The target command is started with {tty} and
{socket} filled in; we connect to its socket, write `code + CR` to the pty master, and time
until a line naming the code arrives. Prints median and p99 in microseconds.

  python3 latency.py --n 2000 --code 100000000001 -- python3 peer_till.py --serial {tty} ...
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import termios
import time
import tty


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--code", default="100000000001")
    ap.add_argument("--subscribe", default="", help="a line to send after connecting")
    ap.add_argument("--after-warmup", default="", help="a shell command run once the warm-up is done")
    ap.add_argument("--settle-ms", type=int, default=0, help="wait this long after --after-warmup")
    ap.add_argument("--template", default="", help="a config file with {tty} {socket} {dir}, written to {config}")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd

    master, slave = os.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    tty_path = os.ttyname(slave)
    work = tempfile.mkdtemp()
    sock_path = os.path.join(work, "t.sock")
    fill = dict(tty=tty_path, socket=sock_path, dir=work, config=os.path.join(work, "config.toml"))
    if a.template:
        text = open(a.template).read()
        for k, v in fill.items():
            text = text.replace("{" + k + "}", v)
        open(fill["config"], "w").write(text)
    proc = subprocess.Popen([c.format(**fill) for c in cmd])
    try:
        for _ in range(200):
            if os.path.exists(sock_path):
                break
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        if a.subscribe:
            s.sendall(a.subscribe.encode() + b"\n")
        f = s.makefile("rb")
        frame, needle = (a.code + "\r").encode(), a.code.encode()
        samples = []
        def counts():
            import glob
            cs = 0
            for st in glob.glob(f"/proc/{proc.pid}/task/*/status"):
                try:
                    for l in open(st):
                        if l.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            cs += int(l.split()[1])
                except FileNotFoundError:
                    pass
            f2 = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
            cpu = int(f2[11]) + int(f2[12])
            return cs, cpu
        base = None
        for i in range(a.warmup + a.n):
            if i == a.warmup:
                base = counts()
                if os.environ.get("AT_START"):
                    tracer = subprocess.Popen(os.environ["AT_START"].replace("{pid}", str(proc.pid)), shell=True, start_new_session=True)
                    time.sleep(1.0)
                    base = counts()
            t0 = time.perf_counter_ns()
            os.write(master, frame)
            while True:
                line = f.readline()
                if not line:
                    sys.exit("target closed the socket")
                if needle in line and b'"card"' in line:
                    break
            if i >= a.warmup:
                samples.append((time.perf_counter_ns() - t0) / 1000)
            if i == a.warmup - 1 and a.after_warmup:
                subprocess.run(a.after_warmup, shell=True, check=True)
                deadline = time.monotonic() + a.settle_ms / 1000
                while time.monotonic() < deadline:  # keep scanning so a breaker can open
                    os.write(master, frame)
                    while True:
                        line = f.readline()
                        if not line:
                            sys.exit("target closed the socket")
                        if needle in line and b'"card"' in line:
                            break
                    time.sleep(0.02)
        end = counts()
        if os.environ.get("AT_START"):
            import signal
            os.killpg(tracer.pid, signal.SIGINT); tracer.wait()
        samples.sort()
        cs_per = (end[0]-base[0])/a.n; cpu_per = (end[1]-base[1])*1e6/os.sysconf('SC_CLK_TCK')/a.n
        p99 = samples[int(len(samples) * 0.99) - 1]
        rss = [l.split()[1] for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS")][0]
        print(f"n={len(samples)} median_us={statistics.median(samples):.0f} p99_us={p99:.0f} rss_kb={rss} cs_per_scan={cs_per:.2f} cpu_us_per_scan={cpu_per:.1f}")
    finally:
        proc.terminate()
        proc.wait()
        del attrs


if __name__ == "__main__":
    main()
