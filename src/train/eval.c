/*
 * eval.c: classification metrics (definitions in include/dpsgd/eval.h).
 * ROC-AUC by the rank-sum (Mann-Whitney U) identity with mid-ranks for ties,
 * O(n log n); average precision as sum over score thresholds of
 * (R_k - R_{k-1}) P_k with tied scores forming one threshold (scikit-learn's
 * average_precision_score). Sums in double.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/dp_internal.h"
#include "dpsgd/eval.h"

typedef struct scored {
    double s;
    uint8_t pos;
} scored;

static int by_score(const void *a, const void *b) {
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return x < y ? -1 : x > y;
}

static scored *sorted(const double *s, const uint8_t *pos, size_t n, size_t *npos) {
    scored *v = dp_malloc((n ? n : 1) * sizeof *v);
    if (!v) return NULL;
    *npos = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].s = s[i];
        v[i].pos = pos[i] != 0;
        *npos += v[i].pos;
    }
    qsort(v, n, sizeof *v, by_score);
    return v;
}

DP_API double dp_eval_roc_auc(const double *s, const uint8_t *pos, size_t n) {
    size_t np;
    scored *v = sorted(s, pos, n, &np);
    if (!v || np == 0 || np == n) {
        dp_free(v);
        return NAN;
    }
    /* Ranks 1..n ascending; a run of ties [i, j) shares the mid-rank. */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, p = 0;
        while (j < n && v[j].s == v[i].s)
            p += v[j++].pos;
        rank_sum += (double)p * (0.5 * (double)(i + 1 + j));
        i = j;
    }
    dp_free(v);
    double nn = (double)(n - np), pp = (double)np;
    return (rank_sum - pp * (pp + 1) / 2) / (pp * nn);
}

DP_API double dp_eval_average_precision(const double *s, const uint8_t *pos, size_t n) {
    size_t np;
    scored *v = sorted(s, pos, n, &np);
    if (!v || np == 0 || np == n) {
        dp_free(v);
        return NAN;
    }
    double ap = 0, tp = 0, all = 0;
    for (size_t j = n; j > 0;) { /* descending score */
        size_t i = j, p = 0;
        while (i > 0 && v[i - 1].s == v[j - 1].s)
            p += v[--i].pos;
        tp += (double)p;
        all += (double)(j - i);
        ap += ((double)p / (double)np) * (tp / all);
        j = i;
    }
    dp_free(v);
    return ap;
}

DP_API int dp_eval_majority(const int32_t *y, size_t n, int k) {
    size_t count[DP_EVAL_MAX_CLASSES] = {0};
    for (size_t i = 0; i < n; i++)
        if (y[i] >= 0 && y[i] < k && y[i] < DP_EVAL_MAX_CLASSES) count[y[i]]++;
    int best = 0;
    for (int c = 1; c < k && c < DP_EVAL_MAX_CLASSES; c++)
        if (count[c] > count[best]) best = c;
    return best;
}

/* Everything derived from the confusion matrix. */
static void from_confusion(dp_eval_metrics *m) {
    int k = m->k;
    double n = 0, correct = 0, bal = 0, prec = 0, rec = 0, f1 = 0;
    int present = 0;
    for (int t = 0; t < k; t++)
        for (int p = 0; p < k; p++) {
            n += (double)m->confusion[t * k + p];
            if (t == p) correct += (double)m->confusion[t * k + p];
        }
    for (int c = 0; c < k; c++) {
        double tp = (double)m->confusion[c * k + c], row = 0, col = 0;
        for (int j = 0; j < k; j++) {
            row += (double)m->confusion[c * k + j];
            col += (double)m->confusion[j * k + c];
        }
        double pc = col > 0 ? tp / col : 0, rc = row > 0 ? tp / row : 0;
        double fc = pc + rc > 0 ? 2 * pc * rc / (pc + rc) : 0;
        if (row > 0) {
            bal += rc;
            present++;
        }
        if (k == 2 && c == 1) {
            prec = pc;
            rec = rc;
            f1 = fc;
        } else if (k > 2) {
            prec += pc / k;
            rec += rc / k;
            f1 += fc / k;
        }
    }
    m->accuracy = n > 0 ? correct / n : NAN;
    m->balanced_accuracy = present ? bal / present : NAN;
    m->precision = prec;
    m->recall = rec;
    m->f1 = f1;
}

static dp_status check(const int32_t *y, size_t n, int k) {
    if (k < 2 || k > DP_EVAL_MAX_CLASSES)
        return dp_error(DP_E_RANGE, "eval: %d classes, expected 2 to %d", k, DP_EVAL_MAX_CLASSES);
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return dp_error(DP_E_RANGE, "eval: label %d of row %zu outside [0, %d)", y[i], i, k);
    return DP_OK;
}

