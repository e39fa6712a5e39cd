/* The summary of a kernel TRACE log (`nodetrace log --summary`), compiled.
 *
 * This is the same reading and grouping as parsers/trace_kernel_log.py (KernelLogReader's fast
 * path) and tracelog/group_legacy.py (LegacyGrouper), written in C for the one case that
 * dominates large logs: whole, well-formed records, one per line, written by the kernel. It
 * keeps to that case strictly. Whenever the input holds anything the Python reader would treat
 * in one of its slower ways (a wrapped, glued or damaged record, a record without a packet
 * dump, a line that could continue a record, non-ASCII text in a record, a time stamp this code
 * does not read itself), `finish()` raises `Unsupported` with the reason and the caller runs the
 * Python reader instead, from the start. The answer is therefore always the Python code's
 * answer; tests compare the two byte for byte.
 *
 * What it returns is what the summary needs and no more: line counts, hits per TRACE prefix,
 * and each distinct pass *shape* (family, prefix sequence, device-field sequence) with how many
 * passes had it and how many of those were a packet seen again. The Python side concludes each
 * shape once with the same code as every other view (tracelog/explain.py), so outcomes and
 * wording exist in one place only.
 *
 * The grouping mirrors LegacyGrouper._feed step by step, including its batching (records are
 * fed in batches of 512; closed passes leave the queue and old ones are evicted at batch ends),
 * because the NAT lookback counts queued passes and so depends on it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 512
#define EVICT_EVERY 1024
#define GLUE_CHECKS 200
#define NAT_LOOKBACK 256
#define LAST_DNAT_RANK 2
#define REWRITES_MAX 4096

static PyObject *Unsupported;

/* ---------------------------------------------------------------- hashing and maps */

/* Four independent lanes of 8 bytes: the multiplications of one lane overlap the others'. */
static uint64_t hash_bytes(const char *s, size_t n) {
    const uint64_t K1 = 0xff51afd7ed558ccdull, K2 = 0xc4ceb9fe1a85ec53ull;
    uint64_t a = 0x9E3779B97F4A7C15ull ^ (uint64_t)n, b = K1, c = K2, d = ~(uint64_t)n;
    while (n >= 32) {
        uint64_t w[4];
        memcpy(w, s, 32);
        a = (a ^ w[0]) * K1;
        b = (b ^ w[1]) * K2;
        c = (c ^ w[2]) * K1;
        d = (d ^ w[3]) * K2;
        a ^= a >> 29, b ^= b >> 31, c ^= c >> 27, d ^= d >> 33;
        s += 32;
        n -= 32;
    }
    uint64_t h = a ^ (b * 3) ^ (c * 5) ^ (d * 7);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * K1;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * K2;
    h ^= h >> 29;
    return h;
}

typedef struct {
    uint64_t hash;
    char *key; /* owned copy; NULL: empty; TOMB: deleted */
    size_t len;
    void *val;
} Slot;

static char TOMB_MARK;
#define TOMB (&TOMB_MARK)

typedef struct {
    Slot *slots;
    size_t cap, used, tombs;
} Map;

static int map_init(Map *m, size_t cap) {
    m->slots = calloc(cap, sizeof(Slot));
    m->cap = cap;
    m->used = m->tombs = 0;
    return m->slots ? 0 : -1;
}

static void map_free(Map *m) {
    if (!m->slots)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != TOMB)
            free(m->slots[i].key);
    free(m->slots);
    m->slots = NULL;
}

static Slot *map_find(Map *m, const char *k, size_t n, uint64_t h) {
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    for (;;) {
        Slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->key != TOMB && s->hash == h && s->len == n && memcmp(s->key, k, n) == 0)
            return s;
        i = (i + 1) & mask;
    }
}

static void *map_get(Map *m, const char *k, size_t n) {
    Slot *s = map_find(m, k, n, hash_bytes(k, n));
    return s ? s->val : NULL;
}

static int map_grow(Map *m) {
    Map bigger;
    size_t cap = m->cap;
    if ((m->used + 1) * 2 > cap)
        cap *= 2;
    if (map_init(&bigger, cap) < 0)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        Slot *s = &m->slots[i];
        if (s->key && s->key != TOMB) {
            size_t j = (size_t)s->hash & (cap - 1);
            while (bigger.slots[j].key)
                j = (j + 1) & (cap - 1);
            bigger.slots[j] = *s;
            bigger.used++;
        }
    }
    free(m->slots);
    *m = bigger;
    return 0;
}

/* Set k -> v (the key is copied on insertion; an existing key keeps its place). */
static Slot *map_put(Map *m, const char *k, size_t n, void *v) {
    uint64_t h = hash_bytes(k, n);
    Slot *s = map_find(m, k, n, h);
    if (s) {
        s->val = v;
        return s;
    }
    if ((m->used + m->tombs + 1) * 10 > m->cap * 7 && map_grow(m) < 0)
        return NULL;
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->slots[i].key && m->slots[i].key != TOMB)
        i = (i + 1) & mask;
    s = &m->slots[i];
    if (s->key == TOMB)
        m->tombs--;
    s->key = malloc(n ? n : 1);
    if (!s->key)
        return NULL;
    memcpy(s->key, k, n);
    s->len = n;
    s->hash = h;
    s->val = v;
    m->used++;
    return s;
}

static void map_del_slot(Map *m, Slot *s) {
    free(s->key);
    s->key = TOMB;
    s->val = NULL;
    m->used--;
    m->tombs++;
}

static void map_del(Map *m, const char *k, size_t n) {
    Slot *s = map_find(m, k, n, hash_bytes(k, n));
    if (s)
        map_del_slot(m, s);
}

