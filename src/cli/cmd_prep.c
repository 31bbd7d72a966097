/*
 * cmd_prep.c: `dpsgd prep`, a raw census CSV to a dataset directory
 * (dp_prep_run in src/data/prep.c; docs/prep.md). Prints the quality report
 * (rows read, kept, dropped by reason with the first example of each,
 * missing and imputed per column, label balance per split, time) on stdout,
 * read back from the meta.json that was written, so the two cannot disagree.
 * Under `mpirun -np R` every rank reads its share of the input
 * (dp_prep_run_dist); rank 0 alone prints, errors included (all ranks fail
 * together with the same message).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include "cli/cli.h"
#include "dpsgd/comm.h"
#include "dpsgd/prep.h"

enum {
    O_TASK = 256,
    O_TARGET,
    O_POSITIVE,
    O_POPULATION,
    O_FEATURES,
    O_COLUMNS,
    O_NA,
    O_RANGE,
    O_CATEGORIES,
    O_CATEGORICAL,
    O_DICTIONARY,
    O_SPLIT,
    O_STATS,
    O_STATS_NOISE,
    O_STATS_EPSILON,
    O_STATS_DELTA,
    O_SEED,
    O_THREADS,
    O_MAX_FIELD,
    O_FORCE,
    O_QUIET,
    O_JSON
};

static const cli_opt opts[] = {
    {"output", 'o', "DATASET", "dataset directory to create (required)"},
    {"task", O_TASK, "NAME", "unemployment (default) or employment, on an ACS PUMS person file"},
    {"target", O_TARGET, "COL", "custom task: the label column"},
    {"positive", O_POSITIVE, "V[,V..]", "custom task: target values labelled 1"},
    {"population", O_POPULATION, "V[,V..]", "custom task: keep only these target values"},
    {"features", O_FEATURES, "COL[,COL..]", "custom task: the feature columns"},
    {"columns", O_COLUMNS, "NAMES", "column names of a file without a header row"},
    {"na", O_NA, "TOKEN[,..]", "values that mean missing, e.g. '?' or NA (blank always does)"},
    {"range", O_RANGE, "COL:LO:HI", "public range of a numeric column outside the dictionary"},
    {"categories", O_CATEGORIES, "COL:V1|V2..", "public categories of a column outside it"},
    {"categorical", O_CATEGORICAL, "COL[,..]", "columns outside it that are categorical"},
    {"dictionary", O_DICTIONARY, "pums|none",
     "use the PUMS 2023 dictionary for its columns "
     "(default pums)"},
    {"split", O_SPLIT, "F,F,F", "train, validation, test fractions (default 0.8,0.1,0.1)"},
    {"stats", O_STATS, "SOURCE",
     "public (default), exact (from the data: not private), dp (noisy, charged to the "
     "privacy ledger)"},
    {"stats-noise", O_STATS_NOISE, "S",
     "--stats dp: noise multiplier of the histogram release (default 5)"},
    {"stats-epsilon", O_STATS_EPSILON, "E", "--stats dp: calibrate the noise to this epsilon"},
    {"stats-delta", O_STATS_DELTA, "D", "--stats dp: delta of its ledger (default 1e-5)"},
    {"seed", O_SEED, "S", "seed of the split, and of --stats dp noise if given (default 0)"},
    {"threads", O_THREADS, "T",
     "parse threads (default: all cores, under mpirun the cores / ranks per node; "
     "one more hashes the input); the output does not depend on it"},
    {"max-field", O_MAX_FIELD, "BYTES", "longest field accepted (default 1048576)"},
    {"force", O_FORCE, NULL, "replace an existing dataset (once the new one is complete)"},
    {"quiet", O_QUIET, NULL, "print nothing on success"},
    {"json", O_JSON, NULL, "print the report as one JSON object"},
    {0},
};

static const cli_cmd cmd = {
    "prep",
    "INPUT -o DATASET [options]",
    "Clean, impute, encode and split a raw CSV (plain, .csv.gz, or the Census\n"
    "Bureau's .zip) into a dataset directory: meta.json + X_/y_{train,val,test}.npy.\n"
    "Invalid records are dropped and counted by reason; categories come from the\n"
    "PUMS dictionary, so the encoding depends on no statistic of the data.\n"
    "Under mpirun -np R each rank reads its byte range of a plain file (a .gz or\n"
    ".zip is read by rank 0); the dataset is the same byte for byte.",
    "dpsgd prep psam_p06.csv.gz -o ca-unemployment --task unemployment",
    opts,
};

#define MAX_SPECS 64

static double num(const cJSON *o, const char *k) {
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, k));
}
static const cJSON *obj(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static void pct_line(const char *what, double n, double of, const char *tail) {
    printf("  %-22s %12.0f  %5.1f%%%s\n", what, n, of > 0 ? 100.0 * n / of : 0.0, tail);
}

static void print_report(const cJSON *m, const char *out) {
    const cJSON *rep = obj(m, "report"), *src = obj(m, "source"), *task = obj(m, "task");
    const cJSON *run = obj(m, "run");
    double read = num(rep, "rows_read"), secs = num(run, "seconds");
    double mb = num(src, "text_bytes") / 1e6;
    printf("%s (%s, %.1f MB, sha256 %.16s...)\n", cJSON_GetStringValue(obj(src, "name")),
           cJSON_GetStringValue(obj(src, "kind")), num(src, "bytes") / 1e6,
           cJSON_GetStringValue(obj(src, "sha256")));
    char pos[256] = "";
    const cJSON *v;
    cJSON_ArrayForEach(v, obj(task, "positive")) {
        size_t u = strlen(pos);
        snprintf(pos + u, sizeof pos - u, "%s%s", *pos ? "," : "", v->valuestring);
    }
    printf("task %s: label 1 where %s is %s; population: %s\n",
           cJSON_GetStringValue(obj(task, "name")), cJSON_GetStringValue(obj(task, "target")), pos,
           cJSON_GetStringValue(obj(task, "population")));
    printf("  %-22s %12.0f\n", "rows read", read);
    pct_line("kept", num(rep, "rows_kept"), read, "");
    pct_line("not in population", num(obj(rep, "filtered"), "not_in_population"), read, "");
    pct_line("dropped", num(rep, "rows_dropped"), read, "");
    const cJSON *d;
    cJSON_ArrayForEach(d, obj(rep, "dropped")) {
        if (d->valuedouble == 0) continue;
        const char *first = cJSON_GetStringValue(obj(obj(rep, "first"), d->string));
        char tail[700] = "";
        if (first) snprintf(tail, sizeof tail, "  first: %s", first);
        char label[64];
        snprintf(label, sizeof label, "  %s", d->string);
        pct_line(label, d->valuedouble, read, tail);
    }
    if (num(rep, "blank_lines") > 0)
        printf("  %-22s %12.0f\n", "blank lines skipped", num(rep, "blank_lines"));
    printf("  %-22s %12s %12s  %s\n", "column", "missing", "imputed", "encoding");
    const cJSON *f;
    cJSON_ArrayForEach(f, obj(m, "features")) {
        const char *name = cJSON_GetStringValue(obj(f, "name"));
        const cJSON *imp = obj(f, "impute");
        char enc[160];
        const cJSON *cols = obj(f, "columns");
        int ncols = (int)cJSON_GetNumberValue(cJSON_GetArrayItem(cols, 1));
        snprintf(enc, sizeof enc, "%s from %s, %d column%s; impute %s",
                 cJSON_GetStringValue(obj(f, "kind")), cJSON_GetStringValue(obj(f, "origin")),
                 ncols, ncols == 1 ? "" : "s", cJSON_GetStringValue(obj(imp, "method")));
        printf("  %-22s %12.0f %12.0f  %s\n", name, num(obj(rep, "missing"), name),
               num(obj(rep, "imputed"), name), enc);
    }
    printf("  %-22s %12s %12s\n", "split", "rows", "positive");
    const char *splits[3] = {"train", "val", "test"};
    for (int s = 0; s < 3; s++) {
        const cJSON *o = obj(obj(m, "splits"), splits[s]);
        double rows = num(o, "rows"), p = num(o, "positive");
        printf("  %-22s %12.0f %12.0f  (%.2f%%)\n", splits[s], rows, p,
               rows > 0 ? 100 * p / rows : 0.0);
    }
    const cJSON *st = obj(m, "statistics");
    printf("features: %d -> %d encoded columns; statistics: %s (%s)\n",
           cJSON_GetArraySize(obj(m, "features")), (int)num(m, "n_features"),
           cJSON_GetStringValue(obj(st, "source")),
           cJSON_IsTrue(obj(st, "private")) ? "private: none from the data" : "NOT private");
    int ranks = (int)num(run, "ranks");
    char on[64] = "";
    if (ranks > 1) snprintf(on, sizeof on, " on %d ranks", ranks);
    printf("wrote %s in %.2f s%s (%.0f rows/s, %.1f MB/s)\n", out, secs, on,
           secs > 0 ? read / secs : 0, secs > 0 ? mb / secs : 0);
}

typedef struct prep_args {
    dp_prep_config cfg;
    const char *ranges[MAX_SPECS], *cats[MAX_SPECS];
    int quiet, json, help;
} prep_args;

static int parse(int argc, char **argv, prep_args *a);
static int prep(dp_comm *comm, prep_args *a);

int cmd_prep(int argc, char **argv) {
    /* the communicator first (MPI only under a launcher): each rank must know
     * its rank before it prints anything */
    dp_comm *comm = NULL;
    dp_status st = dp_comm_open(&comm);
    if (st != DP_OK) return cli_fail(st);
    const int rank = dp_comm_rank(comm);
    cli_set_rank(rank, dp_comm_size(comm));
    prep_args a;
    int fds[2] = {-1, -1};
    if (rank != 0) cli_mute(1, fds); /* help and usage errors once, from rank 0 */
    int rc = parse(argc, argv, &a);
    if (rank != 0) cli_mute(0, fds);
    if (rc == CLI_OK && !a.help) rc = prep(comm, &a);
    dp_comm_close(comm);
    return rc;
}

