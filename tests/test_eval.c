/*
 * test_eval.c: evaluation metrics against naive definitions computed here in
 * double: ROC-AUC as the O(n^2) pairwise probability P(s+ > s-) + P(tie)/2,
 * average precision as the mean over positives of the precision at that
 * positive's score, accuracy and friends from explicit loops; the baseline;
 * the SEX/RAC1P groups found from one-hot feature names.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "dpsgd/eval.h"
#include "testutil.h"

static double pairwise_auc(const double *s, const uint8_t *pos, size_t n) {
    double num = 0, pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (pos[i] && !pos[j]) {
                pairs++;
                num += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
            }
    return num / pairs;
}

static double naive_ap(const double *s, const uint8_t *pos, size_t n) {
    double sum = 0, np = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pos[i]) continue;
        double tp = 0, all = 0;
        for (size_t j = 0; j < n; j++)
            if (s[j] >= s[i]) {
                all++;
                tp += pos[j];
            }
        sum += tp / all;
        np++;
    }
    return sum / np;
}

Test(eval, roc_auc_equals_pairwise_definition_with_ties) {
    uint64_t r = tu_seed();
    for (int trial = 0; trial < 30; trial++) {
        size_t n = 2 + tu_next(&r) % 398;
        double s[400];
        uint8_t pos[400];
        int coarse = trial % 3; /* 0: continuous, 1-2: heavy ties */
        for (size_t i = 0; i < n; i++) {
            pos[i] = tu_uniform(&r) < 0.3;
            double v = tu_normal(&r) + (pos[i] ? 0.7 : 0);
            s[i] = coarse ? round(v * 2 * coarse) : v;
        }
        pos[0] = 1;
        pos[1] = 0;
        double want = pairwise_auc(s, pos, n), got = dp_eval_roc_auc(s, pos, n);
        cr_assert(fabs(got - want) < 1e-12, "n=%zu got %.15g want %.15g", n, got, want);
        want = naive_ap(s, pos, n);
        got = dp_eval_average_precision(s, pos, n);
        cr_assert(fabs(got - want) < 1e-12, "AP n=%zu got %.15g want %.15g", n, got, want);
    }
}

Test(eval, auc_of_known_cases) {
    double s[4] = {0.1, 0.4, 0.35, 0.8};
    uint8_t pos[4] = {0, 0, 1, 1};
    /* scikit-learn's documented example: roc_auc_score = 0.75, AP = 0.8333 */
    cr_assert_float_eq(dp_eval_roc_auc(s, pos, 4), 0.75, 1e-12);
    cr_assert_float_eq(dp_eval_average_precision(s, pos, 4), 0.8333333333333333, 1e-12);
    uint8_t none[4] = {0, 0, 0, 0};
    cr_assert(isnan(dp_eval_roc_auc(s, none, 4)));
    double tie[4] = {1, 1, 1, 1};
    cr_assert_float_eq(dp_eval_roc_auc(tie, pos, 4), 0.5, 1e-12);
    cr_assert_float_eq(dp_eval_average_precision(tie, pos, 4), 0.5, 1e-12);
}

Test(eval, binary_metrics_equal_explicit_loops) {
    uint64_t r = tu_seed();
    size_t n = 1000;
    float *P = malloc(2 * n * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    uint8_t *rows = malloc(n);
    for (size_t i = 0; i < n; i++) {
        y[i] = tu_uniform(&r) < 0.25;
        double p1 = 1 / (1 + exp(-(tu_normal(&r) + (y[i] ? 1.0 : -0.5))));
        P[2 * i + 1] = (float)p1;
        P[2 * i] = (float)(1 - p1);
        rows[i] = tu_uniform(&r) < 0.7;
    }
    dp_eval_metrics m;
    cr_assert_eq(dp_eval_compute(P, y, n, 2, rows, &m), DP_OK);
    double tp = 0, tn = 0, fp = 0, fn = 0, ll = 0;
    double *s = malloc(n * sizeof(double));
    uint8_t *pos = malloc(n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rows[i]) continue;
        int pred = P[2 * i + 1] > P[2 * i];
        tp += pred && y[i];
        tn += !pred && !y[i];
        fp += pred && !y[i];
        fn += !pred && y[i];
        ll -= log(P[2 * i + y[i]]);
        s[k] = P[2 * i + 1];
        pos[k++] = (uint8_t)y[i];
    }
    double prec = tp / (tp + fp), rec = tp / (tp + fn);
    cr_assert_eq(m.n, k);
    cr_assert_float_eq(m.accuracy, (tp + tn) / k, 1e-12);
    cr_assert_float_eq(m.precision, prec, 1e-12);
    cr_assert_float_eq(m.recall, rec, 1e-12);
    cr_assert_float_eq(m.f1, 2 * prec * rec / (prec + rec), 1e-12);
    cr_assert_float_eq(m.balanced_accuracy, 0.5 * (rec + tn / (tn + fp)), 1e-12);
    cr_assert_float_eq(m.log_loss, ll / k, 1e-9);
    cr_assert_float_eq(m.roc_auc, pairwise_auc(s, pos, k), 1e-12);
    cr_assert_float_eq(m.pr_auc, naive_ap(s, pos, k), 1e-12);
    cr_assert_eq(m.confusion[0], (uint64_t)tn);
    cr_assert_eq(m.confusion[1], (uint64_t)fp);
    cr_assert_eq(m.confusion[2], (uint64_t)fn);
    cr_assert_eq(m.confusion[3], (uint64_t)tp);
    free(P), free(y), free(rows), free(s), free(pos);
}

