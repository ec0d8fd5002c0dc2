/*
 * kaudit.store._scan: JSON lines of audit events straight to the flat schema's columns.
 *
 * The exact reader (msgspec into kaudit.model.types.Event, then kaudit.store.flatten)
 * costs about 10 microseconds of Python per event. Nearly every line an apiserver
 * writes has one shape: the fields of audit.k8s.io/v1 Event in Go's order, each at
 * most once, no whitespace, no null. This scanner accepts a line only when it has
 * exactly that shape (the grammar below) and builds its row; it hands back every
 * other line for the exact reader. Accepting is the only thing that must be exact:
 * a line the scanner accepts gives the row the exact reader would give, which the
 * tests check line by line; rejecting a line only costs time.
 *
 * Accepted, and only in this order (each "key":value once, separated by commas):
 *
 *   {"kind":"Event","apiVersion":"audit.k8s.io/v1",
 *    "level":S,"auditID":S,"stage":S,"requestURI":S,"verb":S,"user":USER,
 *    ["impersonatedUser":USER,] ["authenticationMetadata":{["impersonationConstraint":S]},]
 *    ["sourceIPs":[S,...],] ["userAgent":S,] ["objectRef":REF,] ["responseStatus":STATUS,]
 *    "requestReceivedTimestamp":S,"stageTimestamp":S[,"annotations":{S:S,...}]}
 *
 *   USER   = {["username":S][,"uid":S][,"groups":[S,...]][,"extra":{S:[S,...],...}]}
 *   REF    = {resource, namespace, name, uid, apiGroup, apiVersion, resourceVersion,
 *             subresource: each an optional "key":S, in that order}
 *   STATUS = {["kind":S][,"apiVersion":S][,"metadata":JSON][,"status":S][,"message":S]
 *             [,"reason":S][,"details":JSON][,"code":I]}
 *
 * S is a JSON string of valid UTF-8 without control characters and without a \u
 * escape of a surrogate; I an integer that fits 32 bits (no sign on zero, no fraction,
 * no exponent); JSON any JSON value (checked strictly, at most 64 deep). Annotation
 * keys have no backslash and are strictly increasing bytewise (as Go writes a map), so
 * none repeats. A line with requestObject or responseObject is not accepted: their
 * raw bytes are kept as they are, and they are what redaction reads.
 *
 * The Python function is scan() at the end of this file; kaudit/store/scan.py wraps it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* --- growable buffers ----------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_grow(Buf *b, size_t extra) {
    size_t need = b->len + extra;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const void *d, size_t n) {
    if (!n) return 0;
    if (b->len + n > b->cap && buf_grow(b, n)) return -1;
    memcpy(b->p + b->len, d, n);
    b->len += n;
    return 0;
}

static inline int buf_i32(Buf *b, int32_t v) { return buf_put(b, &v, 4); }

/* A validity bitmap: bit i set when value i is not null. */
typedef struct {
    Buf bits;
    int64_t n, nulls;
} Valid;

static inline int valid_push(Valid *v, int ok) {
    if ((v->n & 7) == 0) {
        char z = 0;
        if (buf_put(&v->bits, &z, 1)) return -1;
    }
    if (ok)
        v->bits.p[v->n >> 3] |= (char)(1 << (v->n & 7));
    else
        v->nulls++;
    v->n++;
    return 0;
}

/* --- a slice of the line: the raw content of a JSON string ----------------------- */

typedef struct {
    const char *p;
    uint32_t len;
    uint8_t esc; /* has a backslash escape */
} Slice;

typedef struct {
    Slice *v;
    size_t n, cap;
} Slices;

static int slices_push(Slices *s, Slice x) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        Slice *v = realloc(s->v, cap * sizeof(Slice));
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

/* --- the columns ----------------------------------------------------------------- */

enum {
    C_AUDIT_ID,
    C_STAGE,
    C_LEVEL,
    C_VERB,
    C_REQUEST_URI,
    C_USERNAME,
    C_IMPERSONATED_USER,
    C_SOURCE_IP,
    C_USER_AGENT,
    C_API_GROUP,
    C_API_VERSION,
    C_RESOURCE,
    C_SUBRESOURCE,
    C_NAMESPACE,
    C_NAME,
    C_STATUS_REASON,
    C_STATUS_MESSAGE,
    C_DECISION,
    C_AUTHZ_REASON,
    C_RRT,
    C_STS,
    C_EVENT,
    N_STR
};

typedef struct {
    Buf off, data;
    Valid valid;
} StrCol;

typedef struct {
    StrCol str[N_STR];
    Buf groups_off, ips_off, ann_off; /* list / map offsets */
    StrCol groups, ips, ann_keys, ann_values;
    Buf code;
    Valid code_valid;
    Buf rejected;
    int64_t n;
} Out;