/* Threads per rank when --threads is not given: the OpenMP default for one
 * process; under mpirun the cores divided among this node's ranks, so that
 * R ranks do not run R times as many threads as there are cores (the
 * hashing thread of rank 0 comes on top). OMP_NUM_THREADS wins when set. */
static int default_threads(int ranks) {
    if (ranks <= 1 || getenv("OMP_NUM_THREADS")) return 0;
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long local = ls ? strtol(ls, NULL, 10) : ranks;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return local > 0 && cores > local ? (int)(cores / local) : 1;
}

/* Deterministic in argv, so every rank gets the same configuration. */
static int parse(int argc, char **argv, prep_args *a) {
    memset(a, 0, sizeof *a);
    dp_prep_config cfg;
    dp_prep_config_init(&cfg);
    const char **ranges = a->ranges, **cats = a->cats;
    long long v;
    double split[3];
    int n;
    cli_parser p;
    cli_parser_init(&p, &cmd, argc, argv);
    for (int c; (c = cli_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP:
            a->help = 1;
            return CLI_OK;
        case CLI_ERROR:
            return CLI_BAD_INPUT;
        case 'o':
            cfg.output = optarg;
            break;
        case O_TASK:
            cfg.task = optarg;
            break;
        case O_TARGET:
            cfg.target = optarg;
            break;
        case O_POSITIVE:
            cfg.positive = optarg;
            break;
        case O_POPULATION:
            cfg.population = optarg;
            break;
        case O_FEATURES:
            cfg.features = optarg;
            break;
        case O_COLUMNS:
            cfg.columns = optarg;
            break;
        case O_NA:
            cfg.na = optarg;
            break;
        case O_RANGE:
            if (cfg.n_ranges == MAX_SPECS) return cli_usage_error("--range: at most %d", MAX_SPECS);
            ranges[cfg.n_ranges++] = optarg;
            break;
        case O_CATEGORIES:
            if (cfg.n_categories == MAX_SPECS)
                return cli_usage_error("--categories: at most %d", MAX_SPECS);
            cats[cfg.n_categories++] = optarg;
            break;
        case O_CATEGORICAL:
            cfg.categorical = optarg;
            break;
        case O_DICTIONARY:
            if (!strcmp(optarg, "pums"))
                cfg.dictionary = 1;
            else if (!strcmp(optarg, "none"))
                cfg.dictionary = 0;
            else
                return cli_usage_error("--dictionary expects pums or none, got '%s'", optarg);
            break;
        case O_SPLIT:
            if (cli_parse_doubles("split", optarg, split, 3, &n)) return CLI_BAD_INPUT;
            if (n != 3)
                return cli_usage_error("--split expects three fractions (train,val,test), got '%s'",
                                       optarg);
            memcpy(cfg.split, split, sizeof split);
            break;
        case O_STATS:
            if (!strcmp(optarg, "public"))
                cfg.stats = DP_PREP_STATS_PUBLIC;
            else if (!strcmp(optarg, "exact"))
                cfg.stats = DP_PREP_STATS_EXACT;
            else if (!strcmp(optarg, "dp"))
                cfg.stats = DP_PREP_STATS_DP;
            else
                return cli_usage_error("--stats expects public, exact or dp, got '%s'", optarg);
            break;
        case O_STATS_NOISE:
            if (cli_parse_double("stats-noise", optarg, 1e-300, 1e300, &cfg.stats_noise))
                return CLI_BAD_INPUT;
            break;
        case O_STATS_EPSILON:
            if (cli_parse_double("stats-epsilon", optarg, 1e-300, 1e300, &cfg.stats_epsilon))
                return CLI_BAD_INPUT;
            break;
        case O_STATS_DELTA:
            if (cli_parse_double("stats-delta", optarg, 1e-300, 1 - 1e-16, &cfg.stats_delta))
                return CLI_BAD_INPUT;
            break;
        case O_SEED:
            if (cli_parse_long("seed", optarg, 0, 9223372036854775807LL, &v)) return CLI_BAD_INPUT;
            cfg.seed = (uint64_t)v;
            cfg.stats_seeded = 1;
            break;
        case O_THREADS:
            if (cli_parse_long("threads", optarg, 1, 1024, &v)) return CLI_BAD_INPUT;
            cfg.threads = (int)v;
            break;
        case O_MAX_FIELD:
            if (cli_parse_long("max-field", optarg, 16, 1LL << 30, &v)) return CLI_BAD_INPUT;
            cfg.max_field = (size_t)v;
            break;
        case O_FORCE:
            cfg.force = 1;
            break;
        case O_QUIET:
            a->quiet = 1;
            break;
        case O_JSON:
            a->json = 1;
            break;
        default:
            return cli_usage_error("unexpected option");
        }
    }
    if (optind >= argc) return cli_usage_error("missing INPUT (a CSV, .csv.gz or .zip file)");
    if (optind + 1 < argc)
        return cli_usage_error("one INPUT expected, got also '%s'", argv[optind + 1]);
    if (!cfg.output) return cli_usage_error("missing -o DATASET (the directory to create)");
    if (cfg.stats != DP_PREP_STATS_DP && (cfg.stats_noise || cfg.stats_epsilon || cfg.stats_delta))
        return cli_usage_error("--stats-noise, --stats-epsilon and --stats-delta need --stats dp");
    if (cfg.stats_noise && cfg.stats_epsilon)
        return cli_usage_error("--stats-noise and --stats-epsilon: give one of them, not both");
    cfg.input = argv[optind];
    a->cfg = cfg;
    return CLI_OK;
}

