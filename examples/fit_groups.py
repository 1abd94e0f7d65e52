"""Fit one mixture per group of a long table with ``jaxgmm.fit_groups``.

    python examples/fit_groups.py            # 500 groups of 20..2000 values
    python examples/fit_groups.py --dask     # the same table over Dask partitions (needs dask)

Each group's starts come from its own key (``group_key(key, label)``), so the fit of a
group is the same whether the table is fitted in one call or split over partitions.
"""

import argparse

import jax
import numpy as np

import jaxgmm


def make_table(n_groups=500, seed=0):
    """A long table: site labels and values, 0.3 N(0, 1) + 0.7 N(2.5, 1) per site, 20..2000 rows each."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 2001, n_groups)
    labels = np.repeat([f"site-{i:04d}" for i in range(n_groups)], sizes)
    z = rng.standard_normal(sizes.sum())
    values = np.where(rng.random(sizes.sum()) < 0.3, z, 2.5 + z)
    order = rng.permutation(values.size)  # rows in any order
    return labels[order], values[order]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dask", action="store_true")
    parser.add_argument("--groups", type=int, default=500)
    args = parser.parse_args()
    labels, values = make_table(args.groups)
    key = jax.random.key(0)

    # One call: values and their labels; K = 2, four data-driven starts per group.
    result = jaxgmm.fit_groups(values, labels, 2, key=key, n_starts=4)
    print(f"{len(result)} groups, {int(result.converged.sum())} converged")
    one = result["site-0007"]                      # that group's FitResult
    print("site-0007:", one.params.means, jaxgmm.Status(int(one.status)).name)
    try:
        print(result.to_pandas().head())
    except ImportError:                            # no pandas: NumPy arrays in the fields
        print(result.labels[:3], result.params.means[:3])

    if args.dask:
        import dask.dataframe as dd
        import pandas as pd

        df = pd.DataFrame({"site": labels, "y": values})
        # One task = many whole groups: shuffle so that each group lies in one partition.
        parts = dd.from_pandas(df, npartitions=8).shuffle("site")

        def fit_partition(frame):
            return jaxgmm.fit_groups(frame, 2, key=key, n_starts=4, by="site", value="y").to_pandas()

        meta = fit_partition(df[df["site"] == "site-0000"])
        table = parts.map_partitions(fit_partition, meta=meta).compute().set_index("group")
        row = table.loc["site-0007"]
        print("site-0007 over Dask partitions:", row[["mu_1", "mu_2"]].to_numpy())


if __name__ == "__main__":
    main()
