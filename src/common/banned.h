/*
 * banned.h: functions that are too easy to misuse. Including this after the
 * system headers turns any use into a compile error. Use snprintf, kv_buf,
 * strtol/strtod with end checks (kv_parse_* in util.h) instead.
 */
#ifndef KV_BANNED_H
#define KV_BANNED_H

#define KV_BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) KV_BANNED(strcpy)
#undef strcat
#define strcat(x, y) KV_BANNED(strcat)
#undef sprintf
#define sprintf(...) KV_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) KV_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) KV_BANNED(strtok)
#undef atoi
#define atoi(x) KV_BANNED(atoi)
#undef atol
#define atol(x) KV_BANNED(atol)
#undef atof
#define atof(x) KV_BANNED(atof)
#undef gets
#define gets(x) KV_BANNED(gets)

#endif
