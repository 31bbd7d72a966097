/*
 * test_prep.c: prep's output against tests/prep_ref.py (an independent
 * standard-library Python reference that reads the Census Bureau's dictionary
 * CSV itself) on hand-written and random PUMS-like files and on custom tasks;
 * the output independent of threads and chunk size; the predict encoder
 * reproducing the training rows; validation agreeing with dp_pums_valid; the
 * split's sizes against the largest-remainder rule; the dataset reader
 * opening what prep wrote; and the two pieces of distributed prep that one
 * process can check (tests/test_prep_mpi.sh runs the rest under mpirun):
 * rank byte ranges start exactly at the records a sequential parse finds,
 * and the radix selection of medians equals sorting.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "data/prep_internal.h"
#include "dpsgd/dataset.h"
#include "dpsgd/prep.h"
#include "testutil.h"

TestSuite(prep, .init = tu_dir_init, .fini = tu_dir_fini);

static char *in_dir(const char *name) {
    return tu_path(tu_dir, name);
}

/* A prep run described once, for both dp_prep_run and prep_ref.py. */
typedef struct spec {
    const char *task, *target, *positive, *population, *features, *columns, *na, *categorical;
    const char *range[4], *categories[4];
    const char *split; /* "a,b,c" */
    uint64_t seed;
    int exact, threads, no_dict;
    size_t chunk;
} spec;

static dp_status run_prep(const spec *s, const char *input, const char *out, dp_prep_result **res) {
    dp_prep_config c;
    dp_prep_config_init(&c);
    c.input = input;
    c.output = out;
    c.task = s->task;
    c.target = s->target;
    c.positive = s->positive;
    c.population = s->population;
    c.features = s->features;
    c.columns = s->columns;
    c.na = s->na;
    c.categorical = s->categorical;
    c.seed = s->seed;
    c.stats = s->exact ? DP_PREP_STATS_EXACT : DP_PREP_STATS_PUBLIC;
    c.threads = s->threads;
    c.chunk_bytes = s->chunk;
    c.dictionary = !s->no_dict;
    while (c.n_ranges < 4 && s->range[c.n_ranges])
        c.n_ranges++;
    while (c.n_categories < 4 && s->categories[c.n_categories])
        c.n_categories++;
    c.ranges = s->range;
    c.categories = s->categories;
    if (s->split) sscanf(s->split, "%lf,%lf,%lf", &c.split[0], &c.split[1], &c.split[2]);
    return dp_prep_run(&c, res);
}

static void arg(char *buf, size_t cap, const char *name, const char *v) {
    if (!v) return;
    size_t u = strlen(buf);
    snprintf(buf + u, cap - u, " --%s '%s'", name, v);
}

static void check_against_reference(const spec *s, const char *input, const char *out) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/prep_ref.py' '%s' '%s' --dictionary-csv "
             "'%s/data/pums/PUMS_Data_Dictionary_2023.csv' --seed %llu --stats %s",
             tu_source_dir(), out, input, tu_source_dir(), (unsigned long long)s->seed,
             s->exact ? "exact" : "public");
    arg(cmd, sizeof cmd, "task", s->task);
    arg(cmd, sizeof cmd, "target", s->target);
    arg(cmd, sizeof cmd, "positive", s->positive);
    arg(cmd, sizeof cmd, "population", s->population);
    arg(cmd, sizeof cmd, "features", s->features);
    arg(cmd, sizeof cmd, "columns", s->columns);
    arg(cmd, sizeof cmd, "na", s->na);
    arg(cmd, sizeof cmd, "categorical", s->categorical);
    arg(cmd, sizeof cmd, "split", s->split);
    for (int i = 0; i < 4; i++)
        arg(cmd, sizeof cmd, "range", s->range[i]);
    for (int i = 0; i < 4; i++)
        arg(cmd, sizeof cmd, "categories", s->categories[i]);
    if (s->no_dict) arg(cmd, sizeof cmd, "dictionary", "none");
    strncat(cmd, " 1>&2", sizeof cmd - strlen(cmd) - 1);
    int rc = system(cmd);
    if (rc != 0) { /* keep the input for a look after the test directory is gone */
        char keep[8300];
        snprintf(keep, sizeof keep, "cp '%s' /tmp/prep-ref-failure-%d.csv", input, (int)getpid());
        if (system(keep) == 0)
            fprintf(stderr, "input kept as /tmp/prep-ref-failure-%d.csv\n", (int)getpid());
    }
    cr_assert_eq(rc, 0, "prep_ref.py disagrees with prep (see its lines above): %s", cmd);
}

