#!/usr/bin/env python3
"""Per-layer-group summary of `stem eval --layer-error ... --results F`
(F.layers.tsv): mean relative L2 of the attention output against dense, over
each half of the window and over all scored rows, and the mean density, per
configuration and layer group (no dependencies).
  layers_table.py FILE.layers.tsv [--groups 0-1,2-2,3-10,11-29]"""
import argparse
import csv
from collections import OrderedDict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--groups", default="0-1,2-2,3-10,11-29")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.file, newline=""), delimiter="\t"))
    groups = [tuple(int(x) for x in g.split("-")) for g in a.groups.split(",")]
    cfgs = list(OrderedDict.fromkeys(r["config"] for r in rows))
    print("| configuration | " + " | ".join("layers %d-%d: density, relL2 1st / 2nd half" % g
                                          for g in groups) + " |")
    print("|---|" + "---|" * len(groups))
    for c in cfgs:
        cells = []
        for lo, hi in groups:
            rs = [r for r in rows if r["config"] == c and lo <= int(r["layer"]) <= hi]
            if not rs:
                cells.append("-")
                continue
            m = lambda k: sum(float(r[k]) for r in rs) / len(rs)
            cells.append("%.3f, %.3f / %.3f" % (m("density"), m("rel_l2_1st_half"),
                                               m("rel_l2_2nd_half")))
        print("| `%s` | %s |" % (c, " | ".join(cells)))


if __name__ == "__main__":
    main()
