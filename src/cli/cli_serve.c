/*
 * `metaserve serve`: configuration from METASERVE_* variables and flags, the HTTP server and the
 * job workers, and the orderly stop on SIGTERM or SIGINT (readiness false, in-flight requests
 * finish, running jobs checkpoint back to the queue, the database closes, exit 0). SIGHUP
 * reloads the API key file (never ends the process), and the file is checked once a second, so
 * a changed file is picked up within about two seconds without a signal.
 * `metaserve health`: a liveness probe for container health checks (no curl in the image):
 * GET /livez on the local port, exit 0 when it answers 200.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "metaserve/http/server.h"

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Waits for SIGTERM or SIGINT (returned); meanwhile reloads the keys on SIGHUP and checks the key
// file about once a second (server_keys_poll).
static int serve_until_stopped(Server *s, const sigset_t *set) {
    double next_poll = mono_s() + 1.0;
    for (;;) {
        double left = next_poll - mono_s();
        if (left < 0) left = 0;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGHUP) {
            server_keys_reload(s, "SIGHUP", NULL); // logs what happened; failures keep the keys
        } else if (sig == SIGTERM || sig == SIGINT) {
            return sig;
        }
        if (mono_s() >= next_poll) {
            server_keys_poll(s);
            next_poll = mono_s() + 1.0;
        }
    }
}

int cli_serve(int argc, char **argv) {
    // Every thread inherits this mask, so the signals reach only the wait below; SIGHUP is
    // blocked before anything else, so that its default action (ending the process) never runs.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "--help-markdown") == 0) {
            server_config_help(stdout, strcmp(argv[i], "--help-markdown") == 0);
            return CLI_EXIT_OK;
        }
    }
    ServerConfig c;
    MsError err = {0};
    server_config_defaults(&c);
    if (server_config_load(&c, argc - 1, argv + 1, &err) != MS_OK) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"configuration\",\"detail\":\"%s\"}\n",
                err.msg);
        return CLI_EXIT_USAGE;
    }
    server_config_log(&c, stderr);
    signal(SIGPIPE, SIG_IGN);
    Server *s;
    if (server_start(&s, &c, &err) != MS_OK) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"start\",\"detail\":\"%s\"}\n", err.msg);
        return CLI_EXIT_FAIL;
    }
    fprintf(stderr, "{\"level\":\"info\",\"msg\":\"listening\",\"address\":\"%s\",\"port\":%d}\n",
            c.listen, server_port(s));
    // the server keeps digests only; the keys parsed here are not needed any more
    volatile unsigned char *k = (volatile unsigned char *)c.keys;
    for (size_t i = 0; i < sizeof c.keys; i++)
        k[i] = 0;
    int sig = serve_until_stopped(s, &set);
    fprintf(stderr, "{\"level\":\"info\",\"msg\":\"draining\",\"signal\":%d}\n", sig);
    server_drain(s);
    server_stop(s);
    fprintf(stderr, "{\"level\":\"info\",\"msg\":\"stopped\"}\n");
    return CLI_EXIT_OK;
}

int cli_health(int argc, char **argv) {
    const char *port_s = getenv("METASERVE_PORT");
    int port = port_s ? atoi(port_s) : 8080;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[++i]);
    if (port < 1 || port > 65535) {
        fprintf(stderr, "health: bad port\n");
        return CLI_EXIT_USAGE;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return CLI_EXIT_FAIL;
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        const char *req = "GET /livez HTTP/1.0\r\nHost: localhost\r\n\r\n";
        char buf[64] = {0};
        if (write(fd, req, strlen(req)) == (ssize_t)strlen(req) &&
            read(fd, buf, sizeof buf - 1) > 12)
            ok = strncmp(buf + 8, " 200", 4) == 0;
    }
    close(fd);
    if (!ok) fprintf(stderr, "health: no 200 from 127.0.0.1:%d/livez\n", port);
    return ok ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