static const char *const hand_pums =
    "RT,SERIALNO,SPORDER,AGEP,ESR,SCHL,MAR,SEX,RAC1P,HISP,DIS,CIT,NATIVITY,MIL,WKHP,RELSHIPP,"
    "ESP,MIG,ANC,DEAR,DEYE,DREM\r\n"
    "P,2023HU0000001,1,35,1,21,1,1,1,01,2,1,1,4,40,20,,1,1,2,2,2\r\n"
    "P,2023HU0000001,2,33,3,16,1,2,1,01,2,1,1,4,,21,,1,1,2,2,2\r\n"
    "P,2023HU0000001,3,8,,04,5,1,1,01,2,1,1,,,25,1,1,1,2,2,2\n"        /* child: ESR blank */
    "P,2023HU0000002,01,61,6,19,2,2,2,01,1,1,1,2,,20,,1,2,2,1,2\n"     /* not in labour force */
    "P,2023HU0000003,1,,1,22,3,2,6,01,2,4,2,4,50,20,,3,1,2,2,2\n"      /* AGEP blank: missing */
    "P,2023HU0000003,2,27,3,\"18\",5,1,6,1,2,5,2,4,20,22,,2,4,2,2,1\n" /* quoted, HISP 1 */
    "P,2023HU0000004,1,45,3,24,1,3,1,01,2,1,1,4,40,20,,1,1,2,2,2\n"    /* SEX 3: out of range */
    "P,2023HU0000004,2,44,1,abc,1,2,1,01,2,1,1,4,40,21,,1,1,2,2,2\n"   /* SCHL: non-numeric */
    "P,2023HU0000005,1,30,7,21,1,1,1,01,2,1,1,4,40,20,,1,1,2,2,2\n"    /* ESR 7: bad target */
    "P,2023HU0000005,2,30,NA,21,1,1,1,01,2,1,1,4,40,21,,1,1,2,2,2\n"   /* NA label */
    "P,2023HU0000006,1,52,2,16,1,1,8,03,2,5,2,4,35,20,,1,3,1,2,2\n"
    "P,2023HU0000006,1,52,2,16,1,1,8,03,2,5,2,4,35,20,,1,3,1,2,2\n" /* duplicate */
    "P,2023HU0000007,1,41,1,20\n"                                   /* ragged */
    "\n"
    "P,2023GQ0000008,1,19,4,19,5,1,9,01,2,1,1,1,40,37,,3,1,2,2,2\n"
    "P,2023HU0000009,,50,1,21,1,1,1,01,2,1,1,4,40,20,,1,1,2,2,2\n" /* SPORDER blank */
    "P,2023HU0000010,1,23,3,,5,2,2,01,2,1,1,NA,30,20,,1,1,2,2,2\n" /* SCHL blank, MIL NA */
    "P,2023HU0000011,1,67,5,23,1,1,1,01,1,1,1,2,60,20,,1,1,2,1,2\n"
    "P,2023HU0000012,1,38,3,17,4,2,2,01,2,1,1,4,1,20,,1,1,2,2,2\n"
    "P,2023HU0000013,1,29,1,21,5,2,6,01,2,4,2,4,45,20,,1,2,2,2,2\n"
    "P,2023HU0000014,1,99,1,24,2,1,1,01,2,1,1,2,99,20,,1,1,2,2,2\n";

Test(prep, hand_written_pums_file_equals_python_reference) {
    char *input = in_dir("hand.csv");
    cr_assert_eq(tu_write_file(input, hand_pums, strlen(hand_pums)), 0);
    spec specs[] = {
        {.na = "NA", .split = "0.5,0.25,0.25", .seed = 3},
        {.na = "NA", .exact = 1, .split = "0.6,0.2,0.2", .seed = 11},
        {.task = "employment", .na = "NA", .seed = 1},
        {.target = "ESR",
         .positive = "3",
         .population = "1,2,3,4,5",
         .features = "AGEP,WKHP,SCHL,SEX",
         .na = "NA",
         .exact = 1},
    };
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        char *out = in_dir("ds");
        tu_rmrf(out);
        dp_prep_result *res;
        dp_status st = run_prep(&specs[k], input, out, &res);
        cr_assert_eq(st, DP_OK, "spec %zu: %s", k, dp_last_error());
        check_against_reference(&specs[k], input, out);
        dp_prep_result_free(res);
    }
    /* by hand for the unemployment task: 20 records; outside the labour force the
     * child and the retiree; dropped SEX 3, SCHL abc, ESR 7, ESR NA, the duplicate,
     * the ragged row and the blank SPORDER; 11 kept */
    char *out = in_dir("byhand");
    dp_prep_result *res;
    cr_assert_eq(run_prep(&specs[0], input, out, &res), DP_OK);
    const char *m = dp_prep_result_meta(res);
    cr_assert(strstr(m, "\"rows_read\":\t20") && strstr(m, "\"rows_kept\":\t11") &&
                  strstr(m, "\"not_in_population\":\t2") && strstr(m, "\"blank_lines\":\t1"),
              "%s", m);
    dp_prep_result_free(res);
}

/* ---- random PUMS-like files ---- */

static const char *const rand_cols[] = {
    "RT",   "SERIALNO", "SPORDER", "AGEP", "CIT",      "COW",      "DEAR",  "DEYE",
    "DREM", "MAR",      "MIG",     "MIL",  "RELSHIPP", "SCHL",     "SEX",   "WKHP",
    "ANC",  "DIS",      "ESP",     "ESR",  "HISP",     "NATIVITY", "PINCP", "RAC1P"};
#define NRC (sizeof rand_cols / sizeof rand_cols[0])

