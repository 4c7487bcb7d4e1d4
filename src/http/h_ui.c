/*
 * The web dashboard: GET / (302 to /ui/), GET /ui (308 to /ui/), GET /ui/ (index.html) and
 * GET /ui/{asset} (one file of ui/), served from the table cmake/embed_ui.cmake built into the
 * binary (metaserve/http/ui_assets.h). The routes are open: the page itself asks for an API key
 * when the API answers 401, and uses only the public v1 routes, like any client.
 *
 * Every asset carries a strong ETag (its SHA-256) and `Cache-Control: no-cache`, so a browser
 * keeps its copy and revalidates it (If-None-Match -> 304 without a body), and a new build's
 * files are seen at once. The Content-Security-Policy allows the page's own origin only: no
 * inline script or style, nothing from elsewhere, no framing.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "metaserve/http/ui_assets.h"

static const char UI_CSP[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                             "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                             "form-action 'none'; frame-ancestors 'none'";

// 1 when the If-None-Match value (a list of entity tags, or "*") names etag; a weak tag W/"x"
// matches "x" (RFC 9110 §13.1.2 compares If-None-Match weakly).
static int etag_listed(const char *list, const char *etag) {
    size_t n = strlen(etag);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*') return 1;
        if (strncmp(p, "W/", 2) == 0) p += 2;
        if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' ')) return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

static void serve(Req *r, const UiAsset *a) {
    const char *inm =
        r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match") : NULL;
    if (inm && etag_listed(inm, a->etag))
        reply_empty(r, 304);
    else
        reply_raw(r, 200, a->content_type, (const char *)a->data, a->len);
    if (r->status != 200 && r->status != 304) return; // a 503: no copy to cache
    reply_header(r, "ETag", a->etag);
    reply_header(r, "Cache-Control", "no-cache");
    reply_header(r, "Content-Security-Policy", UI_CSP);
    reply_header(r, "X-Content-Type-Options", "nosniff");
    reply_header(r, "Referrer-Policy", "no-referrer");
}

static const UiAsset *find(const char *name) {
    for (size_t i = 0; i < UI_ASSETS_COUNT; i++)
        if (strcmp(UI_ASSETS[i].name, name) == 0) return &UI_ASSETS[i];
    return NULL;
}

static void redirect(Req *r, int status) {
    reply_empty(r, status);
    snprintf(r->location, sizeof r->location, "/ui/");
}

void h_root(Req *r) {
    redirect(r, 302);
}

void h_ui_slash(Req *r) {
    redirect(r, 308);
}

void h_ui_index(Req *r) {
    const UiAsset *a = find("index.html");
    if (!a) {
        reply_problem(r, 404, "not-found", "this build has no dashboard");
        return;
    }
    serve(r, a);
}

void h_ui_asset(Req *r) {
    const UiAsset *a = find(r->params[0]);
    if (!a) {
        reply_problem(r, 404, "not-found", "asset: no such dashboard file");
        return;
    }
    serve(r, a);
}