/* ---------------------------------------------------------------- growing buffers */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = malloc(n ? n : 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* ---------------------------------------------------------------- prefixes */

enum { H_NONE = -1, H_PREROUTING, H_INPUT, H_FORWARD, H_OUTPUT, H_POSTROUTING };
static const char *HOOK_NAMES[] = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"};
static const int HOOK_RANK[] = {0, 1, 1, 0, 2};
static const char *TABLE_ORDER[5][6] = {
    {"raw", "mangle", "nat", NULL},
    {"mangle", "filter", "security", "nat", NULL},
    {"mangle", "filter", "security", NULL},
    {"raw", "mangle", "nat", "filter", "security", NULL},
    {"mangle", "nat", NULL},
};

typedef struct {
    int id;
    int hook;
    int rank;
    int is_nat;
    long long number;
    long long count;
} Prefix;

/* The hook a built-in chain hangs off: its name in upper or lower case (tracelog/order.py). */
static int hook_of_chain(const char *c, size_t n) {
    for (int h = 0; h < 5; h++) {
        const char *name = HOOK_NAMES[h];
        if (strlen(name) != n)
            continue;
        int upper = 1, lower = 1, same = 1;
        for (size_t i = 0; i < n; i++) {
            char ch = c[i];
            if (ch != name[i])
                upper = 0;
            if (ch != name[i] + ('a' - 'A'))
                lower = 0;
            if (ch != name[i] && ch != name[i] + ('a' - 'A'))
                same = 0;
        }
        if (same && (upper || lower))
            return h;
    }
    return H_NONE;
}

static int table_rank(int hook, const char *t, size_t n) {
    for (int i = 0; TABLE_ORDER[hook][i]; i++)
        if (strlen(TABLE_ORDER[hook][i]) == n && memcmp(TABLE_ORDER[hook][i], t, n) == 0)
            return i;
    return 9;
}

/* parse_prefix: ``table:chain:(rule|return|policy):number`` as a whole (no spaces in it). */
static int parse_prefix(const char *s, size_t n, Prefix *out) {
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return -1;
    size_t tlen = (size_t)(colon - s);
    size_t last = n;
    while (last > 0 && s[last - 1] != ':')
        last--;
    if (last == 0 || last == n || n - last > 18)
        return -1;
    long long number = 0;
    for (size_t i = last; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        number = number * 10 + (s[i] - '0');
    }
    /* the kind ends at last-1 and starts after a colon */
    static const char *KINDS[] = {"rule", "return", "policy"};
    size_t kind_end = last - 1, kind_start = 0;
    int found = 0;
    for (int k = 0; k < 3 && !found; k++) {
        size_t kl = strlen(KINDS[k]);
        if (kind_end >= kl + 1 && memcmp(s + kind_end - kl, KINDS[k], kl) == 0 &&
            s[kind_end - kl - 1] == ':') {
            kind_start = kind_end - kl;
            found = 1;
        }
    }
    if (!found)
        return -1;
    size_t chain_start = tlen + 1, chain_end = kind_start - 1;
    if (chain_end <= chain_start)
        return -1;
    int hook = hook_of_chain(s + chain_start, chain_end - chain_start);
    out->hook = hook;
    out->rank = hook == H_NONE ? -1 : HOOK_RANK[hook] * 10 + table_rank(hook, s, tlen);
    out->is_nat = tlen == 3 && memcmp(s, "nat", 3) == 0;
    out->number = number;
    return 0;
}

/* ---------------------------------------------------------------- passes */

typedef struct Pass {
    char *key;
    size_t keylen;
    long long start;
    int family; /* 4 or 6 */
    int32_t *pre, *dev;
    size_t n, cap;
    int occurrence;
    int hook, rank, is_nat;
    long long last_builtin;
    double time;
    int has_time;
    int closed;
    char *norm;
    size_t normlen;
    char *loose;
    size_t looselen;
    char *natfree;
    size_t natfreelen;
    struct Pass *prev, *next; /* the queue, in order of start */
} Pass;

typedef struct Seen {
    int count;
    struct Seen *prev, *next;
    Slot *slot;
    char *key;
    size_t len;
} Seen;

typedef struct Rewrite {
    char *key;
    size_t len;
    struct Rewrite *next;
} Rewrite;

typedef struct {
    PyObject_HEAD
    double gap;
    long long window;
    PyObject *envelope_time; /* the Python reader's envelope_time, for stamps not read here */
    /* reading */
    Buf carry;
    int cr_pending; /* the last chunk ended with CR: a LF first in the next one belongs to it */
    long long lineno;
    long long skipped, not_text, first_not_text, parsed;
    int pending; /* the previous line was a record: the next may continue it */
    const char *bail;
    char bail_buf[160];
    Map prefixes;
    PyObject *prefix_names; /* list, by id */
    Map devs;
    PyObject *devs_names; /* list, by id */
    PyObject *glue_lines;  /* the first GLUE_CHECKS records' lines */
    /* grouping */
    long long index, evicted;
    Map open, by_norm, by_loose, seen, rewrites_set;
    Seen *seen_head, *seen_tail;
    long long seen_len;
    Rewrite *rw_head, *rw_tail;
    long long rw_len;
    Pass *qhead, *qtail;
    long long batch_fill;
    /* shapes */
    Map shapes;
    PyObject *shape_list; /* [family, prefix ids, devs ids, passes, again] in first emission order */
    Buf shape_key;
} Summarizer;

static void set_bail(Summarizer *S, const char *why, long long line) {
    if (S->bail)
        return;
    snprintf(S->bail_buf, sizeof S->bail_buf, "line %lld: %s", line, why);
    S->bail = S->bail_buf;
}

static void free_pass(Pass *p) {
    free(p->key);
    free(p->pre);
    free(p->dev);
    free(p->norm);
    free(p->loose);
    free(p->natfree);
    free(p);
}

static void q_append(Summarizer *S, Pass *p) {
    p->prev = S->qtail;
    p->next = NULL;
    if (S->qtail)
        S->qtail->next = p;
    else
        S->qhead = p;
    S->qtail = p;
}

static Pass *q_popleft(Summarizer *S) {
    Pass *p = S->qhead;
    if (!p)
        return NULL;
    S->qhead = p->next;
    if (S->qhead)
        S->qhead->prev = NULL;
    else
        S->qtail = NULL;
    return p;
}

/* ---------------------------------------------------------------- the dump's keys */

static size_t digits(const char *s, size_t i, size_t n) {
    size_t j = i;
    while (j < n && s[j] >= '0' && s[j] <= '9')
        j++;
    return j;
}

static size_t nonspace(const char *s, size_t i, size_t n) {
    const char *sp = i < n ? memchr(s + i, ' ', n - i) : NULL;
    return sp ? (size_t)(sp - s) : n;
}

/* The first "TRACE:" in s[0:n], or NULL. */
static const char *find_trace(const char *s, size_t n) {
    const char *end = s + n;
    while (n >= 6) {
        const char *t = memchr(s, 'T', n - 5);
        if (!t)
            return NULL;
        if (memcmp(t + 1, "RACE:", 5) == 0)
            return t;
        s = t + 1;
        n = (size_t)(end - s);
    }
    return NULL;
}

static int starts(const char *s, size_t i, size_t n, const char *lit) {
    size_t l = strlen(lit);
    return n - i >= l && i <= n && memcmp(s + i, lit, l) == 0;
}

/* The end of ``key`` followed by one or more digits at s[k], or 0. */
static size_t digits_field(const char *s, size_t k, size_t n, const char *key) {
    size_t l = strlen(key);
    if (!starts(s, k, n, key))
        return 0;
    size_t q = digits(s, k + l, n);
    return q > k + l ? q : 0;
}

/* " MARK=0x" and one or more hex digits at s[k]: its end, or 0. */
static size_t mark_field(const char *s, size_t k, size_t n) {
    if (!starts(s, k, n, " MARK=0x"))
        return 0;
    size_t q = k + 8;
    while (q < n && ((s[q] >= '0' && s[q] <= '9') || (s[q] >= 'a' && s[q] <= 'f') ||
                     (s[q] >= 'A' && s[q] <= 'F')))
        q++;
    return q > k + 8 ? q : 0;
}

/* " UID=\d+ GID=\d+" at s[k]: its end, or 0. */
static size_t uid_gid_field(const char *s, size_t k, size_t n) {
    size_t q = digits_field(s, k, n, " UID=");
    return q ? digits_field(s, q, n, " GID=") : 0;
}

/* _norm: the dump without the TTL/HOPLIMIT field, MARK= and UID= GID= (group_legacy._norm). */
static int norm_of(const char *s, size_t n, Buf *out) {
    out->n = 0;
    const char *i = NULL;
    size_t skip_len = 0;
    const char *ttl = memmem(s, n, " TTL=", 5);
    i = ttl ? ttl : memmem(s, n, " HOPLIMIT=", 10);
    if (i) {
        size_t at = (size_t)(i - s);
        const char *j = at + 5 <= n ? memchr(s + at + 5, ' ', n - (at + 5)) : NULL;
        skip_len = j ? (size_t)(j - i) : n - at;
        if (buf_add(out, s, at) < 0 || buf_add(out, s + at + skip_len, n - at - skip_len) < 0)
            return -1;
    } else if (buf_add(out, s, n) < 0) {
        return -1;
    }
    if (!memmem(out->p, out->n, "MARK=", 5) && !memmem(out->p, out->n, "UID=", 4))
        return 0;
    /* re.sub(" MARK=0x[0-9a-fA-F]+| UID=\d+ GID=\d+", "") */
    Buf tmp = {0};
    size_t k = 0, m = out->n;
    const char *t = out->p;
    while (k < m) {
        size_t e = mark_field(t, k, m);
        if (!e)
            e = uid_gid_field(t, k, m);
        if (e) {
            k = e;
        } else {
            if (buf_add(&tmp, t + k, 1) < 0) {
                free(tmp.p);
                return -1;
            }
            k++;
        }
    }
    free(out->p);
    *out = tmp;
    if (!out->p && buf_reserve(out, 1) < 0)
        return -1;
    return 0;
}

/* _loose_key: SRC, LEN, the IP ID or flow label, PROTO and SPT, or -1 when it does not match:
 * "SRC=(\S+) DST=\S+ LEN=(\d+) .*?(?:ID=(\d+)|FLOWLBL=(\d+))(?:.*? PROTO=(\S+)(?: SPT=(\d+))?)?"
 */
static int loose_of(const char *s, size_t n, Buf *out) {
    out->n = 0;
    if (!starts(s, 0, n, "SRC="))
        return -1;
    size_t a = 4, b = nonspace(s, a, n);
    if (b == a || !starts(s, b, n, " DST="))
        return -1;
    size_t c = b + 5, d = nonspace(s, c, n);
    if (d == c || !starts(s, d, n, " LEN="))
        return -1;
    size_t e = d + 5, f = digits(s, e, n);
    if (f == e || f >= n || s[f] != ' ')
        return -1;
    size_t k = f + 1, id0 = 0, id1 = 0, fl0 = 0, fl1 = 0, idend = 0;
    int found = 0;
    for (; k < n && !found; k++) {
        if (starts(s, k, n, "ID=")) {
            size_t q = digits(s, k + 3, n);
            if (q > k + 3) {
                id0 = k + 3, id1 = q, idend = q, found = 1;
                break;
            }
        }
        if (starts(s, k, n, "FLOWLBL=")) {
            size_t q = digits(s, k + 8, n);
            if (q > k + 8) {
                fl0 = k + 8, fl1 = q, idend = q, found = 1;
                break;
            }
        }
    }
    if (!found)
        return -1;
    size_t p0 = 0, p1 = 0, s0 = 0, s1 = 0;
    int proto = 0, spt = 0;
    for (size_t q = idend; q < n; q++) {
        if (starts(s, q, n, " PROTO=")) {
            size_t r = nonspace(s, q + 7, n);
            if (r > q + 7) {
                p0 = q + 7, p1 = r, proto = 1;
                if (starts(s, r, n, " SPT=")) {
                    size_t t = digits(s, r + 5, n);
                    if (t > r + 5)
                        s0 = r + 5, s1 = t, spt = 1;
                }
                break;
            }
        }
    }
    /* one field after another, each marked present (+) or absent (-) */
    size_t spans[6][2] = {{a, b}, {e, f}, {id0, id1}, {fl0, fl1}, {p0, p1}, {s0, s1}};
    int present[6] = {1, 1, id1 > 0, fl1 > 0, proto, spt};
    for (int g = 0; g < 6; g++) {
        if (buf_add(out, present[g] ? "+" : "-", 1) < 0)
            return -1;
        if (present[g] && buf_add(out, s + spans[g][0], spans[g][1] - spans[g][0]) < 0)
            return -1;
        if (buf_add(out, "\x1f", 1) < 0)
            return -1;
    }
    return 0;
}

/* _nat_free: re.sub of what conntrack's NAT rewrites, and what changes anyway (group_legacy). */
static int nat_free_of(const char *s, size_t n, Buf *out) {
    out->n = 0;
    if (buf_reserve(out, n + 1) < 0)
        return -1;
    /* the last ']' (for " \[SRC=.*\]", greedy) */
    size_t last_bracket = n;
    for (size_t q = n; q > 0; q--)
        if (s[q - 1] == ']') {
            last_bracket = q - 1;
            break;
        }
    size_t k = 0;
    while (k < n) {
        size_t e = 0;
        if (s[k] == ' ') {
            if (starts(s, k, n, " DST=")) {
                size_t q = nonspace(s, k + 5, n);
                if (q > k + 5)
                    e = q;
            }
            static const char *NUMBERS[] = {" DPT=", " TTL=", " HOPLIMIT=", NULL};
            for (int f = 0; !e && NUMBERS[f]; f++)
                e = digits_field(s, k, n, NUMBERS[f]);
            if (!e)
                e = mark_field(s, k, n);
            if (!e)
                e = uid_gid_field(s, k, n);
            if (!e && starts(s, k, n, " [SRC=") && last_bracket < n && last_bracket >= k + 6)
                e = last_bracket + 1;
            if (!e && starts(s, k, n, " ID=")) {
                int after_code = (k >= 6 && memcmp(s + k - 6, "CODE=", 5) == 0 &&
                                  s[k - 1] >= '0' && s[k - 1] <= '9') ||
                                 (k >= 7 && memcmp(s + k - 7, "CODE=", 5) == 0 &&
                                  s[k - 2] >= '0' && s[k - 2] <= '9' && s[k - 1] >= '0' &&
                                  s[k - 1] <= '9');
                if (after_code)
                    e = digits_field(s, k, n, " ID=");
            }
        }
        if (e) {
            k = e;
        } else {
            out->p[out->n++] = s[k++];
        }
    }
    return 0;
}

/* _destination: "address:port" (or the address) a dump is sent to, as " DST=(\S+)(?:[^\[]*?
 * DPT=(\d+))?" finds it. */
static int destination_of(const char *s, size_t n, Buf *out) {
    out->n = 0;
    for (size_t k = 0; k < n; k++) {
        if (!starts(s, k, n, " DST="))
            continue;
        size_t a = k + 5, b = nonspace(s, a, n);
        if (b == a)
            continue;
        if (buf_add(out, s + a, b - a) < 0)
            return -1;
        for (size_t q = b; q < n && s[q] != '['; q++) {
            if (starts(s, q, n, " DPT=")) {
                size_t r = digits(s, q + 5, n);
                if (r > q + 5) {
                    if (buf_add(out, ":", 1) < 0 || buf_add(out, s + q + 5, r - q - 5) < 0)
                        return -1;
                    break;
                }
            }
        }
        return 0;
    }
    return 0;
}

/* ---------------------------------------------------------------- time stamps */

/* envelope_time: the kernel's own bracket "[  123.456] " read here; anything else by Python. */
static int envelope_time(Summarizer *S, const char *env, size_t n, double *out, int *has) {
    *has = 0;
    if (n >= 2 && env[n - 2] == ']' && env[n - 1] == ' ') {
        size_t open = n - 2;
        while (open > 0 && env[open - 1] != '[')
            open--;
        size_t i = open, end = n - 2;
        while (i < end && env[i] == ' ')
            i++;
        size_t d0 = i;
        while (i < end && env[i] >= '0' && env[i] <= '9')
            i++;
        int ok = i > d0;
        if (ok && i < end && env[i] == '.') {
            size_t f0 = ++i;
            while (i < end && env[i] >= '0' && env[i] <= '9')
                i++;
            ok = i > f0;
        }
        size_t stop = i;
        while (i < end && env[i] == ' ')
            i++;
        if (ok && i == end && open > 0 && stop - d0 < 64) {
            char num[64];
            memcpy(num, env + d0, stop - d0);
            num[stop - d0] = 0;
            *out = strtod(num, NULL);
            *has = 1;
            return 0;
        }
    }
    PyObject *text = PyUnicode_DecodeASCII(env, (Py_ssize_t)n, NULL);
    if (!text)
        return -1;
    PyObject *r = PyObject_CallOneArg(S->envelope_time, text);
    Py_DECREF(text);
    if (!r)
        return -1;
    if (r != Py_None) {
        *out = PyFloat_AsDouble(r);
        *has = 1;
    }
    Py_DECREF(r);
    return PyErr_Occurred() ? -1 : 0;
}

/* ---------------------------------------------------------------- grouping */

typedef struct {
    const char *line;
    size_t trace_pos;
    const char *ident;
    size_t identlen;
    Prefix *info;
    int32_t dev;
} Rec;

static int too_late(Summarizer *S, Pass *p, const Rec *r, int *late) {
    double now;
    int has;
    *late = 0;
    if (envelope_time(S, r->line, r->trace_pos, &now, &has) < 0)
        return -1;
    if (!has)
        return 0;
    double before = p->time;
    int had = p->has_time;
    p->time = now;
    p->has_time = 1;
    *late = had && now - before > S->gap;
    return 0;
}

static void close_pass(Summarizer *S, Pass *p) {
    p->closed = 1;
    Slot *s = map_find(&S->open, p->key, p->keylen, hash_bytes(p->key, p->keylen));
    if (s && s->val == p)
        map_del_slot(&S->open, s);
    if (p->norm) {
        s = map_find(&S->by_norm, p->norm, p->normlen, hash_bytes(p->norm, p->normlen));
        if (s && s->val == p)
            map_del_slot(&S->by_norm, s);
    }
    if (p->loose) {
        s = map_find(&S->by_loose, p->loose, p->looselen, hash_bytes(p->loose, p->looselen));
        if (s && s->val == p)
            map_del_slot(&S->by_loose, s);
    }
}

static int rekey(Summarizer *S, Pass *p, const Rec *r) {
    map_del(&S->open, p->key, p->keylen);
    free(p->key);
    p->key = dup_bytes(r->ident, r->identlen);
    p->keylen = r->identlen;
    free(p->natfree);
    p->natfree = NULL;
    if (!p->key || !map_put(&S->open, r->ident, r->identlen, p))
        return -1;
    return 0;
}

static int entered_nat(Summarizer *S, Pass *p, const Rec *r) {
    if (p->loose)
        return 0;
    Buf b = {0};
    if (loose_of(r->ident, r->identlen, &b) == 0) {
        p->loose = b.p;
        p->looselen = b.n;
        if (!map_put(&S->by_loose, b.p, b.n, p))
            return -1;
    } else {
        free(b.p);
    }
    return 0;
}

static int moved(Summarizer *S, const Rec *r, const Buf *norm, Pass **found) {
    *found = NULL;
    Pass *p = map_get(&S->by_norm, norm->p, norm->n);
    if (!p && S->by_loose.used) {
        Buf b = {0};
        if (loose_of(r->ident, r->identlen, &b) == 0) {
            p = map_get(&S->by_loose, b.p, b.n);
            if (p && !p->is_nat)
                p = NULL;
        }
        free(b.p);
    }
    if (!p || p->closed)
        return 0;
    if (r->info->hook != H_NONE && r->info->rank <= p->rank)
        return 0;
    if (rekey(S, p, r) < 0)
        return -1;
    *found = p;
    return 0;
}

static int rewrite_seen(Summarizer *S, const Buf *old, const Buf *new_dst, Buf *key) {
    key->n = 0;
    if (buf_add(key, old->p ? old->p : "", old->n) < 0 || buf_add(key, "\x1f", 1) < 0 ||
        buf_add(key, new_dst->p ? new_dst->p : "", new_dst->n) < 0)
        return -1;
    return map_get(&S->rewrites_set, key->p, key->n) != NULL;
}

static int denatted(Summarizer *S, const Rec *r, Pass **found) {
    *found = NULL;
    int ihook = r->info->hook;
    if (ihook == H_NONE)
        return 0;
    Buf wanted = {0}, cand_dst = {0}, new_dst = {0}, key = {0};
    Pass **cands = NULL;
    size_t ncand = 0;
    int rc = -1;
    if (nat_free_of(r->ident, r->identlen, &wanted) < 0)
        goto out;
    cands = malloc(sizeof(Pass *) * NAT_LOOKBACK);
    if (!cands)
        goto out;
    int n = 0;
    for (Pass *p = S->qtail; p; p = p->prev, n++) {
        if (n >= NAT_LOOKBACK)
            break;
        if (p->closed || p->rank > LAST_DNAT_RANK ||
            (p->hook != H_PREROUTING && p->hook != H_OUTPUT))
            continue;
        if (p->hook == H_OUTPUT && ihook != H_OUTPUT && ihook != H_POSTROUTING)
            continue;
        if (p->hook == H_PREROUTING && (ihook == H_OUTPUT || ihook == H_PREROUTING))
            continue;
        if (!p->natfree) {
            Buf b = {0};
            if (nat_free_of(p->key, p->keylen, &b) < 0)
                goto out;
            if (!b.p && buf_reserve(&b, 1) < 0)
                goto out;
            p->natfree = b.p;
            p->natfreelen = b.n;
        }
        if (p->natfreelen == wanted.n && memcmp(p->natfree, wanted.p ? wanted.p : "", wanted.n) == 0)
            cands[ncand++] = p;
    }
    if (!ncand) {
        rc = 0;
        goto out;
    }
    if (destination_of(r->ident, r->identlen, &new_dst) < 0)
        goto out;
    Pass *p = cands[0];
    for (size_t i = 0; i < ncand; i++) {
        if (destination_of(cands[i]->key, cands[i]->keylen, &cand_dst) < 0)
            goto out;
        int seen = rewrite_seen(S, &cand_dst, &new_dst, &key);
        if (seen < 0)
            goto out;
        if (seen) {
            p = cands[i];
            break;
        }
    }
    if (destination_of(p->key, p->keylen, &cand_dst) < 0)
        goto out;
    int seen = rewrite_seen(S, &cand_dst, &new_dst, &key);
    if (seen < 0)
        goto out;
    if (!seen) {
        Rewrite *w = malloc(sizeof(Rewrite));
        if (!w || !map_put(&S->rewrites_set, key.p, key.n, w)) {
            free(w);
            goto out;
        }
        w->key = dup_bytes(key.p, key.n);
        w->len = key.n;
        w->next = NULL;
        if (S->rw_tail)
            S->rw_tail->next = w;
        else
            S->rw_head = w;
        S->rw_tail = w;
        if (++S->rw_len > REWRITES_MAX) {
            Rewrite *old = S->rw_head;
            S->rw_head = old->next;
            if (!S->rw_head)
                S->rw_tail = NULL;
            map_del(&S->rewrites_set, old->key, old->len);
            free(old->key);
            free(old);
            S->rw_len--;
        }
    }
    if (rekey(S, p, r) < 0)
        goto out;
    *found = p;
    rc = 0;
out:
    free(wanted.p);
    free(cand_dst.p);
    free(new_dst.p);
    free(key.p);
    free(cands);
    return rc;
}

static Pass *new_pass(Summarizer *S, const Rec *r, Buf *norm) {
    Pass *p = calloc(1, sizeof(Pass));
    if (!p)
        return NULL;
    p->key = dup_bytes(r->ident, r->identlen);
    p->keylen = r->identlen;
    p->start = S->index;
    p->occurrence = 1;
    p->hook = H_NONE;
    p->rank = -1;
    /* dump_family: an IPv6 source address has a colon */
    const char *sp = memchr(r->ident, ' ', r->identlen);
    size_t end = sp ? (size_t)(sp - r->ident) : r->identlen;
    p->family = end > 4 && memchr(r->ident + 4, ':', end - 4) ? 6 : 4;
    Prefix *info = r->info;
    if (info->is_nat && entered_nat(S, p, r) < 0)
        return NULL;
    if (info->hook != H_NONE) {
        p->hook = info->hook;
        p->rank = info->rank;
        p->last_builtin = info->number;
    }
    p->is_nat = info->is_nat;
    if (S->gap && envelope_time(S, r->line, r->trace_pos, &p->time, &p->has_time) < 0)
        return NULL;
    p->norm = dup_bytes(norm->p ? norm->p : "", norm->n);
    p->normlen = norm->n;
    if (!p->norm || !map_put(&S->by_norm, norm->p ? norm->p : "", norm->n, p))
        return NULL;
    Seen *seen = map_get(&S->seen, p->norm, p->normlen);
    if (seen) {
        p->occurrence = seen->count + 1;
        seen->count = p->occurrence;
        if (seen != S->seen_tail) { /* move_to_end */
            if (seen->prev)
                seen->prev->next = seen->next;
            else
                S->seen_head = seen->next;
            seen->next->prev = seen->prev;
            seen->prev = S->seen_tail;
            seen->next = NULL;
            S->seen_tail->next = seen;
            S->seen_tail = seen;
        }
    } else {
        seen = calloc(1, sizeof(Seen));
        if (!seen || !map_put(&S->seen, p->norm, p->normlen, seen))
            return NULL;
        seen->count = 1;
        seen->key = dup_bytes(p->norm, p->normlen);
        seen->len = p->normlen;
        seen->prev = S->seen_tail;
        if (S->seen_tail)
            S->seen_tail->next = seen;
        else
            S->seen_head = seen;
        S->seen_tail = seen;
        if (++S->seen_len > 4 * S->window) {
            Seen *old = S->seen_head;
            S->seen_head = old->next;
            if (S->seen_head)
                S->seen_head->prev = NULL;
            else
                S->seen_tail = NULL;
            map_del(&S->seen, old->key, old->len);
            free(old->key);
            free(old);
            S->seen_len--;
        }
    }
    if (!map_put(&S->open, p->key, p->keylen, p))
        return NULL;
    q_append(S, p);
    return p;
}

static int pass_append(Pass *p, const Rec *r) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        int32_t *pre = realloc(p->pre, cap * sizeof(int32_t));
        if (!pre)
            return -1;
        p->pre = pre;
        int32_t *dev = realloc(p->dev, cap * sizeof(int32_t));
        if (!dev)
            return -1;
        p->dev = dev;
        p->cap = cap;
    }
    p->pre[p->n] = r->info->id;
    p->dev[p->n] = r->dev;
    p->n++;
    return 0;
}

