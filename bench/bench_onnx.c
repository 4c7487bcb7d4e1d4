/*
 * bench_onnx: how long the ONNX export (codec/onnx.h) of one network takes to encode, beside the
 * same run's reference, the JSON weights export's encoder (codec_weights_print, what
 * GET /v1/models/{ref}/weights prints). One line of JSON on stdout:
 *     {"sizes":"784-256-256-5","params":268037,"reps":R,"onnx_bytes":B,"onnx_ms_median":..,
 *      "onnx_ms_p90":..,"onnx_cpu_ms_median":..,"json_bytes":..,"json_ms_median":..,
 *      "json_cpu_ms_median":..,"onnx_vs_json":..}
 * *_ms are wall clock, *_cpu_ms the thread's CPU time (steadier on a shared machine);
 * onnx_vs_json is the ratio of the CPU medians (below 1: the ONNX export is the faster one).
 *
 *     bench_onnx [--reps R] [--sizes 784,256,256,5]
 *
 * Parameters are drawn with a fixed seed (PyTorch's nn.Linear initialisation); the timing covers
 * the encode only (the HTTP route adds the version-cache lookup and the transfer; see
 * bench/bench_onnx.sh for the route end to end).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "metaserve/codec/codec.h"
#include "metaserve/codec/onnx.h"

int main(int argc, char **argv) {
    int reps = 50;
    int sizes[MLP_MAX_LAYERS + 1] = {784, 256, 256, 5}, n_sizes = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            n_sizes = 0;
            for (char *p = argv[++i]; *p && n_sizes <= MLP_MAX_LAYERS; p += *p == ',')
                sizes[n_sizes++] = (int)strtol(p, &p, 10);
        } else {
            fprintf(stderr, "usage: bench_onnx [--reps R] [--sizes 784,256,256,5]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    MsError err = {0};
    MlpSpec spec;
    if (mlp_spec_init(&spec, sizes, n_sizes, MLP_ACT_RELU, MLP_HEAD_CLASSIFICATION, &err) !=
        MS_OK) {
        fprintf(stderr, "bench_onnx: %s\n", err.msg);
        return 2;
    }
    float *theta = malloc(spec.P * sizeof *theta);
    double *t_onnx = malloc((size_t)reps * sizeof(double));
    double *t_json = malloc((size_t)reps * sizeof(double));
    double *c_onnx = malloc((size_t)reps * sizeof(double)); // thread CPU time: what a loaded
    double *c_json = malloc((size_t)reps * sizeof(double)); // machine's wall clock does not show
    if (!theta || !t_onnx || !t_json || !c_onnx || !c_json) return 1;
    Rng rng;
    rng_seed(&rng, 1);
    mlp_init_params(&spec, theta, &rng);

    OnnxProvenance prov = {.model = "bench", .version = 1, .algorithm = "maml"};
    size_t onnx_bytes = 0, json_bytes = 0;
    for (int r = 0; r < reps; r++) {
        uint8_t *bytes = NULL;
        double t0 = now_us(), c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
        if (onnx_export(&spec, theta, &prov, &bytes, &onnx_bytes, &err) != MS_OK) {
            fprintf(stderr, "bench_onnx: %s\n", err.msg);
            return 1;
        }
        t_onnx[r] = (now_us() - t0) / 1e3;
        c_onnx[r] = (now_s(CLOCK_THREAD_CPUTIME_ID) - c0) * 1e3;
        free(bytes);
        char *text = NULL;
        t0 = now_us();
        c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
        if (codec_weights_print(&spec, theta, &text, &err) != MS_OK) {
            fprintf(stderr, "bench_onnx: %s\n", err.msg);
            return 1;
        }
        t_json[r] = (now_us() - t0) / 1e3;
        c_json[r] = (now_s(CLOCK_THREAD_CPUTIME_ID) - c0) * 1e3;
        json_bytes = strlen(text);
        free(text);
    }
    char name[128];
    size_t k = 0;
    for (int i = 0; i < n_sizes && k < sizeof name; i++)
        k += (size_t)snprintf(name + k, sizeof name - k, i ? "-%d" : "%d", sizes[i]);
    double p90 = pct(t_onnx, (size_t)reps, 0.9);
    double onnx_med = pct(t_onnx, (size_t)reps, 0.5), json_med = pct(t_json, (size_t)reps, 0.5);
    double onnx_cpu = pct(c_onnx, (size_t)reps, 0.5), json_cpu = pct(c_json, (size_t)reps, 0.5);
    printf("{\"sizes\":\"%s\",\"params\":%zu,\"reps\":%d,\"onnx_bytes\":%zu,"
           "\"onnx_ms_median\":%.3f,\"onnx_ms_p90\":%.3f,\"onnx_cpu_ms_median\":%.3f,"
           "\"json_bytes\":%zu,\"json_ms_median\":%.3f,\"json_cpu_ms_median\":%.3f,"
           "\"onnx_vs_json\":%.4f}\n",
           name, spec.P, reps, onnx_bytes, onnx_med, p90, onnx_cpu, json_bytes, json_med, json_cpu,
           onnx_cpu / json_cpu);
    free(theta);
    free(t_onnx);
    free(t_json);
    free(c_onnx);
    free(c_json);
    return 0;
}
