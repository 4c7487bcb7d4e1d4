/*
 * GET /v1/jobs/{id}/events: a job's progress as Server-Sent Events (text/event-stream), and the
 * hub that keeps the waiting streams off the HTTP threads.
 *
 * Events (docs/operations.md has the reference):
 *   event: state     data: {"state", "iteration", "total"}                 on every state change
 *   event: progress  data: {"iteration", "total", + the job's metrics}     at most every interval
 *   event: done      data: {"state", "iteration", "total", "model", "error"}   last; then the
 *                                                                          stream ends
 * plus ": hb" comment heartbeats when nothing was sent for sse_heartbeat_ms. Every event has an
 * id: iteration * 8 + phase (queued 1, running 2, progress 3, finished state 4, done 5), so ids
 * grow with the job and mean the same thing on every replica and every connection; a stream
 * sends only events whose id is above the last one it sent (Last-Event-ID on a reconnect). A state
 * change at an iteration already passed (a job handed back to the queue) takes the next id.
 *
 * Source of truth: the job row in the store, read every interval_ms by whichever HTTP thread the
 * connection belongs to. Workers record progress about once a second wherever the job runs
 * (this process or another replica on PostgreSQL), so a stream follows jobs of every replica
 * the same way.
 *
 * Threading: a stream with nothing to send suspends its connection (libmicrohttpd's
 * suspend/resume, from its content reader) and joins the hub's list; the hub's one thread
 * sleeps in poll() until the earliest stream is due (next poll or heartbeat) or one of the
 * suspended sockets hangs up (POLLRDHUP: libmicrohttpd does not watch a suspended socket), and
 * resumes those. So a waiting subscriber holds no HTTP thread, a client that goes away is cleaned
 * up at once, and sse_hub_close (drain, stop) wakes every stream to end it. The hub is an event
 * loop of http/ over libmicrohttpd's sockets, not compute: that is why this thread lives here
 * rather than in jobs/.
 *
 * Workload: up to METASERVE_MAX_STREAMS (64) streams, each one primary-key read per interval
 * (500 ms by default) and an event of ~300 bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

#define INTERVAL_DEFAULT_MS 500   // between two reads of the job row
#define INTERVAL_FLOOR_MS   100   // a smaller interval_ms is raised to this
#define INTERVAL_MAX_MS     60000 // a larger one is refused (400)
#define RETRY_MS            2000  // the reconnection delay advised to EventSource clients
#define ID_STRIDE           8     // event ids per iteration (phases below)

enum { PHASE_QUEUED = 1, PHASE_RUNNING = 2, PHASE_PROGRESS = 3, PHASE_FINAL = 4, PHASE_DONE = 5 };

typedef struct Stream {
    struct SseHub *hub;
    Req *r; // the request; valid while the content reader can run (freed after it has ended)
    struct MHD_Connection *conn;
    int fd;                 // the connection's socket (watched for a hang-up while suspended)
    char job[STORE_ID_MAX]; // the job followed
    int64_t interval_ms;    // between reads of the job row
    int64_t heartbeat_ms;   // between comment heartbeats on a quiet stream
    int64_t last_id;        // id of the last event sent (or the client's Last-Event-ID)
    int sent;               // events sent on this connection
    int64_t last_iter;      // iteration of the last progress event (-1: none)
    char last_metrics[512]; // the metrics it carried (a checkpoint moves the iteration alone)
    int state;              // the state last reported (-1: none yet)
    int64_t next_poll_ms;   // monotonic ms of the next read of the job row
    int64_t next_hb_ms;     // ... of the next heartbeat
    int finished;           // the done event is queued: end once the buffer is out
    char *out;              // bytes waiting for the socket (out[off..len))
    size_t len, off, cap;   //
    int oom;                // an event could not be buffered: the stream ends
    // under hub->mu
    int suspended;       // in the hub's list, its connection suspended
    int hangup;          // the client went away while suspended
    int64_t due_ms;      // when the hub resumes it
    struct Stream *next; // the hub's list
} Stream;

struct SseHub {
    pthread_mutex_t mu;
    pthread_t thread;
    int started;       // the thread runs
    int wake[2];       // a pipe: a byte wakes the thread (a new suspended stream, close, stop)
    Stream *suspended; // streams waiting, under mu
    int closing;       // every stream ends, new ones are refused; under mu
    int stop;          // the thread exits; under mu
    atomic_int active; // streams admitted and not yet freed
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hub_wake(struct SseHub *h) {
    char b = 1;
    ssize_t w = write(h->wake[1], &b, 1); // a full pipe already wakes the thread
    (void)w;
}

/* ---- the hub: one thread over the suspended streams ---- */