static long long floordiv10(long long x) { return x >= 0 ? x / 10 : -((-x + 9) / 10); }

/* One record through the grouper (LegacyGrouper._feed's loop body). */
static int feed(Summarizer *S, const Rec *r) {
    Prefix *info = r->info;
    Buf norm = {0};
    int have_norm = 0, rc = -1;
    S->index++;
    Pass *p = map_get(&S->open, r->ident, r->identlen);
    if (!p) {
        if (norm_of(r->ident, r->identlen, &norm) < 0)
            goto out;
        have_norm = 1;
        if (moved(S, r, &norm, &p) < 0)
            goto out;
        if (!p && info->rank > LAST_DNAT_RANK && denatted(S, r, &p) < 0)
            goto out;
    }
    int hook = info->hook;
    if (p && hook != H_NONE) {
        int rk = info->rank, joins;
        if (rk == p->rank && hook == p->hook) {
            joins = info->number > p->last_builtin;
            if (joins)
                p->last_builtin = info->number;
        } else {
            joins = 0;
            if (rk > p->rank) {
                int stop = floordiv10(rk) == floordiv10(p->rank) && hook != p->hook;
                if (!stop && S->gap && floordiv10(rk) != floordiv10(p->rank)) {
                    int late;
                    if (too_late(S, p, r, &late) < 0)
                        goto out;
                    stop = late;
                }
                joins = !stop;
            }
            if (joins) {
                p->hook = hook, p->rank = rk, p->last_builtin = info->number, p->is_nat = info->is_nat;
                if (info->is_nat && entered_nat(S, p, r) < 0)
                    goto out;
            }
        }
        if (!joins) {
            close_pass(S, p);
            p = NULL;
            if (rk > LAST_DNAT_RANK) {
                if (denatted(S, r, &p) < 0)
                    goto out;
                if (p && S->gap) {
                    int late;
                    if (too_late(S, p, r, &late) < 0)
                        goto out;
                    if (late) {
                        close_pass(S, p);
                        p = NULL;
                    }
                }
                if (p)
                    p->hook = hook, p->rank = rk, p->last_builtin = info->number,
                    p->is_nat = info->is_nat;
            }
        }
    }
    if (!p) {
        if (!have_norm && norm_of(r->ident, r->identlen, &norm) < 0)
            goto out;
        p = new_pass(S, r, &norm);
        if (!p)
            goto out;
    }
    if (pass_append(p, r) < 0)
        goto out;
    rc = 0;
out:
    free(norm.p);
    if (rc < 0 && !PyErr_Occurred())
        PyErr_NoMemory();
    return rc;
}

