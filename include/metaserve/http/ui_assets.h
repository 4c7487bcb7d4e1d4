/*
 * The web dashboard built into the binary: every file of ui/, byte for byte, served under /ui/
 * by src/http/h_ui.c. The table is generated at build time by cmake/embed_ui.cmake (again
 * whenever a file of ui/ changes) into the ms_ui library; nothing is read from disk or fetched
 * at run time.
 *
 * Usage:
 *     const UiAsset *a = ui_asset_find("app.js");
 *     if (a) reply_raw(r, 200, a->content_type, (const char *)a->data, a->len);
 */
#ifndef METASERVE_HTTP_UI_ASSETS_H
#define METASERVE_HTTP_UI_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *name;          // "app.js": the file name under ui/, one path segment
    const char *content_type;  // "text/javascript; charset=utf-8"
    const unsigned char *data; // len bytes, then a NUL; static, read-only
    size_t len;
    const char *etag; // "\"<20 hex digits of the SHA-256>\"", quotes included
} UiAsset;

/** The assets, sorted by name (UI_ASSETS_COUNT entries; static, never freed). */
extern const UiAsset UI_ASSETS[];
extern const size_t UI_ASSETS_COUNT;

#endif