/* What one line holds, found by the parser (pointers into the line). */
typedef struct {
    Slice s[N_STR];
    uint8_t has[N_STR];
    int has_imp, has_ref, has_status, has_code;
    int32_t code;
    Slices groups, ips, ann_k, ann_v;
} Line;

/* --- strings ---------------------------------------------------------------------- */

typedef struct {
    const char *p, *end;
} Cur;

static inline int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* The length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static inline int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && p[1] > 0x9F) return 0; /* a surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && p[1] > 0x8F) return 0; /* beyond U+10FFFF */
        return 4;
    }
    return 0;
}

/* A JSON string at the cursor: its raw content in *out. 0 if it is not one we accept. */
static int parse_string(Cur *c, Slice *out) {
    const unsigned char *p = (const unsigned char *)c->p;
    const unsigned char *end = (const unsigned char *)c->end;
    if (p >= end || *p != '"') return 0;
    p++;
    const unsigned char *start = p;
    uint8_t esc = 0;
    for (;;) {
        /* the common run: printable ASCII that needs nothing (16 bytes at a time) */
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                      space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            /* signed: bytes >= 0x80 are negative, so "< 0x20" catches them too */
            __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                        _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(stop);
            if (mask) {
                p += __builtin_ctz((unsigned)mask);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
        if (p >= end) return 0;
        unsigned char ch = *p;
        if (ch == '"') break;
        if (ch < 0x20) return 0;
        if (ch == '\\') {
            esc = 1;
            if (end - p < 2) return 0;
            switch (p[1]) {
                case '"':
                case '\\':
                case '/':
                case 'b':
                case 'f':
                case 'n':
                case 'r':
                case 't':
                    p += 2;
                    break;
                case 'u': {
                    if (end - p < 6) return 0;
                    int a = hexval((char)p[2]), b = hexval((char)p[3]), d = hexval((char)p[4]),
                        e = hexval((char)p[5]);
                    if (a < 0 || b < 0 || d < 0 || e < 0) return 0;
                    int cp = (a << 12) | (b << 8) | (d << 4) | e;
                    if (cp >= 0xD800 && cp <= 0xDFFF) return 0; /* surrogates: not here */
                    p += 6;
                    break;
                }
                default:
                    return 0;
            }
            continue;
        }
        int n = utf8_len(p, end);
        if (!n) return 0;
        p += n;
    }
    out->p = (const char *)start;
    out->len = (uint32_t)(p - start);
    out->esc = esc;
    c->p = (const char *)(p + 1);
    return 1;
}

/* Append the decoded value of a string slice to buf. */
static int put_unescaped(Buf *b, Slice s) {
    if (!s.esc) return buf_put(b, s.p, s.len);
    if (buf_grow(b, s.len)) return -1; /* decoding never makes a string longer */
    const char *p = s.p, *end = s.p + s.len;
    char *o = b->p + b->len;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        if (e == 'u') {
            int cp = (hexval(p[2]) << 12) | (hexval(p[3]) << 8) | (hexval(p[4]) << 4) |
                     hexval(p[5]);
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            p += 6;
            continue;
        }
        switch (e) {
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            default: *o++ = e; break; /* " \ / */
        }
        p += 2;
    }
    b->len = (size_t)(o - b->p);
    return 0;
}

/* --- the rest of JSON --------------------------------------------------------------- */

