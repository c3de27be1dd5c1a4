#!/usr/bin/env python3
"""Paired bootstrap confidence intervals over the per-window / per-prompt rows
of `stem eval --results` (prose windows, --task prompts, no dependencies).

  bootstrap.py prose  FILE.tsv [--ref CFG] [--interp PREFIX] [--n 10000]
  bootstrap.py task   FILE.tsv [--ref CFG] [--interp PREFIX] [--by-depth]

prose: units are (text, offset) windows; metrics: mean NLL of the scored
  positions (nll_sum/rows), KL(dense||sparse) (kl_sum/rows), its log ratio.
task:  units are (task, length, key_index, depth) prompts; metrics p_first
  (probability of the first answer token), top1_first, exact (teacher-forced
  greedy reproduces the whole answer), nll_rest (mean NLL of the other answer
  tokens under dense decode).
Each configuration is listed with its mean and 95% percentile interval;
each other configuration is compared with --ref (default: the first
non-dense configuration) by the mean paired difference (other - ref), its 95%
interval, and the sign counts (other < ref / equal / other > ref).
--interp PREFIX adds, per unit, the PREFIX configurations (e.g. xattention
at several tau) interpolated at the ref's density (linear in density;
KL in log), so the comparison is at equal density per unit."""
import argparse
import csv
import math
import random
import sys
from collections import OrderedDict, defaultdict


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def units_prose(rows):
    data = defaultdict(dict)  # unit -> config -> metrics
    for r in rows:
        u = (r["text"], r["offset"])
        n = float(r["rows"])
        m = {"density": float(r["density"]),
             "nll": float(r["nll_sum"]) / n,
             "nll_dense": float(r["nll_dense_sum"]) / n,
             "kl": float(r["kl_sum"]) / n}
        data[u][r["config"]] = m
        data[u]["dense"] = {"density": 1.0, "nll": m["nll_dense"], "nll_dense": m["nll_dense"],
                            "kl": 0.0}
    return data, ["density", "nll", "kl"]


def units_task(rows):
    data = defaultdict(dict)
    for r in rows:
        u = (r["task"], r["length"], r["key_index"], r["depth"])
        if r["config"] in data[u] and abs(data[u][r["config"]]["p_first"] -
                                          float(r["p_first"])) > 1e-4:
            sys.exit("bootstrap: %s %s differs between files: not the same prompts" %
                     (u, r["config"]))
        data[u][r["config"]] = {"density": float(r["density"]), "p_first": float(r["p_first"]),
                                "top1_first": float(r["top1_first"]), "exact": float(r["exact"]),
                                "nll_rest": float(r["nll_rest"]), "depth": float(r["depth"])}
    return data, ["density", "p_first", "top1_first", "exact", "nll_rest"]


def interp(points, x, log):
    """points: [(density, value)] sorted; linear (or log-linear) at x, clamped."""
    if x <= points[0][0]:
        return points[0][1], x < points[0][0]
    if x >= points[-1][0]:
        return points[-1][1], x > points[-1][0]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            t = (x - x0) / (x1 - x0) if x1 > x0 else 0.0
            if log and y0 > 0 and y1 > 0:
                return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0))), False
            return y0 + t * (y1 - y0), False
    return points[-1][1], True


