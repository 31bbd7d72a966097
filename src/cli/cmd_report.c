/*
 * cmd_report.c: `dpsgd report RUN -o report.html`: one self-contained HTML
 * page about a training run (no scripts, no external files): the command,
 * the privacy report (privacy.json, with its ledger and what was released
 * without privacy), and the training curves of metrics.jsonl drawn as inline
 * SVG (loss, validation accuracy, epsilon spent). Written atomically.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "dpsgd/checkpoint.h"

enum { O_FORCE = 256 };

static const cli_opt opts[] = {
    {"output", 'o', "FILE", "the HTML file to write (required)"},
    {"force", O_FORCE, NULL, "overwrite an existing FILE"},
    {0},
};

static const cli_cmd cmd = {
    "report",
    "RUN -o report.html",
    "Write a self-contained HTML report of a training run: configuration, privacy and curves.",
    "dpsgd report runs/eps1 -o eps1.html",
    opts,
};

static char *slurp(const char *dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *b = malloc(cap + 1);
    while ((r = fread(b + n, 1, cap - n, f)) > 0)
        if ((n += r) == cap) b = realloc(b, (cap *= 2) + 1);
    fclose(f);
    b[n] = '\0';
    return b;
}

static void esc(FILE *o, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", o);
            break;
        case '>':
            fputs("&gt;", o);
            break;
        case '&':
            fputs("&amp;", o);
            break;
        case '"':
            fputs("&quot;", o);
            break;
        default:
            fputc(*s, o);
        }
    }
}

typedef struct series {
    double *x, *y;
    size_t n, cap;
} series;

static void push(series *s, double x, double y) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->x = realloc(s->x, s->cap * sizeof(double));
        s->y = realloc(s->y, s->cap * sizeof(double));
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
}

/* A line chart of one series, 560x200, with min/max labels. */
static void svg(FILE *o, const char *title, const series *s, const char *color) {
    fprintf(o, "<figure><figcaption>");
    esc(o, title);
    fprintf(o, "</figcaption>\n");
    if (s->n < 1) {
        fprintf(o, "<p class=note>no data logged</p></figure>\n");
        return;
    }
    double x0 = s->x[0], x1 = s->x[0], y0 = s->y[0], y1 = s->y[0];
    for (size_t i = 0; i < s->n; i++) {
        x0 = fmin(x0, s->x[i]), x1 = fmax(x1, s->x[i]);
        y0 = fmin(y0, s->y[i]), y1 = fmax(y1, s->y[i]);
    }
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + 1e-9 + fabs(y0) * 0.01;
    const double W = 560, H = 200, L = 60, B = 24, T = 8, R = 10;
    fprintf(o,
            "<svg width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
            "xmlns=\"http://www.w3.org/2000/svg\">\n",
            W, H, W, H);
    fprintf(o,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"#ccc\"/>\n",
            L, T, W - L - R, H - T - B);
    fprintf(o, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n",
            L - 4, T + 10, y1);
    fprintf(o, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n",
            L - 4, H - B, y0);
    fprintf(o, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">step %.0f</text>\n", L, H - 6, x0);
    fprintf(o,
            "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">step %.0f</text>\n",
            W - R, H - 6, x1);
    fprintf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
    for (size_t i = 0; i < s->n; i++)
        fprintf(o, "%.1f,%.1f ", L + (s->x[i] - x0) / (x1 - x0) * (W - L - R),
                H - B - (s->y[i] - y0) / (y1 - y0) * (H - T - B));
    fprintf(o, "\"/>\n</svg></figure>\n");
}

static void row(FILE *o, const char *k, const cJSON *v) {
    fprintf(o, "<tr><th>");
    esc(o, k);
    fprintf(o, "</th><td>");
    if (cJSON_IsString(v))
        esc(o, v->valuestring);
    else if (cJSON_IsNumber(v))
        fprintf(o, "%.6g", v->valuedouble);
    else if (cJSON_IsBool(v))
        fprintf(o, "%s", cJSON_IsTrue(v) ? "yes" : "no");
    else if (cJSON_IsNull(v))
        fprintf(o, "&mdash;");
    else {
        char *s = cJSON_PrintUnformatted(v);
        esc(o, s);
        cJSON_free(s);
    }
    fprintf(o, "</td></tr>\n");
}