/* A closed pass leaves the queue: its shape is counted and it is freed. */
static int emit(Summarizer *S, Pass *p) {
    Buf *k = &S->shape_key;
    k->n = 0;
    char fam = (char)p->family;
    if (buf_add(k, &fam, 1) < 0 || buf_add(k, (char *)p->pre, p->n * sizeof(int32_t)) < 0 ||
        buf_add(k, (char *)p->dev, p->n * sizeof(int32_t)) < 0)
        return -1;
    PyObject *entry = map_get(&S->shapes, k->p, k->n);
    if (!entry) {
        PyObject *pre = PyTuple_New((Py_ssize_t)p->n), *dev = PyTuple_New((Py_ssize_t)p->n);
        if (!pre || !dev) {
            Py_XDECREF(pre);
            Py_XDECREF(dev);
            return -1;
        }
        for (size_t i = 0; i < p->n; i++) {
            PyTuple_SET_ITEM(pre, (Py_ssize_t)i, PyLong_FromLong(p->pre[i]));
            PyTuple_SET_ITEM(dev, (Py_ssize_t)i, PyLong_FromLong(p->dev[i]));
        }
        entry = Py_BuildValue("[iNNii]", p->family, pre, dev, 0, 0);
        if (!entry)
            return -1;
        if (PyList_Append(S->shape_list, entry) < 0 || !map_put(&S->shapes, k->p, k->n, entry)) {
            Py_DECREF(entry);
            return -1;
        }
        Py_DECREF(entry); /* the list holds it */
    }
    for (int slot = 3; slot <= 4; slot++) {
        if (slot == 4 && p->occurrence <= 1)
            break;
        PyObject *old = PyList_GET_ITEM(entry, slot);
        PyObject *now = PyLong_FromLongLong(PyLong_AsLongLong(old) + 1);
        if (!now)
            return -1;
        PyList_SetItem(entry, slot, now);
    }
    free_pass(p);
    return 0;
}

