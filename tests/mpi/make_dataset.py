#!/usr/bin/env python3
# make_dataset.py DIR ROWS D SEED [--bad-label-row K]: a prepared dataset
# directory for the MPI training tests (tests/test_train_mpi.sh), in the
# format dp_dataset_open reads (meta.json + X_<split>.npy float32 [n, d] +
# y_<split>.npy int32 [n]), like tests/train_fixture.h: features N(0, 1) with
# two one-hot SEX columns last, labels from a fixed linear rule. Written with
# numpy only. --bad-label-row K writes label 7 (outside [0, 2)) at row K of
# the train split, so that only the rank whose shard holds row K fails.
import json
import os
import sys

import numpy as np


def split(rng, n, d):
    dn = d - 2
    X = np.zeros((n, d), dtype=np.float32)
    X[:, :dn] = rng.standard_normal((n, dn)).astype(np.float32)
    w = np.array([(-1.0 if j % 2 else 1.0) * (j + 1) / dn for j in range(dn)])
    s = X[:, :dn].astype(np.float64) @ w
    sex = rng.random(n) < 0.4
    X[:, dn] = np.where(sex, 0.0, 1.0)
    X[:, dn + 1] = np.where(sex, 1.0, 0.0)
    y = (s > 0).astype(np.int32)
    return X, y


def main():
    args = sys.argv[1:]
    bad = None
    if "--bad-label-row" in args:
        i = args.index("--bad-label-row")
        bad = int(args[i + 1])
        del args[i : i + 2]
    out, rows, d, seed = args[0], int(args[1]), int(args[2]), int(args[3])
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {"train": rows, "val": rows // 4 + 1, "test": rows // 4 + 1}
    for name, n in counts.items():
        X, y = split(rng, n, d)
        if name == "train" and bad is not None:
            y[bad] = 7
        np.save(os.path.join(out, f"X_{name}.npy"), X)
        np.save(os.path.join(out, f"y_{name}.npy"), y)
    meta = {
        "format": "dpsgd-dataset",
        "version": 1,
        "task": "fixture",
        "n_features": d,
        "n_classes": 2,
        "schema_hash": "fixture-schema-mpi",
        "columns": [f"x{j}" for j in range(d - 2)] + ["SEX=1", "SEX=2"],
        "splits": {k: {"rows": v} for k, v in counts.items()},
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)
        f.write("\n")


if __name__ == "__main__":
    main()
