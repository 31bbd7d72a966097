#!/usr/bin/python3
"""prv_reference.py: an independent bracket on epsilon of T compositions of the
Poisson-subsampled Gaussian mechanism (add/remove neighbours), for
tests/test_prv.c. Not the algorithm of src/dp/prv.c: the privacy loss of one
step is rounded UP to a mesh of step h (pessimistic: every composed loss is
larger, so delta and epsilon are upper bounds) or DOWN (optimistic: lower
bounds), composed exactly by a zero-padded numpy FFT that is long enough that
nothing wraps around, and tails beyond the mesh are charged to delta (upper)
or dropped (lower). The true epsilon lies in [optimistic, pessimistic], whose
gap is at most T*h.

usage: prv_reference.py q sigma T delta h   ->  prints "eps_low eps_high"
"""
import math
import sys

import numpy as np


def phi_c(x):  # P(N(0,1) > x)
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def z_of(q, s, u):
    """The z where log(1 - q + q exp((2z-1)/(2 s^2))) = u."""
    if q == 1.0:
        return s * s * u + 0.5
    return s * s * math.log1p(math.expm1(u) / q) + 0.5


def sf_remove(q, s, y):
    """P(Y > y), Y = log(P/Q)(Z), Z ~ P = (1-q)N(0,s^2) + qN(1,s^2)."""
    if q < 1.0 and y <= math.log1p(-q):
        return 1.0
    z = z_of(q, s, y)
    return (1 - q) * phi_c(z / s) + q * phi_c((z - 1) / s)


def sf_add(q, s, y):
    """P(Y > y), Y = log(Q/P)(Z), Z ~ Q = N(0,s^2)."""
    if q < 1.0 and y >= -math.log1p(-q):
        return 0.0
    z = z_of(q, s, -y)  # Y > y  <=>  Z < z
    return 1.0 - phi_c(z / s)


def bracket(sf, q, s, T, delta, h):
    def edge(good, start):  # bisection for the boundary of {y : good(y)}
        a, b = 0.0, start
        while not good(b):
            b *= 2
        for _ in range(60):
            m = 0.5 * (a + b)
            if good(m):
                b = m
            else:
                a = m
        return b

    tiny = 1e-6 * delta / T
    hi = edge(lambda y: sf(q, s, y) <= tiny, 1.0)  # the mass above is charged to delta
    lo = edge(lambda y: sf(q, s, y) >= 1.0 - 1e-3 * tiny, -1.0)  # below: negligible, dropped
    jlo, jhi = math.floor(lo / h), math.ceil(hi / h)
    edges = np.arange(jlo, jhi + 1) * h
    S = np.array([sf(q, s, e) for e in edges])
    mass = S[:-1] - S[1:]  # mass in (e_k, e_{k+1}]
    mass[mass < 0] = 0
    tail = S[-1] * T  # any step above the mesh: charged as delta
    L = len(mass)
    n = 1
    while n < T * L + 1:
        n *= 2
    out = []
    for up in (1, 0):
        x = np.zeros(n)
        x[:L] = mass  # index k: value (jlo + k + up) h; the mass below lo is dropped (it lies
        # far below any epsilon of interest: it can only lower delta, by < 1e-3 tiny per step)
        y = np.fft.irfft(np.fft.rfft(x) ** T, n)
        y[y < 0] = 0
        v = (np.arange(n) + T * (jlo + up)) * h

        keep = v > 0  # epsilon >= 0: only positive losses matter
        v, y = v[keep], y[keep]
        A = np.cumsum(y[::-1])[::-1]  # sum of the masses at v_i and above
        B = np.cumsum((y * np.exp(-v))[::-1])[::-1]

        def d(e):  # delta(e) = sum_{v > e} p (1 - e^(e - v))
            i = int(np.searchsorted(v, e, side="right"))
            base = tail if up else 0.0
            return base if i == len(v) else float(A[i] - math.exp(e) * B[i]) + base

        a, b = 0.0, 1000.0
        if d(0.0) <= delta:
            out.append(0.0)
            continue
        for _ in range(80):
            mid = 0.5 * (a + b)
            if d(mid) > delta:
                a = mid
            else:
                b = mid
        out.append(b)
    return out[1], out[0]


def main():
    q, s, T, delta, h = (float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]),
                         float(sys.argv[4]), float(sys.argv[5]))
    r = bracket(sf_remove, q, s, T, delta, h)
    a = bracket(sf_add, q, s, T, delta, h) if q < 1.0 else r
    print("%.12g %.12g" % (max(r[0], a[0]), max(r[1], a[1])))


if __name__ == "__main__":
    main()
