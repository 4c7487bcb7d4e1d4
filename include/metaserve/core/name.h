/*
 * The one rule for the names a client gives the service (models, aliases, datasets) and for the
 * request ids it accepts: characters of [A-Za-z0-9._-]. Names also may not start with '.' and
 * have at most NAME_MAX - 1 characters (the store's STORE_NAME_MAX and the config's
 * TRAIN_NAME_MAX are this size).
 */
#ifndef METASERVE_CORE_NAME_H
#define METASERVE_CORE_NAME_H

#include <stddef.h>

#define NAME_MAX_BYTES 128 // bytes of a name, NUL included

/** 1 when c is one of [A-Za-z0-9._-]. */
int name_char(char c);
/** 1 when s holds 1..max-1 characters, each a name_char (s may be NULL: 0). */
int name_chars(const char *s, size_t max);
/** 1 when s is a name: name_chars(s, NAME_MAX_BYTES) and not starting with '.'. */
int name_valid(const char *s);

#endif
