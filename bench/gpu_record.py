"""Section 6: the GPU.  Nothing is measured here: ``bench/gpu.sh`` runs on a lent GPU
and its last output, ``bench/gpu_results.txt``, is copied into the report."""

from __future__ import annotations

import os

from bench.common import HERE

TITLE = "GPU"
RECORD = os.path.join(HERE, "gpu_results.txt")


def measure(ctx):
    return {}


def markdown(r, ctx):
    L = ["`bench/gpu.sh` measures the same throughput on a GPU and the fraction of the measured memory-"
         "bandwidth ceiling (4 bytes read per point per iteration). This machine has no GPU, so this run "
         "does not measure it; below is the output of `gpu.sh` from its last run on a lent GPU, kept in "
         "`bench/gpu_results.txt` (first line: when, and the commit it measured).\n"]
    if os.path.exists(RECORD):
        with open(RECORD) as fh:
            L.append("```\n" + fh.read().rstrip() + "\n```\n")
    else:
        L.append("(no GPU run recorded)\n")
    L.append(f"What that run shows, written by hand from it: [{ctx.notes_name}, GPU]({ctx.notes_link}#gpu).\n")
    return "\n".join(L)