static int prep(dp_comm *comm, prep_args *a) {
    const int rank = dp_comm_rank(comm);
    a->cfg.ranges = a->ranges;
    a->cfg.categories = a->cats;
    if (!a->cfg.threads) a->cfg.threads = default_threads(dp_comm_size(comm));
    dp_prep_result *res;
    dp_status st = dp_prep_run_dist(&a->cfg, comm, &res);
    if (st != DP_OK) return rank == 0 ? cli_fail(st) : cli_exit_code(st);
    cJSON *m = rank == 0 ? cJSON_Parse(dp_prep_result_meta(res)) : NULL;
    if (m) {
        const cJSON *w;
        cJSON_ArrayForEach(w, obj(m, "warnings")) cli_warn("%s", w->valuestring);
        if (a->json) {
            /* the report, with how the run went ("run") added for the reader */
            cJSON *rep = cJSON_Duplicate(obj(m, "report"), 1);
            if (rep) cJSON_AddItemToObject(rep, "run", cJSON_Duplicate(obj(m, "run"), 1));
            char *s = cJSON_PrintUnformatted(rep);
            if (s) printf("%s\n", s);
            cJSON_free(s);
            cJSON_Delete(rep);
        } else if (!a->quiet) {
            print_report(m, a->cfg.output);
        }
        cJSON_Delete(m);
    }
    dp_prep_result_free(res);
    return CLI_OK;
}