Test(eval, multiclass_macro_averages_one_vs_rest) {
    uint64_t r = tu_seed();
    size_t n = 300;
    int k = 3;
    float *P = malloc(n * k * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(tu_next(&r) % 3);
        double z[3], sum = 0;
        for (int c = 0; c < k; c++)
            sum += z[c] = exp(tu_normal(&r) + (c == y[i]));
        for (int c = 0; c < k; c++)
            P[i * k + c] = (float)(z[c] / sum);
    }
    dp_eval_metrics m;
    cr_assert_eq(dp_eval_compute(P, y, n, k, NULL, &m), DP_OK);
    double auc = 0, rec = 0, correct = 0;
    double *s = malloc(n * sizeof(double));
    uint8_t *pos = malloc(n);
    for (int c = 0; c < k; c++) {
        double tpc = 0, row = 0;
        for (size_t i = 0; i < n; i++) {
            s[i] = P[i * k + c];
            pos[i] = y[i] == c;
            int best = 0;
            for (int j = 1; j < k; j++)
                if (P[i * k + j] > P[i * k + best]) best = j;
            if (y[i] == c) {
                row++;
                tpc += best == c;
                correct += best == c;
            }
        }
        auc += pairwise_auc(s, pos, n) / k;
        rec += tpc / row / k;
    }
    cr_assert_float_eq(m.roc_auc, auc, 1e-12);
    cr_assert_float_eq(m.recall, rec, 1e-12);
    cr_assert_float_eq(m.balanced_accuracy, rec, 1e-12);
    cr_assert_float_eq(m.accuracy, correct / n, 1e-12);
    free(P), free(y), free(s), free(pos);
}

Test(eval, majority_baseline_has_prevalence_accuracy_and_chance_auc) {
    int32_t y[10] = {0, 1, 0, 0, 1, 0, 0, 1, 0, 0};
    cr_assert_eq(dp_eval_majority(y, 10, 2), 0);
    dp_eval_metrics b;
    cr_assert_eq(dp_eval_baseline(y, 10, 2, 0, NULL, &b), DP_OK);
    cr_assert_float_eq(b.accuracy, 0.7, 1e-12);
    cr_assert_float_eq(b.balanced_accuracy, 0.5, 1e-12);
    cr_assert_float_eq(b.recall, 0.0, 1e-12);
    cr_assert_float_eq(b.roc_auc, 0.5, 1e-12);
    cr_assert_float_eq(b.pr_auc, 0.3, 1e-12);
    /* the same as evaluating constant probabilities */
    float P[20];
    for (int i = 0; i < 10; i++)
        P[2 * i] = 1, P[2 * i + 1] = 0;
    dp_eval_metrics c;
    dp_eval_compute(P, y, 10, 2, NULL, &c);
    cr_assert_float_eq(c.roc_auc, b.roc_auc, 1e-12);
    cr_assert_float_eq(c.pr_auc, b.pr_auc, 1e-12);
    cr_assert_float_eq(c.accuracy, b.accuracy, 1e-12);
}

Test(eval, bad_labels_are_refused) {
    float P[4] = {0.5f, 0.5f, 0.2f, 0.8f};
    int32_t y[2] = {0, 2};
    dp_eval_metrics m;
    cr_assert_eq(dp_eval_compute(P, y, 2, 2, NULL, &m), DP_E_RANGE);
    cr_assert(strstr(dp_last_error(), "row 1"));
}

