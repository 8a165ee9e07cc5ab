/*
 * compat.h: the one place for platform and compiler differences.
 *
 * Every C file of the project includes this first (through util.h).
 */
#ifndef KV_COMPAT_H
#define KV_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define KV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define KV_NORETURN __attribute__((noreturn))
#define KV_UNUSED __attribute__((unused))
#define KV_LIKELY(x) __builtin_expect(!!(x), 1)
#define KV_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define KV_PRINTF(f, a)
#define KV_NORETURN
#define KV_UNUSED
#define KV_LIKELY(x) (x)
#define KV_UNLIKELY(x) (x)
#endif

#define KV_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KV_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