/* A valid value of var (sometimes written without its leading zero). */
static void valid_value(uint64_t *rng, const dp_pums_var *v, char *out) {
    const dp_pums_code *c = &v->codes[tu_next(rng) % (uint64_t)v->n_codes];
    if (c->blank) {
        out[0] = '\0';
        return;
    }
    long long lo = atoll(c->lo), hi = atoll(c->hi);
    long long x = lo + (long long)(tu_next(rng) % (uint64_t)(hi - lo + 1));
    if (v->type == 'C' && tu_next(rng) % 2)
        snprintf(out, 32, "%0*lld", (int)strlen(c->lo), x);
    else
        snprintf(out, 32, "%lld", x);
}

static char *random_pums(uint64_t *rng, size_t rows, size_t *len) {
    size_t cap = rows * 200 + 1024, n = 0;
    char *t = malloc(cap);
    for (size_t j = 0; j < NRC; j++)
        n += (size_t)sprintf(t + n, "%s%s", j ? "," : "", rand_cols[j]);
    t[n++] = '\n';
    for (size_t i = 0; i < rows; i++) {
        uint64_t hh = 1 + tu_next(rng) % (rows / 2 + 1), person = 1 + tu_next(rng) % 3;
        int ragged = tu_next(rng) % 40 == 0;
        for (size_t j = 0; j < NRC - (ragged ? 2 : 0); j++) {
            char v[64];
            const dp_pums_var *var = dp_pums_find(rand_cols[j]);
            if (!strcmp(rand_cols[j], "RT"))
                strcpy(v, "P");
            else if (!strcmp(rand_cols[j], "SERIALNO"))
                snprintf(v, sizeof v, "2023%s%07llu", tu_next(rng) % 10 ? "HU" : "GQ",
                         (unsigned long long)hh);
            else if (!strcmp(rand_cols[j], "SPORDER"))
                snprintf(v, sizeof v, "%llu", (unsigned long long)person);
            else
                valid_value(rng, var, v);
            uint64_t r = tu_next(rng) % 200;
            if (r == 0)
                strcpy(v, "abc");
            else if (r == 1)
                strcpy(v, "99999");
            else if (r == 2)
                strcpy(v, "");
            else if (r == 3)
                strcpy(v, "NA");
            else if (r == 4)
                strcpy(v, "-1");
            else if (r == 5) { /* quoted, with spaces around */
                memmove(v + 2, v, strlen(v) + 1);
                v[0] = ' ';
                v[1] = '"';
                strcat(v, "\"");
            }
            n += (size_t)sprintf(t + n, "%s%s", j ? "," : "", v);
        }
        n += (size_t)sprintf(t + n, "%s", tu_next(rng) % 3 ? "\n" : "\r\n");
    }
    *len = n;
    return t;
}

Test(prep, random_pums_files_equal_python_reference) {
    uint64_t rng = tu_seed();
    for (int round = 0; round < 4; round++) {
        size_t len;
        char *text = random_pums(&rng, 300 + tu_next(&rng) % 300, &len);
        char *input = in_dir("rand.csv");
        cr_assert_eq(tu_write_file(input, text, len), 0);
        free(text);
        static const char *splits[] = {"0.8,0.1,0.1", "0.7,0.2,0.1", "0.34,0.33,0.33", "1,0,0"};
        spec s = {.task = round % 2 ? "employment" : "unemployment",
                  .na = "NA",
                  .exact = round / 2,
                  .split = splits[tu_next(&rng) % 4],
                  .seed = tu_next(&rng) % 1000,
                  .threads = 1 + round % 2,
                  .chunk = 256 + tu_next(&rng) % 4096};
        char *out = in_dir("rds");
        tu_rmrf(out);
        cr_assert_eq(run_prep(&s, input, out, NULL), DP_OK, "round %d: %s", round, dp_last_error());
        check_against_reference(&s, input, out);
    }
}

/* A census-style file outside the dictionary, without a header: public
 * ranges and categories, one forced categorical, the rest inferred. */
static const char *const hand_custom =
    "39, State-gov, 77516, Bachelors, 13, Male, 40, United-States, <=50K\n"
    "50, Self-emp-not-inc, 83311, Bachelors, 13, Male, 13, United-States, <=50K\r\n"
    "38, Private, 215646, HS-grad, 9, Male, 40, ?, >50K\n"
    "53, ?, 234721, 11th, 7, Female, 40, United-States, >50K\n"
    "28, Private, 338409, Bachelors, 13, Female, ?, Cuba, <=50K\n"
    "\n"
    "37, Private, 284582, Masters, 14, Female, 40, United-States, ?\n"
    "49, Private, 160187, 9th, 5, Female, 16, Jamaica, <=50K\n"
    "52, Self-emp-not-inc, 209642, HS-grad, 9, Male, 45, United-States, >50K\n"
    "31, Private, 45781, Masters, 14, Female, 50, United-States, >50K\n"
    "42, Private, 159449, Bachelors, 13, Male, 40, United-States, >50K\n"
    "37, Private, 280464, Some-college, 10, Male, 80, United-States, >50K.\n"
    "30, State-gov, 141297, Bachelors, 13, Male, 40, India, >50K\n"
    "23, Private, 122272, Bachelors, 13, Female, 30, United-States, <=50K\n"
    "32, Private, 205019, Assoc-acdm, 12, Male, 50, United-States\n"
    "140, Private, 121772, Assoc-voc, 11, Male, 40, ?, >50K\n"
    "34, Private, 245487, 7th-8th, x, Male, 45, Mexico, <=50K\n"
    "25, Self-emp-not-inc, 176756, HS-grad, 9, Other, 35, United-States, <=50K\n"
    "\"32\", Private, 186824, HS-grad, 9, Male, 40, \"United-States\", <=50K\n";

