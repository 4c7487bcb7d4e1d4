/*
 * Private to http/: the request context every handler receives, the application state shared by
 * all request threads, the route table, and the reply helpers. Handlers are thin: the generic
 * checks (route, method, auth, size, content type) and, for a json_body route, the body parse
 * (r->json) have run before them; they read the parsed body with the body_* readers, call
 * store/, serving/ or jobs/, and reply.
 *
 * Errors are RFC 9457 problem+json documents: {"type", "title", "status", "detail", "instance",
 * "request_id"}; `type` is a stable URI from the table in problem.c, `detail` names the offending
 * field. A handler reports through reply_problem / reply_status and returns.
 */
#ifndef METASERVE_HTTP_INTERNAL_H
#define METASERVE_HTTP_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "metaserve/codec/json.h"
#include "metaserve/core/name.h"
#include "metaserve/core/status.h"
#include "metaserve/http/server.h"
#include "metaserve/jobs/jobs.h"
#include "metaserve/jobs/sweeper.h"
#include "metaserve/serving/serving.h"
#include "metaserve/store/store.h"
#include "metaserve/tasks/dataset.h"

typedef enum { ROLE_NONE = 0, ROLE_CLIENT = 1, ROLE_ADMIN = 2 } Role;

struct Metrics;
struct KeySet;
struct KeyHolder;
struct SseHub;
struct MHD_Response;

/** State shared by every request thread; owned by server.c. */
typedef struct App {
    ServerConfig cfg;    // copy; strings borrowed from the caller for the server's life
                         // (its keys wiped: they live, as digests, in the key set)
    Serving *serving;    // model-version cache and adaptation
    JobPool *jobs;       // training workers (NULL with no workers or a read-only database)
    Sweeper *sweeper;    // expiry and WAL truncation (NULL only with a read-only database)
    atomic_int draining; // 1 after SIGTERM: readiness false, new jobs refused
    struct Metrics *metrics;
    struct KeyHolder *keys; // the current API key set (keys.h), swapped by server_keys_reload
    const char *openapi;    // the contract served at /openapi.yaml
    size_t openapi_len;
    int64_t started_ms;
    int listen_loopback; // the listen socket is bound to a loopback address (protected mode off)
    // from cfg: how every connection opens the database
    StoreOptions store_opts;
    struct SseHub *sse; // job event streams (h_events.c)
} App;

#define REQ_MAX_PARAMS 4
#define REQ_ID_MAX     64

#define REQ_MAX_HEADERS 6 // response headers a handler may add with reply_header

/** One request, from the first byte to the reply. */
typedef struct Req {
    App *app;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;     // the path as received (still percent-encoded), without the query
    char id[REQ_ID_MAX]; // X-Request-ID (accepted when well-formed, else made)
    char *body;          // NUL-terminated copy of the body (may be empty)
    size_t body_len;
    size_t body_cap;
    size_t body_expect; // the declared Content-Length (0: none), allocated at once
    int binary;         // a JSON_OR_BINARY route got a safetensors body (application/octet-stream)
    int too_large;      // the body passed max_body_bytes
    int oom;            // the body could not be buffered (out of memory)
    cJSON *json;        // the parsed body of a json_body route (dispatch); freed with the request
    const char *params[REQ_MAX_PARAMS]; // path parameters, in pattern order, each decoded once
                                        // (point into pbuf)
    char pbuf[1024];
    int n_params;
    Role role;                 // the caller's role after authentication
    struct KeySet *keys;       // the API keys current when the headers arrived (a reference)
    const struct Route *route; // matched route (NULL for 404/405)
    Store *store;              // the calling thread's connection (lazily opened)
    // reply
    int status;
    char *reply; // malloc'd body
    size_t reply_len;
    const char *content_type;
    char location[256];        // Location header when non-empty
    char allow[64];            // Allow header when non-empty (405)
    char retry_after[16];      // Retry-After when non-empty (429, 503)
    char problem[3072];        // a problem document's text (reply_problem; never allocates)
    char infer_header_len[24]; // Inference-Header-Content-Length of a binary /v2 reply ("": none)
    char filename[192];        // a download's name: Content-Disposition: attachment (200)
    struct MHD_Response *response; // a response the handler made itself (an event stream),
                                   // sent in place of the reply buffer (send_reply destroys it)
    int64_t t0_ns;                 // arrival, for the access log and latency metrics

    const char *headers[REQ_MAX_HEADERS][2]; // more response headers (reply_header): name, value
    int n_headers;
} Req;

