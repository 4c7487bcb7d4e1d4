/*
 * The metaserve executable: `metaserve <command> ...`. Owns the process set-up every command
 * relies on (the choice of OpenBLAS kernels, OpenBLAS single-threaded: parallelism belongs to our
 * own threads, DESIGN.md §5); the command table, dispatch and the commands live in src/cli/
 * (cli_main).
 *
 * This is the only file that ends the process: a command returns its exit status (cli.h: 0 ok,
 * 1 failed, 2 bad usage or input) and main() returns it.
 *
 * Signals: for `serve`, SIGHUP is blocked before anything else (and stays blocked across the
 * exec below), so that one arriving while the service starts waits for cli_serve.c, which reloads
 * the API keys on it, instead of ending the process by its default action. The other commands
 * keep the default actions.
 */
#include <cblas.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "metaserve/nn/blas.h"

// OpenBLAS reads its environment when the process loads it. When it fell back to generic kernels
// on a CPU it does not know (nn/blas.h), or when OPENBLAS_NUM_THREADS is unset, start again with
// the variables set; with them set, the new image never comes back here. Values already in the
// environment are never changed. If exec fails, the process goes on as it is.
static void blas_autocore(char **argv) {
    if (blas_setup_env()) execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "serve") == 0) {
        sigset_t hup;
        sigemptyset(&hup);
        sigaddset(&hup, SIGHUP);
        sigprocmask(SIG_BLOCK, &hup, NULL);
    }
    blas_autocore(argv);
    openblas_set_num_threads(1);
    return cli_main(argc, argv);
}