static inline int eat(Cur *c, char ch) {
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static inline int eat_lit(Cur *c, const char *lit, size_t n) {
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, lit, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

#define EAT_LIT(c, s) eat_lit((c), (s), sizeof(s) - 1)

static int skip_number(Cur *c) {
    const char *p = c->p, *end = c->end;
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    c->p = p;
    return 1;
}

/* Any JSON value, checked strictly (no whitespace: Go writes none). */
static int skip_value(Cur *c, int depth) {
    if (depth > 64 || c->p >= c->end) return 0;
    Slice s;
    switch (*c->p) {
        case '"':
            return parse_string(c, &s);
        case '{':
            c->p++;
            if (eat(c, '}')) return 1;
            do {
                if (!parse_string(c, &s) || !eat(c, ':') || !skip_value(c, depth + 1)) return 0;
            } while (eat(c, ','));
            return eat(c, '}');
        case '[':
            c->p++;
            if (eat(c, ']')) return 1;
            do {
                if (!skip_value(c, depth + 1)) return 0;
            } while (eat(c, ','));
            return eat(c, ']');
        case 't':
            return EAT_LIT(c, "true");
        case 'f':
            return EAT_LIT(c, "false");
        case 'n':
            return EAT_LIT(c, "null");
        default:
            return skip_number(c);
    }
}

/* An integer that fits in 32 bits: -?(0|[1-9][0-9]*), no "-0", no fraction, no exponent. */
static int parse_i32(Cur *c, int32_t *out) {
    const char *p = c->p, *end = c->end;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9') return 0;
    if (*p == '0' && (neg || (p + 1 < end && p[1] >= '0' && p[1] <= '9'))) return 0;
    int64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (++digits > 10) return 0;
        p++;
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return 0;
    if (neg) v = -v;
    if (v < INT32_MIN || v > INT32_MAX) return 0;
    *out = (int32_t)v;
    c->p = p;
    return 1;
}

/* A list of strings, each appended to out (when out is not NULL). */
static int parse_str_list(Cur *c, Slices *out) {
    if (!eat(c, '[')) return 0;
    if (eat(c, ']')) return 1;
    do {
        Slice s;
        if (!parse_string(c, &s)) return 0;
        if (out && slices_push(out, s)) return -1;
    } while (eat(c, ','));
    return eat(c, ']');
}

/* A key of a known object: its raw bytes (a key with an escape matches no field). */
static inline int parse_key(Cur *c, Slice *k) {
    return parse_string(c, k) && !k->esc && eat(c, ':');
}

static inline int key_is(Slice k, const char *name, size_t n) {
    return k.len == n && memcmp(k.p, name, n) == 0;
}

#define KEY_IS(k, s) key_is((k), (s), sizeof(s) - 1)

typedef struct {
    const char *name;
    size_t len;
} Name;

#define F(s) {s, sizeof(s) - 1}
#define COUNT(a) ((int)(sizeof(a) / sizeof(*(a))))

/* The fields of an object, in the order given, each at most once, all optional. The
 * value of field i is read by the caller (read_field); it returns 1, 0 or -1. */
typedef int (*FieldReader)(Cur *c, int field, Line *ln);

static int parse_object(Cur *c, const Name *fields, int nfields, FieldReader read_field,
                        Line *ln) {
    if (!eat(c, '{')) return 0;
    if (eat(c, '}')) return 1;
    int next = 0;
    do {
        Slice k;
        if (!parse_key(c, &k)) return 0;
        int i = next;
        while (i < nfields && !key_is(k, fields[i].name, fields[i].len)) i++;
        if (i == nfields) return 0; /* unknown, repeated or out of order */
        int r = read_field(c, i, ln);
        if (r <= 0) return r;
        next = i + 1;
    } while (eat(c, ','));
    return eat(c, '}');
}

static const Name USER_FIELDS[] = {F("username"), F("uid"), F("groups"), F("extra")};
static const Name AUTHN_FIELDS[] = {F("impersonationConstraint")};
static const Name REF_FIELDS[] = {F("resource"),   F("namespace"),       F("name"),
                                  F("uid"),        F("apiGroup"),        F("apiVersion"),
                                  F("resourceVersion"), F("subresource")};
static const Name STATUS_FIELDS[] = {F("kind"),    F("apiVersion"), F("metadata"),
                                     F("status"),  F("message"),    F("reason"),
                                     F("details"), F("code")};
static const Name TOP_FIELDS[] = {
    F("level"),         F("auditID"),        F("stage"),
    F("requestURI"),    F("verb"),           F("user"),
    F("impersonatedUser"), F("authenticationMetadata"), F("sourceIPs"),
    F("userAgent"),     F("objectRef"),      F("responseStatus"),
    F("requestReceivedTimestamp"), F("stageTimestamp"), F("annotations")};

/* --- the objects ------------------------------------------------------------------------- */

static int extra_value(Cur *c) {
    /* {S:[S,...],...}: keys and values are not columns, so repeats do not matter */
    if (!eat(c, '{')) return 0;
    if (eat(c, '}')) return 1;
    do {
        Slice k;
        if (!parse_string(c, &k) || !eat(c, ':')) return 0;
        int r = parse_str_list(c, NULL);
        if (r <= 0) return r;
    } while (eat(c, ','));
    return eat(c, '}');
}

static int read_user(Cur *c, int field, Line *ln) {
    Slice s;
    switch (field) {
        case 0: /* username */
            if (!parse_string(c, &s)) return 0;
            ln->s[C_USERNAME] = s;
            ln->has[C_USERNAME] = 1;
            return 1;
        case 1: /* uid */
            return parse_string(c, &s);
        case 2: /* groups */
            return parse_str_list(c, &ln->groups);
        default: /* extra */
            return extra_value(c);
    }
}

static int read_imp(Cur *c, int field, Line *ln) {
    Slice s;
    switch (field) {
        case 0:
            if (!parse_string(c, &s)) return 0;
            ln->s[C_IMPERSONATED_USER] = s;
            ln->has[C_IMPERSONATED_USER] = 1;
            return 1;
        case 1:
            return parse_string(c, &s);
        case 2:
            return parse_str_list(c, NULL);
        default:
            return extra_value(c);
    }
}

static int parse_user(Cur *c, Line *ln, int impersonated) {
    return parse_object(c, USER_FIELDS, COUNT(USER_FIELDS), impersonated ? read_imp : read_user,
                        ln);
}

static int read_authn(Cur *c, int field, Line *ln) {
    (void)field;
    (void)ln;
    Slice s;
    return parse_string(c, &s);
}

static int read_ref(Cur *c, int field, Line *ln) {
    static const int col[] = {C_RESOURCE, C_NAMESPACE, C_NAME,        -1,
                              C_API_GROUP, C_API_VERSION, -1, C_SUBRESOURCE};
    Slice s;
    if (!parse_string(c, &s)) return 0;
    if (col[field] >= 0) {
        ln->s[col[field]] = s;
        ln->has[col[field]] = 1;
    }
    return 1;
}

static int read_status(Cur *c, int field, Line *ln) {
    Slice s;
    switch (field) {
        case 0: /* kind */
        case 1: /* apiVersion */
        case 3: /* status */
            return parse_string(c, &s);
        case 2: /* metadata */
        case 6: /* details */
            return skip_value(c, 0);
        case 4: /* message */
            if (!parse_string(c, &s)) return 0;
            ln->s[C_STATUS_MESSAGE] = s;
            ln->has[C_STATUS_MESSAGE] = 1;
            return 1;
        case 5: /* reason */
            if (!parse_string(c, &s)) return 0;
            ln->s[C_STATUS_REASON] = s;
            ln->has[C_STATUS_REASON] = 1;
            return 1;
        default: /* code */
            if (!parse_i32(c, &ln->code)) return 0;
            ln->has_code = 1;
            return 1;
    }
}

static int parse_annotations(Cur *c, Line *ln) {
    if (!eat(c, '{')) return 0;
    if (eat(c, '}')) return 1;
    Slice prev = {NULL, 0, 0};
    do {
        Slice k, v;
        if (!parse_string(c, &k) || k.esc || !eat(c, ':') || !parse_string(c, &v)) return 0;
        if (prev.p) {
            /* strictly increasing: no key twice */
            uint32_t m = prev.len < k.len ? prev.len : k.len;
            int cmp = memcmp(prev.p, k.p, m);
            if (cmp > 0 || (cmp == 0 && prev.len >= k.len)) return 0;
        }
        prev = k;
        if (slices_push(&ln->ann_k, k) || slices_push(&ln->ann_v, v)) return -1;
    } while (eat(c, ','));
    return eat(c, '}');
}

/* Go's MicroTime, as the apiserver writes it: YYYY-MM-DDTHH:MM:SS.ffffffZ, year >= 1.
 * Any other form is left to the exact reader, whose parsing of odd forms the rows
 * must match (kaudit.store.flatten). */
static int micro_time(Slice s) {
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (s.esc || s.len != sizeof(shape) - 1) return 0;
    for (uint32_t i = 0; i < s.len; i++) {
        char ch = s.p[i];
        if (shape[i] == 'd' ? (ch < '0' || ch > '9') : ch != shape[i]) return 0;
    }
    return memcmp(s.p, "0000", 4) != 0;
}

static int read_top(Cur *c, int field, Line *ln) {
    Slice s;
    static const int plain[] = {C_LEVEL, C_AUDIT_ID, C_STAGE, C_REQUEST_URI, C_VERB};
    if (field < 5) {
        if (!parse_string(c, &s)) return 0;
        ln->s[plain[field]] = s;
        ln->has[plain[field]] = 1;
        return 1;
    }
    switch (field) {
        case 5:
            return parse_user(c, ln, 0);
        case 6:
            ln->has_imp = 1;
            return parse_user(c, ln, 1);
        case 7:
            return parse_object(c, AUTHN_FIELDS, COUNT(AUTHN_FIELDS), read_authn, ln);
        case 8:
            return parse_str_list(c, &ln->ips);
        case 9:
            if (!parse_string(c, &s)) return 0;
            ln->s[C_USER_AGENT] = s;
            ln->has[C_USER_AGENT] = 1;
            return 1;
        case 10:
            ln->has_ref = 1;
            return parse_object(c, REF_FIELDS, COUNT(REF_FIELDS), read_ref, ln);
        case 11:
            ln->has_status = 1;
            return parse_object(c, STATUS_FIELDS, COUNT(STATUS_FIELDS), read_status, ln);
        case 12:
            if (!parse_string(c, &s) || !micro_time(s)) return 0;
            ln->s[C_RRT] = s;
            ln->has[C_RRT] = 1;
            return 1;
        case 13:
            if (!parse_string(c, &s) || !micro_time(s)) return 0;
            ln->s[C_STS] = s;
            ln->has[C_STS] = 1;
            return 1;
        default:
            return parse_annotations(c, ln);
    }
}

/* A longer line is left to the exact reader (the columns' 32-bit offsets stay safe). */
#define MAX_LINE (64u << 20)
/* What one call reads at most: every column then stays under 2 GiB. */
#define MAX_BUFFER ((Py_ssize_t)1 << 30)

static const char PREFIX[] = "{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",";

/* Parse one line into ln: 1 accepted, 0 not, -1 out of memory. */
static int parse_line(const char *p, size_t len, Line *ln) {
    const int nfields = COUNT(TOP_FIELDS);
    memset(ln->has, 0, sizeof(ln->has));
    ln->has_imp = ln->has_ref = ln->has_status = ln->has_code = 0;
    ln->groups.n = ln->ips.n = ln->ann_k.n = ln->ann_v.n = 0;
    Cur c = {p, p + len};
    if (len > MAX_LINE) return 0;
    if (!eat_lit(&c, PREFIX, sizeof(PREFIX) - 1)) return 0;
    /* The line reader takes a line with "EventList" near its start for a webhook body
     * (kaudit.sources.importer): so must this one. */
    static const char word[] = "\"EventList\"";
    size_t head = len < 200 ? len : 200;
    for (size_t i = 0; i + sizeof(word) - 1 <= head; i++)
        if (p[i] == '"' && memcmp(p + i, word, sizeof(word) - 1) == 0) return 0;
    int next = 0, user = 0;
    do {
        Slice k;
        if (!parse_key(&c, &k)) return 0;
        int i = next;
        while (i < nfields && !key_is(k, TOP_FIELDS[i].name, TOP_FIELDS[i].len)) i++;
        if (i == nfields) return 0;
        int r = read_top(&c, i, ln);
        if (r <= 0) return r;
        if (i == 5) user = 1;
        next = i + 1;
    } while (eat(&c, ','));
    if (!eat(&c, '}') || c.p != c.end) return 0;
    /* Go always writes these */
    if (!ln->has[C_LEVEL] || !ln->has[C_AUDIT_ID] || !ln->has[C_STAGE] ||
        !ln->has[C_REQUEST_URI] || !ln->has[C_VERB] || !user || !ln->has[C_RRT] ||
        !ln->has[C_STS])
        return 0;
    return 1;
}

/* --- building the columns ----------------------------------------------------------------- */

static inline int str_value(StrCol *col, Slice s) {
    if (put_unescaped(&col->data, s)) return -1;
    if (col->data.len > INT32_MAX) return -1;
    if (buf_i32(&col->off, (int32_t)col->data.len)) return -1;
    return valid_push(&col->valid, 1);
}

static inline int str_null(StrCol *col) {
    if (buf_i32(&col->off, (int32_t)col->data.len)) return -1;
    return valid_push(&col->valid, 0);
}

static inline int str_raw(StrCol *col, const char *p, size_t n) {
    if (buf_put(&col->data, p, n)) return -1;
    if (col->data.len > INT32_MAX) return -1;
    if (buf_i32(&col->off, (int32_t)col->data.len)) return -1;
    return valid_push(&col->valid, 1);
}

static const Slice EMPTY = {"", 0, 0};

static inline int slice_eq(Slice s, const char *lit, size_t n) {
    return !s.esc && s.len == n && memcmp(s.p, lit, n) == 0;
}

/* Append the row of an accepted line (the rules of kaudit.store.flatten). */
static int emit(Out *o, const Line *ln, const char *line, size_t len) {
    StrCol *S = o->str;
    /* never null: absent is "" (Go writes them all; kept for the grammar's sake) */
    static const int plain[] = {C_AUDIT_ID, C_STAGE, C_LEVEL, C_VERB, C_REQUEST_URI, C_USERNAME};
    for (size_t i = 0; i < sizeof(plain) / sizeof(*plain); i++) {
        int k = plain[i];
        if (str_value(&S[k], ln->has[k] ? ln->s[k] : EMPTY)) return -1;
    }
    /* null when absent; "" stays "" */
    static const int opt[] = {C_IMPERSONATED_USER, C_USER_AGENT, C_API_VERSION, C_RESOURCE,
                              C_SUBRESOURCE, C_STATUS_REASON, C_STATUS_MESSAGE, C_RRT, C_STS};
    for (size_t i = 0; i < sizeof(opt) / sizeof(*opt); i++) {
        int k = opt[i];
        if ((ln->has[k] ? str_value(&S[k], ln->s[k]) : str_null(&S[k]))) return -1;
    }
    /* null when absent or "" */
    static const int nonempty[] = {C_NAMESPACE, C_NAME};
    for (size_t i = 0; i < 2; i++) {
        int k = nonempty[i];
        int r = (ln->has[k] && ln->s[k].len) ? str_value(&S[k], ln->s[k]) : str_null(&S[k]);
        if (r) return -1;
    }
    /* api_group: objectRef.apiGroup; absent: "" for a named resource, else null */
    if (ln->has[C_API_GROUP]) {
        if (str_value(&S[C_API_GROUP], ln->s[C_API_GROUP])) return -1;
    } else if (ln->has[C_RESOURCE] && ln->s[C_RESOURCE].len) {
        if (str_value(&S[C_API_GROUP], EMPTY)) return -1;
    } else if (str_null(&S[C_API_GROUP])) {
        return -1;
    }
    /* source_ip / source_ips */
    if (ln->ips.n ? str_value(&S[C_SOURCE_IP], ln->ips.v[0]) : str_null(&S[C_SOURCE_IP]))
        return -1;
    for (size_t i = 0; i < ln->ips.n; i++)
        if (str_value(&o->ips, ln->ips.v[i])) return -1;
    if (buf_i32(&o->ips_off, (int32_t)o->ips.valid.n)) return -1;
    for (size_t i = 0; i < ln->groups.n; i++)
        if (str_value(&o->groups, ln->groups.v[i])) return -1;
    if (buf_i32(&o->groups_off, (int32_t)o->groups.valid.n)) return -1;
    /* annotations, and the two read from them */
    Slice decision = {NULL, 0, 0}, reason = {NULL, 0, 0};
    for (size_t i = 0; i < ln->ann_k.n; i++) {
        Slice k = ln->ann_k.v[i];
        if (slice_eq(k, "authorization.k8s.io/decision", 29)) decision = ln->ann_v.v[i];
        if (slice_eq(k, "authorization.k8s.io/reason", 27)) reason = ln->ann_v.v[i];
        if (str_value(&o->ann_keys, k) || str_value(&o->ann_values, ln->ann_v.v[i])) return -1;
    }
    if (buf_i32(&o->ann_off, (int32_t)o->ann_keys.valid.n)) return -1;
    if (decision.p ? str_value(&S[C_DECISION], decision) : str_null(&S[C_DECISION])) return -1;
    if (reason.p ? str_value(&S[C_AUTHZ_REASON], reason) : str_null(&S[C_AUTHZ_REASON]))
        return -1;
    /* code */
    if (buf_i32(&o->code, ln->has_code ? ln->code : 0)) return -1;
    if (valid_push(&o->code_valid, ln->has_code)) return -1;
    /* the original line */
    if (str_raw(&S[C_EVENT], line, len)) return -1;
    o->n++;
    return 0;
}

/* --- Python ------------------------------------------------------------------------------ */

static void strcol_free(StrCol *c) {
    free(c->off.p);
    free(c->data.p);
    free(c->valid.bits.p);
}

static void out_free(Out *o) {
    for (int i = 0; i < N_STR; i++) strcol_free(&o->str[i]);
    strcol_free(&o->groups);
    strcol_free(&o->ips);
    strcol_free(&o->ann_keys);
    strcol_free(&o->ann_values);
    free(o->groups_off.p);
    free(o->ips_off.p);
    free(o->ann_off.p);
    free(o->code.p);
    free(o->code_valid.bits.p);
    free(o->rejected.p);
}

static int strcol_init(StrCol *c) { return buf_i32(&c->off, 0); }

static PyObject *bytes_of(const Buf *b) {
    return PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->len);
}

/* (validity or None, offsets, data) */
static PyObject *strcol_tuple(const StrCol *c) {
    PyObject *valid;
    if (c->valid.nulls) {
        valid = bytes_of(&c->valid.bits);
        if (!valid) return NULL;
    } else {
        valid = Py_NewRef(Py_None);
    }
    PyObject *off = bytes_of(&c->off), *data = bytes_of(&c->data);
    if (!off || !data) {
        Py_DECREF(valid);
        Py_XDECREF(off);
        Py_XDECREF(data);
        return NULL;
    }
    return Py_BuildValue("(NNN)", valid, off, data);
}

/* --- SHA-256 with the x86 SHA extensions (the dedup key's fingerprint) ---------------- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_blocks(uint32_t state[8],
                                                                       const uint8_t *data,
                                                                       size_t blocks) {
    const __m128i MASK = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i TMP = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i STATE1 = _mm_loadu_si128((const __m128i *)&state[4]);
    TMP = _mm_shuffle_epi32(TMP, 0xB1);          /* CDAB */
    STATE1 = _mm_shuffle_epi32(STATE1, 0x1B);    /* EFGH */
    __m128i STATE0 = _mm_alignr_epi8(TMP, STATE1, 8); /* ABEF */
    STATE1 = _mm_blend_epi16(STATE1, TMP, 0xF0); /* CDGH */
    for (; blocks; blocks--, data += 64) {
        __m128i ABEF = STATE0, CDGH = STATE1, W[4], MSG;
        for (int j = 0; j < 4; j++)
            W[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * j)), MASK);
        for (int i = 0; i < 16; i++) {
            MSG = _mm_add_epi32(W[i & 3], _mm_loadu_si128((const __m128i *)&K256[4 * i]));
            STATE1 = _mm_sha256rnds2_epu32(STATE1, STATE0, MSG);
            if (i >= 3 && i <= 14) {
                TMP = _mm_alignr_epi8(W[i & 3], W[(i + 3) & 3], 4);
                W[(i + 1) & 3] = _mm_add_epi32(W[(i + 1) & 3], TMP);
                W[(i + 1) & 3] = _mm_sha256msg2_epu32(W[(i + 1) & 3], W[i & 3]);
            }
            MSG = _mm_shuffle_epi32(MSG, 0x0E);
            STATE0 = _mm_sha256rnds2_epu32(STATE0, STATE1, MSG);
            if (i >= 1 && i <= 12) W[(i + 3) & 3] = _mm_sha256msg1_epu32(W[(i + 3) & 3], W[i & 3]);
        }
        STATE0 = _mm_add_epi32(STATE0, ABEF);
        STATE1 = _mm_add_epi32(STATE1, CDGH);
    }
    TMP = _mm_shuffle_epi32(STATE0, 0x1B);       /* FEBA */
    STATE1 = _mm_shuffle_epi32(STATE1, 0xB1);    /* DCHG */
    STATE0 = _mm_blend_epi16(TMP, STATE1, 0xF0); /* DCBA */
    STATE1 = _mm_alignr_epi8(STATE1, TMP, 8);    /* ABEF */
    _mm_storeu_si128((__m128i *)&state[0], STATE0);
    _mm_storeu_si128((__m128i *)&state[4], STATE1);
}