static int drain_closed(Summarizer *S) {
    while (S->qhead && S->qhead->closed)
        if (emit(S, q_popleft(S)) < 0)
            return -1;
    return 0;
}

/* The end of one reader batch: evict old passes now and then, hand on the closed ones. */
static int batch_end(Summarizer *S) {
    if (S->index - S->evicted >= EVICT_EVERY) {
        S->evicted = S->index;
        long long before = S->index - S->window;
        for (Pass *p = S->qhead; p; p = p->next) {
            if (p->start >= before)
                break;
            if (!p->closed)
                close_pass(S, p);
        }
    }
    S->batch_fill = 0;
    return drain_closed(S);
}

/* ---------------------------------------------------------------- reading lines */

static int is_py_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static const char *CONT_KEYS[] = {"IN", "OUT", "PHYSIN", "PHYSOUT", "MAC", "SRC", "DST", "LEN",
                                  "TOS", "PREC", "TTL", "ID", "PROTO", "SPT", "DPT", "SEQ", "ACK",
                                  "WINDOW", "RES", "URGP", "TYPE", "CODE", "MARK", "UID", "GID",
                                  "TC", "HOPLIMIT", "FLOWLBL", "MTU", "GATEWAY", "PARAMETER",
                                  "SPI", NULL};
static const char *CONT_FLAGS[] = {"CE",  "DF",  "MF",  "CWR", "ECE", "URG", "ACK",
                                   "PSH", "RST", "SYN", "FIN", "AE",  "OPT", "INCOMPLETE",
                                   NULL};