// Resumes every stream that is due, hung up, or ending (closing); they are taken off the list
// under mu and resumed after it is released (a suspended stream cannot run, let alone be freed,
// until it is resumed, and only this thread resumes).
static void resume_due(struct SseHub *h, int64_t now) {
    Stream *go = NULL;
    pthread_mutex_lock(&h->mu);
    for (Stream **p = &h->suspended; *p;) {
        Stream *s = *p;
        if (h->closing || s->hangup || now >= s->due_ms) {
            *p = s->next;
            s->suspended = 0;
            s->next = go;
            go = s;
        } else {
            p = &s->next;
        }
    }
    pthread_mutex_unlock(&h->mu);
    while (go) {
        Stream *s = go;
        go = s->next;
        MHD_resume_connection(s->conn);
    }
}

static void *hub_main(void *arg) {
    struct SseHub *h = arg;
    struct pollfd *pfd = NULL;
    Stream **who = NULL;
    size_t cap = 0;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        if (h->stop) {
            pthread_mutex_unlock(&h->mu);
            break;
        }
        size_t n = 0;
        for (Stream *s = h->suspended; s; s = s->next)
            n++;
        if (n + 1 > cap) {
            size_t c = (n + 1) * 2;
            struct pollfd *np = realloc(pfd, c * sizeof *np);
            if (np) pfd = np;
            Stream **nw = np ? realloc(who, c * sizeof *nw) : NULL;
            if (nw) who = nw;
            if (np && nw) cap = c;
        }
        // out of memory for the poll set: watch only the wake pipe, and look again soon
        size_t k = 1;
        int64_t now = mono_ms(), wait = n + 1 > cap ? 50 : -1;
        for (Stream *s = h->suspended; s; s = s->next) {
            int64_t left = s->due_ms > now ? s->due_ms - now : 0;
            if (wait < 0 || left < wait) wait = left;
            if (k < cap) {
                pfd[k] = (struct pollfd){.fd = s->fd, .events = POLLRDHUP};
                who[k++] = s;
            }
        }
        if (h->closing && h->suspended) wait = 0;
        pthread_mutex_unlock(&h->mu);
        struct pollfd wp = {.fd = h->wake[0], .events = POLLIN};
        struct pollfd *set = cap ? pfd : &wp;
        set[0] = wp;
        int got = poll(set, cap ? (nfds_t)k : 1, wait > INT_MAX ? INT_MAX : (int)wait);
        if (got > 0 && (set[0].revents & POLLIN)) {
            char buf[64];
            while (read(h->wake[0], buf, sizeof buf) > 0) {
            }
        }
        // the streams of the set are still suspended (only this thread resumes them)
        pthread_mutex_lock(&h->mu);
        for (size_t i = 1; got > 0 && i < k; i++)
            if (pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) who[i]->hangup = 1;
        pthread_mutex_unlock(&h->mu);
        resume_due(h, mono_ms());
    }
    free(pfd);
    free(who);
    return NULL;
}

MsStatus sse_hub_create(struct SseHub **out, MsError *err) {
    *out = NULL;
    struct SseHub *h = calloc(1, sizeof *h);
    if (!h) return ms_fail(err, MS_ERR_NOMEM, "out of memory");
    if (pipe2(h->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(h);
        return ms_fail(err, MS_ERR_IO, "event streams: cannot make a pipe: %s", strerror(errno));
    }
    pthread_mutex_init(&h->mu, NULL);
    atomic_init(&h->active, 0);
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) {
        sse_hub_destroy(h);
        return ms_fail(err, MS_ERR_INTERNAL, "event streams: cannot start a thread");
    }
    h->started = 1;
    *out = h;
    return MS_OK;
}

void sse_hub_close(struct SseHub *h) {
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->closing = 1;
    pthread_mutex_unlock(&h->mu);
    hub_wake(h);
}

int sse_hub_active(struct SseHub *h) {
    return h ? atomic_load(&h->active) : 0;
}

void sse_hub_destroy(struct SseHub *h) {
    if (!h) return;
    if (h->started) {
        pthread_mutex_lock(&h->mu);
        h->stop = 1;
        pthread_mutex_unlock(&h->mu);
        hub_wake(h);
        pthread_join(h->thread, NULL);
    }
    pthread_mutex_destroy(&h->mu);
    close(h->wake[0]);
    close(h->wake[1]);
    free(h);
}

/* ---- events ---- */

