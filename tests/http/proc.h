/*
 * A `metaserve serve` child process for the tests that drive the real binary (test_shutdown,
 * crash_test): fork and exec with METASERVE_* settings given as "NAME=value" strings (they
 * replace any METASERVE_* and OPENBLAS_NUM_THREADS of the parent's environment), a reader thread
 * that consumes the child's stderr (so the access log can never fill the pipe), keeps its last
 * bytes for failure messages, counts "level":"error" lines and takes the port from the
 * {"msg":"listening",...,"port":N} line, and the waits for that port and for the exit.
 *
 * Nothing here asserts: each function says what went wrong through its return value, and the
 * caller turns that into a Check failure or a fatal error as its harness wants.
 */
#ifndef METASERVE_TESTS_PROC_H
#define METASERVE_TESTS_PROC_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"

extern char **environ;

#define PROC_MAX_VARS 8 // METASERVE_* settings proc_spawn takes at most

typedef struct {
    pid_t pid;
    int fd; // read end of the child's stderr
    pthread_t reader;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int port;            // 0 until the "listening" line
    int eof;             // stderr closed
    char line[2048];     // the line being assembled
    size_t line_len;     //
    char tail[4096];     // the last bytes of stderr, for failure messages
    size_t tail_len;     //
    int errors;          // "level":"error" lines
    char first_err[512]; // the first of them
    HcClient c;          // base set by proc_wait_port, no key
} Proc;

static inline double proc_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Takes one complete stderr line: the port from the "listening" line, and error lines.
static inline void proc_on_line(Proc *p, const char *line) {
    if (strstr(line, "\"msg\":\"listening\"")) {
        const char *at = strstr(line, "\"port\":");
        if (at) p->port = atoi(at + 7);
    }
    if (strstr(line, "\"level\":\"error\"")) {
        if (p->errors++ == 0) snprintf(p->first_err, sizeof p->first_err, "%.500s", line);
    }
}

static inline void *proc_read_stderr(void *arg) {
    Proc *p = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(p->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        pthread_mutex_lock(&p->mu);
        if (n <= 0) {
            p->eof = 1;
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (p->tail_len == sizeof p->tail - 1) {
                memmove(p->tail, p->tail + 1024, p->tail_len - 1024);
                p->tail_len -= 1024;
            }
            p->tail[p->tail_len++] = buf[i];
            p->tail[p->tail_len] = '\0';
            if (buf[i] == '\n' || p->line_len == sizeof p->line - 1) {
                p->line[p->line_len] = '\0';
                proc_on_line(p, p->line);
                p->line_len = 0;
            } else {
                p->line[p->line_len++] = buf[i];
            }
        }
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

/**
 * Forks and execs `bin serve` with the parent's environment less METASERVE_* and
 * OPENBLAS_NUM_THREADS, plus vars[0..nv) ("NAME=value", nv <= PROC_MAX_VARS; borrowed until
 * the call returns), its stderr on a pipe read by a reader thread. Does not wait for the port.
 * The child gets SIGKILL when the calling thread's process ends. Returns NULL, or what failed
 * (a static string); on failure nothing is left running.
 */
static inline const char *proc_spawn(Proc *p, const char *bin, const char *const *vars, int nv) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (nv < 0 || nv > PROC_MAX_VARS) return "too many variables";
    // the environment, built before fork: the parent has threads, so the child may only exec
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **envp = calloc(n_env + (size_t)nv + 1, sizeof *envp);
    if (!envp) return "out of memory";
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "METASERVE_", 10) != 0 &&
            strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21) != 0)
            envp[k++] = environ[i];
    for (int i = 0; i < nv; i++)
        envp[k++] = (char *)vars[i];
    envp[k] = NULL;
    char *argv[] = {(char *)bin, "serve", NULL};

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        free(envp);
        return "pipe2 failed";
    }
    pid_t parent = getpid();
    p->pid = fork();
    if (p->pid < 0) {
        free(envp);
        close(fds[0]);
        close(fds[1]);
        return "fork failed";
    }
    if (p->pid == 0) {
        // a failed assertion ends the test process: the server must not outlive it
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        dup2(fds[1], 2); // clears close-on-exec on fd 2 only
        execve(bin, argv, envp);
        _exit(127);
    }
    close(fds[1]);
    free(envp);
    p->fd = fds[0];
    if (pthread_create(&p->reader, NULL, proc_read_stderr, p) != 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        close(p->fd);
        return "pthread_create failed";
    }
    return NULL;
}

/**
 * Waits (timeout_s at most) for the "listening" line or the end of stderr; on a port, points
 * p->c at it (no key). Returns the port, 0 when none came.
 */
static inline int proc_wait_port(Proc *p, double timeout_s) {
    pthread_mutex_lock(&p->mu);
    double t0 = proc_now_s();
    while (!p->port && !p->eof && proc_now_s() - t0 < timeout_s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    int port = p->port;
    pthread_mutex_unlock(&p->mu);
    if (port > 0) {
        snprintf(p->c.base, sizeof p->c.base, "http://127.0.0.1:%d", port);
        p->c.key = NULL;
    }
    return port;
}

// After the child has been reaped: joins the reader (stderr is at its end) and frees the rest.
static inline void proc_release(Proc *p) {
    pthread_join(p->reader, NULL);
    close(p->fd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

/**
 * Waits (timeout_s at most) for the child to exit, then reaps it and calls proc_release. A child
 * still running at the deadline gets SIGKILL (it is not left behind). Returns 1 when it exited by
 * itself within the time, 0 when it had to be killed; its wait status goes to status.
 */
static inline int proc_wait_exit(Proc *p, double timeout_s, int *status) {
    *status = 0;
    double t0 = proc_now_s();
    pid_t w;
    while ((w = waitpid(p->pid, status, WNOHANG)) == 0 && proc_now_s() - t0 < timeout_s) {
        struct timespec ts = {0, 20000000L};
        nanosleep(&ts, NULL);
    }
    if (w == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, status, 0);
    }
    proc_release(p);
    return w != 0;
}

#endif