/* Whether a line could continue the record before it (_CONTINUATION_RE): 1 yes, 0 no, -1 the
 * line is not plain ASCII where it matters (left to the Python reader). */
static int continues(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && is_py_space((unsigned char)s[i]))
        i++;
    if (i < n && (unsigned char)s[i] >= 0x80)
        return -1;
    for (int k = 0; CONT_KEYS[k]; k++) {
        size_t l = strlen(CONT_KEYS[k]);
        if (n - i > l && memcmp(s + i, CONT_KEYS[k], l) == 0 && s[i + l] == '=')
            return 1;
    }
    for (int k = 0; CONT_FLAGS[k]; k++) {
        size_t l = strlen(CONT_FLAGS[k]);
        if (n - i < l || memcmp(s + i, CONT_FLAGS[k], l) != 0)
            continue;
        size_t j = i + l;
        if (j == n || is_py_space((unsigned char)s[j]) || s[j] == '(')
            return 1;
        if ((unsigned char)s[j] >= 0x80)
            return -1;
        size_t u = j;
        while (u < n && s[u] >= 'A' && s[u] <= 'Z')
            u++;
        if (u - j >= 2 && u < n && s[u] == '=')
            return 1;
    }
    if (n - i >= 5 && memcmp(s + i, "FRAG:", 5) == 0)
        return 1;
    if (n - i >= 5 && memcmp(s + i, "[SRC=", 5) == 0)
        return 1;
    return 0;
}