Test(eval, groups_are_found_from_one_hot_names) {
    const char *f[] = {"AGEP", "SEX=1", "SEX=2", "SEXX=1", "RAC1P=1", "RAC1P=2", "RAC1P=9", "SEX"};
    dp_eval_group g[16];
    size_t n = dp_eval_find_groups(f, 8, "SEX", g, 16);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(g[1].name, "SEX=2");
    cr_assert_eq(g[1].column, 2);
    n = dp_eval_find_groups(f, 8, "RAC1P", g, 16);
    cr_assert_eq(n, 3);
    cr_assert_eq(g[2].column, 6);
    cr_assert_eq(dp_eval_find_groups(f, 8, "HISP", g, 16), 0);
}

/* A threshold decides class 1 when p1 >= T: the confusion matrix and the
 * metrics read from it follow an explicit loop at that rule, the
 * threshold-free metrics do not move, NAN is the argmax of dp_eval_compute,
 * and a threshold for more than two classes or outside (0, 1) is refused. */
Test(eval, threshold_decides_the_confusion_matrix_only) {
    uint64_t r = tu_seed();
    size_t n = 800;
    float *P = malloc(2 * n * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        y[i] = tu_uniform(&r) < 0.06; /* imbalanced, as unemployment */
        double p1 = 1 / (1 + exp(-(tu_normal(&r) + (y[i] ? -1.0 : -3.0))));
        P[2 * i + 1] = (float)p1;
        P[2 * i] = (float)(1 - p1);
    }
    P[2 * 7 + 1] = 0.125f; /* exactly at one threshold below: p1 >= T is class 1 */
    P[2 * 7] = 0.875f;
    dp_eval_metrics am, nm;
    cr_assert_eq(dp_eval_compute(P, y, n, 2, NULL, &am), DP_OK);
    cr_assert_eq(dp_eval_compute_at(P, y, n, 2, NULL, NAN, &nm), DP_OK);
    cr_assert(isnan(am.threshold) && isnan(nm.threshold));
    cr_assert_eq(memcmp(am.confusion, nm.confusion, sizeof am.confusion), 0);
    const double T[] = {0.05, 0.125, 0.5, 0.9};
    for (int t = 0; t < 4; t++) {
        dp_eval_metrics m;
        cr_assert_eq(dp_eval_compute_at(P, y, n, 2, NULL, T[t], &m), DP_OK, "%s", dp_last_error());
        cr_assert_eq(m.threshold, T[t]);
        uint64_t c[4] = {0};
        for (size_t i = 0; i < n; i++) {
            int pred = (double)P[2 * i + 1] >= T[t];
            c[y[i] * 2 + pred]++;
        }
        for (int j = 0; j < 4; j++)
            cr_assert_eq(m.confusion[j], c[j], "T %g cell %d: %llu, expected %llu", T[t], j,
                         (unsigned long long)m.confusion[j], (unsigned long long)c[j]);
        double tn = (double)c[0], fp = (double)c[1], fn = (double)c[2], tp = (double)c[3];
        cr_assert_float_eq(m.accuracy, (tp + tn) / (double)n, 1e-12);
        cr_assert_float_eq(m.balanced_accuracy, 0.5 * (tp / (tp + fn) + tn / (tn + fp)), 1e-12);
        cr_assert_float_eq(m.recall, tp / (tp + fn), 1e-12);
        cr_assert_eq(m.roc_auc, am.roc_auc);
        cr_assert_eq(m.pr_auc, am.pr_auc);
        cr_assert_eq(m.log_loss, am.log_loss);
    }
    /* a low threshold finds positives the argmax misses */
    dp_eval_metrics lo;
    cr_assert_eq(dp_eval_compute_at(P, y, n, 2, NULL, 0.05, &lo), DP_OK);
    cr_assert_gt(lo.recall, am.recall);
    cr_assert_eq(dp_eval_decide(P + 2 * 7, 2, 0.125), 1);
    cr_assert_eq(dp_eval_decide(P + 2 * 7, 2, NAN), 0);
    float p3[3 * 2] = {0.2f, 0.5f, 0.3f, 0.6f, 0.1f, 0.3f};
    int32_t y3[2] = {1, 0};
    cr_assert_eq(dp_eval_compute_at(p3, y3, 2, 3, NULL, 0.3, &lo), DP_E_USAGE);
    cr_assert(strstr(dp_last_error(), "two classes"), "%s", dp_last_error());
    cr_assert_eq(dp_eval_compute_at(P, y, n, 2, NULL, 1.0, &lo), DP_E_USAGE);
    cr_assert_eq(dp_eval_compute_at(P, y, n, 2, NULL, 0.0, &lo), DP_E_USAGE);
    free(P), free(y);
}