typedef void (*Handler)(Req *r);

#define JSON_OR_BINARY 2 // Route.json_body: application/json or application/octet-stream
#define BODY_RAW       3 // Route.json_body: any body, read by the handler itself (/v2 infer)

/** 1 when the request's Content-Type is application/octet-stream or
 *  application/vnd.safetensors (server.c). */
int req_is_binary(Req *r);

typedef struct Route {
    const char *method;  // "GET", "POST", "PUT", "DELETE"
    const char *pattern; // "/v1/models/{ref}/adapt": {x} matches one non-empty segment
    Role role;           // least role allowed (ROLE_NONE: open)
    int json_body;       // 1: the body must be application/json (parsed into r->json);
                         // JSON_OR_BINARY: or a safetensors body (application/octet-stream),
                         // r->binary set; BODY_RAW: the handler reads the body (/v2 infer)
    Handler handler;
    const char *name; // stable label for metrics and logs (the pattern)
    // the query parameters the route reads, comma-separated ("page_size,page_token"); NULL: none.
    // Any other parameter, or a known one with an empty value, is refused (400) before the handler
    const char *query;
} Route;

/** The route table (routes.c), terminated by a zeroed entry. */
extern const Route ROUTES[];
/** Number of routes in ROUTES. */
size_t routes_count(void);

/* ---- replies (reply.c) ---- */

/** Replies with a JSON document (takes ownership of doc, deletes it). */
void reply_json(Req *r, int status, cJSON *doc);
/**
 * reply_json for the reply to a write that is committed already, which must not be reported as
 * failed: when doc is NULL (building it ran out of memory) or cannot be printed, the same
 * document is printed by fmt into reserve, a buffer of cap bytes the handler allocated before
 * committing, without allocating. Takes ownership of doc and reserve (either may be NULL).
 */
