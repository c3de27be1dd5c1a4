#!/usr/bin/env python3
"""Markdown table of a `stem eval --results` TSV, sorted by block then density.
usage: table.py SWEEP.tsv"""
import csv
import sys

with open(sys.argv[1]) as f:
    rs = list(csv.DictReader(f, delimiter="\t"))
rs.sort(key=lambda r: (int(r["block"]), float(r["density"])))
print("| config | block | density | ppl (dense) | mean KL | KL, 2nd half | top-1 = dense | ppl 2nd half (dense) |")
print("|---|---|---|---|---|---|---|---|")
for r in rs:
    print(f"| `{r['config']}` | {r['block']} | {float(r['density']):.3f} | "
          f"{float(r['ppl']):.3f} ({float(r['ppl_dense']):.3f}) | {float(r['kl_mean']):.4f} | "
          f"{float(r['kl_2nd_half']):.4f} | {float(r['top1_agree']):.3f} | "
          f"{float(r['ppl_2nd_half']):.3f} ({float(r['ppl_dense_2nd_half']):.3f}) |")
