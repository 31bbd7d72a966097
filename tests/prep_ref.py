#!/usr/bin/env python3
"""prep_ref.py: an independent reference for `dpsgd prep`, standard library only.

Recomputes from the raw CSV, with Python's csv module and the Census Bureau's
dictionary CSV read directly (not the compiled tables of the C code), what
docs/prep.md says prep must produce: which records are kept, dropped (by
reason) or outside the population, the missing and imputed counts, the
encoded columns and their values, and the stratified split. Then reads the
dataset directory that prep wrote (.npy parsed with struct, meta.json) and
compares. Exit status 0 when everything agrees, 1 with the differences.

usage: prep_ref.py DATASET INPUT --dictionary DICT.csv [prep options as for dpsgd prep]
"""
import argparse
import csv
import io
import json
import math
import re
import struct
import sys

M64 = (1 << 64) - 1
REASONS = ["wrong_field_count", "bad_quoting", "missing_label", "non_numeric",
           "out_of_range", "missing_key", "duplicate_key"]
TASKS = {
    "unemployment": dict(target="ESR", positive=["3"], population=["1", "2", "3", "4", "5"],
                         features=["AGEP", "SCHL", "MAR", "SEX", "RAC1P", "HISP", "DIS", "CIT",
                                   "NATIVITY", "MIL"]),
    "employment": dict(target="ESR", positive=["1"], population=None,
                       features=["AGEP", "SCHL", "MAR", "RELSHIPP|RELP", "DIS", "ESP", "CIT",
                                 "MIG", "MIL", "ANC", "NATIVITY", "DEAR", "DEYE", "DREM", "SEX",
                                 "RAC1P"]),
}
RELP = ["%02d" % i for i in range(18)]
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def is_int(s, sign):
    return re.fullmatch(r"[+-]?\d{1,18}" if sign else r"\d{1,18}", s) is not None


# ---------------------------------------------------------------- dictionary

class Var:
    def __init__(self, name, typ, width):
        self.name, self.type, self.width = name, typ, width
        self.codes = []  # (lo, hi, blank)

    def blank_ok(self):
        return any(b for _, _, b in self.codes)

    def valid(self, s):
        """Validity as the dictionary defines it (codes compared as integers)."""
        if s == "":
            return self.blank_ok()
        if len(s) > self.width:
            return False
        num = is_int(s, self.type == "N") and not s.startswith("+")
        for lo, hi, blank in self.codes:
            if blank:
                continue
            if self.type == "N" or (lo.isdigit() and hi.isdigit()):
                try:
                    a, b = int(lo), int(hi)
                except ValueError:
                    continue
                if num and a <= int(s) <= b:
                    return True
            elif lo == hi and s == lo:
                return True
            elif lo != hi and len(s) == len(lo) and lo <= s <= hi:
                return True
        return False


def read_dictionary(path):
    """The person record: the dictionary lists the housing record first, then
    the person record, which starts at the second NAME,RT row."""
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if not row:
                continue
            if row[0] == "NAME":
                if row[1] == "RT":
                    out = {}
                out[row[1]] = Var(row[1], row[2], int(row[3]))
            elif row[0] == "VAL" and row[1] in out:
                lo, hi = row[4], row[5]
                out[row[1]].codes.append((lo, hi, set(lo) == {"b"}))
    v = Var("RELP", "C", 2)
    v.codes = [(c, c, False) for c in RELP]
    out["RELP"] = v
    return out


# ---------------------------------------------------------------- features

class Feature:
    pass


def dict_feature(var):
    f = Feature()
    f.name, f.var, f.origin, f.inferred = var.name, var, "dictionary", False
    if var.type == "N":
        f.kind = "numeric"
        vals = [(int(lo), int(hi)) for lo, hi, b in var.codes if not b and is_int(lo, True)]
        f.lo, f.hi = float(min(a for a, _ in vals)), float(max(b for _, b in vals))
        f.blank_na = var.blank_ok()
        f.scale_origin = "dictionary"
    else:
        f.kind = "categorical"
        f.cats = []
        for lo, hi, blank in var.codes:
            if blank:
                if "" not in f.cats:
                    f.cats.append("")
            elif lo == hi:
                f.cats.append(lo)
            else:
                f.cats += ["%0*d" % (len(lo), v) for v in range(int(lo), int(hi) + 1)]
    return f


