#!/usr/bin/python3
"""synth_check.py: an independent reader of a `dpsgd synth` file (standard
library only). It parses the data dictionary CSV and the person file with the
csv module and classifies every data line, without any code of dpsgd:

  ragged      the line has another number of fields than the header
  bad_number  a field that is not a number where the column's codes are numbers
  bad_code    a number outside the column's codes and ranges (or too wide)
  missing     a blank in a column whose dictionary has no N/A row
  duplicate   SERIALNO+SPORDER seen on an earlier line
  clean       none of these

A line with more than one of these is counted under `multi` (synth promises
none). For clean lines it checks the N/A rules of the dictionary that the
generator models (ESR blank iff AGEP < 16, ...), and it tallies the
labour force and unemployment by education for the model's documented
direction. Prints `name value` lines.

usage: synth_check.py DICTIONARY.csv PERSONS.csv[.gz]
"""
import csv
import gzip
import io
import re
import sys

INT_N = re.compile(r"-?[0-9]+\Z")
INT_C = re.compile(r"[0-9]+\Z")


def read_dictionary(path):
    """Person-section variables: name -> (type, width, ranges, texts, blank)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    starts = [i for i, r in enumerate(rows) if r and r[0] == "NAME" and r[1] == "RT"]
    order, info = [], {}
    for r in rows[starts[1]:]:
        if r[0] == "NAME":
            order.append(r[1])
            info[r[1]] = {"type": r[2], "width": int(r[3]), "ranges": [], "texts": [],
                          "blank": False}
        else:
            v = info[r[1]]
            lo, hi = r[4], r[5]
            if re.fullmatch(r"b+", lo):
                v["blank"] = True
            elif (INT_N if v["type"] == "N" else INT_C).match(lo) and \
                    (INT_N if v["type"] == "N" else INT_C).match(hi):
                v["ranges"].append((int(lo), int(hi)))
            else:
                v["texts"].append((lo, hi))
    return order, info


def text_ok(field, lo, hi):
    if lo == hi:
        return field == lo
    if not (len(field) == len(lo) == len(hi)):
        return False
    for f, a, b in zip(field, lo, hi):
        if a.isdigit() and b.isdigit():
            if not f.isdigit():
                return False
        elif not (f == a == b):
            return False
    return lo <= field <= hi


def verdict(v, field):
    """'ok', 'missing', 'bad_number', 'bad_code' or 'bad_text' for one field."""
    if field == "":
        return "ok" if v["blank"] else "missing"
    num = INT_N if v["type"] == "N" else INT_C
    if num.match(field):
        if len(field) > v["width"]:
            return "bad_code"
        x = int(field)
        return "ok" if any(a <= x <= b for a, b in v["ranges"]) else "bad_code"
    if any(text_ok(field, lo, hi) for lo, hi in v["texts"]):
        return "ok"
    return "bad_number" if not v["texts"] else "bad_text"


def open_text(path):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), newline="")
    return open(path, newline="")


def edu_group(schl):
    s = int(schl)
    return "lt_hs" if s < 16 else "hs" if s <= 17 else "some_college" if s <= 20 else \
        "bachelor" if s == 21 else "graduate"


def main(argv):
    order, info = read_dictionary(argv[1])
    counts = dict(rows=0, clean=0, missing=0, bad_code=0, bad_number=0, ragged=0,
                  duplicate=0, multi=0, bad_text=0, rule_violations=0, households=0)
    missing_by = {}
    lf = {}
    unemp = {}
    employed = 0
    in_lf = 0
    unemployed = 0
    seen = set()
    serials = set()
    violations = []
    with open_text(argv[2]) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            print("header_ok 0")
            return
        idx = [order.index(h) if h in info else -1 for h in header]
        header_ok = all(i >= 0 for i in idx) and idx == sorted(idx) and len(set(idx)) == len(idx)
        print("header_ok %d" % header_ok)
        print("columns %d" % len(header))
        col = {h: k for k, h in enumerate(header)}
        vars_ = [info[h] for h in header]
        memo = [dict() for _ in header]
        last_serial, last_sporder = None, 0
        for row in reader:
            counts["rows"] += 1
            # households are contiguous with SPORDER 1..n (duplicates come after)
            if len(row) > col["SPORDER"]:
                key = (row[col["SERIALNO"]], row[col["SPORDER"]])
                serials.add(key[0])
                if key not in seen and INT_C.match(key[1]):
                    sp = int(key[1])
                    want = 1 if key[0] != last_serial else last_sporder + 1
                    if sp != want:
                        counts["rule_violations"] += 1
                        if len(violations) < 5:
                            violations.append("SPORDER %d, expected %d at %s" % (sp, want, key[0]))
                    last_serial, last_sporder = key[0], sp
            if len(row) != len(header):
                counts["ragged"] += 1
                seen.add(key)
                continue
            kinds = []
            blank_col = None
            for k, field in enumerate(row):
                m = memo[k]
                r = m.get(field)
                if r is None:
                    r = verdict(vars_[k], field)
                    if len(m) < 20000:
                        m[field] = r
                if r != "ok":
                    kinds.append(r)
                    if r == "missing":
                        blank_col = header[k]
            if key in seen:
                kinds.append("duplicate")
            seen.add(key)
            if len(kinds) > 1:
                counts["multi"] += 1
                continue
            if kinds:
                counts[kinds[0]] += 1
                if kinds[0] == "missing":
                    missing_by[blank_col] = missing_by.get(blank_col, 0) + 1
                if kinds[0] != "missing":
                    continue
            else:
                counts["clean"] += 1
            g = lambda name: row[col[name]]
            esr = g("ESR")
            if esr in ("1", "2", "3", "4", "5"):
                in_lf += 1
                unemployed += esr == "3"
                employed += esr == "1"
                if g("SCHL") != "":
                    e = edu_group(g("SCHL"))
                    lf[e] = lf.get(e, 0) + 1
                    unemp[e] = unemp.get(e, 0) + (esr == "3")
            if kinds:
                continue
            # the N/A rules the generator promises, on clean lines
            age = int(g("AGEP"))
            rules = [
                ("ESR blank iff AGEP<16", (esr == "") == (age < 16)),
                ("SCHL blank iff AGEP<3", (g("SCHL") == "") == (age < 3)),
                ("MIL blank iff AGEP<17", (g("MIL") == "") == (age < 17)),
                ("DREM blank iff AGEP<5", (g("DREM") == "") == (age < 5)),
                ("MIG blank iff AGEP<1", (g("MIG") == "") == (age < 1)),
                ("PINCP blank iff AGEP<15", (g("PINCP") == "") == (age < 15)),
                ("WKHP blank under 16", age >= 16 or g("WKHP") == ""),
                ("WKHP set for the employed", esr not in ("1", "2", "4", "5") or g("WKHP") != ""),
                ("COW blank under 16", age >= 16 or g("COW") == ""),
                ("COW 1-8 for the employed",
                 esr not in ("1", "2", "4", "5") or g("COW") in list("12345678")),
                ("COW 9 only for the unemployed", g("COW") != "9" or esr == "3"),
                ("COW blank only under 16 or out of the labour force",
                 g("COW") != "" or age < 16 or esr == "6"),
                ("ESP only for own children under 18",
                 g("ESP") == "" or (age < 18 and g("RELSHIPP") in ("25", "26", "27"))),
                ("NATIVITY 1 iff CIT 1-3", (g("NATIVITY") == "1") == (g("CIT") in ("1", "2", "3"))),
                ("MAR 5 under 15", age >= 15 or g("MAR") == "5"),
            ]
            if "DPHY" in col:
                dif = [g(n) for n in ("DEAR", "DEYE", "DREM", "DPHY", "DDRS", "DOUT")]
                rules.append(("DIS 1 iff a difficulty", (g("DIS") == "1") == ("1" in dif)))
            for name, ok in rules:
                if not ok:
                    counts["rule_violations"] += 1
                    if len(violations) < 5:
                        violations.append("%s at %s/%s" % (name, key[0], key[1]))
    counts["households"] = len(serials)
    for k in ("rows", "clean", "missing", "bad_code", "bad_number", "ragged", "duplicate",
              "multi", "bad_text", "rule_violations", "households"):
        print("%s %d" % (k, counts[k]))
    for name in sorted(missing_by):
        print("missing_%s %d" % (name, missing_by[name]))
    print("labor_force %d" % in_lf)
    print("unemployed %d" % unemployed)
    print("employed_at_work %d" % employed)
    for e in ("lt_hs", "hs", "some_college", "bachelor", "graduate"):
        n = lf.get(e, 0)
        print("unemployment_%s %.6f" % (e, unemp.get(e, 0) / n if n else -1))
    for v in violations:
        print("violation %s" % v.replace(" ", "_"))


if __name__ == "__main__":
    main(sys.argv)