/* A line that is not a record: counted as skipped, and as not text if it holds binary data. */
static int skip_line(Summarizer *S, const char *s, size_t n) {
    S->skipped++;
    int binary = memchr(s, 0, n) != NULL;
    if (!binary) {
        int high = 0;
        for (size_t i = 0; i < n && !high; i++)
            high = (unsigned char)s[i] >= 0x80;
        if (high) {
            PyObject *text = PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
            if (!text)
                return -1;
            binary = PyUnicode_FindChar(text, 0xFFFD, 0, PyUnicode_GET_LENGTH(text), 1) >= 0;
            Py_DECREF(text);
        }
    }
    if (binary) {
        S->not_text++;
        if (!S->first_not_text)
            S->first_not_text = S->lineno;
    }
    return 0;
}

static int32_t intern_devs(Summarizer *S, const char *s, size_t n) {
    void *v = map_get(&S->devs, s, n);
    if (v)
        return (int32_t)((intptr_t)v - 1);
    Py_ssize_t id = PyList_GET_SIZE(S->devs_names);
    PyObject *text = PyUnicode_DecodeASCII(s, (Py_ssize_t)n, NULL);
    if (!text || PyList_Append(S->devs_names, text) < 0) {
        Py_XDECREF(text);
        return -1;
    }
    Py_DECREF(text);
    if (!map_put(&S->devs, s, n, (void *)(intptr_t)(id + 1))) {
        PyErr_NoMemory();
        return -1;
    }
    return (int32_t)id;
}

static Prefix *intern_prefix(Summarizer *S, const char *s, size_t n) {
    Prefix *info = map_get(&S->prefixes, s, n);
    if (info)
        return info;
    Prefix parsed;
    if (parse_prefix(s, n, &parsed) < 0)
        return NULL;
    info = malloc(sizeof(Prefix));
    if (!info)
        return NULL;
    *info = parsed;
    info->id = (int)PyList_GET_SIZE(S->prefix_names);
    info->count = 0;
    PyObject *text = PyUnicode_DecodeASCII(s, (Py_ssize_t)n, NULL);
    if (!text || PyList_Append(S->prefix_names, text) < 0 || !map_put(&S->prefixes, s, n, info)) {
        Py_XDECREF(text);
        free(info);
        return NULL;
    }
    Py_DECREF(text);
    return info;
}

/* One line (without its end). Returns -1 on a Python error; sets S->bail to give up. */
static int take_line(Summarizer *S, const char *s, size_t n) {
    S->lineno++;
    const char *t = find_trace(s, n);
    if (!t) {
        if (S->pending) {
            S->pending = 0;
            int c = continues(s, n);
            if (c != 0) {
                set_bail(S, c > 0 ? "a line continues the record before it"
                                  : "non-ASCII text after a record",
                         S->lineno);
                return 0;
            }
        }
        return skip_line(S, s, n);
    }
    size_t tp = (size_t)(t - s);
    /* plain printable ASCII only: the Python reader's \S and \s then mean what they do here */
    unsigned char bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= (unsigned char)((unsigned char)(s[i] - 0x20) >= 0x5f);
    if (bad) {
        set_bail(S, "control or non-ASCII characters in a record", S->lineno);
        return 0;
    }
    if (memchr(s, '=', tp)) {
        set_bail(S, "text with '=' before TRACE:", S->lineno);
        return 0;
    }
    /* TRACE: (\S++) (IN=\S*+ OUT=\S*+ (?:PHYS\S++ )*+)(?:MAC=\S*+ )?+(SRC=.*\S) */
    size_t i = tp + 6;
    if (i >= n || s[i] != ' ')
        goto unreadable;
    size_t p0 = ++i, p1 = nonspace(s, p0, n);
    if (p1 == p0 || p1 >= n)
        goto unreadable;
    size_t d0 = p1 + 1;
    i = d0;
    if (!starts(s, i, n, "IN="))
        goto unreadable;
    i = nonspace(s, i + 3, n);
    if (!starts(s, i, n, " OUT="))
        goto unreadable;
    i = nonspace(s, i + 5, n);
    if (i >= n)
        goto unreadable;
    i++;
    while (starts(s, i, n, "PHYS")) {
        size_t e = nonspace(s, i + 4, n);
        if (e == i + 4 || e >= n)
            goto unreadable;
        i = e + 1;
    }
    size_t d1 = i;
    if (starts(s, i, n, "MAC=")) {
        size_t e = nonspace(s, i + 4, n);
        if (e >= n)
            goto unreadable;
        i = e + 1;
    }
    if (!starts(s, i, n, "SRC="))
        goto unreadable;
    size_t last = n;
    while (last > i && s[last - 1] == ' ')
        last--;
    if (last <= i + 4)
        goto unreadable;
    /* a second record glued on: "TRACE: " in the dump (only a colon makes it possible) */
    if (memchr(s + i, ':', last - i) && memmem(s + i, last - i, "TRACE: ", 7)) {
        set_bail(S, "two records on one line", S->lineno);
        return 0;
    }
    Prefix *info = intern_prefix(S, s + p0, p1 - p0);
    if (!info) {
        if (PyErr_Occurred())
            return -1;
        goto unreadable;
    }
    int32_t dev = intern_devs(S, s + d0, d1 - d0);
    if (dev < 0)
        return -1;
    S->parsed++;
    S->pending = 1;
    info->count++;
    if (PyList_GET_SIZE(S->glue_lines) < GLUE_CHECKS) {
        PyObject *text = PyUnicode_DecodeASCII(s, (Py_ssize_t)n, NULL);
        if (!text || PyList_Append(S->glue_lines, text) < 0) {
            Py_XDECREF(text);
            return -1;
        }
        Py_DECREF(text);
    }
    Rec r = {s, tp, s + i, last - i, info, dev};
    if (feed(S, &r) < 0)
        return -1;
    if (++S->batch_fill == BATCH && batch_end(S) < 0)
        return -1;
    return 0;
unreadable:
    set_bail(S, "a record the fast reader does not read", S->lineno);
    return 0;
}

/* ---------------------------------------------------------------- the Python type */