def parse_feature(f, s, na):
    """('ok', cell) | ('missing', None) | ('string', s) | (reason, None)"""
    if s == "":
        if not f.inferred and f.origin == "dictionary" and f.var.blank_ok():
            return ("ok", f.cats.index("") if f.kind == "categorical" else "N/A")
        return ("missing", None)
    if s in na:
        return ("missing", None)
    if f.inferred:
        return ("string", s)
    if f.origin == "dictionary":
        var = f.var
        if not var.valid(s):
            if var.type == "N":
                return ("out_of_range" if is_int(s, True) and not s.startswith("+")
                        else "non_numeric", None)
            has_text = any(not c.isdigit() and c for c in f.cats)
            return ("out_of_range" if is_int(s, True) or has_text else "non_numeric", None)
        if f.kind == "numeric":
            return ("ok", float(int(s)))
        if s.isdigit():
            for k, c in enumerate(f.cats):
                if c.isdigit() and int(c) == int(s):
                    return ("ok", k)
        return ("ok", f.cats.index(s))
    if f.kind == "categorical":  # --categories
        return ("ok", f.cats.index(s)) if s in f.cats else ("out_of_range", None)
    if not NUMBER.match(s):  # --range
        return ("non_numeric", None)
    x = float(s)
    return ("ok", x) if f.lo <= x <= f.hi else ("out_of_range", None)


# ---------------------------------------------------------------- the run

def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def split_rows(labels, frac, seed):
    assign = [0] * len(labels)
    for c in (0, 1):
        rows = [i for i, y in enumerate(labels) if y == c]
        m = len(rows)
        q = [m * fr for fr in frac]
        size = [math.floor(x) for x in q]
        rem = [x - math.floor(x) for x in q]
        while sum(size) < m:
            best = max(range(3), key=lambda s: (rem[s], -s))
            size[best] += 1
            rem[best] = -1.0
        state = (seed ^ ((0x9E3779B97F4A7C15 * (c + 1)) & M64)) & M64
        for i in range(m, 1, -1):
            t = ((1 << 64) - i) % i
            while True:
                state, r = splitmix64(state)
                if r >= t:
                    break
            j = r % i
            rows[i - 1], rows[j] = rows[j], rows[i - 1]
        for k, row in enumerate(rows):
            assign[row] = 0 if k < size[0] else 1 if k < size[0] + size[1] else 2
    return assign


def label_of(task, var, s, na):
    """(reason, label, in_population)"""
    if (s == "" and not (var and var.blank_ok())) or (s != "" and s in na):
        return "missing_label", None, None
    if var and not var.valid(s):
        return ("out_of_range" if is_int(s, True) else "non_numeric"), None, None

    def match(values):
        for v in values:
            if var and is_int(s, True) and is_int(v, True):
                if int(v) == int(s):
                    return True
            elif v == s:
                return True
        return False
    pop = task["population"]
    return None, int(match(task["positive"])), (pop is None or match(pop))


def key_of(serial, spord, dictionary):
    if serial == "" or spord == "":
        return "missing_key", None
    if not re.fullmatch(r"\d{4}(HU|GQ)\d{7}", serial):
        return "out_of_range", None
    if not spord.isdigit():
        return "non_numeric", None
    if "SPORDER" in dictionary and not dictionary["SPORDER"].valid(spord):
        return "out_of_range", None
    return None, (serial, int(spord))


def read_records(path, columns):
    data = open(path, "rb").read()
    if path.endswith(".gz"):
        import gzip
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = [[x.strip(" \t") for x in r] for r in csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)]
    rows = [r for r in rows if r and r != [""]]
    if columns:
        return columns, rows
    return rows[0], rows[1:]