int cmd_report(int argc, char **argv) {
    const char *out = NULL;
    int force = 0;
    cli_parser p;
    cli_parser_init(&p, &cmd, argc, argv);
    int c;
    while ((c = cli_next(&p)) != -1) {
        switch (c) {
        case CLI_HELP:
            return CLI_OK;
        case CLI_ERROR:
            return CLI_BAD_INPUT;
        case 'o':
            out = optarg;
            break;
        case O_FORCE:
            force = 1;
            break;
        default:
            return cli_usage_error("unexpected option");
        }
    }
    if (argc - optind != 1) return cli_usage_error("expected one RUN directory");
    if (!out) return cli_usage_error("-o FILE is required");
    const char *run = argv[optind];
    if (!force && access(out, F_OK) == 0) {
        cli_error("%s exists (use --force to overwrite it)", out);
        return CLI_BAD_INPUT;
    }
    char *ptext = slurp(run, "privacy.json");
    cJSON *priv = ptext ? cJSON_Parse(ptext) : NULL;
    free(ptext);
    if (!cJSON_IsObject(priv)) {
        cli_error("%s/privacy.json: missing or not JSON (is %s a finished dpsgd run?)", run, run);
        cJSON_Delete(priv);
        return CLI_BAD_INPUT;
    }
    char *command = slurp(run, "command.txt"), *metrics = slurp(run, "metrics.jsonl");
    series loss = {0}, vacc = {0}, eps = {0};
    for (char *save, *l = metrics ? strtok_r(metrics, "\n", &save) : NULL; l;
         l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        const cJSON *st = cJSON_GetObjectItem(o, "step"), *kind = cJSON_GetObjectItem(o, "kind");
        if (cJSON_IsNumber(st)) {
            int epoch = cJSON_IsString(kind) && !strcmp(kind->valuestring, "epoch");
            const cJSON *v;
            if (!epoch && cJSON_IsNumber(v = cJSON_GetObjectItem(o, "train_loss")))
                push(&loss, st->valuedouble, v->valuedouble);
            if (!epoch && cJSON_IsNumber(v = cJSON_GetObjectItem(o, "epsilon")))
                push(&eps, st->valuedouble, v->valuedouble);
            if (epoch && cJSON_IsNumber(v = cJSON_GetObjectItem(o, "val_accuracy")))
                push(&vacc, st->valuedouble, v->valuedouble);
        }
        cJSON_Delete(o);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    fprintf(o,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>dpsgd run ");
    esc(o, run);
    fprintf(o,
            "</title>\n<style>body{font:14px/1.4 sans-serif;max-width:900px;margin:2em auto;"
            "color:#222}table{border-collapse:collapse}th,td{padding:2px 10px;border-bottom:1px "
            "solid #eee;text-align:left;vertical-align:top}th{font-weight:600}code,pre{"
            "background:#f6f6f6;padding:4px;white-space:pre-wrap}.warn{color:#a40}.note{color:#666}"
            "figure{margin:1em 0}</style></head><body>\n<h1>dpsgd run <code>");
    esc(o, run);
    fprintf(o, "</code></h1>\n");
    if (command) {
        fprintf(o, "<h2>Command</h2><pre>");
        esc(o, command);
        fprintf(o, "</pre>\n");
    }
    const cJSON *isp = cJSON_GetObjectItem(priv, "private");
    fprintf(o, "<h2>Privacy</h2>\n");
    if (cJSON_IsFalse(isp))
        fprintf(o, "<p class=warn>This model was trained with <code>--no-dp</code>: it is NOT "
                   "private.</p>\n");
    else {
        const cJSON *e = cJSON_GetObjectItem(priv, "epsilon"),
                    *d = cJSON_GetObjectItem(priv, "delta");
        if (cJSON_IsNumber(e) && cJSON_IsNumber(d))
            fprintf(o,
                    "<p>The model is (&epsilon; = %.4g, &delta; = %g)-differentially private "
                    "for the records of the training split, under the relation "
                    "&ldquo;add/remove one record&rdquo;.</p>\n",
                    e->valuedouble, d->valuedouble);
    }
    fprintf(o, "<table>\n");
    for (const cJSON *it = priv->child; it; it = it->next)
        if (strcmp(it->string, "ledger") && strcmp(it->string, "not_private"))
            row(o, it->string, it);
    fprintf(o, "</table>\n");
    const cJSON *led = cJSON_GetObjectItem(priv, "ledger");
    const cJSON *ent = cJSON_GetObjectItem(led, "entries");
    if (cJSON_IsArray(ent)) {
        fprintf(o, "<h3>Ledger</h3><table><tr><th>release</th><th>sample rate</th><th>noise "
                   "multiplier</th><th>steps</th></tr>\n");
        for (const cJSON *x = ent->child; x; x = x->next) {
            fprintf(o, "<tr><td>");
            const cJSON *w = cJSON_GetObjectItem(x, "what");
            esc(o, cJSON_IsString(w) ? w->valuestring : "?");
            const cJSON *q = cJSON_GetObjectItem(x, "sample_rate"),
                        *s = cJSON_GetObjectItem(x, "noise_multiplier"),
                        *t = cJSON_GetObjectItem(x, "steps");
            fprintf(o, "</td><td>%.6g</td><td>%.6g</td><td>%.0f</td></tr>\n",
                    cJSON_IsNumber(q) ? q->valuedouble : NAN,
                    cJSON_IsNumber(s) ? s->valuedouble : NAN,
                    cJSON_IsNumber(t) ? t->valuedouble : NAN);
        }
        fprintf(o, "</table>\n");
    }
    const cJSON *np = cJSON_GetObjectItem(priv, "not_private");
    if (cJSON_IsArray(np)) {
        fprintf(o, "<h3>Released without privacy</h3><ul>\n");
        for (const cJSON *x = np->child; x; x = x->next)
            if (cJSON_IsString(x)) {
                fprintf(o, "<li>");
                esc(o, x->valuestring);
                fprintf(o, "</li>\n");
            }
        fprintf(o, "</ul>\n");
    }
    fprintf(o, "<h2>Training</h2>\n<p class=note>Loss and validation accuracy are computed on "
               "private records and are not differentially private.</p>\n");
    svg(o, "training loss (not private)", &loss, "#1f77b4");
    svg(o, "validation accuracy per epoch (not private)", &vacc, "#2ca02c");
    svg(o, "epsilon spent", &eps, "#d62728");
    fprintf(o, "</body></html>\n");
    fclose(o);
    dp_status st = dp_file_write_atomic(out, buf, len);
    free(buf);
    free(command);
    free(metrics);
    free(loss.x), free(loss.y), free(vacc.x), free(vacc.y), free(eps.x), free(eps.y);
    cJSON_Delete(priv);
    if (st != DP_OK) return cli_fail(st);
    return CLI_OK;
}
