/*
 * poisson.c: Poisson sampling of each step's batch (DESIGN.md algorithm 1;
 * Abadi et al. 2016, with the sampling rate q of the moments accountant),
 * by geometric skipping over a counter-based XChaCha20 stream (libsodium),
 * so that every rank derives the same batch S_t without communication and
 * the cost per rank is O(q n / R), never O(n).
 */
#include <math.h>
#include <sodium.h>
#include <string.h>
#include "core/dp_internal.h"
#include "dpsgd/dp.h"

/*
 * The construction.
 *
 * Inclusion of example i at step t is a Bernoulli(q) coin, independent over
 * i. Instead of flipping n coins, we draw the gaps between successive members:
 * with U uniform on (0, 1], G = floor(log U / log(1 - q)) has
 * P(G >= s) = P(U <= (1 - q)^s) = (1 - q)^s, the number of failures before a
 * success, so walking i += G, emit i, i += 1 visits exactly the members of S_t.
 * That walk is sequential: a rank that owns [begin, end) would have to replay
 * every gap from 0 to know where it lands at `begin`.
 *
 * So the global index range is cut into fixed blocks of L = 2^k examples, and
 * each block has its own independent stream: block b at step t reads the
 * XChaCha20 keystream of (key, nonce = le64(t) || le64(b) || "sample\0\0")
 * from block counter 0, one 64-bit word per uniform (its top 53 bits). The
 * walk restarts at every block boundary, which does not change the law of S_t
 * (the coins of different blocks are independent either way). A rank walks
 * only the blocks that overlap [begin, end), from the start of each block, and
 * keeps the members inside its range; the union over any partition of
 * [0, n) is therefore the same set, member by member, whatever R is.
 *
 * Cost: every block costs one stream set-up (an HChaCha20) plus about q L + 1
 * uniforms. With L fixed at 2^16 a tiny q over a huge n would cost O(n / L)
 * set-ups for almost-empty blocks, so L grows as q shrinks:
 * k = max(16, ceil(log2(1/q)) + 6), at most 2^62. Then a block holds at least
 * 64 expected members or is 2^16 long, the number of blocks a rank touches is
 * at most (its share of) q n / 64 + n / 2^16 + 2 <= q n / 64 + 2 for
 * q >= 2^-10, and a rank that starts or ends inside a block wastes at most
 * about 2 q L = O(max(q 2^16, 128)) draws. L depends only on the public q, so
 * it is the same on every rank.
 */

static const unsigned char SAMPLE_TAG[8] = {'s', 'a', 'm', 'p', 'l', 'e', 0, 0};

/* log2 of the block length L for sampling rate q (see above). */
static unsigned block_log2(double q) {
    unsigned k = 0;
    double inv = 1.0 / q;
    while (k < 56 && ldexp(1.0, (int)k) < inv)
        k++;
    k += 6;
    if (k < 16) k = 16;
    if (k > 62) k = 62;
    return k;
}

static void le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* The uniform stream of one block: XChaCha20 keystream read in 512-byte refills. */
typedef struct ustream {
    unsigned char subkey[crypto_core_hchacha20_KEYBYTES];
    uint64_t counter; /* next 64-byte ChaCha20 block */
    uint64_t words[64];
    int pos;
} ustream;

static void ustream_init(ustream *s, const dp_key *key, uint64_t step, uint64_t block) {
    unsigned char in[crypto_core_hchacha20_INPUTBYTES];
    le64(in, step);
    le64(in + 8, block);
    /* XChaCha20 = ChaCha20 under the HChaCha20 subkey of the first 16 nonce bytes */
    crypto_core_hchacha20(s->subkey, in, key->bytes, NULL);
    s->counter = 0;
    s->pos = 64;
}

static double ustream_next(ustream *s) {
    if (s->pos == 64) {
        static const unsigned char zeros[sizeof s->words];
        crypto_stream_chacha20_xor_ic((unsigned char *)s->words, zeros, sizeof s->words, SAMPLE_TAG,
                                      s->counter, s->subkey);
        s->counter += sizeof s->words / 64;
        s->pos = 0;
    }
    uint64_t w = s->words[s->pos++];
    /* little-endian bytes of the keystream as an integer, on any host */
    const unsigned char *b = (const unsigned char *)&w;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return (double)((v >> 11) + 1) * 0x1p-53; /* (0, 1] */
}

DP_API size_t dp_poisson_capacity(size_t n_range, double q) {
    if (!(q > 0)) return 0;
    if (q >= 1) return n_range;
    /* Bernstein's inequality for a sum of independent Bernoulli(q) (each
     * |X_i - q| <= 1): P(X - mu >= t) <= exp(-t^2 / (2 (var + t / 3))),
     * var = n q (1 - q); solve t^2 = 2 l (var + t / 3) for l = log(1e12). */
    double mu = (double)n_range * q, var = mu * (1.0 - q), l = log(1e12);
    double t = l / 3.0 + sqrt(l * l / 9.0 + 2.0 * l * var);
    double cap = ceil(mu + t) + 1.0;
    if (cap >= (double)n_range) return n_range;
    return (size_t)cap;
}

DP_API dp_status dp_poisson_sample(const dp_key *key, uint64_t step, size_t n_total, double q,
                                   size_t begin, size_t end, size_t *idx, size_t cap,
                                   size_t *count) {
    if (!key || !count || (!idx && cap > 0))
        return dp_error(DP_E_USAGE, "dp_poisson_sample: expected key, idx and count, found NULL");
    *count = 0;
    if (!(q > 0.0 && q <= 1.0))
        return dp_error(DP_E_RANGE,
                        "dp_poisson_sample: expected a sampling rate q in (0, 1], "
                        "found %g",
                        q);
    if (begin > end || end > n_total)
        return dp_error(DP_E_RANGE,
                        "dp_poisson_sample: expected 0 <= begin <= end <= n = %zu, "
                        "found [%zu, %zu)",
                        n_total, begin, end);
    if (sodium_init() < 0)
        return dp_error(DP_E_INTERNAL, "dp_poisson_sample: libsodium could not be initialised");
    size_t c = 0;
    if (q == 1.0) { /* every coin lands heads: no randomness is used */
        if (end - begin > cap) goto full;
        for (size_t i = begin; i < end; i++)
            idx[c++] = i;
        *count = c;
        return DP_OK;
    }
    const double log1mq = log1p(-q); /* < 0 */
    const unsigned k = block_log2(q);
    const uint64_t L = (uint64_t)1 << k;
    for (uint64_t b = (uint64_t)begin >> k; (b << k) < end; b++) {
        uint64_t i = b << k, be = i + L;
        if (be > n_total || be < i) be = n_total; /* last block; be < i: wrapped at 2^64 */
        ustream s;
        ustream_init(&s, key, step, b);
        for (;;) {
            double g = floor(log(ustream_next(&s)) / log1mq); /* >= 0, +inf never (U > 0) */
            uint64_t rem = be - i;
            if (!(g < (double)rem)) break;
            uint64_t skip = (uint64_t)g;
            if (skip >= rem) break;
            i += skip;
            if (i >= end) break;
            if (i >= begin) {
                if (c == cap) goto full;
                idx[c++] = (size_t)i;
            }
            i++;
        }
        if (b == UINT64_MAX >> k) break;
    }
    *count = c;
    return DP_OK;
full:
    *count = c;
    return dp_error(DP_E_RANGE,
                    "dp_poisson_sample: step %llu: the batch within [%zu, %zu) "
                    "holds more than cap = %zu indices (size idx with "
                    "dp_poisson_capacity)",
                    (unsigned long long)step, begin, end, cap);
}