def reference(a, dictionary):
    na = set(x.strip() for x in a.na.split(",")) if a.na else set()
    columns = [c.strip() for c in a.columns.split(",")] if a.columns else None
    header, records = read_records(a.input, columns)
    if a.target:
        task = dict(target=a.target, positive=[v.strip() for v in a.positive.split(",")],
                    population=[v.strip() for v in a.population.split(",")] if a.population else None,
                    features=[v.strip() for v in a.features.split(",")], custom=True)
    else:
        task = dict(TASKS[a.task or "unemployment"], custom=False)
    use_dict = not task["custom"] or a.dictionary != "none"
    feats = []
    ranges = {r.split(":")[0]: r for r in a.range}
    cats = {c.split(":")[0]: c for c in a.categories}
    categorical = set(x.strip() for x in a.categorical.split(",")) if a.categorical else set()
    for name in task["features"]:
        if "|" in name:
            first, second = name.split("|")
            name = first if first in header else second
        if name in ranges:
            _, lo, hi = ranges[name].rsplit(":", 2)
            f = Feature()
            f.name, f.kind, f.origin, f.inferred, f.scale_origin = name, "numeric", "user", False, "user"
            f.lo, f.hi, f.blank_na = float(lo), float(hi), False
        elif name in cats:
            f = Feature()
            f.name, f.kind, f.origin, f.inferred = name, "categorical", "user", False
            f.cats = [v.strip() for v in cats[name].split(":", 1)[1].split("|")]
        elif name in categorical or not (use_dict and name in dictionary):
            f = Feature()
            f.name, f.origin, f.inferred, f.forced = name, "data", True, name in categorical
            f.blank_na = False
        else:
            f = dict_feature(dictionary[name])
        feats.append(f)
    tvar = dictionary.get(task["target"]) if use_dict else None
    col = {n: i for i, n in enumerate(header)}
    keyed = use_dict and "SERIALNO" in col and "SPORDER" in col
    dropped = {r: 0 for r in REASONS}
    missing = {f.name: 0 for f in feats}
    filtered = 0
    kept = []  # (cells, label)
    seen = set()
    for rec in records:
        if len(rec) != len(header):
            dropped["wrong_field_count"] += 1
            continue
        reason, label, in_pop = label_of(task, tvar, rec[col[task["target"]]], na)
        if reason:
            dropped[reason] += 1
            continue
        if not in_pop:
            filtered += 1
            continue
        cells, freason = [], None
        for f in feats:
            kind, cell = parse_feature(f, rec[col[f.name]], na)
            if kind == "missing":
                missing[f.name] += 1
            elif kind not in ("ok", "string") and not freason:
                freason = kind
            cells.append((kind, cell))
        if freason:
            dropped[freason] += 1
            continue
        if keyed:
            kreason, key = key_of(rec[col["SERIALNO"]], rec[col["SPORDER"]], dictionary)
            if kreason:
                dropped[kreason] += 1
                continue
            if key in seen:
                dropped["duplicate_key"] += 1
                continue
            seen.add(key)
        kept.append((cells, label))
    # columns decided by the data
    for k, f in enumerate(feats):
        if not f.inferred:
            continue
        strs = sorted(set(c[k][1] for c, _ in kept if c[k][0] == "string"))
        if strs and not f.forced and all(NUMBER.match(s) for s in strs):
            f.kind, f.scale_origin, f.blank_na = "numeric", "data", False
            f.lo, f.hi = min(float(s) for s in strs), max(float(s) for s in strs)
            conv = lambda s: float(s)
        else:
            f.kind = "categorical"
            if strs and all(NUMBER.match(s) for s in strs):
                strs.sort(key=lambda s: (float(s), s))
            f.cats = strs
            conv = lambda s, f=f: f.cats.index(s)
        for i, (c, y) in enumerate(kept):
            if c[k][0] == "string":
                c[k] = ("ok", conv(c[k][1]))
    # imputation and layout
    names, imputed = [], {}
    for k, f in enumerate(feats):
        vals = [c[k][1] for c, _ in kept if c[k][0] == "ok"]
        imputed[f.name] = sum(1 for c, _ in kept if c[k][0] == "missing")
        if f.kind == "categorical":
            if a.stats == "exact":
                counts = [vals.count(i) for i in range(len(f.cats))]
                f.mode = counts.index(max(counts)) if counts else -1
                f.missing_col = False
            else:
                f.missing_col = True
            names += [f.name + "=" + (c if c else "N/A") for c in f.cats]
            if f.missing_col:
                names.append(f.name + "=missing")
        else:
            finite = sorted(f32(v) for v in vals if v != "N/A")
            if a.stats == "exact" and finite:
                m = len(finite)
                f.impute = finite[m // 2] if m % 2 else (finite[m // 2 - 1] + finite[m // 2]) / 2
            else:
                f.impute = (f.lo + f.hi) / 2
            names.append(f.name)
            if f.blank_na:
                names.append(f.name + "=N/A")
    X = []
    for cells, _ in kept:
        x = []
        for k, f in enumerate(feats):
            kind, v = cells[k]
            if f.kind == "categorical":
                one = [0.0] * (len(f.cats) + (1 if f.missing_col else 0))
                if kind == "missing":
                    if f.missing_col:
                        one[-1] = 1.0
                    elif f.mode >= 0:
                        one[f.mode] = 1.0
                else:
                    one[v] = 1.0
                x += one
            else:
                ind = 0.0
                if kind == "missing":
                    val = f.impute
                elif v == "N/A":
                    val, ind = None, 1.0
                else:
                    val = f32(v)
                x.append(0.0 if val is None or not f.hi > f.lo else f32((val - f.lo) / (f.hi - f.lo)))
                if f.blank_na:
                    x.append(ind)
        X.append(x)
    labels = [y for _, y in kept]
    frac = [float(v) for v in a.split.split(",")]
    assign = split_rows(labels, frac, a.seed)
    out = {}
    for s, name in enumerate(["train", "val", "test"]):
        idx = [i for i in range(len(kept)) if assign[i] == s]
        out[name] = ([X[i] for i in idx], [labels[i] for i in idx])
    report = dict(rows_read=len(records), rows_kept=len(kept), dropped=dropped,
                  not_in_population=filtered, missing=missing, imputed=imputed)
    return names, out, report


# ---------------------------------------------------------------- comparison

def read_npy(path):
    data = open(path, "rb").read()
    assert data[:6] == b"\x93NUMPY", path + ": not a .npy file"
    major = data[6]
    hl = struct.unpack("<H" if major == 1 else "<I", data[8:10] if major == 1 else data[8:12])[0]
    start = (10 if major == 1 else 12) + hl
    header = data[(10 if major == 1 else 12):start].decode("latin1")
    descr = re.search(r"'descr':\s*'([^']+)'", header).group(1)
    shape = tuple(int(x) for x in re.search(r"'shape':\s*\(([^)]*)\)", header).group(1).split(",") if x.strip())
    n = 1
    for d in shape:
        n *= d
    vals = struct.unpack("<%d%s" % (n, "f" if descr == "<f4" else "i"), data[start:start + 4 * n])
    return shape, vals


def compare(a, names, out, report):
    errors = []
    meta = json.load(open(a.dataset + "/meta.json"))
    if meta["columns"] != names:
        errors.append("columns differ:\n  prep %s\n  ref  %s" % (meta["columns"], names))
    rep = meta["report"]
    for k in ("rows_read", "rows_kept"):
        if rep[k] != report[k]:
            errors.append("%s: prep %s, reference %s" % (k, rep[k], report[k]))
    for r in REASONS:
        if rep["dropped"].get(r, 0) != report["dropped"][r]:
            errors.append("dropped %s: prep %s, reference %s" % (r, rep["dropped"].get(r), report["dropped"][r]))
    if rep["filtered"]["not_in_population"] != report["not_in_population"]:
        errors.append("not_in_population: prep %s, reference %s" %
                      (rep["filtered"]["not_in_population"], report["not_in_population"]))
    for k in ("missing", "imputed"):
        for c, v in report[k].items():
            if rep[k].get(c) != v:
                errors.append("%s %s: prep %s, reference %s" % (k, c, rep[k].get(c), v))
    D = len(names)
    for s, (X, y) in out.items():
        if meta["splits"][s]["rows"] != len(y) or meta["splits"][s]["positive"] != sum(y):
            errors.append("split %s: prep %s, reference %d rows %d positive" %
                          (s, meta["splits"][s], len(y), sum(y)))
        shape, xs = read_npy("%s/X_%s.npy" % (a.dataset, s))
        yshape, ys = read_npy("%s/y_%s.npy" % (a.dataset, s))
        if shape != (len(y), D) or list(ys) != y:
            errors.append("split %s: X shape %s (reference %s), y equal: %s" %
                          (s, shape, (len(y), D), list(ys) == y))
            continue
        worst = 0.0
        for i in range(len(y)):
            for j in range(D):
                d = abs(xs[i * D + j] - X[i][j])
                if d > worst:
                    worst, where = d, (i, j)
        if worst > 1e-6:
            errors.append("split %s: X differs by %g at row %d column %s" %
                          (s, worst, where[0], names[where[1]]))
    return errors


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("input")
    p.add_argument("--dictionary-csv", required=True)
    p.add_argument("--task")
    p.add_argument("--target")
    p.add_argument("--positive")
    p.add_argument("--population")
    p.add_argument("--features")
    p.add_argument("--columns")
    p.add_argument("--na")
    p.add_argument("--range", action="append", default=[])
    p.add_argument("--categories", action="append", default=[])
    p.add_argument("--categorical")
    p.add_argument("--dictionary", default="pums")
    p.add_argument("--split", default="0.8,0.1,0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stats", default="public")
    a, _ = p.parse_known_args()
    names, out, report = reference(a, read_dictionary(a.dictionary_csv))
    errors = compare(a, names, out, report)
    for e in errors:
        print("prep_ref: " + e)
    print("prep_ref: %d rows read, %d kept, %d columns: %s" %
          (report["rows_read"], report["rows_kept"], len(names), "AGREE" if not errors else "DIFFER"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
