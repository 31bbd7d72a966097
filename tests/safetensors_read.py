#!/usr/bin/env python3
"""safetensors_read.py: an independent reader of model.safetensors using only
the standard library (struct, json), written from the safetensors format
description: u64 little-endian header length N, N bytes of JSON (an object of
tensor name -> {dtype, shape, data_offsets} plus an optional __metadata__ of
string values), then the raw little-endian tensor bytes, offsets relative to
the end of the header. It checks what a PyTorch loader relies on and prints
one JSON object: {"metadata": {...}, "tensors": {name: {"shape": [...],
"values": [...]}}} with every float32 value (repr of a Python float, exact).
Exit status 1 with a message on stderr for anything malformed.
"""
import json
import struct
import sys

DTYPES = {"F32": ("f", 4), "F64": ("d", 8), "F16": ("e", 2), "I32": ("i", 4), "I64": ("q", 8)}


def fail(msg):
    sys.stderr.write("safetensors_read: " + msg + "\n")
    sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        fail("header length %d beyond the file" % n)
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        fail("header is not an object")
    body = data[8 + n :]
    meta = header.pop("__metadata__", {})
    if not all(isinstance(v, str) for v in meta.values()):
        fail("metadata values must be strings")
    out = {"metadata": meta, "tensors": {}, "order": []}
    spans = []
    # Order tensors by their position in the data, as a loader sees memory.
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if t["dtype"] not in DTYPES:
            fail("unknown dtype " + t["dtype"])
        code, size = DTYPES[t["dtype"]]
        begin, end = t["data_offsets"]
        count = 1
        for s in t["shape"]:
            count *= s
        if end - begin != count * size or end > len(body):
            fail("tensor %s: offsets do not match its shape" % name)
        spans.append((begin, end))
        values = struct.unpack("<%d%s" % (count, code), body[begin:end])
        out["tensors"][name] = {"dtype": t["dtype"], "shape": t["shape"], "values": list(values)}
        out["order"].append(name)
    pos = 0
    for b, e in sorted(spans):
        if b != pos:
            fail("gap or overlap in the data at byte %d" % pos)
        pos = e
    if pos != len(body):
        fail("trailing bytes after the last tensor")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: safetensors_read.py FILE")
    json.dump(read(sys.argv[1]), sys.stdout)
    sys.stdout.write("\n")