/* The SHA-256 of data[0:len] (FIPS 180-4 padding around sha256_blocks). */
static void sha256(const uint8_t *data, size_t len, uint8_t out[32]) {
    uint32_t st[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t full = len / 64;
    sha256_blocks(st, data, full);
    uint8_t tail[128];
    size_t rest = len - full * 64;
    memcpy(tail, data + full * 64, rest);
    tail[rest] = 0x80;
    size_t padded = rest + 1 + 8 <= 64 ? 64 : 128;
    memset(tail + rest + 1, 0, padded - rest - 1);
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[padded - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha256_blocks(st, tail, padded / 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(st[i] >> 24);
        out[4 * i + 1] = (uint8_t)(st[i] >> 16);
        out[4 * i + 2] = (uint8_t)(st[i] >> 8);
        out[4 * i + 3] = (uint8_t)st[i];
    }
}

static int has_sha;

/* CPUID leaf 7: EBX bit 29 is SHA. */
static void detect_sha(void) {
    unsigned a, b, c, d;
    /* leaf 1: ECX bit 9 SSSE3, bit 19 SSE4.1 (what the code uses besides SHA) */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 9) & 1) || !((c >> 19) & 1)) return;
    has_sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 29) & 1);
}

static int sha_ni(void) { return has_sha; }
#else
#define HAVE_SHA_NI 0
static void detect_sha(void) {}
static int sha_ni(void) { return 0; }
#endif