static int Summarizer_init(Summarizer *S, PyObject *args, PyObject *kw) {
    static char *names[] = {"gap", "window", "envelope_time", NULL};
    double gap;
    long long window;
    PyObject *et;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "dLO", names, &gap, &window, &et))
        return -1;
    S->gap = gap;
    S->window = window;
    Py_INCREF(et);
    S->envelope_time = et;
    S->prefix_names = PyList_New(0);
    S->devs_names = PyList_New(0);
    S->glue_lines = PyList_New(0);
    S->shape_list = PyList_New(0);
    if (!S->prefix_names || !S->devs_names || !S->glue_lines || !S->shape_list)
        return -1;
    if (map_init(&S->prefixes, 1024) || map_init(&S->devs, 1024) || map_init(&S->open, 8192) ||
        map_init(&S->by_norm, 8192) || map_init(&S->by_loose, 64) || map_init(&S->seen, 32768) ||
        map_init(&S->rewrites_set, 64) || map_init(&S->shapes, 1024)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Summarizer_dealloc(Summarizer *S) {
    for (Pass *p = S->qhead, *next; p; p = next) {
        next = p->next;
        free_pass(p);
    }
    for (Seen *s = S->seen_head, *next; s; s = next) {
        next = s->next;
        free(s->key);
        free(s);
    }
    for (Rewrite *w = S->rw_head, *next; w; w = next) {
        next = w->next;
        free(w->key);
        free(w);
    }
    if (S->prefixes.slots)
        for (size_t i = 0; i < S->prefixes.cap; i++)
            if (S->prefixes.slots[i].key && S->prefixes.slots[i].key != TOMB)
                free(S->prefixes.slots[i].val);
    map_free(&S->prefixes);
    map_free(&S->devs);
    map_free(&S->open);
    map_free(&S->by_norm);
    map_free(&S->by_loose);
    map_free(&S->seen);
    map_free(&S->rewrites_set);
    map_free(&S->shapes);
    free(S->carry.p);
    free(S->shape_key.p);
    Py_XDECREF(S->envelope_time);
    Py_XDECREF(S->prefix_names);
    Py_XDECREF(S->devs_names);
    Py_XDECREF(S->glue_lines);
    Py_XDECREF(S->shape_list);
    Py_TYPE(S)->tp_free((PyObject *)S);
}

/* The complete lines of data[0:n]; *used says where the unfinished rest begins. Lines end at
 * LF, CR LF or a lone CR (Python's universal newlines); a CR last is taken as a line's end only
 * when the data is final (otherwise an LF may follow in the next chunk). */
static int take_lines(Summarizer *S, const char *data, size_t n, int final, size_t *used) {
    size_t i = 0;
    int has_cr = memchr(data, '\r', n) != NULL; /* rare: then each line is looked at for one */
    while (i < n && !S->bail) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - data) : n;
        const char *cr = has_cr ? memchr(data + i, '\r', end - i) : NULL;
        if (cr) {
            size_t at = (size_t)(cr - data);
            if (at + 1 == n && !final)
                break;
            if (take_line(S, data + i, at - i) < 0)
                return -1;
            i = at + 1 + (at + 1 < n && data[at + 1] == '\n');
            continue;
        }
        if (!nl)
            break;
        if (take_line(S, data + i, end - i) < 0)
            return -1;
        i = end + 1;
    }
    *used = i;
    return 0;
}

static int keep_rest(Buf *carry, const char *data, size_t n, size_t used) {
    carry->n = 0;
    return used < n ? buf_add(carry, data + used, n - used) : 0;
}

static PyObject *Summarizer_feed(Summarizer *S, PyObject *arg) {
    Py_buffer view;
    if (S->bail)
        Py_RETURN_FALSE;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *data = view.buf;
    size_t n = (size_t)view.len, used;
    int rc = 0;
    if (S->carry.n) {
        /* the line the last chunk ended inside of: complete it up to the first LF */
        const char *nl = memchr(data, '\n', n);
        size_t upto = nl ? (size_t)(nl - data) + 1 : n;
        rc = buf_add(&S->carry, data, upto);
        if (rc == 0) {
            Buf line = S->carry;
            rc = take_lines(S, line.p, line.n, 0, &used);
            if (rc == 0) {
                memmove(S->carry.p, line.p + used, line.n - used);
                S->carry.n = line.n - used;
            }
        }
        data += upto;
        n -= upto;
    }
    if (rc == 0 && n) {
        rc = take_lines(S, data, n, 0, &used);
        if (rc == 0)
            rc = keep_rest(&S->carry, data, n, used);
    }
    PyBuffer_Release(&view);
    if (rc < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return NULL;
    }
    return PyBool_FromLong(!S->bail);
}

static PyObject *Summarizer_finish(Summarizer *S, PyObject *unused) {
    (void)unused;
    if (!S->bail && S->carry.n) {
        size_t used;
        if (take_lines(S, S->carry.p, S->carry.n, 1, &used) < 0)
            return NULL;
        if (!S->bail && used < S->carry.n &&
            take_line(S, S->carry.p + used, S->carry.n - used) < 0)
            return NULL;
        S->carry.n = 0;
    }
    if (S->bail) {
        PyErr_SetString(Unsupported, S->bail);
        return NULL;
    }
    if (S->batch_fill && batch_end(S) < 0)
        return NULL;
    for (Pass *p = S->qhead; p; p = p->next)
        if (!p->closed)
            close_pass(S, p);
    if (drain_closed(S) < 0)
        return NULL;
    /* hits per prefix, in the order prefixes first appeared */
    PyObject *hits = PyList_New(0);
    if (!hits)
        return NULL;
    for (Py_ssize_t id = 0; id < PyList_GET_SIZE(S->prefix_names); id++) {
        PyObject *name = PyList_GET_ITEM(S->prefix_names, id);
        Py_ssize_t len;
        const char *text = PyUnicode_AsUTF8AndSize(name, &len);
        Prefix *info = text ? map_get(&S->prefixes, text, (size_t)len) : NULL;
        PyObject *pair = info ? Py_BuildValue("(OL)", name, info->count) : NULL;
        if (!pair || PyList_Append(hits, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(hits);
            return NULL;
        }
        Py_DECREF(pair);
    }
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:N,s:O,s:O,s:O,s:O}", "total", S->lineno,
                         "parsed", S->parsed, "skipped", S->skipped, "not_text", S->not_text,
                         "first_not_text", S->first_not_text, "hits", hits, "prefixes",
                         S->prefix_names, "devs", S->devs_names, "shapes", S->shape_list,
                         "glue_lines", S->glue_lines);
}

static PyMethodDef Summarizer_methods[] = {
    {"feed", (PyCFunction)Summarizer_feed, METH_O,
     "Read the next bytes of the log (any split; lines may cross chunks)."},
    {"finish", (PyCFunction)Summarizer_finish, METH_NOARGS,
     "The counts, hits and pass shapes; raises Unsupported when the Python reader must run."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SummarizerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nodetrace.tracelog._fastsummary.Summarizer",
    .tp_basicsize = sizeof(Summarizer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Summarizer(gap, window, envelope_time): a kernel TRACE log's summary, compiled.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Summarizer_init,
    .tp_dealloc = (destructor)Summarizer_dealloc,
    .tp_methods = Summarizer_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastsummary",
    .m_doc = "The summary of a kernel TRACE log, compiled (see tracelog/fast_summary.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastsummary(void) {
    if (PyType_Ready(&SummarizerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Unsupported = PyErr_NewException("nodetrace.tracelog._fastsummary.Unsupported", NULL, NULL);
    if (!Unsupported || PyModule_AddObjectRef(m, "Unsupported", Unsupported) < 0 ||
        PyModule_AddObjectRef(m, "Summarizer", (PyObject *)&SummarizerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
