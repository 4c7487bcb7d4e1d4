/*
 * `metaserve train --config FILE.json --out MODEL.json [--quiet]`: meta-trains one model in the
 * foreground (float build) and writes it as a model file. Owns the option handling, the progress
 * report and the end-of-run summary; the loop itself is trainer_step (meta/train.h), the JSON is
 * the codec's.
 *
 * Progress goes to stderr. When stderr is a terminal: one line redrawn in place (\r) about ten
 * times a second, a bar with the percentage done, the iteration, the mean meta-loss since the
 * previous redraw, tasks per second and the ETA (from the rate since the start), ended by a
 * newline. Otherwise (a file, a pipe, a log collector): a line every max(1, iterations / 20)
 * iterations with the iteration, the mean meta-loss over the iterations since the previous line,
 * and tasks per second over that window.
 * A non-finite loss (MS_ERR_NUMERIC) stops the run with exit status 1 and no model file. The
 * model file is written atomically (temporary file, then rename) and holds only deterministic
 * content, so two runs with the same config and seed produce identical bytes. The one-line JSON
 * summary on stdout carries the wall-clock figures.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "metaserve/codec/codec.h"
#include "metaserve/meta/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: metaserve train --config FILE.json --out MODEL.json [--quiet]\n"
            "\n"
            "Meta-trains the model described by the training config FILE.json (the body of\n"
            "POST /v1/jobs) and writes the model file MODEL.json. Progress goes to stderr (a\n"
            "progress bar with meta-loss and ETA on a terminal, else a line every 5%%; silenced\n"
            "by --quiet); a one-line JSON summary goes to stdout.\n"
            "Exit status: 0 done, 1 training failed (no model written), 2 bad usage or config.\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// 1 when the directory that will hold path is writable, so a long run does not fail at the end.
static int out_dir_writable(const char *path) {
    char dir[4096];
    cli_parent_dir(path, dir, sizeof dir);
    return access(dir, W_OK) == 0;
}

// Writes the model text plus a final newline (the codec's output has none) atomically to path.
static MsStatus write_model(const char *path, char **model, MsError *err) {
    size_t n = strlen(*model);
    char *text = realloc(*model, n + 2);
    if (!text) return ms_fail(err, MS_ERR_NOMEM, "out of memory");
    *model = text;
    memcpy(text + n, "\n", 2);
    return cli_write_file_atomic(path, text, n + 1, err);
}

typedef struct {
    const char *config, *out;
    int quiet;
} TrainArgs;

// Returns -1 when the arguments are good, else the exit status to return.
static int parse_args(TrainArgs *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            a->quiet = 1;
        } else if ((r = cli_option(argc, argv, &i, "config", &v)) != 0) {
            if (r < 0) goto missing;
            a->config = v;
        } else if ((r = cli_option(argc, argv, &i, "out", &v)) != 0) {
            if (r < 0) goto missing;
            a->out = v;
        } else {
            fprintf(stderr, "train: unknown argument '%.40s'\n", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
        continue;
    missing:
        fprintf(stderr, "train: %s needs a value\n", argv[i]);
        return CLI_EXIT_USAGE;
    }
    if (!a->config || !a->out) {
        fprintf(stderr, "train: --config and --out are required\n");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return -1;
}

#define BAR_WIDTH 24
#define BAR_EVERY 0.1 // seconds between two redraws of the terminal's progress line

// Redraws the terminal's progress line: bar, percentage, iteration, mean meta-loss of the
// window, tasks/s of the window, ETA from the rate since the start (t0).
static void bar_draw(const Trainer *tr, double loss, double tps, double t0, double now) {
    const TrainConfig *c = &tr->cfg;
    double done = (double)tr->t / (double)c->iterations;
    int k = (int)(done * BAR_WIDTH);
    char bar[BAR_WIDTH + 1];
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < k ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    double rate = (double)tr->t / (now - t0 > 1e-9 ? now - t0 : 1e-9); // iterations per second
    double eta = (double)(c->iterations - tr->t) / (rate > 0 ? rate : 1);
    // \033[K clears what a longer previous line left
    fprintf(stderr, "\rtrain [%s] %3d%% %ld/%ld meta_loss %.4g tasks/s %.0f eta %.0fs\033[K", bar,
            (int)(done * 100), tr->t, c->iterations, loss, tps, eta);
    if (tr->t == c->iterations) fputc('\n', stderr);
    fflush(stderr);
}

// Runs the loop, reporting progress; *last_mean gets the mean meta-loss of the last window.
static MsStatus run(Trainer *tr, int quiet, double *last_mean, double *seconds, MsError *err) {
    const TrainConfig *c = &tr->cfg;
    const long every = c->iterations / 20 > 1 ? c->iterations / 20 : 1;
    const int tty = !quiet && isatty(2);
    double t0 = now_s(), t_win = t0, sum = 0, t_bar = t0, bar_sum = 0;
    long n_win = 0, n_bar = 0;
    *last_mean = NAN;
    while (tr->t < c->iterations) {
        TrainStats ts;
        MsStatus st = trainer_step(tr, &ts, err);
        if (st != MS_OK) {
            if (tty && tr->t > 0) fputc('\n', stderr); // the error goes on a line of its own
            return st;
        }
        sum += ts.meta_loss;
        n_win++;
        if (tty) {
            bar_sum += ts.meta_loss;
            n_bar++;
            double t1 = now_s();
            if (t1 - t_bar >= BAR_EVERY || tr->t == c->iterations) {
                bar_draw(tr, bar_sum / (double)n_bar, (double)n_bar * c->meta_batch / (t1 - t_bar),
                         t0, t1);
                bar_sum = 0, n_bar = 0, t_bar = t1;
            }
        }
        if (tr->t % every == 0 || tr->t == c->iterations) {
            double t1 = now_s();
            *last_mean = sum / (double)n_win;
            if (!quiet && !tty)
                fprintf(stderr, "train: iteration %ld/%ld meta_loss %.6g tasks/s %.0f\n", tr->t,
                        c->iterations, *last_mean,
                        (double)n_win * c->meta_batch / (t1 - t_win > 1e-9 ? t1 - t_win : 1e-9));
            sum = 0, n_win = 0, t_win = t1;
        }
    }
    *seconds = now_s() - t0;
    return MS_OK;
}

int cli_train(int argc, char **argv) {
    TrainArgs a;
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;

    MsError err = {0};
    Trainer tr = {0};
    TrainConfig cfg;
    char *body = NULL, *model = NULL, *summary = NULL;
    size_t len = 0;
    rc = CLI_EXIT_USAGE;
    if (cli_read_file(a.config, CLI_MAX_INPUT_BYTES, &body, &len, &err) != MS_OK) {
        fprintf(stderr, "train: %s\n", err.msg);
        goto done;
    }
    if (codec_config_parse(&cfg, body, len, &err) != MS_OK) {
        fprintf(stderr, "train: %s: %s\n", a.config, err.msg);
        goto done;
    }
    if (!out_dir_writable(a.out)) {
        fprintf(stderr, "train: --out %s: the directory is not writable\n", a.out);
        goto done;
    }
    MsStatus st = trainer_init(&tr, &cfg, &err);
    if (st != MS_OK) {
        fprintf(stderr, "train: %s\n", err.msg);
        rc = st == MS_ERR_INVALID || st == MS_ERR_TOO_LARGE ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
        goto done;
    }
    rc = CLI_EXIT_FAIL;
    double mean = NAN, seconds = 0;
    if ((st = run(&tr, a.quiet, &mean, &seconds, &err)) != MS_OK) {
        fprintf(stderr, "train: %s error: %s; no model written\n", ms_status_str(st), err.msg);
        goto done;
    }
    CodecMetric metrics[] = {{"iterations", (double)tr.t}, {"meta_loss", mean}};
    if (codec_model_print(&tr.cfg, tr.params, trainer_lrs(&tr), metrics, 2, &model, &err) ||
        write_model(a.out, &model, &err)) {
        fprintf(stderr, "train: %s\n", err.msg);
        goto done;
    }
    CodecTrainSummary sum = {cfg.name,
                             meta_algo_name(cfg.algo),
                             a.out,
                             tr.t,
                             mean,
                             seconds,
                             seconds > 0 ? (double)tr.t * cfg.meta_batch / seconds : 0};
    if (codec_train_summary_print(&sum, &summary, &err) != MS_OK) {
        fprintf(stderr, "train: %s\n", err.msg);
        goto done;
    }
    printf("%s\n", summary);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
done:
    free(summary);
    free(model);
    free(body);
    trainer_free(&tr);
    return rc;
}