Test(prep, custom_task_without_header_equals_python_reference) {
    char *input = in_dir("custom.csv");
    cr_assert_eq(tu_write_file(input, hand_custom, strlen(hand_custom)), 0);
    const char *cols = "age,workclass,fnlwgt,education,education-num,sex,hours,country,income";
    spec specs[] = {
        {.columns = cols,
         .target = "income",
         .positive = ">50K,>50K.",
         .na = "?",
         .features = "age,workclass,fnlwgt,education,education-num,sex,hours,country",
         .range = {"age:17:90", "education-num:1:16"},
         .categories = {"sex:Male|Female"},
         .categorical = "hours",
         .seed = 4,
         .split = "0.5,0.3,0.2"},
        {.columns = cols,
         .target = "income",
         .positive = ">50K",
         .na = "?",
         .exact = 1,
         .features = "age,workclass,fnlwgt,country,hours",
         .seed = 9},
    };
    for (size_t k = 0; k < 2; k++) {
        char *out = in_dir("cds");
        tu_rmrf(out);
        cr_assert_eq(run_prep(&specs[k], input, out, NULL), DP_OK, "spec %zu: %s", k,
                     dp_last_error());
        check_against_reference(&specs[k], input, out);
    }
}

Test(prep, uci_adult_equals_python_reference_and_its_published_counts) {
    char path[4096];
    const char *shared = getenv("DP_SHARED_DIR");
    snprintf(path, sizeof path, "%s/data/adult/adult.data", shared ? shared : "../shared");
    if (!tu_exists(path)) cr_skip_test("no %s", path);
    spec s = {.columns = "age,workclass,fnlwgt,education,education-num,marital-status,"
                         "occupation,relationship,race,sex,capital-gain,capital-loss,"
                         "hours-per-week,native-country,income",
              .target = "income",
              .positive = ">50K",
              .na = "?",
              .features = "age,workclass,fnlwgt,education,education-num,marital-status,"
                          "occupation,relationship,race,sex,capital-gain,capital-loss,"
                          "hours-per-week,native-country"};
    char *out = in_dir("adult");
    dp_prep_result *res;
    cr_assert_eq(run_prep(&s, path, out, &res), DP_OK, "%s", dp_last_error());
    check_against_reference(&s, path, out);
    /* ../shared/data/adult/PROVENANCE.md: 32,561 records, 7,841 >50K; '?' in
     * workclass 1,836, occupation 1,843, native-country 583 */
    const char *m = dp_prep_result_meta(res);
    const char *want[] = {"\"rows_read\":\t32561",
                          "\"rows_kept\":\t32561",
                          "\"workclass\":\t1836",
                          "\"occupation\":\t1843",
                          "\"native-country\":\t583",
                          "70acda78373ddd1c2615a7ae2afbc10c91e85edbdc7706a42c6b3818e2820e1e"};
    for (int i = 0; i < 6; i++)
        cr_assert(strstr(m, want[i]), "meta.json lacks %s", want[i]);
    dp_dataset *ds;
    size_t pos = 0, n = 0;
    const char *splits[] = {"train", "val", "test"};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(dp_dataset_open(out, splits[k], 0, SIZE_MAX, &ds), DP_OK, "%s",
                     dp_last_error());
        for (size_t i = 0; i < dp_dataset_rows(ds); i++)
            pos += dp_dataset_y(ds)[i];
        n += dp_dataset_rows(ds);
        dp_dataset_close(ds);
    }
    cr_assert_eq(n, 32561);
    cr_assert_eq(pos, 7841);
    /* the header-less file encodes again with the dataset's recorded settings */
    dp_prep_encoded enc;
    cr_assert_eq(dp_prep_encode_file(out, path, 2, &enc), DP_OK, "%s", dp_last_error());
    cr_assert_eq(enc.n, 32561);
    cr_assert_eq(enc.n_valid, 32561);
    size_t yes = 0;
    for (size_t i = 0; i < enc.n; i++)
        yes += enc.y[i] == 1;
    cr_assert_eq(yes, 7841);
    dp_prep_encoded_free(&enc);
    dp_prep_result_free(res);
}

static char *slurp(const char *path, size_t *n) {
    char *t = tu_read_file(path, n);
    cr_assert_not_null(t, "%s", path);
    return t;
}

/* meta.json without its timing lines (wall-clock seconds of each phase) */
/* meta.json without its last object "run" (ranks, threads, timings): the
 * only part that may differ between runs on the same input and options. */
