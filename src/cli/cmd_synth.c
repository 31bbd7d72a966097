/*
 * cmd_synth.c: `dpsgd synth`, a synthetic ACS PUMS person file of any size
 * (dp_synth_write in src/data/synth.c; the model is in docs/synth.md). Prints
 * what it wrote, with the count of each kind of damaged record, on stderr.
 */
#include <string.h>
#include "cli/cli.h"

enum {
    O_ROWS = 256,
    O_SEED,
    O_COLUMNS,
    O_INVALID,
    O_MISSING,
    O_YEAR,
    O_THREADS,
    O_FORCE,
    O_LEVEL,
    O_QUIET
};

static const cli_opt opts[] = {
    {"output", 'o', "FILE", "output CSV; a name ending in .gz is gzip-compressed (required)"},
    {"rows", O_ROWS, "N", "data lines to write, 0..20000000 (required)"},
    {"seed", O_SEED, "S", "random seed: the same seed gives the same bytes (default 1)"},
    {"columns", O_COLUMNS, "SET", "full (all 287 person columns, default) or minimal (27)"},
    {"invalid-rate", O_INVALID, "R", "share of damaged records, 0..1 (default 0.005)"},
    {"missing-rate", O_MISSING, "R", "share of records with one extra blank, 0..1 (default 0.01)"},
    {"year", O_YEAR, "Y", "survey year of the dictionary (default and only: 2023)"},
    {"threads", O_THREADS, "T", "threads (default: all cores); the output does not depend on it"},
    {"gzip-level", O_LEVEL, "L", "compression level 1..9 for .gz output (default 1)"},
    {"force", O_FORCE, NULL, "replace an existing output file"},
    {"quiet", O_QUIET, NULL, "print nothing on success"},
    {0},
};

static const cli_cmd cmd = {
    "synth",
    "--rows N -o persons.csv[.gz] [options]",
    "Write a synthetic ACS PUMS 2023 person file: the real header, codes and N/A\n"
    "blanks, persons grouped by household, a documented model of age, education,\n"
    "labour force and unemployment (docs/synth.md), and a share of damaged records\n"
    "(bad codes, non-numbers, ragged lines, duplicates, extra blanks), counted.",
    "dpsgd synth --rows 1000000 --seed 1 -o persons.csv.gz",
    opts,
};

int cmd_synth(int argc, char **argv) {
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    const char *out = NULL;
    int have_rows = 0, quiet = 0;
    long long v;
    cli_parser p;
    cli_parser_init(&p, &cmd, argc, argv);
    for (int c; (c = cli_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP:
            return CLI_OK;
        case CLI_ERROR:
            return CLI_BAD_INPUT;
        case 'o':
            out = optarg;
            break;
        case O_ROWS:
            if (cli_parse_long("rows", optarg, 0, (long long)DP_SYNTH_MAX_ROWS, &v))
                return CLI_BAD_INPUT;
            cfg.rows = (uint64_t)v;
            have_rows = 1;
            break;
        case O_SEED:
            if (cli_parse_long("seed", optarg, 0, 9223372036854775807LL, &v)) return CLI_BAD_INPUT;
            cfg.seed = (uint64_t)v;
            break;
        case O_COLUMNS:
            if (!strcmp(optarg, "full"))
                cfg.columns = DP_SYNTH_FULL;
            else if (!strcmp(optarg, "minimal"))
                cfg.columns = DP_SYNTH_MINIMAL;
            else
                return cli_usage_error("--columns expects full or minimal, got '%s'", optarg);
            break;
        case O_INVALID:
            if (cli_parse_double("invalid-rate", optarg, 0, 1, &cfg.invalid_rate))
                return CLI_BAD_INPUT;
            break;
        case O_MISSING:
            if (cli_parse_double("missing-rate", optarg, 0, 1, &cfg.missing_rate))
                return CLI_BAD_INPUT;
            break;
        case O_YEAR:
            if (cli_parse_long("year", optarg, 2000, 2100, &v)) return CLI_BAD_INPUT;
            cfg.year = (int)v;
            break;
        case O_THREADS:
            if (cli_parse_long("threads", optarg, 1, 1024, &v)) return CLI_BAD_INPUT;
            cfg.threads = (int)v;
            break;
        case O_LEVEL:
            if (cli_parse_long("gzip-level", optarg, 1, 9, &v)) return CLI_BAD_INPUT;
            cfg.gzip_level = (int)v;
            break;
        case O_FORCE:
            cfg.force = 1;
            break;
        case O_QUIET:
            quiet = 1;
            break;
        default:
            return cli_usage_error("unexpected option");
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!out) return cli_usage_error("no output file: give -o FILE");
    if (!have_rows) return cli_usage_error("no row count: give --rows N");

    dp_synth_report r;
    dp_status st = dp_synth_write(out, &cfg, &r);
    if (st == DP_E_EXISTS) {
        cli_error("%s: already exists (pass --force to replace it)", out);
        return CLI_BAD_INPUT;
    }
    if (st != DP_OK) return cli_fail(st);
    if (!quiet) {
        cli_note("wrote %s: %llu rows (%llu households), %d columns, %.1f MB%s", out,
                 (unsigned long long)r.rows, (unsigned long long)r.households, r.columns,
                 r.file_bytes / 1e6, r.file_bytes != r.bytes ? " compressed" : "");
        cli_note("rows: %llu clean, %llu with an extra blank, %llu bad code, %llu non-numeric, "
                 "%llu ragged, %llu duplicate",
                 (unsigned long long)r.clean, (unsigned long long)r.missing,
                 (unsigned long long)r.bad_code, (unsigned long long)r.bad_number,
                 (unsigned long long)r.ragged, (unsigned long long)r.duplicate);
        if (r.labor_force)
            cli_note(
                "labour force: %llu, unemployed %.2f%% (ESR 3), employed at work %.2f%% (ESR 1)",
                (unsigned long long)r.labor_force, 100.0 * r.unemployed / r.labor_force,
                100.0 * r.employed_at_work / r.labor_force);
    }
    return CLI_OK;
}