void reply_json_committed(Req *r, int status, cJSON *doc, char *reserve, size_t cap,
                          const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/** reply_json when doc is non-NULL and ok (every addition succeeded), else deletes doc and
 *  replies 503 "out of memory while rendering the response". */
void reply_built(Req *r, int status, cJSON *doc, int ok);
/** Replies 503: out of memory building the response. */
void reply_nomem(Req *r);
/** Replies with JSON text of len bytes in text (malloc'd; takes ownership); len 0 (the text did
 *  not fit its buffer) replies 503 and frees text. */
void reply_text(Req *r, int status, char *text, size_t len);
/** Replies with raw bytes (copied) and a content type. */
void reply_raw(Req *r, int status, const char *content_type, const char *data, size_t len);
/** Replies 204 No Content. */
void reply_empty(Req *r, int status);
/** Adds a response header to the reply (after REQ_MAX_HEADERS, ignored). name and value are
 *  borrowed until the reply is sent: static strings. */
void reply_header(Req *r, const char *name, const char *value);
/** Replies with a problem document; type_slug is the stable tail of the type URI (problem.c). */
void reply_problem(Req *r, int status, const char *type_slug, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** Replies with the problem of problem.c's table for st and err's detail; err's message
 *  (or the status name) is the problem's detail. err may be NULL. */
void reply_status(Req *r, MsStatus st, const MsError *err);
/** The HTTP status and problem slug for a status and its detail (one table, problem.c). */
void problem_for_status(MsStatus st, MsDetail detail, int *http_status, const char **slug,
                        const char **title);
/** Title for a slug. */
const char *problem_title(const char *slug);

/* ---- request helpers (reply.c) ---- */

/** Parses the body as JSON; on a syntax error replies 400 with the byte offset and returns
 *  NULL. The caller deletes the document. dispatch calls it for every json_body route and
 *  hands the handler the result in r->json. */
cJSON *req_json(Req *r);
/** 1 when the body is syntactically valid JSON; else replies 400 with the byte offset of the
 *  first offending byte (422 when a string holds a \u0000 escape) and returns 0. */
int req_json_syntax_ok(Req *r);
/** The value of a query parameter, or NULL. */
const char *req_query(Req *r, const char *name);
#define PAGE_SIZE_DEFAULT 50   // list entries per page when page_size is absent
#define PAGE_SIZE_MAX     1000 // largest page_size accepted
/** page_size (1..max, default def) and page_token ("" when absent); replies 422 and returns
 *  0 on a bad value. */
int req_page(Req *r, int def, int max, int *size, const char **token);
/** A paginated listing of one kind of stored row (GET /v1/datasets, GET /v1/jobs). */
typedef struct {
    const char *key;       // the array's key in the reply ("datasets")
    const char *bad_token; // the 422 detail when the store refuses page_token (MS_ERR_INVALID)
    size_t row_size;       // bytes of one row
    // the store's list call: *rows (malloc'd, *n rows of row_size) the caller frees
    MsStatus (*list)(Store *st, const char *token, int size, void **rows, int *n, int *more,
                     MsError *err);
    cJSON *(*render)(JsonBuild *b, const void *row); // one row's document
    const char *(*id)(const void *row);              // its id, the next page's token
    void (*free_row)(void *row);                     // releases what one row holds
} ListKind;
/** Reads page_size / page_token, lists one page with k->list and replies 200 {key: [...],
 *  "next_page_token": id of the last row, or null on the last page}; 422 for a bad page
 *  argument, the status's problem for a store error, 503 out of memory. */
void reply_list(Req *r, const ListKind *k);
/** The thread's store connection (opened on first use); replies 503 and returns NULL when the
 *  database cannot be opened. */
Store *req_store(Req *r);
/** req_store for a handler that can also answer without the database (metrics, predictions
 *  from cached versions): NULL when no connection can be had, with no reply made. */
Store *req_store_if_up(Req *r);

/* ---- request-body readers (json.c): codec/json.h's readers, replying on failure ---- */

/** json_fields (known keys only, each once), or replies 422 naming the field and returns 0. */
int body_fields(Req *r, const cJSON *obj, const char *path, const char *const *allowed);
/** Reads a finite number in [lo, hi] ((lo, hi] when lo_open); absent or null -> *out unchanged
 *  and returns 1 when optional, replies 422 when required. */
int body_number(Req *r, const cJSON *obj, const char *key, double lo, int lo_open, double hi,
                int required, double *out);
/** Reads an integer in [lo, hi]; absent as for body_number. */
int body_int(Req *r, const cJSON *obj, const char *key, long long lo, long long hi, int required,
             long long *out);
/** Reads a string of 1..max-1 bytes into out; absent as for body_number. */
int body_string(Req *r, const cJSON *obj, const char *key, size_t max, int required, char *out);
/** json_read_floats into a new float array (caller frees), or replies 422 naming "path[i][j]" /
 *  413 over max_rows / 503 and returns NULL. */
float *body_matrix(Req *r, const cJSON *arr, const char *path, int cols, int max_rows, int *rows,
                   int *cols_out);

/** 1 when s[0..n) is one valid JSON value (RFC 8259: UTF-8, nesting up to 1000, no lone UTF-16
 *  surrogate escape, which cJSON refuses); else 0 with *off the offset of the first offending
 *  byte (n when the text ends too early). */
int json_syntax(const char *s, size_t n, size_t *off);
/** The byte offset of the first \u0000 escape inside a string of the valid JSON text s[0..n), or
 *  n when there is none (cJSON would silently end the string there). */
size_t json_nul_escape(const char *s, size_t n);
/** The value of hexadecimal digit c (0-9, a-f, A-F), or -1 (JSON \u escapes, URL %HH). */
int hex_digit(char c);
/** Bytes (1..4) of the UTF-8 sequence that starts s (n >= 1 bytes left), or 0 when none does:
 *  overlong forms, UTF-16 surrogates, code points past U+10FFFF, stray continuation bytes and
 *  sequences cut short are not UTF-8 (RFC 3629). */
size_t utf8_seq_len(const char *s, size_t n);

/* ---- protected mode (server.c) ---- */

struct sockaddr;
/** 1 when a is an IPv4 127.0.0.0/8, IPv6 ::1 or IPv4-mapped 127.0.0.0/8 address. */
int addr_is_loopback(const struct sockaddr *a);
/** 1 when a request without API keys configured is refused (403): not METASERVE_OPEN, the listen
 *  address is not loopback, the client is not loopback, and the route (its name) is not /livez
 *  or /readyz. */
int protected_refuses(int open, int listen_loopback, int client_loopback, const char *route);

/* ---- configuration (config.c) ---- */

struct addrinfo;
/**
 * Resolves a METASERVE_LISTEN value for a TCP socket on port: an IPv4 literal ("0.0.0.0"), an
 * IPv6 literal ("::", "::1", also in brackets: "[::1]") or a host name of [A-Za-z0-9.-]
 * (getaddrinfo: "localhost"); nothing else reaches the resolver. *res: the addresses, in the
 * resolver's order (caller frees with freeaddrinfo). MS_ERR_INVALID naming who otherwise.
 */
MsStatus listen_resolve(const char *listen, int port, struct addrinfo **res, const char *who,
                        MsError *err);

/** Parses a JSON text the service stored itself (a config, metrics, a dataset's meta). NULL
 *  with *oom = 1 when the text is valid JSON that could not be parsed (out of memory); NULL
 *  with *oom = 0 when text is NULL or not JSON (a damaged row: the caller's fallback applies). */
cJSON *json_parse_stored(const char *text, int *oom);
/** The name of the validation metric stored before it was named by what it measures: rows of
 *  older versions hold "val_loss" with "val_metric" ("accuracy" or "mse") beside it. Gives
 *  "val_accuracy" for "accuracy", else "val_mse". */
const char *metrics_val_key(const char *val_metric);
/** Reads a stored metrics object of either form as the current one: {"val_loss": v,
 *  "val_metric": "accuracy"} becomes {"val_accuracy": v} (and "mse": "val_mse"). 0 when out of
 *  memory (m is then unchanged or has both names). */
int metrics_compat(cJSON *m);

/** ms since the epoch as RFC 3339 UTC with milliseconds ("2026-11-28T22:48:26.123Z"); 0 when
 *  not representable. */
int json_time_text(char out[32], int64_t ms);
/** That text as a JSON string, or null for ms <= 0 ("not yet"). */
cJSON *json_time(int64_t ms);
/** Adds json_time(ms) to o under key; 0 on allocation failure. */
int json_add_time(cJSON *o, const char *key, int64_t ms);

/* ---- request bodies, readable without a store or a model (the fuzz targets call these) ---- */

/** The fields of an adapt body read before the model is looked up (h_adapt.c): only known
 *  fields, each once, optional "steps", "lr" and "ttl_s" in range, "support" present (*sup
 *  borrowed from body). Replies 422 and returns 0 otherwise. */
int adapt_read_body(Req *r, const cJSON *body, const AdaptLimits *lim, int *steps, double *lr,
                    long long *ttl_s, const cJSON **sup);
/** The same for a model's predict body; *sup is NULL when there is no support set. */
int predict_read_body(Req *r, const cJSON *body, const AdaptLimits *lim, int *steps, double *lr,
                      const cJSON **sup);
/** Reads a support set {"x": n x D, "y": n x target columns} for spec into new arrays (caller
 *  frees *x and *y, also on failure). Replies 422 / 413 and returns 0 on error. */
int adapt_read_support(Req *r, const cJSON *sup, const MlpSpec *spec, const AdaptLimits *lim,
                       float **x, float **y, int *n);
/** Reads body's "x" (rows x D for spec) and checks the prediction limits. Caller frees; NULL
 *  after replying 422 / 413. */
float *predict_read_x(Req *r, const cJSON *body, const MlpSpec *spec, int *rows);
/** Validates and packs a dataset upload (h_datasets.c): takes ownership of body (deleted here).
 *  name receives the dataset name (STORE_NAME_MAX bytes). Caller frees *p with
 *  dataset_packed_free, also on failure. Replies 422 / 413 and returns 0 on error. */
int dataset_upload_read(Req *r, cJSON *body, char *name, DatasetKind *kind, DatasetPacked *p);

/* ---- metrics (metrics.c) ---- */

/** Records one finished request. */
void metrics_observe(struct Metrics *m, const char *route, const char *method, int status,
                     double seconds);
/** Renders the Prometheus text exposition into a malloc'd string. */
char *metrics_render(App *app, Store *st, size_t *len);
struct Metrics *metrics_create(void);
void metrics_destroy(struct Metrics *m);
/** Counters kept by handlers. */
void metrics_count(struct Metrics *m, const char *name, int64_t delta);

/* ---- handlers (h_*.c) ---- */
void h_livez(Req *r);
void h_readyz(Req *r);
void h_metrics(Req *r);
void h_openapi(Req *r);
void h_dataset_create(Req *r);
void h_dataset_list(Req *r);
void h_dataset_get(Req *r);
void h_dataset_delete(Req *r);
void h_job_create(Req *r);
void h_job_list(Req *r);
void h_job_get(Req *r);
void h_job_cancel(Req *r);
void h_job_metrics(Req *r);
void h_model_list(Req *r);
void h_model_get(Req *r);
void h_model_delete(Req *r);
void h_version_get(Req *r);
void h_version_delete(Req *r);
void h_alias_put(Req *r);
void h_alias_delete(Req *r);
void h_model_weights(Req *r);
void h_model_adapt(Req *r);
void h_model_predict(Req *r);
void h_adaptation_get(Req *r);
void h_adaptation_predict(Req *r);
void h_adaptation_delete(Req *r);
// ONNX export (h_onnx.c)
void h_model_onnx(Req *r);
void h_adaptation_onnx(Req *r);

/* ---- the Open Inference Protocol, /v2 (h_oip.c) ---- */
void h_oip_live(Req *r);
void h_oip_ready(Req *r);
void h_oip_server(Req *r);
void h_oip_model(Req *r);
void h_oip_model_ready(Req *r);
void h_oip_infer(Req *r);
/** 1 when rows rows fit the prediction limits for spec (work of one forward pass, values in one
 *  reply), else replies 413 naming `what` ("x") and returns 0 (h_adapt.c). */
int predict_limits_ok(Req *r, const MlpSpec *spec, int rows, const char *what);
/** Reads adaptation id into *a and the version it was made from (its architecture) into *m;
 *  a stored parameter count that does not fit that architecture is a corrupt row. Replies and
 *  returns 0 on failure; the caller frees *a and releases *m (NULL until got) either way
 *  (h_adapt.c). */
int adaptation_load(Req *r, Store *st, const char *id, StoreAdaptation *a, ServingModel **m);
/** 1 when path (as received) is under /v2: its problem documents also carry the protocol's
 *  "error" member (reply.c). */
int oip_path(const char *path);
// the web dashboard (h_ui.c)
void h_root(Req *r);
void h_ui_slash(Req *r);
void h_ui_index(Req *r);
void h_ui_asset(Req *r);

/* ---- job event streams (h_events.c) ---- */

/** GET /v1/jobs/{id}/events: the job's progress as Server-Sent Events. */
void h_job_events(Req *r);
/** Starts the thread that wakes suspended event streams (at their next poll or heartbeat, or
 *  when their client hangs up). Caller destroys with sse_hub_destroy. */
MsStatus sse_hub_create(struct SseHub **out, MsError *err);
/** Ends every open event stream (each closes cleanly after what it has queued) and refuses new
 *  ones (503); returns at once. Accepts NULL. */
void sse_hub_close(struct SseHub *h);
/** Event streams open now (the metaserve_event_streams gauge); 0 for NULL. */
int sse_hub_active(struct SseHub *h);
/** Stops the thread and frees the hub; call after the daemon stopped. Accepts NULL. */
void sse_hub_destroy(struct SseHub *h);

/* ---- safetensors weights (h_weights.c) ---- */
void h_adaptation_weights(Req *r);
/** Reads a safetensors dataset upload from r->body (h_datasets_st.c): name and kind from
 *  __metadata__, p packed as dataset_pack_* would (p->x / p->y NULL where the data stays in the
 *  body): *x and *y point at the stored x and y (into r->body, or *owned_x / *owned_y, which the
 *  caller frees). 1, or 0 after replying 4xx. */
int dataset_upload_st(Req *r, char *name, DatasetKind *kind, DatasetPacked *p, float **x, float **y,
                      float **owned_x, float **owned_y);
void h_model_import(Req *r);
/** 1 when the request asks for safetensors (?format=safetensors, or Accept naming
 *  application/octet-stream), 0 for JSON, -1 after replying 422 to a bad format parameter. */
int weights_want_safetensors(Req *r);
/** Replies with the safetensors export of the version m (its record read from st). */
void weights_model_safetensors(Req *r, Store *st, const ServingModel *m);

#endif