static char *meta_sans_time(const char *dsdir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/meta.json", dsdir);
    char *t = slurp(p, NULL);
    char *run = strstr(t, "\n\t\"run\":");
    cr_assert_not_null(run, "meta.json has no \"run\" object");
    cr_assert_null(strstr(run + 1, "\n\t\""), "\"run\" is not the last object of meta.json");
    *run = '\0';
    return t;
}

Test(prep, output_does_not_depend_on_threads_or_chunk_size) {
    uint64_t rng = tu_seed();
    size_t len;
    char *text = random_pums(&rng, 3000, &len);
    char input[4096];
    snprintf(input, sizeof input, "%s", in_dir("big.csv"));
    cr_assert_eq(tu_write_file(input, text, len), 0);
    free(text);
    struct {
        int threads;
        size_t chunk;
    } runs[] = {{1, 0}, {2, 97}, {3, 1000}, {2, 1 << 16}};
    char *ref_meta = NULL;
    for (int k = 0; k < 4; k++) {
        spec s = {.na = "NA", .threads = runs[k].threads, .chunk = runs[k].chunk, .seed = 42};
        char out[64];
        snprintf(out, sizeof out, "ds%d", k);
        cr_assert_eq(run_prep(&s, input, in_dir(out), NULL), DP_OK, "%s", dp_last_error());
        char *meta = meta_sans_time(in_dir(out));
        if (!k) {
            ref_meta = meta;
            continue;
        }
        cr_assert_str_eq(meta, ref_meta, "meta.json with %d threads, chunk %zu", runs[k].threads,
                         runs[k].chunk);
        free(meta);
        const char *files[] = {"X_train.npy", "y_train.npy", "X_val.npy",
                               "y_val.npy",   "X_test.npy",  "y_test.npy"};
        for (int f = 0; f < 6; f++) {
            char a[4200], b[4200];
            snprintf(a, sizeof a, "%s/%s", in_dir("ds0"), files[f]);
            snprintf(b, sizeof b, "%s/%s", in_dir(out), files[f]);
            size_t na, nb;
            char *x = slurp(a, &na), *y = slurp(b, &nb);
            cr_assert(na == nb && memcmp(x, y, na) == 0, "%s differs with %d threads", files[f],
                      runs[k].threads);
            free(x);
            free(y);
        }
    }
    free(ref_meta);
}

Test(prep, encoder_reproduces_the_training_rows_and_flags_bad_ones) {
    uint64_t rng = tu_seed();
    size_t len;
    char *text = random_pums(&rng, 800, &len);
    char *input = in_dir("enc.csv");
    cr_assert_eq(tu_write_file(input, text, len), 0);
    free(text);
    /* employment keeps everyone, so the kept rows are the valid, first-seen ones */
    spec s = {.task = "employment", .na = "NA", .split = "1,0,0"};
    char *out = in_dir("encds");
    cr_assert_eq(run_prep(&s, input, out, NULL), DP_OK, "%s", dp_last_error());
    dp_prep_encoded enc;
    cr_assert_eq(dp_prep_encode_file(out, input, 2, &enc), DP_OK, "%s", dp_last_error());
    dp_dataset *ds;
    cr_assert_eq(dp_dataset_open(out, "train", 0, SIZE_MAX, &ds), DP_OK, "%s", dp_last_error());
    cr_assert_eq(enc.d, dp_dataset_cols(ds));
    cr_assert_str_eq(enc.schema_hash, dp_dataset_schema_hash(ds));
    /* the training rows are the encoded valid rows minus later duplicates, in order */
    const float *X = dp_dataset_X(ds);
    const int32_t *y = dp_dataset_y(ds);
    size_t r = 0, d = enc.d, dups = 0;
    for (size_t i = 0; i < enc.n; i++) {
        if (enc.reason[i]) continue;
        if (r < dp_dataset_rows(ds) && memcmp(enc.X + i * d, X + r * d, d * sizeof(float)) == 0 &&
            enc.y[i] == y[r]) {
            r++;
        } else {
            dups++; /* a duplicate SERIALNO+SPORDER, which predict does not drop */
        }
    }
    cr_assert_eq(r, dp_dataset_rows(ds), "every training row appears among the encoded ones");
    cr_assert_lt(dups, enc.n / 4);
    dp_dataset_close(ds);
    dp_prep_encoded_free(&enc);

    /* a bad record gets its reason, never a silent drop */
    const char *bad = "RT,SERIALNO,SPORDER,AGEP,CIT,COW,DEAR,DEYE,DREM,MAR,MIG,MIL,RELSHIPP,SCHL,"
                      "SEX,WKHP,ANC,DIS,ESP,ESR,HISP,NATIVITY,PINCP,RAC1P\n"
                      "P,2023HU0000001,1,35,1,1,2,2,2,1,1,4,20,21,1,40,1,2,,1,01,1,30000,1\n"
                      "P,2023HU0000001,2,35,1,1,2,2\n"
                      "P,2023HU0000001,3,35,1,1,2,2,2,1,1,4,20,21,3,40,1,2,,1,01,1,30000,1\n"
                      "P,2023HU0000001,4,35,1,1,2,2,2,1,1,4,20,x,1,40,1,2,,,01,1,30000,1\n";
    char *bp = in_dir("bad.csv");
    cr_assert_eq(tu_write_file(bp, bad, strlen(bad)), 0);
    cr_assert_eq(dp_prep_encode_file(out, bp, 1, &enc), DP_OK, "%s", dp_last_error());
    cr_assert_eq(enc.n, 4);
    cr_assert_eq(enc.n_valid, 1);
    cr_assert_eq(enc.reason[0], DP_PREP_VALID);
    cr_assert_eq(enc.y[0], 1);
    cr_assert_eq(enc.reason[1], DP_PREP_WRONG_FIELD_COUNT);
    cr_assert_eq(enc.reason[2], DP_PREP_OUT_OF_RANGE);
    cr_assert_eq(enc.reason[3], DP_PREP_NON_NUMERIC);
    cr_assert_eq(enc.line[3], 5);
    cr_assert_str_eq(dp_prep_reason_name(enc.reason[2]), "out_of_range");
    for (size_t j = 0; j < enc.d; j++)
        cr_assert_eq(enc.X[1 * enc.d + j], 0.0f);
    dp_prep_encoded_free(&enc);
}