// Appends text to the stream's buffer; 0 (and s->oom) when it cannot grow.
static int out_put(Stream *s, const char *text, size_t n) {
    if (s->len + n > s->cap) {
        size_t c = s->cap ? s->cap : 1024;
        while (c < s->len + n)
            c *= 2;
        char *b = realloc(s->out, c);
        if (!b) {
            s->oom = 1;
            return 0;
        }
        s->out = b, s->cap = c;
    }
    memcpy(s->out + s->len, text, n);
    s->len += n;
    return 1;
}

// Queues one event: "id: <id>\nevent: <name>\ndata: <one line of JSON>\n\n". Takes data.
static void event_put(Stream *s, int64_t id, const char *name, cJSON *data) {
    char *text = data ? cJSON_PrintUnformatted(data) : NULL;
    cJSON_Delete(data);
    if (!text) {
        s->oom = 1;
        return;
    }
    char head[96];
    int n = snprintf(head, sizeof head, "id: %lld\nevent: %s\ndata: ", (long long)id, name);
    if (out_put(s, head, (size_t)n) && out_put(s, text, strlen(text))) out_put(s, "\n\n", 2);
    free(text);
    s->last_id = id;
    s->sent++;
}

static int state_final(int st) {
    return st == JOB_SUCCEEDED || st == JOB_FAILED || st == JOB_CANCELLED;
}

static int state_phase(int st) {
    return st == JOB_QUEUED ? PHASE_QUEUED : st == JOB_RUNNING ? PHASE_RUNNING : PHASE_FINAL;
}

static cJSON *state_data(JsonBuild *b, const StoreJob *j) {
    cJSON *d = cJSON_CreateObject();
    json_put(b, d, "state", cJSON_CreateString(store_job_state_name(j->state)));
    json_put(b, d, "iteration", cJSON_CreateNumber((double)j->iteration));
    json_put(b, d, "total", cJSON_CreateNumber((double)j->total));
    return d;
}

// {"iteration", "total"} and every field of the job's latest metrics (meta_loss, val_mse or
// val_accuracy, tasks_per_s, eta_s: named as the job names them).
static cJSON *progress_data(JsonBuild *b, const StoreJob *j) {
    cJSON *d = cJSON_CreateObject();
    json_put(b, d, "iteration", cJSON_CreateNumber((double)j->iteration));
    json_put(b, d, "total", cJSON_CreateNumber((double)j->total));
    int oom;
    cJSON *m = json_parse_stored(j->metrics, &oom);
    if (oom) b->oom = 1;
    for (cJSON *f = m ? m->child : NULL; f; f = f->next)
        if (f->string && strcmp(f->string, "iteration") && strcmp(f->string, "total"))
            json_put(b, d, f->string, cJSON_Duplicate(f, 1));
    cJSON_Delete(m);
    return d;
}

// The error of a failed or cancelled job as a problem object (RFC 9457 fields).
static cJSON *job_problem(JsonBuild *b, const StoreJob *j) {
    int failed = j->state == JOB_FAILED;
    cJSON *p = cJSON_CreateObject();
    json_put(b, p, "type",
             cJSON_CreateString(failed ? "https://metaserve.dev/problems/job-failed"
                                       : "https://metaserve.dev/problems/job-cancelled"));
    json_put(b, p, "title", cJSON_CreateString(failed ? "Job failed" : "Job cancelled"));
    json_put(b, p, "detail",
             cJSON_CreateString(j->error[0] ? j->error
                                : failed    ? "the job failed"
                                            : "the job was cancelled"));
    return p;
}

static cJSON *done_data(JsonBuild *b, const StoreJob *j) {
    cJSON *d = state_data(b, j);
    if (j->state == JOB_SUCCEEDED) {
        cJSON *m = json_put(b, d, "model", cJSON_CreateObject());
        json_put(b, m, "name", cJSON_CreateString(j->result_model[0] ? j->result_model : j->name));
        json_put(b, m, "version", cJSON_CreateNumber(j->result_version));
        json_put(b, d, "error", cJSON_CreateNull());
    } else {
        json_put(b, d, "model", cJSON_CreateNull());
        json_put(b, d, "error", job_problem(b, j));
    }
    return d;
}

static int64_t done_id(const StoreJob *j) {
    return j->iteration * ID_STRIDE + PHASE_DONE;
}

