/*
 * Names and ids (core/name.h): the character rule every layer checks client names against, in one
 * place. Pure functions over NUL-terminated strings; O(length).
 */
#include "metaserve/core/name.h"

#include <string.h>

int name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int name_chars(const char *s, size_t max) {
    size_t n = s ? strnlen(s, max) : 0;
    if (n == 0 || n >= max) return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i])) return 0;
    return 1;
}

int name_valid(const char *s) {
    return name_chars(s, NAME_MAX_BYTES) && s[0] != '.';
}
