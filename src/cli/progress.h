/*
 * progress.h: training progress for the terminal: a bar per epoch redrawn in
 * place when stderr is a terminal, plain periodic lines otherwise, nothing
 * with --quiet. Everything it shows about the data (the loss) is labelled
 * not private.
 */
#ifndef DP_CLI_PROGRESS_H
#define DP_CLI_PROGRESS_H
#include <stdint.h>
#include <stdio.h>

typedef struct progress {
    FILE *f;
    int tty, quiet;
    double t_start, t_last_draw;
    uint64_t step_start;     /* steps done when this process started */
    uint64_t last_line_step; /* non-tty: last step printed */
    int drawn;               /* a bar is on the current line */
} progress;

void progress_init(progress *p, FILE *f, int quiet, uint64_t step_start);
double progress_now(void);
/* After a step. eps: spent so far (NAN when not private; INFINITY when the
 * run is not private at all). Redraws at most 10 times a second. */
void progress_step(progress *p, uint64_t step, uint64_t steps, uint64_t epoch, uint64_t epochs,
                   uint64_t step_in_epoch, uint64_t steps_per_epoch, double loss, double eps,
                   double examples_per_s, int force);
/* End the current bar's line (before printing anything else). */
void progress_break(progress *p);

#endif
