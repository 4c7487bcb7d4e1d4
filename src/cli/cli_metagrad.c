/*
 * `metaserve metagrad FILE.json` (or `-` for stdin): one task's meta-gradient, computed in DOUBLE
 * precision. This file is compiled only in the _f64 build (f64.h is forced in), so `real` is
 * double here and every nn/meta/codec call below is the _f64 one. It exists so that the
 * meta-gradient of the service can be checked from outside the process — against finite
 * differences of its own query loss, or against another implementation (PyTorch + higher).
 *
 * Input (every field validated by codec_metagrad_parse; errors print "metagrad: field: problem"
 * and exit 2):
 *     {"sizes": [1, 40, 40, 1], "activation": "relu" | "tanh" | "sigmoid", "loss": "mse" | "ce",
 *      "weights": [{"W": [[...]], "b": [...]}, ...], "support_x": [[...]], "support_y": [[...]],
 *      "query_x": [[...]], "query_y": [[...]], "alpha": 0.01, "steps": K,
 *      "algo": "maml" | "fomaml" | "metasgd" | "anil", "lrs": [layers] (metasgd only)}
 * For "ce" each y row is [class_index] and the network has a classification head.
 *
 * Output, one line, every number with 17 significant digits:
 *     {"query_loss_initial": L_q(theta_0), "query_loss": L_q(theta_K),
 *      "support_losses": [L_s(theta_0) .. L_s(theta_K)] (K+1 values),
 *      "adapted_weights": [layers of theta_K], "meta_grad": [layers of dL_q(theta_K)/dtheta_0],
 *      "meta_grad_lrs": [layers of dL_q/dlrs] (metasgd) or null}
 * A non-finite loss or gradient exits 1.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "metaserve/codec/codec.h"
#include "metaserve/meta/meta.h"

// Largest tape meta_work_init may allocate for one metagrad call: 1 GiB.
#define METAGRAD_MAX_TAPE_BYTES ((size_t)1 << 30)

static void usage(FILE *f) {
    fprintf(f, "usage: metaserve metagrad FILE.json    (FILE '-' reads standard input)\n"
               "\n"
               "Computes, in double precision, the meta-gradient of one task's query loss after K\n"
               "inner SGD steps on its support set (maml | fomaml | metasgd | anil) and prints it\n"
               "as one JSON line with 17 significant digits. See src/cli/cli_metagrad.c for the\n"
               "input format. Exit status: 0 done, 1 non-finite result, 2 bad usage or input.\n");
}

// Runs meta_task_grad on in and prints the result. Returns the exit status.
static int compute(const CodecMetagradInput *in) {
    const MlpSpec *s = &in->spec;
    const size_t P = s->P;
    const int K = in->steps;
    MsError err = {0};
    MetaWork mw = {0};
    real *g = NULL, *glr = NULL;
    double *losses = NULL;
    char *json = NULL;
    int rc = CLI_EXIT_FAIL;
    size_t bytes = meta_work_bytes(s, in->algo, K, in->ns, in->nq);
    if (bytes > METAGRAD_MAX_TAPE_BYTES) {
        fprintf(stderr, "metagrad: steps: %d steps over %d support rows need %zu MiB (limit %zu)\n",
                K, in->ns, bytes >> 20, METAGRAD_MAX_TAPE_BYTES >> 20);
        return CLI_EXIT_USAGE;
    }
    g = calloc(P, sizeof(real));
    glr = in->algo == META_METASGD ? calloc(P, sizeof(real)) : NULL;
    losses = calloc((size_t)K + 1, sizeof(double));
    if (!g || (in->algo == META_METASGD && !glr) || !losses) {
        fprintf(stderr, "metagrad: out of memory\n");
        goto done;
    }
    if (meta_work_init(&mw, s, in->algo, K, in->ns, in->nq, &err) != MS_OK) {
        fprintf(stderr, "metagrad: %s\n", err.msg);
        goto done;
    }
    MetaTaskResult res;
    MsStatus st = meta_task_grad(&mw, g, glr, in->theta, in->lrs, (real)in->alpha, in->xs, in->ys,
                                 in->ns, in->xq, in->yq, in->nq, 1, &res);
    if (st != MS_OK) {
        fprintf(stderr, "metagrad: %s: a loss or gradient is not finite (lower alpha or steps)\n",
                ms_status_str(st));
        goto done;
    }
    // L_s(theta_0) .. L_s(theta_{K-1}) from the inner loop, then L_s(theta_K)
    memcpy(losses, mw.support_loss, (size_t)K * sizeof(double));
    losses[K] = res.support_loss_final;
    CodecMetagradOutput out = {
        res.query_loss_initial, res.query_loss, losses, K + 1, mw.thetas + (size_t)K * P, g, glr};
    if (codec_metagrad_print(s, &out, &json, &err) != MS_OK) {
        fprintf(stderr, "metagrad: %s\n", err.msg);
        goto done;
    }
    printf("%s\n", json);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
done:
    free(json);
    free(losses);
    free(glr);
    free(g);
    meta_work_free(&mw);
    return rc;
}

int cli_metagrad(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (path || (argv[i][0] == '-' && argv[i][1] != '\0')) {
            fprintf(stderr, "metagrad: unexpected argument '%.40s'\n", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
        path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "metagrad: an input file (or '-') is required\n");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    MsError err = {0};
    CodecMetagradInput in = {0};
    char *body = NULL;
    size_t len = 0;
    int rc = CLI_EXIT_USAGE;
    MsStatus st = cli_read_file(path, CLI_MAX_INPUT_BYTES, &body, &len, &err);
    if (st == MS_OK) st = codec_metagrad_parse(&in, body, len, &err);
    if (st != MS_OK) {
        fprintf(stderr, "metagrad: %s\n", err.msg);
        rc = st == MS_ERR_NOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
    } else {
        rc = compute(&in);
    }
    codec_metagrad_free(&in);
    free(body);
    return rc;
}