def boot(values, n, rng):
    k = len(values)
    if k == 0:
        return float("nan"), float("nan"), float("nan")
    mean = sum(values) / k
    means = sorted(sum(values[rng.randrange(k)] for _ in range(k)) / k for _ in range(n))
    return mean, means[int(0.025 * n)], means[min(n - 1, int(0.975 * n))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["prose", "task"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--ref")
    ap.add_argument("--interp")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--by-depth", action="store_true")
    ap.add_argument("--depth-table", metavar="METRIC",
                    help="task: only a depth x configuration table of METRIC (mean [95%%])")
    a = ap.parse_args()
    rows = [r for f in a.files for r in load(f)]
    data, metrics = (units_prose if a.kind == "prose" else units_task)(rows)
    configs = list(OrderedDict.fromkeys(c for u in data.values() for c in u))
    ref = a.ref or next(c for c in configs if c != "dense")
    units = [u for u in data if all(c in data[u] for c in configs)]
    dropped = len(data) - len(units)
    if a.interp:
        label = "%s@density(%s)" % (a.interp, ref)
        clamped = 0
        for u in units:
            pts = sorted((m["density"], m) for c, m in data[u].items() if c.startswith(a.interp))
            x = data[u][ref]["density"]
            out = {}
            for met in metrics:
                out[met], cl = interp([(p[0], p[1][met]) for p in pts], x, met == "kl")
            clamped += cl
            data[u][label] = out
        configs.append(label)
        if clamped:
            print("# %s: %d unit(s) outside the swept densities (clamped)" % (label, clamped))
    rng = random.Random(a.seed)
    groups = [("all", units)]
    if a.by_depth and a.kind == "task":
        for d in sorted({u[3] for u in units}, key=float):
            groups.append(("depth " + d, [u for u in units if u[3] == d]))
    print("# %s: %d units (%d incomplete dropped), %d bootstrap resamples, seed %d" %
          (", ".join(a.files), len(units), dropped, a.n, a.seed))
    if a.depth_table:
        depths = sorted({u[3] for u in units}, key=float)
        print("\n| %s | %s | all |" % (a.depth_table, " | ".join("depth %s%%" % d for d in depths)))
        print("|---|" + "---|" * (len(depths) + 1))
        for c in configs:
            cells = []
            for d in depths + [None]:
                vals = [data[u][c][a.depth_table] for u in units if d is None or u[3] == d]
                m, lo, hi = boot(vals, a.n, rng)
                cells.append("%.2f [%.2f, %.2f]" % (m, lo, hi))
            print("| `%s` | %s |" % (c, " | ".join(cells)))
        print("\n(%d prompts per depth at most)" % max(sum(u[3] == d for u in units) for d in depths))
        return 0
    for gname, us in groups:
        print("\n## %s (%d units)\n" % (gname, len(us)))
        print("| config | " + " | ".join(metrics) + " |")
        print("|---|" + "---|" * len(metrics))
        for c in configs:
            cells = []
            for met in metrics:
                m, lo, hi = boot([data[u][c][met] for u in us], a.n, rng)
                cells.append("%.4g [%.4g, %.4g]" % (m, lo, hi))
            print("| %s | %s |" % (c, " | ".join(cells)))
        print("\npaired differences vs %s (other - ref), 95%% interval, sign counts (<, =, >):\n"
              % ref)
        print("| config | " + " | ".join(metrics) + " |")
        print("|---|" + "---|" * len(metrics))
        for c in configs:
            if c == ref:
                continue
            cells = []
            for met in metrics:
                diffs = [data[u][c][met] - data[u][ref][met] for u in us]
                m, lo, hi = boot(diffs, a.n, rng)
                lt = sum(d < 0 for d in diffs)
                gt = sum(d > 0 for d in diffs)
                cells.append("%+.4g [%+.4g, %+.4g] (%d/%d/%d)" %
                             (m, lo, hi, lt, len(diffs) - lt - gt, gt))
            print("| %s | %s |" % (c, " | ".join(cells)))
        if a.kind == "prose":
            print("\nKL ratio other/ref (geometric mean over units, 95% interval):\n")
            for c in configs:
                if c in (ref, "dense"):
                    continue
                lr = [math.log(data[u][c]["kl"] / data[u][ref]["kl"]) for u in us
                      if data[u][c]["kl"] > 0 and data[u][ref]["kl"] > 0]
                m, lo, hi = boot(lr, a.n, rng)
                print("- %s: %.3f [%.3f, %.3f]" % (c, math.exp(m), math.exp(lo), math.exp(hi)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