// Queues the events the job row j calls for, in id order: progress (when the iteration moved and
// there are metrics), state (when it changed), done (when finished). A finished state follows
// the progress of its iteration; queued and running precede it.
static void stream_update(Stream *s, const StoreJob *j) {
    JsonBuild b = {0};
    const int64_t base = j->iteration * ID_STRIDE, progress_id = base + PHASE_PROGRESS;
    const int final = state_final(j->state);
    // new metrics: a progress write (a checkpoint also records the iteration, with the metrics
    // of the last progress write, which were sent already)
    int moved = j->iteration > s->last_iter && j->iteration > 0 && j->state != JOB_QUEUED &&
                j->metrics && strcmp(j->metrics, "{}") != 0 &&
                strncmp(j->metrics, s->last_metrics, sizeof s->last_metrics) != 0;
    if (moved && final && progress_id > s->last_id) {
        event_put(s, progress_id, "progress", progress_data(&b, j));
        s->last_iter = j->iteration;
        snprintf(s->last_metrics, sizeof s->last_metrics, "%s", j->metrics);
    }
    if ((int)j->state != s->state) {
        int64_t id = base + state_phase(j->state);
        // a change seen on this stream is news even at an iteration already passed (a job
        // handed back to the queue); the first state of a resumed stream is not, when the
        // client has seen an event past it
        if (s->state >= 0 && id <= s->last_id) id = s->last_id + 1;
        if (id > s->last_id) event_put(s, id, "state", state_data(&b, j));
        s->state = (int)j->state;
    }
    if (moved && !final && progress_id > s->last_id) {
        event_put(s, progress_id, "progress", progress_data(&b, j));
        s->last_iter = j->iteration;
        snprintf(s->last_metrics, sizeof s->last_metrics, "%s", j->metrics);
    }
    if (final) {
        // done always ends a stream that reported anything (after a bumped state id too); a
        // resumed stream whose client has seen done ends without it
        int64_t id = done_id(j) > s->last_id ? done_id(j) : s->last_id + 1;
        if (done_id(j) > s->last_id || s->sent) event_put(s, id, "done", done_data(&b, j));
        s->finished = 1;
    }
    if (b.oom) s->oom = 1;
}

/* ---- the response: a content reader that suspends when it has nothing to say ---- */

// Reads the job row (the request thread's store connection); a database that does not answer
// is skipped: the next interval tries again, heartbeats keep going meanwhile.
static void stream_poll(Stream *s) {
    Store *st = req_store_if_up(s->r);
    if (!st) return;
    StoreJob j;
    MsError err = {0};
    MsStatus rc = store_job_get(st, s->job, &j, &err);
    if (rc == MS_ERR_NOT_FOUND) {
        s->finished = 1; // removed while followed: nothing more will come
        return;
    }
    if (rc != MS_OK) return;
    stream_update(s, &j);
    store_job_free(&j);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Stream *s = cls;
    struct SseHub *h = s->hub;
    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off < max ? s->len - s->off : max;
            memcpy(buf, s->out + s->off, n);
            s->off += n;
            return (ssize_t)n;
        }
        s->off = s->len = 0;
        if (s->oom) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&h->mu);
        int closing = h->closing, hangup = s->hangup;
        pthread_mutex_unlock(&h->mu);
        if (hangup) return MHD_CONTENT_READER_END_WITH_ERROR; // nobody to send to
        if (closing) return MHD_CONTENT_READER_END_OF_STREAM; // drain: end cleanly
        int64_t now = mono_ms();
        if (now >= s->next_poll_ms) {
            s->next_poll_ms = now + s->interval_ms;
            stream_poll(s);
            if (s->len) s->next_hb_ms = now + s->heartbeat_ms;
            if (s->len || s->finished || s->oom) continue;
        }
        if (now >= s->next_hb_ms) {
            s->next_hb_ms = now + s->heartbeat_ms;
            out_put(s, ": hb\n\n", 6);
            continue;
        }
        // nothing to say until the next poll or heartbeat: give the thread back
        pthread_mutex_lock(&h->mu);
        if (h->closing) {
            pthread_mutex_unlock(&h->mu);
            continue;
        }
        s->due_ms = s->next_poll_ms < s->next_hb_ms ? s->next_poll_ms : s->next_hb_ms;
        s->suspended = 1;
        s->next = h->suspended;
        h->suspended = s;
        MHD_suspend_connection(s->conn);
        pthread_mutex_unlock(&h->mu);
        hub_wake(h);
        return 0;
    }
}

// The response is done with (sent, failed or the client left): the stream is never resumed
// again, so it is in no list.
static void stream_free(void *cls) {
    Stream *s = cls;
    atomic_fetch_sub(&s->hub->active, 1);
    free(s->out);
    free(s);
}

/* ---- the handler ---- */

