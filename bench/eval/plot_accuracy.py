#!/usr/bin/env python3
"""docs/accuracy.png from `stem eval` results: KL(dense || sparse) against
density per selector (left), per-layer attention-output error (right).
usage: plot_accuracy.py SWEEP.tsv LAYERS.tsv OUT.png   (needs matplotlib)"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def family(r):
    c = r["config"]
    if r["selector"] == "stem":
        if "beta=0" in c:
            return "stem, no OAM (beta=0)"
        if "mu=1" in c:
            return "stem, no TPD (mu=1)"
        if "dl=0" in c:
            return "stem, layers 0-1 sparse too"
    return r["selector"]


def main():
    sweep, layers, out = sys.argv[1:4]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    groups = defaultdict(list)
    for r in rows(sweep):
        groups[(family(r), int(r["block"]))].append(r)
    markers = {"stem": "o", "stem_paper": "s", "uniform": "^", "xattention": "D"}
    for (fam, block), rs in sorted(groups.items()):
        rs.sort(key=lambda r: float(r["density"]))
        x = [float(r["density"]) for r in rs]
        y = [float(r["kl_mean"]) for r in rs]
        a.plot(x, y, marker=markers.get(fam, "x"), linestyle="-" if block == 64 else "--",
               fillstyle="full" if block == 64 else "none", label=f"{fam}, block {block}")
    a.set_yscale("log")
    a.set_xlabel("density (kept / causal blocks, all 30 layers)")
    a.set_ylabel("mean KL(dense || sparse) per token, nats")
    a.set_title("SmolLM2-135M, 8K tokens of Pride and Prejudice")
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=7)
    per = defaultdict(list)
    for r in rows(layers):
        per[r["config"]].append((int(r["layer"]), float(r["rel_l2"]), float(r["density"])))
    for cfg, pts in per.items():
        pts.sort()
        dens = sum(p[2] for p in pts) / len(pts)
        b.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=f"{cfg} (density {dens:.2f})")
    b.set_xlabel("layer")
    b.set_ylabel("||sparse - dense|| / ||dense||, tokens 4096-8191")
    b.set_title("per-layer attention-output error on dense activations")
    b.grid(True, alpha=0.3)
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
