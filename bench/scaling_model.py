#!/usr/bin/env python3
"""bench/scaling_model.py: the training-step cost model of docs/scaling.md
section 7, evaluated (standard library only). Prints markdown tables:

  1. the model against bench/scaling's measurements here (R = 1, 2);
  2. predicted step time, speedup and efficiency for R up to 1024 CPU ranks on
     a datacenter network, per allreduce algorithm, at two global batches;
  3. the same for 1-4 GPUs (the seed's setup), with stated assumptions.

The model of one step on R ranks, global expected batch B, P parameters:

  T(R) = c0 + P o + t_ex b_max(B/R, R) + s B/R + noise(R) + allreduce(4(P + 4), R)

  b_max(b, R)  expected largest of R independent Poisson(b) local batches (the
               step waits for the slowest rank; b_max(b, 1) = b)
  t_ex         compute per example: F_ex / phi (the eight products) + c_ex
               (gather, activations, softmax, norms, scaling)
  noise(R)     nu P / R (owner), nu P (shares): drawn on the step's path when
               no idle core draws it ahead, otherwise hidden (max with the step)
  allreduce    the alpha-beta-gamma costs of section 1 for n bytes on R ranks.
Run: python3 bench/scaling_model.py
"""
import math

# ---- the MLP of the benchmark: D = 89 (prep's unemployment task) -> 64 -> 64 -> 2
LAYERS = [(89, 64), (64, 64), (64, 2)]
P = sum(i * o + o for i, o in LAYERS)                      # 10,050 parameters
F_EX = 2 * sum(i * o for i, o in LAYERS) * 2 + 2 * sum(i * o for i, o in LAYERS[1:])
#        forward + weight gradients (2 i o each) + backward to activations (not layer 0)

# ---- this machine (measured: bench/RESULTS.md "scaling", R = 1 bound to one core)
HERE = dict(
    phi=126e9,       # FLOP/s of the step's products alone: 49.3 MFLOP in 390 us (gemm column)
    c_ex=0.19e-6,    # s per example outside the products: (588 - 390) us / 1024
    s=0.020e-6,      # s per sampled example (Poisson sampler, 21 us at qN = 1024)
    o=0.7e-9,        # s per parameter of the optimizer (7 us for 10,050)
    c0=3e-6,         # s per step of fixed overhead (calls, timers)
    nu=20.5e-9,      # s per noise coordinate on one core (206 us for 10,050)
    contention=0.94, # per-core rate with both cores busy (products alone: 1.88x on 2)
)


def poisson_max(b, R):
    """E[max of R iid Poisson(b)] = sum_k (1 - F(k)^R)."""
    if R == 1:
        return b
    total, k, pmf, cdf = 0.0, 0, math.exp(-b), 0.0
    while True:
        cdf += pmf
        tail = 1.0 - cdf ** R
        if tail < 1e-12 and k > b:
            return total
        total += tail
        k += 1
        pmf *= b / k


def allreduce(algo, n, R, a, be, g):
    """Section 1's costs (seconds) of n bytes on R ranks."""
    if R == 1:
        return 0.0
    p = 2 ** int(math.log2(R))
    fold = 0.0 if p == R else 2 * (a + n * be) + n * g
    lg = math.log2(p)
    if algo == "naive":
        return (R - 1) * (a + n * be + n * g)
    if algo == "ring":
        return 2 * (R - 1) * a + 2 * (R - 1) / R * n * be + (R - 1) / R * n * g
    if algo == "recursive doubling":
        return lg * (a + n * be + n * g) + fold
    if algo == "rabenseifner":
        return 2 * lg * a + 2 * (p - 1) / p * n * be + (p - 1) / p * n * g + fold
    raise ValueError(algo)