/* prep's own validation of dictionary columns (a code table for speed)
 * must say valid exactly when the dictionary module does. */
Test(prep, validation_agrees_with_dp_pums_valid) {
    uint64_t rng = tu_seed();
    static const char alphabet[] = "0123456789-+ab ";
    const char *names[] = {"AGEP",     "SCHL", "MAR",      "SEX", "RAC1P", "HISP",  "DIS",  "CIT",
                           "NATIVITY", "MIL",  "RELSHIPP", "ESP", "MIG",   "ANC",   "DEAR", "DEYE",
                           "DREM",     "WKHP", "PINCP",    "COW", "JWMNP", "POVPIP"};
    prep_na na = {0};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const dp_pums_var *v = dp_pums_find(names[k]);
        cr_assert_not_null(v, "%s", names[k]);
        prep_feature f;
        cr_assert_eq(prep_feature_from_dictionary(&f, v), DP_OK, "%s", dp_last_error());
        for (int t = 0; t < 20000; t++) {
            char s[12];
            size_t n = tu_next(&rng) % 9;
            for (size_t i = 0; i < n; i++) {
                uint64_t r = tu_next(&rng) % 40;
                s[i] = r < 30 ? (char)('0' + r % 10) : alphabet[r % (sizeof alphabet - 1)];
            }
            prep_cell c;
            int pr = prep_feature_parse(&f, &na, s, n, &c);
            int ok = pr == PREP_PARSE_OK;
            cr_assert_eq(ok, dp_pums_valid(v, s, n), "%s '%.*s': prep %d, dp_pums_valid %d",
                         names[k], (int)n, s, pr, dp_pums_valid(v, s, n));
        }
        prep_feature_free(&f);
    }
}

Test(prep, split_sizes_follow_the_largest_remainder_rule_per_class) {
    uint64_t rng = tu_seed();
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + tu_next(&rng) % 500;
        int32_t *label = malloc(n * sizeof *label);
        uint8_t *split = malloc(n), *split2 = malloc(n);
        double p = tu_uniform(&rng);
        for (size_t i = 0; i < n; i++)
            label[i] = tu_uniform(&rng) < p;
        double a = 0.05 + 0.9 * tu_uniform(&rng), b = (1 - a) * tu_uniform(&rng);
        double frac[3] = {a, b, 1 - a - b};
        size_t counts[3];
        uint64_t seed = tu_next(&rng);
        cr_assert_eq(prep_split(label, n, 2, frac, seed, split, counts), DP_OK);
        for (int c = 0; c < 2; c++) {
            size_t m = 0, got[3] = {0, 0, 0};
            for (size_t i = 0; i < n; i++)
                if (label[i] == c) {
                    m++;
                    got[split[i]]++;
                }
            /* each part is its quota rounded down or up, and they sum to m */
            for (int s = 0; s < 3; s++) {
                double q = (double)m * frac[s];
                cr_assert(got[s] == (size_t)floor(q) || got[s] == (size_t)floor(q) + 1,
                          "class %d part %d: %zu for quota %g", c, s, got[s], q);
            }
            cr_assert_eq(got[0] + got[1] + got[2], m);
        }
        cr_assert_eq(counts[0] + counts[1] + counts[2], n);
        cr_assert_eq(prep_split(label, n, 2, frac, seed, split2, counts), DP_OK);
        cr_assert(memcmp(split, split2, n) == 0, "the same seed gives the same split");
        free(label);
        free(split);
        free(split2);
    }
}

