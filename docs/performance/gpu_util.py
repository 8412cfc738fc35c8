#!/usr/bin/env python3
"""Per-step GPU utilisation of a docs/performance/gpu_check_prebuilt.sh run.

    python3 docs/performance/gpu_util.py LOGS_DIR   # the unpacked logs.tgz

For each step in steps.txt: its seconds and exit status, and over the nvidia-smi samples taken
while it ran (util.csv, every 100 ms), the mean and median of utilization.gpu (the share of each
sample period in which a kernel was running; 100 minus it is the time outside kernels), the
median SM clock and power, and the most device memory used. A step's window includes its start
(loading, shader compilation); for the attack loop alone, read the samples of the step's last
seconds (busy-madry-pgd10 runs 20 timed repeats at its end), e.g. with --tail SECONDS.
"""
import argparse
import datetime
import statistics


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs")
    ap.add_argument("--tail", type=float, default=None,
                    help="only the last SECONDS of each step")
    a = ap.parse_args()
    steps = []
    for line in open(f"{a.logs}/steps.txt"):
        p = line.split()
        if len(p) == 4:
            steps.append((p[0], float(p[1]), float(p[2]), int(p[3])))
    rows = []
    for line in open(f"{a.logs}/util.csv"):
        p = [x.strip() for x in line.split(",")]
        try:
            t = datetime.datetime.strptime(p[0], "%Y/%m/%d %H:%M:%S.%f")
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            rows.append((t, float(p[1]), float(p[2]), float(p[3]), float(p[4])))
        except (ValueError, IndexError):
            continue  # nvidia-smi's own messages, a line cut at the end
    print(f"{len(rows)} samples")
    for name, s, e, rc in steps:
        if a.tail is not None:
            s = max(s, e - a.tail)
        r = [x for x in rows if s <= x[0] <= e]
        if not r:
            print(f"{name:18} {e - s:7.1f} s exit {rc}  no samples")
            continue
        u = [x[1] for x in r]
        print(f"{name:18} {e - s:7.1f} s exit {rc}  utilisation mean {statistics.mean(u):5.1f} % "
              f"median {statistics.median(u):5.1f} %  ({len(u)} samples)  "
              f"SM {statistics.median([x[2] for x in r]):.0f} MHz  "
              f"{statistics.median([x[3] for x in r]):.0f} W  "
              f"memory up to {max(x[4] for x in r):.0f} MiB")


if __name__ == "__main__":
    main()