/* The dedup key of an accepted row: auditID, stage and the first 128 bits of the
 * SHA-256 of the event, in hex, joined by U+001F (kaudit.store.dedup.keys_of). */
static int emit_key(StrCol *keys, const StrCol *audit, const StrCol *stage, const char *line,
                    size_t len) {
#if HAVE_SHA_NI
    static const char hex[] = "0123456789abcdef";
    int64_t i = audit->valid.n - 1;
    const int32_t *ao = (const int32_t *)audit->off.p, *so = (const int32_t *)stage->off.p;
    Slice a = {audit->data.p ? audit->data.p + ao[i] : "", (uint32_t)(ao[i + 1] - ao[i]), 0};
    Slice s = {stage->data.p ? stage->data.p + so[i] : "", (uint32_t)(so[i + 1] - so[i]), 0};
    uint8_t digest[32];
    sha256((const uint8_t *)line, len, digest);
    char fp[34];
    fp[0] = 0x1f;
    for (int j = 0; j < 16; j++) {
        fp[1 + 2 * j] = hex[digest[j] >> 4];
        fp[2 + 2 * j] = hex[digest[j] & 15];
    }
    if (buf_put(&keys->data, a.p, a.len) || buf_put(&keys->data, "\x1f", 1) ||
        buf_put(&keys->data, s.p, s.len) || buf_put(&keys->data, fp, 33))
        return -1;
    if (keys->data.len > INT32_MAX) return -1;
    if (buf_i32(&keys->off, (int32_t)keys->data.len)) return -1;
    return valid_push(&keys->valid, 1);
#else
    (void)keys; (void)audit; (void)stage; (void)line; (void)len;
    return 0;
#endif
}

