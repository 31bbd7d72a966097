#!/usr/bin/env python3
# compare_models.py [--rel X | --exact] REF OTHER...: compare the parameter
# tensors of model.safetensors files (read by the standard-library reader
# tests/safetensors_read.py, independent of dpsgd) for tests/test_train_mpi.sh.
# --rel X (default 1e-5): for every tensor, max |a - b| <= X * max |a|
# (relative to the tensor's scale: elements near zero carry only absolute
# rounding). --exact: the same bits. Prints the worst relative difference per
# file; exit 1 if any file fails, with its name.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from safetensors_read import read  # noqa: E402


def main():
    args = sys.argv[1:]
    rel, exact = 1e-5, False
    if args and args[0] == "--exact":
        exact = True
        args = args[1:]
    elif args and args[0] == "--rel":
        rel = float(args[1])
        args = args[2:]
    ref = read(args[0])["tensors"]
    failed = 0
    for path in args[1:]:
        other = read(path)["tensors"]
        if sorted(other) != sorted(ref):
            print(f"{path}: tensors {sorted(other)} differ from {sorted(ref)}")
            failed = 1
            continue
        worst, same = 0.0, True
        for name, t in ref.items():
            a, b = t["values"], other[name]["values"]
            if t["shape"] != other[name]["shape"]:
                print(f"{path}: {name}: shape {other[name]['shape']} != {t['shape']}")
                failed = 1
                same = False
                continue
            scale = max(abs(v) for v in a) or 1.0
            diff = max(abs(x - y) for x, y in zip(a, b))
            same = same and a == b
            worst = max(worst, diff / scale)
        ok = same if exact else worst <= rel
        print(f"{path}: worst relative difference {worst:.3g}{' (identical bits)' if same else ''}"
              f"{'' if ok else ' FAILS'}")
        failed |= not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
