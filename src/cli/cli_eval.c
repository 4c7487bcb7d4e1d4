/*
 * `metaserve eval --model MODEL.json [--tasks 600] [--k 5,10,20] [--steps 1,10] [--seed S]
 * [--query 100]`: few-shot evaluation of a model file (float build). For every K x steps cell it
 * runs meta_eval (meta/eval.h) on fresh tasks of the model's own family and prints one JSON line:
 * {"model", "algorithm", "metric", "tasks", "query", "seed", "cells": [{"k", "steps", "mean",
 * "ci95", "mean_before"}]}.
 *
 * Every cell draws its tasks from a fresh Rng seeded with S, so cells with the same K are scored
 * on the same tasks and differ only in the number of inner steps (a paired comparison). S
 * defaults to the model's training seed + 1, a stream other than the training one. The inner rate
 * is the model's inner.lr (Meta-SGD: its learned per-parameter rates).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "metaserve/codec/codec.h"
#include "metaserve/meta/eval.h"

#define MAX_LIST  32      // entries of --k and --steps
#define MAX_TASKS 1000000 // --tasks
#define MAX_QUERY 100000  // --query
#define MAX_K     10000   // entries of --k (as tasks.k_support)

static void usage(FILE *f) {
    fprintf(f, "usage: metaserve eval --model MODEL.json [--tasks N] [--k LIST] [--steps LIST]\n"
               "                      [--seed S] [--query N]\n"
               "\n"
               "Adapts the model to fresh tasks of its family and scores the query set (MSE for\n"
               "regression, accuracy for classification), before and after adaptation.\n"
               "  --tasks N     tasks per cell (default 600)\n"
               "  --k LIST      support shots per class, comma-separated (default: the config's\n"
               "                tasks.k_support)\n"
               "  --steps LIST  inner steps, comma-separated (default 1,10)\n"
               "  --seed S      task stream seed (default: the model's seed + 1)\n"
               "  --query N     query points per task (default 100)\n"
               "Prints one JSON line on stdout. Exit status: 0 done, 1 evaluation failed, 2 bad\n"
               "usage or model file.\n");
}

typedef struct {
    const char *model;
    long long tasks, query, seed;
    int have_seed;
    int k[MAX_LIST], steps[MAX_LIST];
    int n_k, n_steps; // 0: use the default
} EvalArgs;

// Parses "a,b,c" of integers in lo..hi into out (at most MAX_LIST). Returns the count or -1.
static int parse_list(const char *s, int lo, int hi, int *out) {
    char buf[512];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long long v;
        if (n == MAX_LIST || cli_parse_int(tok, lo, hi, &v) != 0) return -1;
        out[n++] = (int)v;
    }
    return n > 0 ? n : -1;
}

// Returns -1 when the arguments are good, else the exit status to return.
static int parse_args(EvalArgs *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->tasks = 600;
    a->query = 100;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *opt = argv[i];
        int r, bad = 0;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if ((r = cli_option(argc, argv, &i, "model", &v)) != 0) {
            a->model = v;
        } else if ((r = cli_option(argc, argv, &i, "tasks", &v)) != 0) {
            bad = r > 0 && cli_parse_int(v, 1, MAX_TASKS, &a->tasks) != 0;
        } else if ((r = cli_option(argc, argv, &i, "query", &v)) != 0) {
            bad = r > 0 && cli_parse_int(v, 1, MAX_QUERY, &a->query) != 0;
        } else if ((r = cli_option(argc, argv, &i, "seed", &v)) != 0) {
            bad = r > 0 && cli_parse_int(v, 0, 9007199254740991LL, &a->seed) != 0;
            a->have_seed = 1;
        } else if ((r = cli_option(argc, argv, &i, "k", &v)) != 0) {
            bad = r > 0 && (a->n_k = parse_list(v, 1, MAX_K, a->k)) < 0;
        } else if ((r = cli_option(argc, argv, &i, "steps", &v)) != 0) {
            bad = r > 0 && (a->n_steps = parse_list(v, 0, META_MAX_STEPS, a->steps)) < 0;
        } else {
            fprintf(stderr, "eval: unknown argument '%.40s'\n", opt);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
        if (r < 0) {
            fprintf(stderr, "eval: %s needs a value\n", opt);
            return CLI_EXIT_USAGE;
        }
        if (bad) {
            fprintf(stderr,
                    "eval: %.40s: bad value '%.40s' (--tasks 1..%d, --query 1..%d, --seed "
                    ">= 0, --k up to %d values in 1..%d, --steps up to %d values in 0..%d)\n",
                    opt, v, MAX_TASKS, MAX_QUERY, MAX_LIST, MAX_K, MAX_LIST, META_MAX_STEPS);
            return CLI_EXIT_USAGE;
        }
    }
    if (!a->model) {
        fprintf(stderr, "eval: --model is required\n");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return -1;
}

int cli_eval(int argc, char **argv) {
    EvalArgs a;
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;

    MsError err = {0};
    CodecModel m = {0};
    TaskSampler *sampler = NULL;
    EvalCell cells[MAX_LIST * MAX_LIST];
    char *body = NULL, *report = NULL;
    size_t len = 0;
    rc = CLI_EXIT_USAGE;
    if (cli_read_file(a.model, CLI_MAX_INPUT_BYTES, &body, &len, &err) != MS_OK) {
        fprintf(stderr, "eval: %s\n", err.msg);
        goto done;
    }
    if (codec_model_parse(&m, body, len, &err) != MS_OK) {
        fprintf(stderr, "eval: %s: %s\n", a.model, err.msg);
        goto done;
    }
    if (task_sampler_create(&sampler, &m.cfg.tasks, &err) != MS_OK) {
        fprintf(stderr, "eval: %s: config.%s\n", a.model, err.msg);
        goto done;
    }
    if (a.n_k == 0) a.k[0] = m.cfg.k_support, a.n_k = 1;
    if (a.n_steps == 0) a.steps[0] = 1, a.steps[1] = 10, a.n_steps = 2;
    uint64_t seed = a.have_seed ? (uint64_t)a.seed : m.cfg.seed + 1;

    rc = CLI_EXIT_FAIL;
    int n = 0;
    for (int i = 0; i < a.n_k; i++) {
        for (int j = 0; j < a.n_steps; j++, n++) {
            Rng rng;
            rng_seed(&rng, seed);
            MsStatus st =
                meta_eval(&m.spec, m.cfg.algo, m.theta, m.lrs, (real)m.cfg.inner_lr, sampler, &rng,
                          (int)a.tasks, a.k[i], a.steps[j], (int)a.query, &cells[n], &err);
            if (st != MS_OK) {
                fprintf(stderr, "eval: k=%d steps=%d: %s\n", a.k[i], a.steps[j], err.msg);
                rc =
                    st == MS_ERR_INVALID || st == MS_ERR_TOO_LARGE ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
                goto done;
            }
        }
    }
    if (codec_eval_print(&m.cfg, (int)a.tasks, (int)a.query, seed, cells, n, &report, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        goto done;
    }
    printf("%s\n", report);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
done:
    free(report);
    free(body);
    task_sampler_destroy(sampler);
    codec_model_free(&m);
    return rc;
}