DP_API int dp_eval_decide(const float *p, int k, double threshold) {
    if (k == 2 && !isnan(threshold)) return p[1] >= threshold;
    int best = 0;
    for (int c = 1; c < k; c++)
        if (p[c] > p[best]) best = c;
    return best;
}

DP_API dp_status dp_eval_check_threshold(double threshold, int k) {
    if (isnan(threshold)) return DP_OK;
    if (k != 2)
        return dp_error(DP_E_USAGE, "eval: a threshold applies to two classes, the model has %d",
                        k);
    if (!(threshold > 0 && threshold < 1))
        return dp_error(DP_E_USAGE, "eval: threshold %g, expected a probability in (0, 1)",
                        threshold);
    return DP_OK;
}

DP_API dp_status dp_eval_compute(const float *P, const int32_t *y, size_t n, int k,
                                 const uint8_t *rows, dp_eval_metrics *out) {
    return dp_eval_compute_at(P, y, n, k, rows, NAN, out);
}

DP_API dp_status dp_eval_compute_at(const float *P, const int32_t *y, size_t n, int k,
                                    const uint8_t *rows, double threshold, dp_eval_metrics *out) {
    memset(out, 0, sizeof *out);
    out->k = k;
    out->threshold = NAN;
    DP_TRY(check(y, n, k));
    DP_TRY(dp_eval_check_threshold(threshold, k));
    out->threshold = threshold;
    size_t m = 0;
    double ll = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows && !rows[i]) continue;
        const float *p = P + i * (size_t)k;
        out->confusion[y[i] * k + dp_eval_decide(p, k, threshold)]++;
        double py = p[y[i]];
        ll -= log(py > 1e-15 ? py : 1e-15);
        m++;
    }
    out->n = m;
    from_confusion(out);
    out->log_loss = m ? ll / (double)m : NAN;
    double *s = dp_malloc((m ? m : 1) * sizeof(double));
    uint8_t *pos = dp_malloc(m ? m : 1);
    if (!s || !pos) {
        dp_free(s);
        dp_free(pos);
        return dp_error(DP_E_NOMEM, "eval: out of memory for %zu scores", m);
    }
    double auc = 0, ap = 0;
    int n_auc = 0, n_ap = 0;
    for (int c = (k == 2); c < k; c++) {
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
            if (rows && !rows[i]) continue;
            s[j] = P[i * (size_t)k + c];
            pos[j++] = y[i] == c;
        }
        double a = dp_eval_roc_auc(s, pos, m), b = dp_eval_average_precision(s, pos, m);
        if (!isnan(a)) auc += a, n_auc++;
        if (!isnan(b)) ap += b, n_ap++;
    }
    dp_free(s);
    dp_free(pos);
    out->roc_auc = n_auc ? auc / n_auc : NAN;
    out->pr_auc = n_ap ? ap / n_ap : NAN;
    return DP_OK;
}

DP_API dp_status dp_eval_baseline(const int32_t *y, size_t n, int k, int cls, const uint8_t *rows,
                                  dp_eval_metrics *out) {
    memset(out, 0, sizeof *out);
    out->k = k;
    out->threshold = NAN;
    DP_TRY(check(y, n, k));
    if (cls < 0 || cls >= k) return dp_error(DP_E_RANGE, "eval: baseline class %d", cls);
    size_t m = 0, count[DP_EVAL_MAX_CLASSES] = {0};
    for (size_t i = 0; i < n; i++) {
        if (rows && !rows[i]) continue;
        out->confusion[y[i] * k + cls]++;
        count[y[i]]++;
        m++;
    }
    out->n = m;
    from_confusion(out);
    out->log_loss = NAN;
    /* Constant scores: every pair of a positive and a negative ties (AUC 1/2)
     * and the only threshold recalls everything at the prevalence. */
    double auc = 0, ap = 0;
    int n_def = 0;
    for (int c = (k == 2); c < k; c++)
        if (count[c] > 0 && count[c] < m) {
            auc += 0.5;
            ap += (double)count[c] / (double)m;
            n_def++;
        }
    out->roc_auc = n_def ? auc / n_def : NAN;
    out->pr_auc = n_def ? ap / n_def : NAN;
    return DP_OK;
}

DP_API size_t dp_eval_find_groups(const char *const *features, size_t n_features, const char *var,
                                  dp_eval_group *groups, size_t cap) {
    size_t g = 0, len = strlen(var);
    for (size_t j = 0; j < n_features && g < cap; j++) {
        const char *f = features[j];
        if (f && !strncmp(f, var, len) && f[len] == '=' && f[len + 1]) {
            snprintf(groups[g].name, sizeof groups[g].name, "%s", f);
            groups[g].column = j;
            g++;
        }
    }
    return g;
}