/* scan(buf, pos, final) -> (n, lines, rejected, end, columns, keys)
 *
 * Reads the lines of buf from pos: each ends with "\n", and with final also the last
 * one without it. n is the number of rows (accepted lines), lines the number of lines
 * read, rejected the (index, start, end) of every other line as int64 triples (end
 * before the "\n"), end where the unread rest starts, columns the Arrow buffers (see
 * kaudit/store/scan.py) and keys the dedup keys of the rows as a string column, or
 * None where the CPU has no SHA extensions (the caller computes them then). */
static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data; /* bytes: immutable while the GIL is released (args holds it) */
    Py_ssize_t pos;
    int final;
    if (!PyArg_ParseTuple(args, "Snp", &data, &pos, &final)) return NULL;
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "scan(): pos is outside the buffer");
        return NULL;
    }
    if (size - pos > MAX_BUFFER) {
        PyErr_SetString(PyExc_ValueError, "scan(): at most 1 GiB at a time");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(data);
    size_t total = (size_t)size;
    int with_keys = sha_ni();
    Out o;
    memset(&o, 0, sizeof(o));
    StrCol keys;
    memset(&keys, 0, sizeof(keys));
    Line ln;
    memset(&ln, 0, sizeof(ln));
    int failed = 0;
    for (int i = 0; i < N_STR; i++) failed |= strcol_init(&o.str[i]);
    failed |= strcol_init(&o.groups) | strcol_init(&o.ips) | strcol_init(&o.ann_keys) |
              strcol_init(&o.ann_values) | strcol_init(&keys);
    failed |= buf_i32(&o.groups_off, 0) | buf_i32(&o.ips_off, 0) | buf_i32(&o.ann_off, 0);
    int64_t lines = 0;
    size_t at = (size_t)pos;
    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        while (at < total && !failed) {
            const char *start = buf + at;
            const char *nl = memchr(start, '\n', total - at);
            if (!nl && !final) break;
            size_t raw = nl ? (size_t)(nl - start) : total - at;
            size_t len = raw;
            while (len && start[len - 1] == '\r') len--;
            int r = parse_line(start, len, &ln);
            if (r < 0) {
                failed = 1;
            } else if (r == 0) {
                int64_t span[3] = {lines, (int64_t)at, (int64_t)(at + raw)};
                failed = buf_put(&o.rejected, span, sizeof(span)) != 0;
            } else if (emit(&o, &ln, start, len) ||
                       (with_keys &&
                        emit_key(&keys, &o.str[C_AUDIT_ID], &o.str[C_STAGE], start, len))) {
                failed = 1;
            }
            lines++;
            at += raw + (nl ? 1 : 0);
        }
        Py_END_ALLOW_THREADS
    }
    free(ln.groups.v);
    free(ln.ips.v);
    free(ln.ann_k.v);
    free(ln.ann_v.v);
    PyObject *result = NULL;
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *cols = PyTuple_New(N_STR + 8);
    if (!cols) goto done;
    for (int i = 0; i < N_STR; i++) {
        PyObject *t = strcol_tuple(&o.str[i]);
        if (!t) goto fail_cols;
        PyTuple_SET_ITEM(cols, i, t);
    }
    for (int i = 0; i < 7; i++) {
        PyObject *x;
        switch (i) {
            case 0: x = bytes_of(&o.groups_off); break;
            case 1: x = strcol_tuple(&o.groups); break;
            case 2: x = bytes_of(&o.ips_off); break;
            case 3: x = strcol_tuple(&o.ips); break;
            case 4: x = bytes_of(&o.ann_off); break;
            case 5: x = strcol_tuple(&o.ann_keys); break;
            default: x = strcol_tuple(&o.ann_values); break;
        }
        if (!x) goto fail_cols;
        PyTuple_SET_ITEM(cols, N_STR + i, x);
    }
    PyObject *code_valid =
        o.code_valid.nulls ? bytes_of(&o.code_valid.bits) : Py_NewRef(Py_None);
    PyObject *code = bytes_of(&o.code);
    if (!code_valid || !code) {
        Py_XDECREF(code_valid);
        Py_XDECREF(code);
        goto fail_cols;
    }
    PyObject *code_t = Py_BuildValue("(NN)", code_valid, code);
    if (!code_t) goto fail_cols;
    PyTuple_SET_ITEM(cols, N_STR + 7, code_t);
    PyObject *key_col = with_keys ? strcol_tuple(&keys) : Py_NewRef(Py_None);
    if (!key_col) goto fail_cols;
    result = Py_BuildValue("(LLNnNN)", (long long)o.n, (long long)lines, bytes_of(&o.rejected),
                           (Py_ssize_t)at, cols, key_col);
    goto done;
fail_cols:
    Py_DECREF(cols);
done:
    out_free(&o);
    strcol_free(&keys);
    return result;
}

static PyObject *hashes(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyBool_FromLong(sha_ni());
}

static PyMethodDef methods[] = {
    {"hashes", hashes, METH_NOARGS,
     "hashes() -> whether scan() computes the dedup keys (the CPU has the SHA extensions)."},
    {"scan", scan, METH_VARARGS,
     "scan(buf, pos, final) -> (n, lines, rejected, end, columns, keys): see kaudit.store.scan."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kaudit.store._scan",
    .m_doc = "JSON lines of audit events to the flat schema's columns (see kaudit.store.scan).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scan(void) {
    detect_sha();
    return PyModule_Create(&module);
}