Test(prep, schema_hash_follows_the_encoding_and_stats_dp_is_private) {
    char *input = in_dir("h.csv");
    cr_assert_eq(tu_write_file(input, hand_pums, strlen(hand_pums)), 0);
    spec a = {.na = "NA"}, b = {.na = "NA", .exact = 1};
    dp_prep_result *ra, *rb, *rc;
    cr_assert_eq(run_prep(&a, input, in_dir("a"), &ra), DP_OK);
    cr_assert_eq(run_prep(&b, input, in_dir("b"), &rb), DP_OK);
    cr_assert_eq(run_prep(&a, input, in_dir("c"), &rc), DP_OK);
    const char *ha = strstr(dp_prep_result_meta(ra), "\"schema_hash\"");
    const char *hb = strstr(dp_prep_result_meta(rb), "\"schema_hash\"");
    const char *hc = strstr(dp_prep_result_meta(rc), "\"schema_hash\"");
    cr_assert(ha && hb && hc);
    cr_assert(strncmp(ha, hb, 90) != 0, "imputation from the data changes the schema");
    cr_assert(strncmp(ha, hc, 90) == 0, "the same config gives the same schema");
    cr_assert(strstr(dp_prep_result_meta(ra), "\"private\":\ttrue"));
    cr_assert(strstr(dp_prep_result_meta(rb), "\"private\":\tfalse"));
    dp_prep_result_free(ra);
    dp_prep_result_free(rb);
    dp_prep_result_free(rc);
    dp_prep_config c;
    dp_prep_config_init(&c);
    c.input = input;
    c.output = in_dir("dp");
    c.stats = DP_PREP_STATS_DP;
    c.stats_seeded = 1;
    dp_prep_result *rd;
    cr_assert_eq(dp_prep_run(&c, &rd), DP_OK, "%s", dp_last_error());
    /* noisy imputation values are private and charged to the ledger */
    cr_assert(strstr(dp_prep_result_meta(rd), "\"source\":\t\"dp\""));
    cr_assert(strstr(dp_prep_result_meta(rd), "\"private\":\ttrue"));
    cr_assert(strstr(dp_prep_result_meta(rd), "prep: histograms of"));
    dp_prep_result_free(rd);
}

Test(prep, unemployment_is_the_custom_task_it_describes) {
    uint64_t rng = tu_seed();
    size_t len;
    char *text = random_pums(&rng, 600, &len);
    char input[4096];
    snprintf(input, sizeof input, "%s", in_dir("u.csv"));
    cr_assert_eq(tu_write_file(input, text, len), 0);
    free(text);
    spec builtin = {.na = "NA", .seed = 5};
    spec custom = {.target = "ESR",
                   .positive = "3",
                   .population = "1,2,3,4,5",
                   .na = "NA",
                   .seed = 5,
                   .features = "AGEP,SCHL,MAR,SEX,RAC1P,HISP,DIS,CIT,NATIVITY,MIL"};
    cr_assert_eq(run_prep(&builtin, input, in_dir("b"), NULL), DP_OK, "%s", dp_last_error());
    cr_assert_eq(run_prep(&custom, input, in_dir("c"), NULL), DP_OK, "%s", dp_last_error());
    const char *files[] = {"X_train.npy", "y_train.npy", "X_val.npy",
                           "y_val.npy",   "X_test.npy",  "y_test.npy"};
    for (int f = 0; f < 6; f++) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/%s", in_dir("b"), files[f]);
        snprintf(b, sizeof b, "%s/%s", in_dir("c"), files[f]);
        size_t na, nb;
        char *x = slurp(a, &na), *y = slurp(b, &nb);
        cr_assert(na == nb && memcmp(x, y, na) == 0, "%s differs", files[f]);
        free(x);
        free(y);
    }
}

/* ---- the pieces of distributed prep that need no second rank ---- */

/* A CSV whose quoted fields (commas, doubled quotes, LF and CRLF inside)
 * hold many of its bytes, with blank lines and stray quotes. */
static char *quoted_csv(uint64_t *rng, size_t records, size_t *len) {
    size_t cap = records * 400 + 64, n = 0;
    char *t = malloc(cap);
    static const char *const pieces[] = {"ab", " c ", ",", "\"\"", "\n", "\r\n", "x y", "\r"};
    for (size_t i = 0; i < records; i++) {
        int fields = 1 + (int)(tu_next(rng) % 5);
        for (int f = 0; f < fields; f++) {
            if (f) t[n++] = ',';
            int kind = (int)(tu_next(rng) % 8);
            if (kind < 3) { /* quoted, with line ends and quotes inside */
                t[n++] = '"';
                for (int k = (int)(tu_next(rng) % 12); k > 0; k--) {
                    const char *p = pieces[tu_next(rng) % 8];
                    memcpy(t + n, p, strlen(p));
                    n += strlen(p);
                }
                t[n++] = '"';
            } else if (kind == 3) { /* a stray quote: readable, flips the quoting */
                memcpy(t + n, "a\"b", 3);
                n += 3;
            } else {
                n += (size_t)snprintf(t + n, cap - n, "%llu",
                                      (unsigned long long)(tu_next(rng) % 100000));
            }
        }
        if (tu_next(rng) % 2) t[n++] = '\r';
        t[n++] = '\n';
        if (tu_next(rng) % 10 == 0) t[n++] = '\n'; /* a blank line */
    }
    *len = n;
    return t;
}