def step(R, B, m, net, algo, mode="owner", noise_hidden=False):
    b = B / R
    bmax = poisson_max(b, R) if b < 200 else b + math.sqrt(2 * b * math.log(R)) if R > 1 else b
    t_ex = F_EX / m["phi"] + m["c_ex"]
    if R > 1:
        t_ex /= m.get("contention", 1.0)
    noise = m["nu"] * P * (1.0 / R if mode == "owner" else 1.0)
    comp = m["c0"] + P * m["o"] + t_ex * bmax + m["s"] * b
    t = comp + (0 if noise_hidden else noise) + allreduce(algo, 4 * (P + 4), R, *net)
    return max(t, noise) if noise_hidden else t


ALGOS = ["naive", "ring", "recursive doubling", "rabenseifner"]


def table_here():
    print("### model vs measured here (shared memory: alpha 0.3 us, beta 0.1 ns/B, gamma 0.03 ns/B)\n")
    net = (0.3e-6, 0.1e-9, 0.03e-9)
    print("| R | model step (us) | measured step (us) |")
    print("| --- | ---: | ---: |")
    for R, meas in ((1, "826 (bound to one core)"), (2, "443-453")):
        print("| %d | %.0f | %s |" % (R, 1e6 * step(R, 1024, HERE, net, "ring"), meas))
    print()


def table_cluster():
    net = (2e-6, 0.08e-9, 0.03e-9)
    m = dict(HERE)
    m["contention"] = 1.0  # a core per rank, nothing shared (each node its own memory system)
    for B in (1024, 65536):
        t1 = step(1, B, m, net, "ring")
        print("### datacenter network (alpha 2 us, beta 0.08 ns/B), one core per rank, B = %d: "
              "step time in us (efficiency T1 / (R T_R))\n" % B)
        print("| R | " + " | ".join(ALGOS) + " | shares noise (rabenseifner) |")
        print("| ---: |" + " ---: |" * (len(ALGOS) + 1))
        for R in (1, 2, 8, 64, 256, 1024):
            cells = []
            for a in ALGOS + ["shares"]:
                t = step(R, B, m, net, "rabenseifner" if a == "shares" else a,
                         "shares" if a == "shares" else "owner")
                cells.append("%.0f (%.0f%%)" % (1e6 * t, 100 * t1 / (R * t)))
            print("| %d | %s |" % (R, " | ".join(cells)))
        print()


def table_gpu():
    # Assumptions (no GPU was measured in this project yet: bench/RESULTS.md "gpu"):
    # the step's ~20 kernels as one CUDA graph, ~25 us; products at 5 TFLOP/s
    # (tiny shapes keep an H100 far below its peak); noise 1 ns per 100 coordinates;
    # NCCL within a node: NVLink alpha 8 us, 200 GB/s; PCIe alpha 10 us, 12 GB/s.
    g = dict(phi=5e12, c_ex=2e-9, s=2e-9, o=0.01e-9, c0=25e-6, nu=0.01e-9)
    for label, net in (("NVLink", (8e-6, 0.005e-9, 0.001e-9)), ("PCIe", (10e-6, 0.08e-9, 0.001e-9))):
        print("### 1-4 GPUs (%s; assumed parameters): step time in us (efficiency)\n" % label)
        print("| B | R = 1 | R = 2 ring | R = 4 ring | R = 4 recursive doubling |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for B in (1024, 16384, 262144):
            t1 = step(1, B, g, net, "ring")
            row = ["%.0f" % (1e6 * t1)]
            for R, a in ((2, "ring"), (4, "ring"), (4, "recursive doubling")):
                t = step(R, B, g, net, a)
                row.append("%.0f (%.0f%%)" % (1e6 * t, 100 * t1 / (R * t)))
            print("| %d | %s |" % (B, " | ".join(row)))
        print()


if __name__ == "__main__":
    print("P = %d parameters, %d FLOP per example, gradient %d bytes\n" % (P, F_EX, 4 * (P + 4)))
    table_here()
    table_cluster()
    table_gpu()