// interval_ms: absent -> the default; an integer below the floor is raised to it; anything else
// but an integer up to INTERVAL_MAX_MS is a 400. Returns 1, or replies and returns 0.
static int read_interval(Req *r, int64_t *out) {
    const char *v = req_query(r, "interval_ms");
    *out = INTERVAL_DEFAULT_MS;
    if (!v) return 1;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < 0 || n > INTERVAL_MAX_MS || (*v < '0' || *v > '9')) {
        reply_problem(r, 400, "bad-request",
                      "interval_ms: must be an integer number of milliseconds, at most %d "
                      "(values below %d are raised to %d)",
                      INTERVAL_MAX_MS, INTERVAL_FLOOR_MS, INTERVAL_FLOOR_MS);
        return 0;
    }
    *out = n < INTERVAL_FLOOR_MS ? INTERVAL_FLOOR_MS : n;
    return 1;
}

// Last-Event-ID: the id of the last event the client saw, or -1 (absent or not an id of ours:
// the stream starts from the beginning, as for a new client).
static int64_t last_event_id(Req *r) {
    const char *v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (!v || *v < '0' || *v > '9' || strlen(v) > 18) return -1;
    char *end;
    long long n = strtoll(v, &end, 10);
    return *end ? -1 : n;
}

void h_job_events(Req *r) {
    struct SseHub *h = r->app->sse;
    int64_t interval;
    if (!read_interval(r, &interval)) return;
    int64_t last = last_event_id(r);
    Store *st = req_store(r);
    if (!st) return;
    StoreJob j;
    MsError err = {0};
    MsStatus rc = store_job_get(st, r->params[0], &j, &err);
    if (rc != MS_OK) {
        reply_status(r, rc, &err); // 404 for an unknown job
        return;
    }
    // a finished job whose done event the client has seen: 204 tells EventSource to stop
    // reconnecting (the HTML standard's rule for 204)
    if (state_final(j.state) && last >= done_id(&j)) {
        store_job_free(&j);
        reply_empty(r, 204);
        return;
    }
    pthread_mutex_lock(&h->mu);
    int closing = h->closing;
    pthread_mutex_unlock(&h->mu);
    if (closing || atomic_load(&r->app->draining)) {
        store_job_free(&j);
        reply_problem(r, 503, "unavailable", "the server is shutting down: reconnect");
        return;
    }
    // a configuration made without server_config_defaults holds zeros: the defaults apply
    const int max_streams = r->app->cfg.max_streams > 0 ? r->app->cfg.max_streams : 64;
    if (atomic_fetch_add(&h->active, 1) >= max_streams) {
        atomic_fetch_sub(&h->active, 1);
        store_job_free(&j);
        snprintf(r->retry_after, sizeof r->retry_after, "5");
        reply_problem(r, 503, "unavailable",
                      "too many event streams open (METASERVE_MAX_STREAMS=%d): retry later",
                      max_streams);
        return;
    }
    Stream *s = calloc(1, sizeof *s);
    if (!s) {
        atomic_fetch_sub(&h->active, 1);
        store_job_free(&j);
        reply_nomem(r);
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    *s = (Stream){.hub = h,
                  .r = r,
                  .conn = r->conn,
                  .fd = ci ? ci->connect_fd : -1,
                  .interval_ms = interval,
                  .heartbeat_ms = r->app->cfg.sse_heartbeat_ms >= INTERVAL_FLOOR_MS
                                      ? r->app->cfg.sse_heartbeat_ms
                                      : 15000,
                  .last_id = last,
                  .last_iter = -1,
                  .state = -1};
    snprintf(s->job, sizeof s->job, "%s", j.id);
    // the first bytes: the reconnection delay, the effective interval, and the job as it is
    char head[96];
    int n = snprintf(head, sizeof head, "retry: %d\n: interval_ms=%lld\n\n", RETRY_MS,
                     (long long)interval);
    out_put(s, head, (size_t)n);
    stream_update(s, &j);
    store_job_free(&j);
    int64_t now = mono_ms();
    s->next_poll_ms = now + interval;
    s->next_hb_ms = now + s->heartbeat_ms;
    struct MHD_Response *resp = s->oom ? NULL
                                       : MHD_create_response_from_callback(
                                             MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        reply_nomem(r);
        return;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    // nginx and other gateways that honour it pass the events on as they come
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    // a stream is the connection's last response: once it ends, nothing keeps the connection
    // (and a drain does not wait for it)
    MHD_add_response_header(resp, "Connection", "close");
    r->response = resp;
    r->status = 200;
}
