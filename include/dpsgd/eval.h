/*
 * eval.h: classification metrics of a model's probabilities on a labelled
 * split: accuracy, balanced accuracy, precision, recall, F1, ROC-AUC
 * (rank-based, ties counted one half), PR-AUC (average precision, ties
 * grouped as scikit-learn does), the confusion matrix; per group (SEX, RAC1P
 * one-hot columns of the dataset); and the majority-class baseline.
 * Two classes: the positive class is 1. More: precision, recall, F1, ROC-AUC
 * and PR-AUC are macro averages of one-vs-rest.
 */
#ifndef DPSGD_EVAL_H
#define DPSGD_EVAL_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DP_EVAL_MAX_CLASSES 16

typedef struct dp_eval_metrics {
    size_t n; /* examples */
    int k;    /* classes */
    double accuracy, balanced_accuracy, precision, recall, f1;
    double roc_auc, pr_auc; /* NAN when undefined (one class absent) */
    double log_loss;        /* mean cross-entropy */
    double threshold;       /* the decision rule (dp_eval_decide): NAN for the argmax */
    uint64_t
        confusion[DP_EVAL_MAX_CLASSES * DP_EVAL_MAX_CLASSES]; /* [true][pred], row-major k x k */
} dp_eval_metrics;

/* The predicted class of one row of probabilities p [k]: with a threshold
 * (two classes only), 1 when p[1] >= threshold, else 0; with NAN, the
 * argmax (first on ties). An imbalanced label (unemployment: a few percent
 * positive) is rarely the argmax: a threshold near the prevalence trades
 * precision for recall. The threshold must be public (chosen in advance or
 * from DP statistics), not tuned on private data. */
DP_API int dp_eval_decide(const float *p, int k, double threshold);
/* Check a threshold for k classes: NAN, or in (0, 1) with k == 2 (else
 * DP_E_USAGE with the reason). */
DP_API dp_status dp_eval_check_threshold(double threshold, int k);

/* Metrics of probabilities P [n, k] (row-major; the prediction is the argmax,
 * first on ties) against labels y [n] in [0, k). `rows` (may be NULL) selects
 * the examples to use: rows[i] != 0. DP_E_RANGE for a label outside [0, k)
 * or k > DP_EVAL_MAX_CLASSES; DP_E_NOMEM. */
DP_API dp_status dp_eval_compute(const float *P, const int32_t *y, size_t n, int k,
                                 const uint8_t *rows, dp_eval_metrics *out);
/* The same with the decision dp_eval_decide(., k, threshold) for the
 * confusion matrix and the metrics read from it (accuracy, balanced
 * accuracy, precision, recall, F1); the threshold-free ones (ROC-AUC,
 * PR-AUC, log loss) do not depend on it. DP_E_USAGE for a bad threshold. */
DP_API dp_status dp_eval_compute_at(const float *P, const int32_t *y, size_t n, int k,
                                    const uint8_t *rows, double threshold, dp_eval_metrics *out);

/* ROC-AUC and average precision of scores s [n] for binary labels pos [n]
 * (nonzero = positive). NAN when there is no positive or no negative. */
DP_API double dp_eval_roc_auc(const double *s, const uint8_t *pos, size_t n);
DP_API double dp_eval_average_precision(const double *s, const uint8_t *pos, size_t n);

/* The majority-class baseline: always predict `cls` with probability 1 for it
 * (scores constant: ROC-AUC 0.5, PR-AUC the prevalence). */
DP_API dp_status dp_eval_baseline(const int32_t *y, size_t n, int k, int cls, const uint8_t *rows,
                                  dp_eval_metrics *out);
/* The most frequent label of y [n] (smallest on ties). */
DP_API int dp_eval_majority(const int32_t *y, size_t n, int k);

/* Groups for per-group metrics: the one-hot columns "VAR=code" of the
 * features (e.g. "SEX=1", "SEX=2"); a row belongs to the group of the column
 * that is 1 in it. */
typedef struct dp_eval_group {
    char name[64]; /* "SEX=2" */
    size_t column; /* feature index */
} dp_eval_group;
/* The groups of variable `var` among the feature names; at most `cap`. */
DP_API size_t dp_eval_find_groups(const char *const *features, size_t n_features, const char *var,
                                  dp_eval_group *groups, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