Test(prep, rank_ranges_start_at_the_records_a_sequential_parse_finds) {
    uint64_t rng = tu_seed();
    for (int round = 0; round < 20; round++) {
        size_t len;
        char *text = quoted_csv(&rng, 50 + tu_next(&rng) % 400, &len);
        /* the odd stray quote can leave the end inside quotes: close it */
        if (csv_quote_parity(text, len)) {
            text[len++] = '"';
            text[len++] = '\n';
        }
        char *path = in_dir("ranges.csv");
        cr_assert_eq(tu_write_file(path, text, len), 0);
        /* the reference: every record start (blank lines too) and its line */
        size_t *starts = malloc((len + 2) * sizeof *starts), nrec = 0;
        uint64_t *lines = malloc((len + 2) * sizeof *lines);
        int32_t slot[64];
        dp_csv_field fields[64];
        for (int i = 0; i < 64; i++)
            slot[i] = -1;
        dp_csv_options o;
        dp_csv_options_init(&o);
        o.trim = 1;
        csv_parser ps;
        csv_parser_init(&ps, &o, slot, 64);
        char *scratch = malloc(len + 1);
        uint64_t line = 1;
        for (size_t pos = 0; pos < len;) {
            csv_rec r;
            csv_fatal fe = csv_parse_record(&ps, text + pos, text + len, fields, scratch, &r);
            cr_assert_eq(fe, CSV_OK, "fatal %d at %zu of %zu: %.40s", (int)fe, pos + r.fatal_off,
                         len, text + pos + r.fatal_off);
            starts[nrec] = pos;
            lines[nrec++] = line;
            pos += r.len;
            line += r.lines;
        }
        starts[nrec] = len;
        lines[nrec] = line;
        int fd = open(path, O_RDONLY);
        cr_assert_geq(fd, 0);
        /* R ranks, sequentially: the scans, the exclusive scan, the starts */
        for (int R = 2; R <= 9; R++) {
            int state = 0;
            uint64_t at_line = 1;
            for (int q = 0; q < R; q++) {
                size_t a, b;
                cr_assert_eq(dp_comm_shard(len, R, q, &a, &b), DP_OK);
                uint64_t start = 0, sline = 1;
                if (q > 0)
                    cr_assert_eq(prep_range_start(fd, path, a, len, state, at_line, &start, &sline),
                                 DP_OK);
                size_t k = 0; /* the first record start at or after a */
                while (starts[k] < a)
                    k++;
                cr_assert_eq(start, starts[k], "R %d rank %d: starts at %llu, expected %zu", R, q,
                             (unsigned long long)start, starts[k]);
                cr_assert_eq(sline, lines[k], "R %d rank %d: line %llu, expected %llu", R, q,
                             (unsigned long long)sline, (unsigned long long)lines[k]);
                int par;
                uint64_t nl;
                cr_assert_eq(prep_range_scan(fd, path, a, b, &par, &nl), DP_OK);
                state ^= par;
                at_line += nl;
            }
            cr_assert_eq(at_line, line, "the scans count every line end");
        }
        close(fd);
        free(starts);
        free(lines);
        free(scratch);
        free(text);
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

Test(prep, kth_smallest_by_radix_select_equals_sorting) {
    uint64_t rng = tu_seed();
    for (int round = 0; round < 50; round++) {
        size_t n = 1 + tu_next(&rng) % 3000, stride = 1 + tu_next(&rng) % 3, m = 0;
        prep_cell *cells = malloc(n * stride * sizeof *cells);
        float *finite = malloc(n * sizeof *finite);
        int spread = (int)(tu_next(&rng) % 4);
        for (size_t i = 0; i < n; i++) {
            float x;
            switch (tu_next(&rng) % 10) {
            case 0:
                x = NAN;
                break;
            case 1:
                x = -INFINITY;
                break;
            case 2:
                x = (tu_next(&rng) % 2) ? -0.0f : 0.0f;
                break;
            case 3:
                x = (float)(tu_next(&rng) % 5);
                break; /* many ties */
            default:
                x = spread == 0   ? (float)(tu_uniform(&rng) * 1e-40) /* subnormal */
                    : spread == 1 ? (float)((tu_uniform(&rng) - 0.5) * 3e38)
                                  : (float)tu_normal(&rng);
            }
            cells[i * stride].f = x;
            if (isfinite(x)) finite[m++] = x == 0.0f ? 0.0f : x;
        }
        qsort(finite, m, sizeof *finite, cmp_float);
        for (int t = 0; t < 4 && m; t++) {
            uint64_t ks[2] = {tu_next(&rng) % m, tu_next(&rng) % m};
            float got[2];
            cr_assert_eq(prep_dist_kth(NULL, cells, n, stride, ks, 2, got), DP_OK);
            for (int j = 0; j < 2; j++) {
                uint32_t a, b;
                memcpy(&a, &got[j], 4);
                memcpy(&b, &finite[ks[j]], 4);
                cr_assert_eq(a, b, "k %llu of %zu: %a, expected %a", (unsigned long long)ks[j], m,
                             got[j], finite[ks[j]]);
            }
        }
        free(cells);
        free(finite);
    }
}
