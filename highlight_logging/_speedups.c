/* highlight_logging._speedups: _export.fastpath's fast path, plain_logs(), and (below) capture_record() of _core/convert.py, in C.
 *
 * Why: the export worker spent most of its time under the GIL turning each pending tuple into
 * LogRecord bytes one bytecode at a time (to_record, then _export.encode.log_record); figures in
 * docs/performance.md.  The general Python path is the reference, the rule's one copy: plain_logs()
 * writes what it writes for a plain record, and returns None for a record wherever anything is
 * unusual, so every rule stays with the general path.  The tests compare the two byte for byte.
 *
 * The field numbers are those of _export/encode.py (opentelemetry/proto/logs/v1/logs.proto):
 * time 1 (fixed64), body 5, attributes 6, flags 8 (fixed32), trace_id 9, span_id 10,
 * observed_time 11 (fixed64).  AnyValue: string 1, bool 2, int 3, double 4.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#if defined(__APPLE__) || (defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34))
#include <dlfcn.h> /* dladdr(), in the C library itself there */
#define HAVE_DLADDR 1
#endif

/* The Pending tuple's fields, in the order of _core.record.Pending, their one declaration: module init
 * checks these names against Pending._fields, so that a build of another layout is set aside (pure
 * Python, one warning) instead of reading one field as another. */
#define PENDING_LAYOUT(X)                                                                            \
    X(P_WHEN, "when") X(P_OBSERVED, "observed_ns") X(P_LEVELNO, "levelno")                            \
    X(P_LEVEL_NAME, "level_name") X(P_SCOPE, "scope") X(P_BODY, "body")                              \
    X(P_ATTRIBUTES, "attributes") X(P_EXTRAS, "extras") X(P_DROPPED, "dropped")                      \
    X(P_EXCEPTION, "exception") X(P_SITE, "site") X(P_TRACE_ID, "trace_id")                           \
    X(P_SPAN_ID, "span_id") X(P_FLAGS, "flags") X(P_REQUEST, "request") X(P_SIZE, "size")            \
    X(P_SPAN_ONLY, "span_only") X(P_LOGGED_NOW, "logged_now")
#define PENDING_INDEX(index, name) index,
#define PENDING_NAME(index, name) name,
enum { PENDING_LAYOUT(PENDING_INDEX) P_FIELDS };
static const char *const pending_names[P_FIELDS] = {PENDING_LAYOUT(PENDING_NAME)};

/* What the Python side expects of this module (_core.native.ABI): raise it with that one whenever a
 * function's arguments, the Pending layout or a setup's contract change, so that a stale build
 * beside newer Python code is set aside (pure Python) instead of being called the wrong way. */
#define ABI 6

/* _core.convert._SAME_MOMENT (ns); a test checks the two agree. */
#define SAME_MOMENT 1000000000ULL

static PyObject *site_key_set; /* _core.record.SITE_KEY_SET */

/* After a call into code that may be the user's: an Exception is cleared, as the Python
 * reference's ``except Exception`` does (0); anything else (KeyboardInterrupt, SystemExit) stays
 * set, to propagate as it does there (-1). */
static int clear_exception(void)
{
    if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyErr_Clear();
    return 0;
}

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int reserve(Buf *b, Py_ssize_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap * 2;
    if (cap < b->len + extra)
        cap = b->len + extra;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static int varint_len(uint64_t v)
{
    int n = 1;
    while (v > 0x7F) {
        v >>= 7;
        n++;
    }
    return n;
}

/* The put_* helpers write into room that reserve() made beforehand. */
static void put_byte(Buf *b, unsigned char c) { b->data[b->len++] = (char)c; }

static void put_varint(Buf *b, uint64_t v)
{
    while (v > 0x7F) {
        b->data[b->len++] = (char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (char)v;
}

static void put_fixed64(Buf *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        b->data[b->len++] = (char)(v & 0xFF);
        v >>= 8;
    }
}

static void put_bytes(Buf *b, const char *s, Py_ssize_t n)
{
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
}

/* One extra as a LogRecord attribute (field 6, a KeyValue): 0 on success, 1 when the value is
 * not one this path writes (the general path will), -1 on a Python error (also: general path). */
static int put_attribute(Buf *b, PyObject *key, PyObject *value)
{
    Py_ssize_t klen, slen = 0;
    const char *k = PyUnicode_AsUTF8AndSize(key, &klen);
    const char *s = NULL;
    uint64_t number = 0;
    double real = 0.0;
    Py_ssize_t vlen; /* the AnyValue's length */
    if (k == NULL)
        return -1; /* a lone surrogate: _export.encode.text() escapes it */
    if (PyUnicode_CheckExact(value)) {
        s = PyUnicode_AsUTF8AndSize(value, &slen);
        if (s == NULL)
            return -1;
        vlen = 1 + varint_len((uint64_t)slen) + slen;
    } else if (PyBool_Check(value)) {
        vlen = 2;
    } else if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow)
            return 1; /* beyond int64: written as text by the general path */
        if (v == -1 && PyErr_Occurred())
            return -1;
        number = (uint64_t)v; /* a negative int64 is its two's complement, 10 bytes */
        vlen = 1 + varint_len(number);
    } else if (PyFloat_CheckExact(value)) {
        real = PyFloat_AS_DOUBLE(value);
        vlen = 9;
    } else {
        return 1;
    }
    Py_ssize_t kvlen = 1 + varint_len((uint64_t)klen) + klen + 1 + varint_len((uint64_t)vlen) + vlen;
    if (reserve(b, 1 + 10 + kvlen) < 0)
        return -1;
    put_byte(b, 0x32);
    put_varint(b, (uint64_t)kvlen);
    put_byte(b, 0x0A);
    put_varint(b, (uint64_t)klen);
    put_bytes(b, k, klen);
    put_byte(b, 0x12);
    put_varint(b, (uint64_t)vlen);
    if (s != NULL) {
        put_byte(b, 0x0A);
        put_varint(b, (uint64_t)slen);
        put_bytes(b, s, slen);
    } else if (PyBool_Check(value)) {
        put_byte(b, 0x10);
        put_byte(b, value == Py_True ? 1 : 0);
    } else if (PyLong_CheckExact(value)) {
        put_byte(b, 0x18);
        put_varint(b, number);
    } else {
        uint64_t bits;
        memcpy(&bits, &real, 8); /* IEEE 754, written little-endian as protobuf's double */
        put_byte(b, 0x21);
        put_fixed64(b, bits);
    }
    return 0;
}

/* Up to this many extras, the duplicate check compares keys pairwise (no allocation); above, a set. */
#define PAIRWISE_MAX 16

/* True when the extras can be written as they are: (str key, value) pairs, keys distinct, none a
 * site name (code.* or thread.*), and their number within ``room`` together with the site's.
 * ``extras`` is an exact tuple (immutable: the Python code that runs later cannot change it), and
 * no Python code runs here (exact str keys, our own set of str). */
static int extras_plain(PyObject *extras, Py_ssize_t site_names, Py_ssize_t room)
{
    Py_ssize_t n = PyTuple_GET_SIZE(extras);
    if (n + site_names > room)
        return 0;
    PyObject *seen = NULL; /* the keys so far, past PAIRWISE_MAX: linear, not O(n^2) with the GIL */
    int plain = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(extras, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            goto done;
        PyObject *key = PyTuple_GET_ITEM(pair, 0);
        if (!PyUnicode_CheckExact(key))
            goto done;
        int found = PySet_Contains(site_key_set, key);
        if (found != 0)
            goto done; /* a site name, or an error (cleared by the caller) */
        if (n <= PAIRWISE_MAX) {
            for (Py_ssize_t j = 0; j < i; j++) { /* a repeated key: the general path's dict decides */
                int same = PyUnicode_Compare(key, PyTuple_GET_ITEM(PyTuple_GET_ITEM(extras, j), 0));
                if (same == 0 || (same == -1 && PyErr_Occurred()))
                    goto done;
            }
        } else {
            if (seen == NULL && (seen = PySet_New(NULL)) == NULL)
                goto done;
            Py_ssize_t before = PySet_GET_SIZE(seen);
            if (PySet_Add(seen, key) < 0 || PySet_GET_SIZE(seen) == before)
                goto done;
        }
    }
    plain = 1;
done:
    Py_XDECREF(seen);
    return plain;
}

/* An exact int in [0, 2**64): 0, with *out set; else -1 (error cleared). */
static int as_u64(PyObject *obj, uint64_t *out)
{
    if (!PyLong_CheckExact(obj))
        return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's days_from_civil). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static PyObject *str_tzinfo; /* "tzinfo" */

/* ``when`` is a datetime whose fields give what _core.convert.datetime_ns() computes: an exact one, or
 * a subclass (loguru's, which only adds __format__) that keeps datetime's subtraction, attribute
 * lookup and tzinfo.  One overriding __sub__/__rsub__, __getattribute__ or tzinfo gets the Python
 * path, which calls them.  No Python code runs here: the classes' own dicts are read. */
static int datetime_as_is(PyObject *when)
{
    PyTypeObject *type = Py_TYPE(when), *datetime_type = PyDateTimeAPI->DateTimeType;
    if (type == datetime_type)
        return 1;
    if (!PyDateTime_Check(when) || type->tp_as_number == NULL ||
        type->tp_as_number->nb_subtract != datetime_type->tp_as_number->nb_subtract ||
        type->tp_getattro != datetime_type->tp_getattro || type->tp_mro == NULL)
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(type->tp_mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(type->tp_mro, i);
        if (base == datetime_type)
            return 1;
        if (!PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE) || base->tp_dict == NULL)
            return 0;
        int own = PyDict_Contains(base->tp_dict, str_tzinfo);
        if (own != 0) {
            PyErr_Clear();
            return 0;
        }
    }
    return 0;
}

/* _core.convert.datetime_ns() for an aware datetime (loguru's time), without a Python call: 0 with
 * *out set; -1 for anything else (naive, odd tzinfo, before the epoch), which goes through
 * to_ns() instead.  Exact to the microsecond, as (when - EPOCH) // timedelta(microseconds=1). */
static int aware_ns(PyObject *when, uint64_t *out)
{
    if (!datetime_as_is(when))
        return -1;
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(when);
    if (tz == Py_None || Py_TYPE(tz) != Py_TYPE(PyDateTimeAPI->TimeZone_UTC))
        return -1; /* naive (local time), or a tzinfo of Python code: the Python path calls it */
    /* datetime.timezone's own utcoffset(): C, no user code; timezone cannot be subclassed. */
    PyObject *offset = PyObject_CallMethod(tz, "utcoffset", "O", when);
    if (offset == NULL) {
        PyErr_Clear();
        return -1;
    }
    /* As datetime itself: an offset of a day or more is invalid (the general path falls back). */
    if (!PyDelta_Check(offset) || PyDateTime_DELTA_GET_DAYS(offset) < -1 ||
        PyDateTime_DELTA_GET_DAYS(offset) > 0 ||
        (PyDateTime_DELTA_GET_DAYS(offset) == -1 && PyDateTime_DELTA_GET_SECONDS(offset) == 0 &&
         PyDateTime_DELTA_GET_MICROSECONDS(offset) == 0)) {
        Py_DECREF(offset);
        return -1;
    }
    long long days = days_from_civil(PyDateTime_GET_YEAR(when), (unsigned)PyDateTime_GET_MONTH(when),
                                     (unsigned)PyDateTime_GET_DAY(when));
    long long seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(when) * 3600LL +
                        PyDateTime_DATE_GET_MINUTE(when) * 60LL + PyDateTime_DATE_GET_SECOND(when) -
                        (PyDateTime_DELTA_GET_DAYS(offset) * 86400LL + PyDateTime_DELTA_GET_SECONDS(offset));
    long long us = seconds * 1000000 + PyDateTime_DATE_GET_MICROSECOND(when) -
                   PyDateTime_DELTA_GET_MICROSECONDS(offset);
    Py_DECREF(offset);
    if (us < 0)
        return -1;
    if ((uint64_t)us > UINT64_MAX / 1000u) /* year 9999 is ~2.5e20 ns, over 2**64 */
        return -1;
    *out = (uint64_t)us * 1000u;
    return 0;
}

/* The highlight shape (_core.highlight.needs_shaping): true when no extra is a bool or an empty str, and
 * no key is in shape[0] (a set) or starts with one of shape[1] (a tuple of str). */
static int extras_highlight_plain(PyObject *extras, PyObject *shape)
{
    PyObject *reserved = PyTuple_GET_ITEM(shape, 0), *prefixes = PyTuple_GET_ITEM(shape, 1);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(extras); i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(extras, i);
        PyObject *key = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (PyBool_Check(value) || (PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) == 0))
            return 0;
        if (PySet_Contains(reserved, key) != 0)
            return 0; /* found, or an error (cleared by the caller) */
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(prefixes); j++)
            if (PyUnicode_Tailmatch(key, PyTuple_GET_ITEM(prefixes, j), 0, PY_SSIZE_T_MAX, -1) != 0)
                return 0;
    }
    return 1;
}

/* _core.highlight.body() would change this UTF-8 text: it holds " <" and does not start with "<". */
static int body_split(const char *raw, Py_ssize_t n)
{
    if (n == 0 || raw[0] == '<')
        return 0;
    for (Py_ssize_t i = 0; i + 1 < n; i++)
        if (raw[i] == ' ' && raw[i + 1] == '<')
            return 1;
    return 0;
}

/* One pending tuple -> new bytes, or a new reference to None when it is not plain.  ``shape``: NULL
 * for the otel shape, _export.fastpath.HIGHLIGHT_SHAPE for the highlight shape. */
static PyObject *plain_log(Buf *b, PyObject *p, PyObject *sites, PyObject *levels, Py_ssize_t room,
                           PyObject *to_ns, PyObject *shape)
{
    PyObject *head = NULL, *level = NULL, *when_obj = NULL, *result = NULL;
    if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != P_FIELDS)
        goto not_plain;
    PyObject *attrs = PyTuple_GET_ITEM(p, P_ATTRIBUTES);
    PyObject *extras = PyTuple_GET_ITEM(p, P_EXTRAS);
    PyObject *dropped = PyTuple_GET_ITEM(p, P_DROPPED);
    PyObject *site = PyTuple_GET_ITEM(p, P_SITE);
    PyObject *levelno = PyTuple_GET_ITEM(p, P_LEVELNO);
    PyObject *text = PyTuple_GET_ITEM(p, P_BODY);
    PyObject *trace_id = PyTuple_GET_ITEM(p, P_TRACE_ID);
    PyObject *span_id = PyTuple_GET_ITEM(p, P_SPAN_ID);
    PyObject *logged_now = PyTuple_GET_ITEM(p, P_LOGGED_NOW);
    if (!PyDict_CheckExact(attrs) || PyDict_GET_SIZE(attrs) != 0 || !PyLong_CheckExact(dropped) ||
        PyObject_IsTrue(dropped) != 0 || PyTuple_GET_ITEM(p, P_EXCEPTION) != Py_None ||
        PyTuple_GET_ITEM(p, P_REQUEST) != Py_None || !PyTuple_Check(site) || PyTuple_GET_SIZE(site) < 1 ||
        !PyTuple_Check(PyTuple_GET_ITEM(site, 0)) || !PyTuple_CheckExact(extras) ||
        !PyLong_CheckExact(levelno) || !PyUnicode_CheckExact(text) || !PyBool_Check(logged_now) ||
        !PyBytes_CheckExact(trace_id) || !PyBytes_CheckExact(span_id))
        goto not_plain;
    /* Strong references: another pipeline's worker may clear these caches meanwhile. */
    head = Py_XNewRef(PyDict_GetItemWithError(sites, site)); /* owned from here: done: releases */
    if (head == NULL || !PyBytes_CheckExact(head))
        goto not_plain;
    level = Py_XNewRef(PyDict_GetItemWithError(levels, PyTuple_GET_ITEM(p, P_LEVEL_NAME)));
    if (level == NULL || !PyTuple_CheckExact(level) || PyTuple_GET_SIZE(level) != 2 ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(level, 1)))
        goto not_plain;
    int same_level = PyObject_RichCompareBool(PyTuple_GET_ITEM(level, 0), levelno, Py_EQ);
    if (same_level != 1)
        goto not_plain;
    if (!extras_plain(extras, PyTuple_GET_SIZE(PyTuple_GET_ITEM(site, 0)), room))
        goto not_plain;
    if (shape != NULL && !extras_highlight_plain(extras, shape))
        goto not_plain;

    uint64_t when, observed;
    PyObject *when_src = PyTuple_GET_ITEM(p, P_WHEN);
    if (PyLong_CheckExact(when_src)) {
        if (as_u64(when_src, &when) < 0)
            goto not_plain;
    } else if (aware_ns(when_src, &when) < 0) { /* loguru's datetime, in C if it can be */
        when_obj = PyObject_CallOneArg(to_ns, when_src);
        if (when_obj == NULL || as_u64(when_obj, &when) < 0)
            goto not_plain;
    }
    if (as_u64(PyTuple_GET_ITEM(p, P_OBSERVED), &observed) < 0)
        goto not_plain;
    /* to_record's rule: the record's own time, read as it was logged, is also its observed time. */
    if (logged_now == Py_True &&
        (observed >= when ? observed - when < SAME_MOMENT : when - observed < 0x100))
        observed = when;

    Py_ssize_t n;
    const char *raw = PyUnicode_AsUTF8AndSize(text, &n);
    if (raw == NULL || (shape != NULL && body_split(raw, n)))
        goto not_plain;
    PyObject *severity = PyTuple_GET_ITEM(level, 1);
    Py_ssize_t body_len = 1 + varint_len((uint64_t)n) + n;
    b->len = 0;
    if (reserve(b, 18 + PyBytes_GET_SIZE(severity) + 1 + 10 + body_len + PyBytes_GET_SIZE(head)) < 0)
        goto not_plain;
    put_byte(b, 0x09);
    put_fixed64(b, when);
    put_byte(b, 0x59);
    put_fixed64(b, observed);
    put_bytes(b, PyBytes_AS_STRING(severity), PyBytes_GET_SIZE(severity));
    put_byte(b, 0x2A);
    put_varint(b, (uint64_t)body_len);
    put_byte(b, 0x0A);
    put_varint(b, (uint64_t)n);
    put_bytes(b, raw, n);
    put_bytes(b, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head));
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(extras); i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(extras, i);
        if (put_attribute(b, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1)) != 0)
            goto not_plain;
    }
    Py_ssize_t tlen = PyBytes_GET_SIZE(trace_id);
    if (tlen) {
        PyObject *flags = PyTuple_GET_ITEM(p, P_FLAGS);
        if (!PyLong_CheckExact(flags))
            goto not_plain;
        unsigned long long mask = PyLong_AsUnsignedLongLongMask(flags);
        if (mask == (unsigned long long)-1 && PyErr_Occurred())
            goto not_plain;
        Py_ssize_t slen = PyBytes_GET_SIZE(span_id);
        if (reserve(b, 5 + 1 + 10 + tlen + 1 + 10 + slen) < 0)
            goto not_plain;
        put_byte(b, 0x45);
        put_byte(b, (unsigned char)(mask & 0xFF));
        put_byte(b, 0);
        put_byte(b, 0);
        put_byte(b, 0);
        put_byte(b, 0x4A);
        put_varint(b, (uint64_t)tlen);
        put_bytes(b, PyBytes_AS_STRING(trace_id), tlen);
        put_byte(b, 0x52);
        put_varint(b, (uint64_t)slen);
        put_bytes(b, PyBytes_AS_STRING(span_id), slen);
    }
    result = PyBytes_FromStringAndSize(b->data, b->len);
    if (result != NULL)
        goto done;

not_plain:
    /* The reference's ``except Exception``: None for this record; KeyboardInterrupt and the like
     * (from a site's __hash__, to_ns(), ...) propagate, NULL. */
    if (clear_exception() == 0)
        result = Py_NewRef(Py_None);
done:
    Py_XDECREF(head);
    Py_XDECREF(level);
    Py_XDECREF(when_obj);
    return result;
}

PyDoc_STRVAR(plain_logs_doc,
             "plain_logs(chunk, sites, levels, room, to_ns, shape=None) -> list[bytes | None]\n\n"
             "_export.fastpath's fast path: each plain record's LogRecord bytes (the general path's), None for the others.");

static PyObject *plain_logs(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "plain_logs() takes 5 or 6 arguments");
        return NULL;
    }
    PyObject *chunk = args[0], *sites = args[1], *levels = args[2], *to_ns = args[4];
    PyObject *shape = nargs == 6 && args[5] != Py_None ? args[5] : NULL;
    if (!PyList_Check(chunk) || !PyDict_Check(sites) || !PyDict_Check(levels)) {
        PyErr_SetString(PyExc_TypeError, "plain_logs(list, dict, dict, int, callable[, shape])");
        return NULL;
    }
    if (shape != NULL) {
        int ok = PyTuple_CheckExact(shape) && PyTuple_GET_SIZE(shape) == 2 &&
                 PyAnySet_Check(PyTuple_GET_ITEM(shape, 0)) && PyTuple_CheckExact(PyTuple_GET_ITEM(shape, 1));
        for (Py_ssize_t j = 0; ok && j < PyTuple_GET_SIZE(PyTuple_GET_ITEM(shape, 1)); j++)
            ok = PyUnicode_CheckExact(PyTuple_GET_ITEM(PyTuple_GET_ITEM(shape, 1), j));
        if (!ok) {
            PyErr_SetString(PyExc_TypeError, "plain_logs(): shape must be (set, tuple of str) or None");
            return NULL;
        }
    }
    Py_ssize_t room = PyLong_AsSsize_t(args[3]);
    if (room == -1 && PyErr_Occurred())
        return NULL;
    chunk = PyList_GetSlice(chunk, 0, PyList_GET_SIZE(chunk)); /* ours: to_ns() runs Python code */
    if (chunk == NULL)
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(chunk);
    PyObject *out = PyList_New(count);
    Buf b = {NULL, 0, 0};
    if (out == NULL || reserve(&b, 512) < 0) {
        Py_DECREF(chunk);
        Py_XDECREF(out);
        return out == NULL ? NULL : PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *one = plain_log(&b, PyList_GET_ITEM(chunk, i), sites, levels, room, to_ns, shape);
        if (one == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, one);
    }
    PyMem_Free(b.data);
    Py_DECREF(chunk);
    return out;
}

/* --- chunk_clean(): _core.scrub.chunk_clean_py, in C -------------------------------------------------
 *
 * Why: the export worker asks, for each chunk of 32 records, whether anything in it can need
 * scrubbing; in Python (joining the texts, folding them, four substring searches) that was the
 * worker's largest Python cost after the fast path.  Here one pass over each string, no copies.  It may answer False where the reference answers True (an odd record): the records
 * are then scrubbed one by one, with the same result. */

/* A str's length and characters may be read: before 3.12 a string made by the legacy
 * PyUnicode_FromUnicode() API is not "ready" (its length reads 0) until this is called. */
static int unicode_ready(PyObject *text)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_READY(text);
#else
    (void)text;
    return 0;
#endif
}

/* The pre-filter's triggers (_core.scrub.TRIGGERS), given once by set_triggers() when _core.scrub is imported:
 * folded strings of 1-16 characters, plus two conditions: the URL one ("://", then "@" later on the
 * same line) and the hex one ("sk" or "key" right before 32 folded hex characters).  Until they are
 * given, every text counts as a possible secret.
 *
 * The scan keeps the last 16 folded characters in two 64-bit registers, and a bitset of the
 * triggers' last two characters: most characters end no trigger's last two, and cost a table fold,
 * two shifts and one bit test; the others compare a few registers. */
#define TRIG_MAX 250
#define TRIG_LEN 16
typedef struct {
    uint64_t lo, hi, mask_lo, mask_hi; /* the trigger's last 8 characters, and those before */
    uint8_t next;                      /* the next trigger with the same last two characters */
} trigger_t;
#define TRIG_NONE 0xFF
static trigger_t trig[TRIG_MAX];
static int trig_set = 0, trig_url = 0, trig_hex = 0;
static int trig_zeros = 0; /* a trigger of only "0"s (a card's digits): counted, not compared */
static uint8_t bigram_bits[(128 * 128) / 8];
static uint8_t bigram_head[128 * 128]; /* the first trigger ending in each two characters */
/* Folded: ASCII letters lower-cased, digits to '0', ' ' and '-' deleted (0), anything >= 0x80 as 0x80. */
static uint8_t fold_tab[256];
static uint8_t hex_tab[256];

static void fold_init(void)
{
    for (int c = 0; c < 256; c++) {
        int f = c;
        if (c >= '0' && c <= '9')
            f = '0';
        else if (c >= 'A' && c <= 'Z')
            f = c + ('a' - 'A');
        else if (c >= 0x80)
            f = 0x80;
        if (c == ' ' || c == '-')
            f = 0;
        fold_tab[c] = (uint8_t)f;
        hex_tab[c] = (uint8_t)(f == '0' || (f >= 'a' && f <= 'f'));
    }
}

PyDoc_STRVAR(set_triggers_doc, "set_triggers(triggers, url_trigger, hex_trigger)\n\n"
                               "The pre-filter's triggers, folded (_core.scrub.TRIGGERS).");

static PyObject *set_triggers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyTuple_Check(args[0]) || !PyUnicode_Check(args[1]) || !PyUnicode_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "set_triggers(tuple, str, str)");
        return NULL;
    }
    trig_set = 0;
    fold_init();
    memset(bigram_bits, 0, sizeof(bigram_bits));
    memset(bigram_head, TRIG_NONE, sizeof(bigram_head));
    Py_ssize_t n = PyTuple_GET_SIZE(args[0]);
    int count = 0, url = 0, hex = 0, zeros = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyTuple_GET_ITEM(args[0], i);
        if (!PyUnicode_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "triggers must be str");
            return NULL;
        }
        for (int which = 1; which <= 2; which++) {
            int eq = PyUnicode_Compare(t, args[which]);
            if (eq == -1 && PyErr_Occurred())
                return NULL;
            if (eq == 0)
                *(which == 1 ? &url : &hex) = 1;
        }
        if (PyUnicode_Compare(t, args[1]) == 0 || PyUnicode_Compare(t, args[2]) == 0)
            continue;
        Py_ssize_t len;
        const char *utf8 = PyUnicode_AsUTF8AndSize(t, &len);
        if (utf8 == NULL)
            return NULL;
        int ok = len >= 2 && len <= TRIG_LEN && count < TRIG_MAX && PyUnicode_IS_ASCII(t);
        for (Py_ssize_t j = 0; ok && j < len; j++) /* already folded: no capitals, spaces or dashes */
            ok = fold_tab[(uint8_t)utf8[j]] == (uint8_t)utf8[j];
        if (!ok) {
            PyErr_SetString(PyExc_ValueError,
                            "a trigger must be 2-16 folded ASCII characters, at most 250 of them");
            return NULL;
        }
        if (strspn(utf8, "0") == (size_t)len) {
            zeros = zeros && zeros < len ? zeros : (int)len;
            continue;
        }
        trigger_t *tr = &trig[count];
        memset(tr, 0, sizeof(*tr));
        for (Py_ssize_t j = 0; j < len; j++) {
            Py_ssize_t from_end = len - 1 - j; /* 0 for the last character */
            uint64_t ch = (uint8_t)utf8[j];
            if (from_end < 8) {
                tr->lo |= ch << (8 * from_end);
                tr->mask_lo |= (uint64_t)0xFF << (8 * from_end);
            } else {
                tr->hi |= ch << (8 * (from_end - 8));
                tr->mask_hi |= (uint64_t)0xFF << (8 * (from_end - 8));
            }
        }
        unsigned bigram = ((unsigned)(uint8_t)utf8[len - 2] << 7) | (uint8_t)utf8[len - 1];
        bigram_bits[bigram >> 3] |= (uint8_t)(1 << (bigram & 7));
        tr->next = bigram_head[bigram];
        bigram_head[bigram] = (uint8_t)count;
        count++;
    }
    trig_zeros = zeros;
    trig_url = url;
    trig_hex = hex;
    trig_set = 1;
    Py_RETURN_NONE;
}

/* The scan over one string's code points, one copy per string kind (the compiler specializes it). */
static inline int scan_text(const void *data, int kind, Py_ssize_t n)
{
    uint64_t lo = 0, hi = 0;
    int armed = 0, hexrun = 0, hex_ok = 0, zeros = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 u = kind == PyUnicode_1BYTE_KIND   ? ((const Py_UCS1 *)data)[i]
                    : kind == PyUnicode_2BYTE_KIND ? ((const Py_UCS2 *)data)[i]
                                                   : ((const Py_UCS4 *)data)[i];
        unsigned c = u < 256 ? fold_tab[u] : 0x80;
        if (c == 0)
            continue; /* deleted: a space or a dash */
        if (c == '0') {
            if (++zeros == trig_zeros)
                return 1;
        } else
            zeros = 0;
        if (trig_hex) {
            if (hex_tab[c]) {
                if (hexrun++ == 0) /* the run starts: what comes right before it? */
                    hex_ok = (lo & 0xFFFF) == (('s' << 8) | 'k') || (lo & 0xFFFFFF) == (('k' << 16) | ('e' << 8) | 'y');
                if (hexrun >= 32 && hex_ok)
                    return 1;
            } else
                hexrun = 0;
        }
        hi = (hi << 8) | (lo >> 56);
        lo = (lo << 8) | c;
        if (trig_url) {
            if (c == '\n')
                armed = 0;
            else if (c == '/' && (lo & 0xFFFFFF) == ((':' << 16) | ('/' << 8) | '/'))
                armed = 1;
            else if (c == '@' && armed)
                return 1;
        }
        unsigned bigram = (unsigned)(((lo >> 8) & 0x7F) << 7) | (c & 0x7F);
        if (c < 0x80 && ((lo >> 8) & 0xFF) < 0x80 && (bigram_bits[bigram >> 3] >> (bigram & 7)) & 1) {
            for (unsigned t = bigram_head[bigram]; t != TRIG_NONE; t = trig[t].next) {
                const trigger_t *tr = &trig[t];
                if ((lo & tr->mask_lo) == tr->lo && (hi & tr->mask_hi) == tr->hi)
                    return 1;
            }
        }
    }
    return 0;
}

/* _core.scrub._maybe_secret_py(text), for one str: the text folded as _FOLD_TABLE folds its UTF-8 bytes
 * (ASCII letters lower-cased, digits to "0", spaces and dashes deleted; anything else, non-ASCII
 * included, as itself), then any trigger looked for.  1 when one is found (or on an error). */
static int maybe_secret(PyObject *text)
{
    if (!trig_set)
        return 1;
    if (unicode_ready(text) < 0) {
        PyErr_Clear();
        return 1; /* unreadable: let the per-record path look */
    }
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        return scan_text(data, PyUnicode_1BYTE_KIND, n);
    case PyUnicode_2BYTE_KIND:
        return scan_text(data, PyUnicode_2BYTE_KIND, n);
    default:
        return scan_text(data, PyUnicode_4BYTE_KIND, n);
    }
}

PyDoc_STRVAR(maybe_secret_doc, "maybe_secret(text) -> bool\n\n_scrub._maybe_secret_py, in C.");

static PyObject *maybe_secret_py(PyObject *module, PyObject *text)
{
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "maybe_secret(str)");
        return NULL;
    }
    return PyBool_FromLong(maybe_secret(text));
}

PyDoc_STRVAR(chunk_clean_doc, "chunk_clean(chunk, safe_keys) -> bool\n\n_scrub.chunk_clean_py, in C.");

static PyObject *chunk_clean(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyAnySet_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "chunk_clean(list, set)");
        return NULL;
    }
    PyObject *chunk = args[0], *safe_keys = args[1];
    /* ``chunk`` is the worker's own slice of a batch: nothing else changes it meanwhile. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(chunk); i++) {
        PyObject *p = PyList_GET_ITEM(chunk, i);
        if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != P_FIELDS)
            Py_RETURN_FALSE;
        PyObject *body = PyTuple_GET_ITEM(p, P_BODY), *extras = PyTuple_GET_ITEM(p, P_EXTRAS);
        /* An exact tuple: a list could change under a key's comparison in the set lookup below. */
        if (!PyUnicode_CheckExact(body) || maybe_secret(body) || !PyTuple_CheckExact(extras))
            Py_RETURN_FALSE;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(extras); j++) {
            PyObject *pair = PyTuple_GET_ITEM(extras, j);
            if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
                !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 0)))
                Py_RETURN_FALSE;
            if (PySet_Contains(safe_keys, PyTuple_GET_ITEM(pair, 0)) != 1) {
                if (clear_exception() < 0)
                    return NULL;
                Py_RETURN_FALSE; /* unknown keys: the per-record path learns them */
            }
            PyObject *value = PyTuple_GET_ITEM(pair, 1);
            if (PyUnicode_CheckExact(value)) {
                if (maybe_secret(value))
                    Py_RETURN_FALSE;
            } else if (!(PyLong_CheckExact(value) || PyFloat_CheckExact(value) || PyBool_Check(value) ||
                         value == Py_None))
                Py_RETURN_FALSE; /* containers: walked record by record */
        }
    }
    Py_RETURN_TRUE;
}

/* --- capture_record(): the caller's half of the converter (_core.convert.capture_record_py) ---
 *
 * Why: on the application's thread, the Python capture_record (the call with its keywords, the
 * extras loop, the trace and request context, the tuple) was most of a plain record's cost; here
 * a fraction of it.  Same contract: whatever this does not handle goes to the Python
 * reference with the very same arguments before anything is read (an exception to render, a
 * span-only report, a body that is not a str or is over max_body_length, unexpected arguments).
 * Past that point it does what the reference does, step for step, and raises where it raises. */

enum {
    C_SETTINGS, C_WHEN, C_LEVELNO, C_LEVEL_NAME, C_SCOPE, C_BODY, C_ATTRIBUTES, C_EXTRAS, C_EXC,
    C_EXCEPTION, C_SITE, C_SKIP, C_SPAN_ONLY, C_LOGGED_NOW, C_ARGS, C_REQUIRED = C_EXC
};
static const char *const cap_arg_names[C_ARGS] = {
    "settings", "when", "levelno", "level_name", "scope", "body", "base_attributes", "extras", "exc",
    "exception", "site", "skip", "span_only", "logged_now",
};
static PyObject *cap_names[C_ARGS];      /* the same, interned */
static PyObject *cap_fallback;           /* _core.convert.capture_record_py; NULL until capture_setup() */
static PyTypeObject *cap_pending;        /* _core.record.Pending */
static PyObject *cap_coerce, *cap_safe_str, *cap_current_span, *cap_no_span;
static PyObject *cap_context_var;        /* OTel's runtime ContextVar, or NULL: current_span() */
static PyObject *cap_span_key;           /* its key for the active span */
static PyTypeObject *cap_context_type;   /* opentelemetry.context.Context */
static PyObject *cap_request_var;        /* _core.context.current */
static PyCFunction cap_time_ns_seen;     /* the C function last seen behind time.time_ns */
static int cap_time_ns_genuine;          /* ... is the time module's own */
static PyCFunction cap_time_reference;   /* time.perf_counter's, which time-machine leaves alone */
static PyObject *cap_time_module, *str_time_ns;
static PyObject *str_value_limit, *str_count_limit, *str_max_body;
/* The last Settings seen and its limits (Settings is frozen): three getattr calls saved a record. */
static PyObject *cap_settings, *cap_limit_obj;
static Py_ssize_t cap_limit, cap_room, cap_max_body;

/* The limits of ``settings``: 0, with a new reference to the value length limit; -1 (error cleared)
 * when they are not ints, which the reference then deals with; -2 with an error that is not an
 * Exception (from a getattr of the user's), which propagates as it would from the reference. */
static int settings_limits(PyObject *settings, PyObject **limit_obj, Py_ssize_t *limit, Py_ssize_t *room,
                           Py_ssize_t *max_body)
{
    if (settings == cap_settings && cap_limit_obj != NULL) {
        *limit_obj = Py_NewRef(cap_limit_obj);
        *limit = cap_limit;
        *room = cap_room;
        *max_body = cap_max_body;
        return 0;
    }
    PyObject *l = PyObject_GetAttr(settings, str_value_limit);
    PyObject *r = l == NULL ? NULL : PyObject_GetAttr(settings, str_count_limit);
    PyObject *m = r == NULL ? NULL : PyObject_GetAttr(settings, str_max_body);
    int ok = m != NULL && PyLong_CheckExact(l) && PyLong_CheckExact(r) && PyLong_CheckExact(m);
    if (ok) {
        *limit = PyLong_AsSsize_t(l);
        *room = PyLong_AsSsize_t(r);
        *max_body = PyLong_AsSsize_t(m);
        ok = !PyErr_Occurred();
    }
    Py_XDECREF(r);
    Py_XDECREF(m);
    if (!ok) {
        Py_XDECREF(l);
        return clear_exception() < 0 ? -2 : -1;
    }
    /* No Python code runs from here to the return: another thread cannot see half of it. */
    PyObject *old_settings = cap_settings, *old_limit = cap_limit_obj;
    cap_settings = Py_NewRef(settings);
    cap_limit_obj = Py_NewRef(l);
    cap_limit = *limit;
    cap_room = *room;
    cap_max_body = *max_body;
    *limit_obj = l;
    Py_XDECREF(old_settings);
    Py_XDECREF(old_limit);
    return 0;
}

/* ``key, value = pair`` for anything but an exact 2-tuple: a new 2-tuple, or NULL with the
 * exception the statement raises (reading at most three items, as it does). */
static PyObject *unpack_pair(PyObject *pair)
{
    PyObject *it = PyObject_GetIter(pair), *items[3] = {NULL, NULL, NULL}, *result = NULL;
    if (it == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "cannot unpack non-iterable %.200s object", Py_TYPE(pair)->tp_name);
        }
        return NULL;
    }
    int n = 0;
    while (n < 3 && (items[n] = PyIter_Next(it)) != NULL)
        n++;
    if (!PyErr_Occurred()) {
        if (n < 2)
            PyErr_Format(PyExc_ValueError, "not enough values to unpack (expected 2, got %d)", n);
        else if (n > 2)
            PyErr_SetString(PyExc_ValueError, "too many values to unpack (expected 2)");
        else
            result = PyTuple_Pack(2, items[0], items[1]);
    }
    for (int i = 0; i < n; i++)
        Py_DECREF(items[i]);
    Py_DECREF(it);
    return result;
}

/* One (key, value) of the user's into ``snapshot``, as the reference's loop body: 0 or -1. */
static int snapshot_pair(PyObject *snapshot, PyObject *pair, PyObject *skip, Py_ssize_t room, Py_ssize_t limit,
                         PyObject *limit_obj, Py_ssize_t *dropped)
{
    PyObject *unpacked = NULL, *item = NULL, *key, *value;
    int is_tuple = PyTuple_CheckExact(pair), result = -1;
    if (is_tuple && PyTuple_GET_SIZE(pair) == 2) {
        key = PyTuple_GET_ITEM(pair, 0);
        value = PyTuple_GET_ITEM(pair, 1);
    } else { /* key, value = pair: at most three items read, CPython's messages */
        if ((unpacked = unpack_pair(pair)) == NULL)
            return -1;
        is_tuple = 0;
        key = PyTuple_GET_ITEM(unpacked, 0);
        value = PyTuple_GET_ITEM(unpacked, 1);
    }
    if (skip != NULL) {
        int found = PySequence_Contains(skip, key);
        if (found < 0)
            goto done;
        if (found) {
            result = 0;
            goto done;
        }
    }
    if (PyList_GET_SIZE(snapshot) >= room) {
        (*dropped)++; /* not converted: its __str__ does not run, its memory is not held */
        result = 0;
        goto done;
    }
    if (PyUnicode_CheckExact(value) && unicode_ready(value) < 0)
        goto done;
    if (PyUnicode_CheckExact(key) &&
        (PyLong_CheckExact(value) || (PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) <= limit) ||
         PyFloat_CheckExact(value) || PyBool_Check(value))) {
        item = is_tuple ? Py_NewRef(pair) : PyTuple_Pack(2, key, value);
    } else {
        PyObject *k = PyUnicode_CheckExact(key) ? Py_NewRef(key) : PyObject_CallOneArg(cap_safe_str, key);
        PyObject *v = k == NULL ? NULL : PyObject_CallFunctionObjArgs(cap_coerce, value, limit_obj, NULL);
        if (v != NULL)
            item = PyTuple_Pack(2, k, v);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    if (item != NULL && PyList_Append(snapshot, item) == 0)
        result = 0;
done:
    Py_XDECREF(item);
    Py_XDECREF(unpacked);
    return result;
}

/* (trace_id, span_id, flags) of the active span, a new reference: the common case (no span) read
 * here, anything else from _core.convert.current_span(). */
static PyObject *active_span(void)
{
    if (cap_context_var != NULL) {
        PyObject *ctx = NULL;
        if (PyContextVar_Get(cap_context_var, NULL, &ctx) == 0 && ctx != NULL) {
            int none = 0;
            if (Py_TYPE(ctx) == cap_context_type) {
                PyObject *span = PyDict_GetItemWithError(ctx, cap_span_key);
                none = span == Py_None || (span == NULL && !PyErr_Occurred());
            }
            Py_DECREF(ctx);
            if (none)
                return Py_NewRef(cap_no_span);
        }
        if (clear_exception() < 0)
            return NULL; /* current_span() catches Exception only */
    }
    PyObject *span = PyObject_CallNoArgs(cap_current_span);
    if (span != NULL && (!PyTuple_CheckExact(span) || PyTuple_GET_SIZE(span) != 3)) {
        Py_DECREF(span);
        PyErr_SetString(PyExc_TypeError, "current_span() returns a 3-tuple");
        return NULL;
    }
    return span;
}

/* The time module's own C function, not one put in its place (time-machine swaps the function
 * behind the builtin, in its own shared object): it lives where time.perf_counter's does.  Without
 * dladdr(), the first function seen is taken as the time module's own. */
static int time_module_function(PyCFunction impl)
{
#ifdef HAVE_DLADDR
    Dl_info mine, reference;
    if (cap_time_reference != NULL && dladdr((void *)impl, &mine) != 0 &&
        dladdr((void *)cap_time_reference, &reference) != 0)
        return mine.dli_fbase == reference.dli_fbase;
#endif
    return cap_time_ns_seen == NULL;
}

/* ``f`` is the genuine time.time_ns: the time module's own builtin (freezegun swaps the attribute,
 * possibly before this module was imported, so what was there at import proves nothing), running
 * the time module's own C function. */
static PyObject *cap_time_ns_builtin; /* the time module's time_ns builtin object, once seen */

static int genuine_time_ns(PyObject *f)
{
    if (f != cap_time_ns_builtin) { /* rarely: not the builtin object seen before */
        if (!PyCFunction_CheckExact(f) || PyCFunction_GET_SELF(f) != cap_time_module)
            return 0;
        PyMethodDef *def = ((PyCFunctionObject *)f)->m_ml;
        if (def == NULL || def->ml_name == NULL || strcmp(def->ml_name, "time_ns") != 0 ||
            def->ml_flags != METH_NOARGS)
            return 0;
        Py_XSETREF(cap_time_ns_builtin, Py_NewRef(f));
    }
    PyCFunction impl = ((PyCFunctionObject *)f)->m_ml->ml_meth;
    if (impl != cap_time_ns_seen) { /* rarely: dladdr() runs once per function seen */
        cap_time_ns_genuine = time_module_function(impl);
        cap_time_ns_seen = impl;
    }
    return cap_time_ns_genuine;
}

static PyObject *observed_now(void)
{
    /* The reference calls time.time_ns() as it stands: a test's patched clock (freezegun) too. */
    PyObject *current = PyObject_GetAttr(cap_time_module, str_time_ns);
    if (current == NULL)
        return NULL;
#ifdef CLOCK_REALTIME
    struct timespec ts;
    if (genuine_time_ns(current) && clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        Py_DECREF(current);
        uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        return PyLong_FromUnsignedLongLong(ns & ~(uint64_t)0xFF);
    }
#endif
    PyObject *ns = PyObject_CallNoArgs(current);
    Py_DECREF(current);
    if (ns == NULL)
        return NULL;
    PyObject *mask = PyLong_FromLong(~0xFFL);
    PyObject *result = mask == NULL ? NULL : PyNumber_And(ns, mask);
    Py_DECREF(ns);
    Py_XDECREF(mask);
    return result;
}

/* True when ``obj`` holds nothing the cycle collector must see: not a GC object, already untracked,
 * or (``depth`` levels down) an exact tuple of such items, which this untracks as the collector's
 * own young pass would (it does so only later, and never for a tuple subclass such as Pending). */
static int untrackable(PyObject *obj, int depth)
{
    if (!PyObject_IS_GC(obj) || !PyObject_GC_IsTracked(obj))
        return 1;
    if (depth == 0 || !PyTuple_CheckExact(obj))
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(obj); i++)
        if (!untrackable(PyTuple_GET_ITEM(obj, i), depth - 1))
            return 0;
    PyObject_GC_UnTrack(obj);
    return 1;
}

PyDoc_STRVAR(capture_record_doc,
             "capture_record(settings, when, levelno, level_name, scope, body, base_attributes, extras, exc=None,\n"
             "               exception=None, site=None, skip=frozenset(), span_only=False, logged_now=True)"
             " -> Pending\n\n"
             "_core.convert.capture_record_py, in C, for records without an exception; the rest go to it.");

static PyObject *capture_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)module;
    PyObject *a[C_ARGS] = {NULL};
    if (cap_fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "capture_setup() was not called");
        return NULL;
    }
    if (nargs > C_ARGS)
        goto fallback;
    for (Py_ssize_t i = 0; i < nargs; i++)
        a[i] = args[i];
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j);
        int at = -1;
        for (int i = 0; i < C_ARGS && at < 0; i++)
            if (name == cap_names[i])
                at = i; /* keywords in a call are interned: a pointer comparison finds them */
        for (int i = 0; i < C_ARGS && at < 0; i++)
            if (PyUnicode_Check(name) && PyUnicode_Compare(name, cap_names[i]) == 0)
                at = i;
        if (at < 0 || a[at] != NULL)
            goto fallback; /* the reference raises the TypeError */
        a[at] = args[nargs + j];
    }
    for (int i = 0; i < C_REQUIRED; i++)
        if (a[i] == NULL)
            goto fallback;
    if ((a[C_EXC] != NULL && a[C_EXC] != Py_None) || (a[C_EXCEPTION] != NULL && a[C_EXCEPTION] != Py_None) ||
        (a[C_SPAN_ONLY] != NULL && a[C_SPAN_ONLY] != Py_False) || !PyUnicode_CheckExact(a[C_BODY]))
        goto fallback;
    PyObject *limit_obj;
    Py_ssize_t limit, room, max_body;
    int limits = settings_limits(a[C_SETTINGS], &limit_obj, &limit, &room, &max_body);
    if (limits == -2)
        return NULL;
    if (limits < 0)
        goto fallback;
    PyObject *text = a[C_BODY];
    Py_ssize_t nattrs = unicode_ready(text) < 0 || PyUnicode_GET_LENGTH(text) > max_body
                            ? -1
                            : PyObject_Size(a[C_ATTRIBUTES]);
    if (nattrs < 0) { /* cut to max_body_length, or odd base attributes: the reference */
        Py_DECREF(limit_obj);
        if (clear_exception() < 0)
            return NULL; /* a KeyboardInterrupt from the attributes' __len__ */
        goto fallback;
    }

    PyObject *snapshot = PyList_New(0), *span = NULL, *request = NULL, *observed = NULL, *pending = NULL;
    PyObject *iterator = NULL, *extras = a[C_EXTRAS];
    Py_ssize_t dropped = 0;
    if (snapshot == NULL)
        goto error;
    int truth = PyObject_IsTrue(extras); /* a generator is always true; empty lists skip the loop */
    if (truth < 0)
        goto error;
    if (truth) {
        PyObject *skip = NULL;
        if (a[C_SKIP] != NULL) {
            int skipping = PyObject_IsTrue(a[C_SKIP]);
            if (skipping < 0)
                goto error;
            skip = skipping ? a[C_SKIP] : NULL;
        }
        int is_list = PyList_CheckExact(extras);
        if (!is_list && (iterator = PyObject_GetIter(extras)) == NULL)
            goto error;
        for (Py_ssize_t i = 0;; i++) {
            PyObject *pair;
            if (is_list) { /* as a list iterator: the length read each time */
                if (i >= PyList_GET_SIZE(extras))
                    break;
                pair = Py_NewRef(PyList_GET_ITEM(extras, i));
            } else if ((pair = PyIter_Next(iterator)) == NULL) {
                if (PyErr_Occurred())
                    goto error;
                break;
            }
            int r = snapshot_pair(snapshot, pair, skip, room, limit, limit_obj, &dropped);
            Py_DECREF(pair);
            if (r < 0)
                goto error;
        }
    }
    if ((span = active_span()) == NULL)
        goto error;
    if ((observed = observed_now()) == NULL)
        goto error;
    if (PyContextVar_Get(cap_request_var, NULL, &request) < 0)
        goto error;
    if (request == NULL)
        request = Py_NewRef(Py_None);
    Py_ssize_t size = 256 + PyUnicode_GET_LENGTH(text) + 48 * (nattrs + PyList_GET_SIZE(snapshot));
    PyObject *dropped_obj = PyLong_FromSsize_t(dropped), *size_obj = PyLong_FromSsize_t(size);
    PyObject *extras_tuple = PyList_AsTuple(snapshot); /* a tuple: see capture_record_py */
    if (dropped_obj == NULL || size_obj == NULL || extras_tuple == NULL) {
        Py_XDECREF(dropped_obj);
        Py_XDECREF(size_obj);
        Py_XDECREF(extras_tuple);
        goto error;
    }
    /* tuple.__new__(Pending, ...) does the same: the subclass's tp_alloc, then the items. */
    pending = cap_pending->tp_alloc(cap_pending, P_FIELDS);
    if (pending == NULL) {
        Py_DECREF(dropped_obj);
        Py_DECREF(size_obj);
        Py_DECREF(extras_tuple);
        goto error;
    }
    PyObject *items[P_FIELDS] = {
        [P_WHEN] = Py_NewRef(a[C_WHEN]),
        [P_OBSERVED] = Py_NewRef(observed),
        [P_LEVELNO] = Py_NewRef(a[C_LEVELNO]),
        [P_LEVEL_NAME] = Py_NewRef(a[C_LEVEL_NAME]),
        [P_SCOPE] = Py_NewRef(a[C_SCOPE]),
        [P_BODY] = Py_NewRef(text),
        [P_ATTRIBUTES] = Py_NewRef(a[C_ATTRIBUTES]),
        [P_EXTRAS] = extras_tuple,
        [P_DROPPED] = dropped_obj,
        [P_EXCEPTION] = Py_NewRef(Py_None),
        [P_SITE] = Py_NewRef(a[C_SITE] != NULL ? a[C_SITE] : Py_None),
        [P_TRACE_ID] = Py_NewRef(PyTuple_GET_ITEM(span, 0)),
        [P_SPAN_ID] = Py_NewRef(PyTuple_GET_ITEM(span, 1)),
        [P_FLAGS] = Py_NewRef(PyTuple_GET_ITEM(span, 2)),
        [P_REQUEST] = Py_NewRef(request),
        [P_SIZE] = size_obj,
        [P_SPAN_ONLY] = Py_NewRef(a[C_SPAN_ONLY] != NULL ? a[C_SPAN_ONLY] : Py_False),
        [P_LOGGED_NOW] = Py_NewRef(a[C_LOGGED_NOW] != NULL ? a[C_LOGGED_NOW] : Py_True),
    };
    int plain = 1;
    for (int i = 0; i < P_FIELDS; i++) {
        PyTuple_SET_ITEM(pending, i, items[i]);
        /* extras: pairs of plain values; site: names.  Each item is looked at even once the record
         * itself must stay tracked (loguru's time, a datetime subclass with a __dict__): its
         * extras and site then still leave the collector's lists. */
        plain = untrackable(items[i], 2) && plain;
    }
    /* A queued record of plain values is left out of the cycle collector's work: with the queue
     * holding 20,000 of them, each full collection walked them all, and their number kept
     * triggering more (measured in the structlog benchmark, with gc.disable() as the mark). */
    /* Safe: nothing the record holds can lead back to it (its attributes dict is the front end's
     * own, and to_record, the only code that changes it, adds strings and snapshots to it). */
    if (plain)
        PyObject_GC_UnTrack(pending);
error:
    Py_XDECREF(snapshot);
    Py_XDECREF(iterator);
    Py_XDECREF(span);
    Py_XDECREF(request);
    Py_XDECREF(observed);
    Py_DECREF(limit_obj);
    return pending;

fallback:
    return PyObject_Vectorcall(cap_fallback, args, (size_t)nargs, kwnames);
}

PyDoc_STRVAR(capture_setup_doc,
             "capture_setup(fallback, pending, coerce, safe_str, current_span, no_span, context_var, span_key,\n"
             "              context_type, request_var)\n\n"
             "What capture_record() reads from _core.convert, once at its import; context_var may be None.");

static PyObject *capture_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "capture_setup() takes 10 arguments");
        return NULL;
    }
    PyObject *context_var = args[6] == Py_None ? NULL : args[6];
    if (!PyCallable_Check(args[0]) || !PyType_Check(args[1]) ||
        !PyType_IsSubtype((PyTypeObject *)args[1], &PyTuple_Type) || !PyTuple_CheckExact(args[5]) ||
        PyTuple_GET_SIZE(args[5]) != 3 || !PyContextVar_CheckExact(args[9]) ||
        (context_var != NULL && (!PyContextVar_CheckExact(context_var) || !PyUnicode_Check(args[7]) ||
                                 !PyType_Check(args[8]) ||
                                 !PyType_IsSubtype((PyTypeObject *)args[8], &PyDict_Type)))) {
        PyErr_SetString(PyExc_TypeError, "capture_setup(): unexpected arguments");
        return NULL;
    }
    for (int i = 0; i < C_ARGS; i++)
        if (cap_names[i] == NULL && (cap_names[i] = PyUnicode_InternFromString(cap_arg_names[i])) == NULL)
            return NULL;
    if ((str_value_limit == NULL &&
         (str_value_limit = PyUnicode_InternFromString("attribute_value_length_limit")) == NULL) ||
        (str_count_limit == NULL && (str_count_limit = PyUnicode_InternFromString("attribute_count_limit")) == NULL) ||
        (str_max_body == NULL && (str_max_body = PyUnicode_InternFromString("max_body_length")) == NULL))
        return NULL;
    /* Set once per process in practice; a second call (a test) replaces the first. */
    Py_XSETREF(cap_fallback, Py_NewRef(args[0]));
    Py_XSETREF(cap_pending, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(cap_coerce, Py_NewRef(args[2]));
    Py_XSETREF(cap_safe_str, Py_NewRef(args[3]));
    Py_XSETREF(cap_current_span, Py_NewRef(args[4]));
    Py_XSETREF(cap_no_span, Py_NewRef(args[5]));
    Py_XSETREF(cap_context_var, Py_XNewRef(context_var));
    Py_XSETREF(cap_span_key, context_var == NULL ? NULL : Py_NewRef(args[7]));
    Py_XSETREF(cap_context_type, context_var == NULL ? NULL : (PyTypeObject *)Py_NewRef(args[8]));
    Py_XSETREF(cap_request_var, Py_NewRef(args[9]));
    if (cap_time_module == NULL && (cap_time_module = PyImport_ImportModule("time")) == NULL)
        return NULL;
    if (str_time_ns == NULL && (str_time_ns = PyUnicode_InternFromString("time_ns")) == NULL)
        return NULL;
    PyObject *reference = PyObject_GetAttrString(cap_time_module, "perf_counter");
    if (reference == NULL)
        return NULL;
    if (PyCFunction_CheckExact(reference) && cap_time_reference == NULL)
        cap_time_reference = ((PyCFunctionObject *)reference)->m_ml->ml_meth;
    Py_DECREF(reference);
    PyObject *now = PyObject_GetAttr(cap_time_module, str_time_ns); /* without dladdr(): the one */
    if (now == NULL)                                                  /* seen first, as imported */
        return NULL;
    (void)genuine_time_ns(now);
    Py_DECREF(now);
    Py_CLEAR(cap_settings);
    Py_CLEAR(cap_limit_obj);
    Py_RETURN_NONE;
}

/* --- structlog_event(): StructlogProcessor._export's common case, in C ----------------------
 *
 * Why: with capture_record() in C, the processor's own reads of a plain event (level, logger,
 * timestamp, event, the rare keys, the base attributes) were about half of its call.  This does them for a native event: an exact dict without
 * any of the rare keys, a level name _LEVELS knows, a str logger name (or none: the caller passes
 * no stdlib logger), a float timestamp (TimeStamper(fmt=None)).  Anything else returns None before
 * anything is consumed, and _export takes its Python path, the reference.  Past the checks it
 * calls capture_record() with exactly the arguments the Python path passes. */

/* Only exact str keys in ``dict``: then no lookup in it runs Python code (a key's __eq__ could
 * change the dict mid-way, and the Python path would see another one).  The C readings below
 * decline any other dict. */
static int str_keys_only(PyObject *dict)
{
    Py_ssize_t at = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &at, &key, &value))
        if (!PyUnicode_CheckExact(key))
            return 0;
    return 1;
}

static PyObject *sl_rare;          /* _frontends.structlog._RARE_KEYS, as a tuple */
static PyObject *sl_levels;        /* _frontends.structlog._LEVELS */
static PyObject *sl_default_scope; /* _frontends.structlog.DEFAULT_SCOPE */
static PyObject *sl_internal;      /* _frontends.binding.INTERNAL_LOGGERS (a tuple of str) */
static PyObject *sl_skip;          /* _frontends.structlog._CONSUMED */
static PyObject *str_level, *str_logger, *str_timestamp, *str_event, *str_items, *str_empty;

PyDoc_STRVAR(structlog_setup_doc,
             "structlog_setup(rare_keys, levels, default_scope, internal_loggers, consumed)\n\n"
             "What structlog_event() reads from _frontends.structlog, once at its import.");

static PyObject *structlog_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyTuple_CheckExact(args[0]) || !PyDict_CheckExact(args[1]) ||
        !PyUnicode_CheckExact(args[2]) || !PyTuple_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "structlog_setup(): unexpected arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[3]); i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(args[3], i))) {
            PyErr_SetString(PyExc_TypeError, "structlog_setup(): internal_loggers must be str");
            return NULL;
        }
    if ((str_level == NULL && (str_level = PyUnicode_InternFromString("level")) == NULL) ||
        (str_logger == NULL && (str_logger = PyUnicode_InternFromString("logger")) == NULL) ||
        (str_timestamp == NULL && (str_timestamp = PyUnicode_InternFromString("timestamp")) == NULL) ||
        (str_event == NULL && (str_event = PyUnicode_InternFromString("event")) == NULL) ||
        (str_items == NULL && (str_items = PyUnicode_InternFromString("items")) == NULL) ||
        (str_empty == NULL && (str_empty = PyUnicode_FromString("")) == NULL))
        return NULL;
    Py_XSETREF(sl_rare, Py_NewRef(args[0]));
    Py_XSETREF(sl_levels, Py_NewRef(args[1]));
    Py_XSETREF(sl_default_scope, Py_NewRef(args[2]));
    Py_XSETREF(sl_internal, Py_NewRef(args[3]));
    Py_XSETREF(sl_skip, Py_NewRef(args[4]));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(structlog_event_doc,
             "structlog_event(settings, event_dict, site) -> Pending | None\n\n"
             "StructlogProcessor._export's common case; None: not that case, take the Python path.");

static PyObject *structlog_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || sl_levels == NULL || cap_fallback == NULL) {
        PyErr_SetString(PyExc_TypeError, "structlog_event(settings, event_dict, site), after the setups");
        return NULL;
    }
    PyObject *event = args[1];
    if (!PyDict_CheckExact(event))
        Py_RETURN_NONE;
    if (!str_keys_only(event))
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(sl_rare); i++) {
        int has = PyDict_Contains(event, PyTuple_GET_ITEM(sl_rare, i));
        if (has != 0)
            return has < 0 ? NULL : Py_NewRef(Py_None);
    }
    /* Owned from here to the end, the setup's objects included: capture_record() runs Python code
     * (a value's __str__, the trace context), which could even call structlog_setup() again. */
    PyObject *levels = Py_NewRef(sl_levels), *skip = Py_NewRef(sl_skip), *internal_loggers = Py_NewRef(sl_internal);
    PyObject *found = NULL, *scope = NULL, *body = NULL, *ns = NULL, *attributes = NULL, *items = NULL;
    PyObject *result = NULL; /* NULL with an error set, or the answer */
    PyObject *level = Py_XNewRef(PyDict_GetItemWithError(event, str_level));
    if (level != NULL && PyUnicode_CheckExact(level))
        found = Py_XNewRef(PyDict_GetItemWithError(levels, level));
    Py_XDECREF(level);
    if (found == NULL || !PyTuple_CheckExact(found) || PyTuple_GET_SIZE(found) != 2)
        goto decline;
    scope = Py_XNewRef(PyDict_GetItemWithError(event, str_logger));
    if (scope == NULL && PyErr_Occurred())
        goto done;
    if (scope == NULL || scope == Py_None)
        Py_XSETREF(scope, Py_NewRef(sl_default_scope));
    else if (!PyUnicode_CheckExact(scope))
        goto decline;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(internal_loggers); i++) {
        Py_ssize_t internal =
            PyUnicode_Tailmatch(scope, PyTuple_GET_ITEM(internal_loggers, i), 0, PY_SSIZE_T_MAX, -1);
        if (internal < 0)
            goto done;
        if (internal)
            goto decline; /* the Python path drops it */
    }
    PyObject *stamp = PyDict_GetItemWithError(event, str_timestamp); /* read at once, not kept */
    if (stamp == NULL || !PyFloat_CheckExact(stamp))
        goto decline;
    double seconds = PyFloat_AS_DOUBLE(stamp);
    if (!(seconds >= 0 && seconds < 1.8e10))
        goto decline;
    body = Py_XNewRef(PyDict_GetItemWithError(event, str_event));
    if (body == NULL) {
        if (PyErr_Occurred())
            goto done;
        body = Py_NewRef(str_empty);
    }
    if ((ns = PyLong_FromDouble(seconds * 1e9)) == NULL || /* int(stamp * 1_000_000_000) */
        (attributes = PyDict_New()) == NULL || (items = PyObject_CallMethodNoArgs(event, str_items)) == NULL)
        goto done;
    PyObject *call[C_ARGS] = {
        args[0], ns, PyTuple_GET_ITEM(found, 0), PyTuple_GET_ITEM(found, 1), scope, body, attributes,
        items, Py_None, Py_None, args[2], skip, Py_False, Py_True,
    };
    result = capture_record(module, call, C_ARGS, NULL);
    goto done;
decline:
    if (!PyErr_Occurred())
        result = Py_NewRef(Py_None);
done:
    Py_DECREF(levels);
    Py_DECREF(skip);
    Py_DECREF(internal_loggers);
    Py_XDECREF(found);
    Py_XDECREF(scope);
    Py_XDECREF(body);
    Py_XDECREF(ns);
    Py_XDECREF(attributes);
    Py_XDECREF(items);
    return result;
}

/* --- logrecord_event(): HighlightHandler.emit's common case, in C -------------------------------
 *
 * Why: with capture_record() in C, emit's own Python reads of a LogRecord (the message, the extras
 * past LogRecord's own attributes, the site, the time) were most of its call (figures:
 * docs/performance.md).  This reads an exact, unmodified logging.LogRecord the way
 * _frontends.handler reads it; anything else returns None before any code of the user's ran, and
 * emit takes its Python path.  Once the message is formatted (the user's __str__ ran) it never
 * declines: what is unusual past that point (stack_info, an odd created, a record its own
 * formatting changed) goes to the Python reference, _frontends.handler._pending, with that message.
 *
 * Values read from the record's dict are borrowed, and every allocation may run a collection whose
 * callbacks or finalizers change the dict: each value is held (a new reference) before the next
 * allocation. */

static PyTypeObject *lr_type;    /* logging.LogRecord */
static PyObject *lr_func;        /* LogRecord.getMessage as set up, and its code: swapped, the C path stops */
static PyObject *lr_code;
static PyObject *lr_check;       /* _frontends.handler._unmodified(cls) -> bool, after a change to the class */
static unsigned int lr_version;  /* the class's version tag when last checked and found unmodified */
static unsigned int lr_refused;  /* ... and when last found modified */
static PyObject *lr_standard;    /* _frontends.handler._STANDARD */
static PyObject *lr_last_init;   /* _frontends.handler._LAST_INIT */
static Py_ssize_t lr_n_init;     /* _frontends.handler._N_INIT */
static PyObject *lr_site_keys;   /* _core.record.SITE_KEYS */
static PyObject *lr_unformatted; /* _frontends.handler._unformatted(record, exc) -> str */
static PyObject *lr_reference;   /* _frontends.handler._pending(settings, record, body) -> Pending */
static PyObject *lr_no_skip;     /* capture_record's default skip, frozenset() */
static PyObject *str_msg, *str_args, *str_created, *str_levelno, *str_levelname, *str_pathname, *str_func_name,
    *str_lineno, *str_thread, *str_thread_name, *str_stack_info, *str_exc_info, *str_get_message, *str_name;

/* The class's version tag, or 0 when it has none that means anything: on 3.10 and 3.11 a change
 * (PyType_Modified) clears Py_TPFLAGS_VALID_VERSION_TAG and leaves the old number until the next
 * lookup; from 3.12 on it sets the number to 0 (and 3.13 no longer keeps the flag). */
static unsigned int lr_tag(PyTypeObject *t)
{
#if PY_VERSION_HEX < 0x030C0000
    if (!PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG))
        return 0;
#endif
    return t->tp_version_tag;
}

PyDoc_STRVAR(logrecord_setup_doc,
             "logrecord_setup(record_type, standard, n_init, last_init, site_keys, unformatted, reference, check)\n\n"
             "What logrecord_event() reads from _frontends.handler, once at its import.");

static PyObject *logrecord_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 8 || !PyType_Check(args[0]) || !PyFrozenSet_CheckExact(args[1]) || !PyLong_CheckExact(args[2]) ||
        !PyUnicode_CheckExact(args[3]) || !PyTuple_CheckExact(args[4]) || !PyCallable_Check(args[5]) ||
        !PyCallable_Check(args[6]) || !PyCallable_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "logrecord_setup(): unexpected arguments");
        return NULL;
    }
    Py_ssize_t n_init = PyLong_AsSsize_t(args[2]);
    if (n_init < 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "logrecord_setup(): n_init must be positive");
        return NULL;
    }
    static const char *const names[] = {"msg", "args", "created", "levelno", "levelname", "pathname", "funcName",
                                        "lineno", "thread", "threadName", "stack_info", "exc_info", "getMessage",
                                        "name"};
    PyObject **slots[] = {&str_msg, &str_args, &str_created, &str_levelno, &str_levelname, &str_pathname,
                          &str_func_name, &str_lineno, &str_thread, &str_thread_name, &str_stack_info,
                          &str_exc_info, &str_get_message, &str_name};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (*slots[i] == NULL && (*slots[i] = PyUnicode_InternFromString(names[i])) == NULL)
            return NULL;
    if (lr_no_skip == NULL && (lr_no_skip = PyFrozenSet_New(NULL)) == NULL)
        return NULL;
    PyObject *method = PyObject_GetAttr(args[0], str_get_message); /* gives the class a version tag */
    if (method == NULL)
        return NULL;
    if (!PyFunction_Check(method)) {
        Py_DECREF(method);
        PyErr_SetString(PyExc_TypeError, "logrecord_setup(): getMessage is not a function");
        return NULL;
    }
    Py_XSETREF(lr_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(lr_func, method);
    Py_XSETREF(lr_code, Py_NewRef(PyFunction_GET_CODE(method)));
    lr_version = lr_tag(lr_type);
    lr_refused = 0;
    Py_XSETREF(lr_standard, Py_NewRef(args[1]));
    lr_n_init = n_init;
    Py_XSETREF(lr_last_init, Py_NewRef(args[3]));
    Py_XSETREF(lr_site_keys, Py_NewRef(args[4]));
    Py_XSETREF(lr_unformatted, Py_NewRef(args[5]));
    Py_XSETREF(lr_reference, Py_NewRef(args[6]));
    Py_XSETREF(lr_check, Py_NewRef(args[7]));
    Py_RETURN_NONE;
}

/* LogRecord is the class as set up: 1; changed (a patched getMessage, a property over an
 * attribute): 0; -1 with an error that is not an Exception.  A change to the class gives it another
 * version tag: the Python check (_unmodified) runs once per tag, so a class set back as it was
 * (a test's patch undone) is read in C again. */
static int lr_usable(void)
{
    PyTypeObject *t = lr_type;
    if (!PyFunction_Check(lr_func) || PyFunction_GET_CODE(lr_func) != lr_code)
        return 0; /* getMessage's code swapped */
    unsigned int tag = lr_tag(t);
    if (tag != 0) {
        if (tag == lr_version)
            return 1;
        if (tag == lr_refused)
            return 0;
    }
    PyObject *method = PyObject_GetAttr((PyObject *)t, str_get_message); /* a new tag, if any */
    int ok = method == lr_func;
    Py_XDECREF(method);
    if (ok) {
        PyObject *answer = PyObject_CallOneArg(lr_check, (PyObject *)t);
        ok = answer == NULL ? -1 : PyObject_IsTrue(answer);
        Py_XDECREF(answer);
    }
    if (ok < 0 || PyErr_Occurred())
        return clear_exception() < 0 ? -1 : 0;
    if ((tag = lr_tag(t)) == 0)
        return 0; /* no tag to remember the answer by: the Python path, every time */
    if (ok)
        lr_version = tag;
    else
        lr_refused = tag;
    return ok;
}

/* _frontends.handler._unformatted(record, exc), called as _message calls it: inside ``except
 * Exception``, with the exception being handled (sys.exc_info() in the args' __repr__). */
static PyObject *logrecord_unformatted(PyObject *record)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *value = PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
#endif
    if (value == NULL)
        return NULL;
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *previous = PyErr_GetHandledException();
    PyErr_SetHandledException(value);
    PyObject *result = PyObject_CallFunctionObjArgs(lr_unformatted, record, value, NULL);
    PyErr_SetHandledException(previous);
    Py_XDECREF(previous);
#else
    PyObject *p_type, *p_value, *p_traceback;
    PyErr_GetExcInfo(&p_type, &p_value, &p_traceback);
    PyErr_SetExcInfo(Py_NewRef((PyObject *)Py_TYPE(value)), Py_NewRef(value), PyException_GetTraceback(value));
    PyObject *result = PyObject_CallFunctionObjArgs(lr_unformatted, record, value, NULL);
    PyErr_SetExcInfo(p_type, p_value, p_traceback);
#endif
    Py_DECREF(value);
    return result;
}

/* record.getMessage() of an unmodified LogRecord, step for step: ``str(self.msg)``, then
 * ``self.args`` read for its truth and read again for ``%`` (the user's __str__ or __bool__ may
 * change it); a failure (an Exception) gives _unformatted, as _frontends.handler._message does. */
static PyObject *logrecord_message(PyObject *record, PyObject *msg)
{
    PyObject *text = PyUnicode_CheckExact(msg) ? Py_NewRef(msg) : PyObject_Str(msg);
    if (text != NULL) {
        PyObject *args = PyObject_GetAttr(record, str_args);
        int truth = args == NULL ? -1 : PyObject_IsTrue(args);
        Py_XDECREF(args);
        if (truth > 0) {
            args = PyObject_GetAttr(record, str_args);
            Py_SETREF(text, args == NULL ? NULL : PyNumber_Remainder(text, args));
            Py_XDECREF(args);
        } else if (truth < 0) {
            Py_CLEAR(text);
        }
    }
    if (text != NULL || !PyErr_ExceptionMatches(PyExc_Exception))
        return text;
    return logrecord_unformatted(record);
}

#define LR_HELD_EXTRAS 64 /* more extras than this: the Python reference reads them */

/* One key of the record's dict for the extras: held in ``held`` unless it is LogRecord's own.
 * 1, 0 (not an exact str, or too many: the reference), -1 error.  Allocates nothing. */
static int logrecord_hold(PyObject **held, Py_ssize_t *count, PyObject *key, PyObject *value)
{
    if (!PyUnicode_CheckExact(key))
        return 0;
    int standard = PySet_Contains(lr_standard, key);
    if (standard != 0)
        return standard < 0 ? -1 : 1;
    if (*count >= LR_HELD_EXTRAS)
        return 0;
    held[2 * *count] = Py_NewRef(key);
    held[2 * *count + 1] = Py_NewRef(value);
    (*count)++;
    return 1;
}

/* _frontends.handler._extras for an exact LogRecord: what the user passed as ``extra`` (or a filter
 * added), in the order given; the same steps.  The dict is walked without allocating, the pairs
 * held, and only then are the tuples built.  NULL without an error: the reference reads them. */
static PyObject *logrecord_extras(PyObject *fields)
{
    PyObject *held[2 * LR_HELD_EXTRAS], *key, *value, *extras = NULL;
    Py_ssize_t n = PyDict_GET_SIZE(fields), at = 0, i = 0, count = 0;
    int past_init = 0, r = 1; /* past_init: the key at lr_n_init - 1 is __init__'s last, as the reference checks */
    while (r > 0 && PyDict_Next(fields, &at, &key, &value)) {
        if (i == lr_n_init - 1) {
            if (!PyUnicode_CheckExact(key)) {
                r = 0;
                break;
            }
            past_init = n >= lr_n_init && PyUnicode_Compare(key, lr_last_init) == 0;
            if (!past_init)
                break; /* a filter moved the boundary: every key is checked below */
        } else if (i >= lr_n_init) {
            r = logrecord_hold(held, &count, key, value);
        }
        i++;
    }
    if (r > 0 && !past_init) { /* the set difference: every key not LogRecord's own, in order */
        at = 0;
        while (r > 0 && PyDict_Next(fields, &at, &key, &value))
            r = logrecord_hold(held, &count, key, value);
    }
    if (r > 0 && (extras = PyList_New(count)) != NULL)
        for (Py_ssize_t j = 0; j < count; j++) {
            PyObject *pair = PyTuple_Pack(2, held[2 * j], held[2 * j + 1]);
            if (pair == NULL) {
                Py_CLEAR(extras);
                break;
            }
            PyList_SET_ITEM(extras, j, pair);
        }
    for (Py_ssize_t j = 0; j < 2 * count; j++)
        Py_DECREF(held[j]);
    return extras;
}

PyDoc_STRVAR(logrecord_event_doc,
             "logrecord_event(settings, record) -> Pending | None\n\n"
             "HighlightHandler.emit's common case (no formatter); None: not that case, take the Python path.");

enum { LR_STACK_INFO, LR_CREATED, LR_LEVELNO, LR_LEVELNAME, LR_NAME, LR_EXC_INFO, LR_PATHNAME, LR_FUNC_NAME,
       LR_LINENO, LR_THREAD, LR_THREAD_NAME, LR_READ };

static PyObject *logrecord_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || lr_type == NULL || cap_fallback == NULL) {
        PyErr_SetString(PyExc_TypeError, "logrecord_event(settings, record), after the setups");
        return NULL;
    }
    PyObject *record = args[1];
    if (Py_TYPE(record) != lr_type)
        Py_RETURN_NONE;
    int usable = lr_usable();
    if (usable <= 0)
        return usable < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *fields = PyObject_GenericGetDict(record, NULL);
    if (fields == NULL) {
        if (clear_exception() < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *msg = NULL, *body = NULL, *extras = NULL, *site = NULL, *when = NULL, *attributes = NULL;
    PyObject *result = NULL, *v[LR_READ] = {NULL};
    if (!PyDict_CheckExact(fields) || !str_keys_only(fields))
        goto decline;
    /* The message's own parts, and no getMessage of the instance's own: else the Python path. */
    msg = Py_XNewRef(PyDict_GetItemWithError(fields, str_msg));
    if (msg == NULL || PyDict_GetItemWithError(fields, str_args) == NULL ||
        PyDict_GetItemWithError(fields, str_get_message) != NULL)
        goto decline;
    if ((body = logrecord_message(record, msg)) == NULL)
        goto done;
    /* From here on the message is formatted: the unusual goes to the reference, with it.  The
     * user's code ran: the record may have another dict, keys or class by now. */
    PyObject *now = PyObject_GenericGetDict(record, NULL);
    int same = now == fields;
    Py_XDECREF(now);
    if (now == NULL && clear_exception() < 0)
        goto done;
    if (!same || Py_TYPE(record) != lr_type || lr_usable() <= 0 || PyErr_Occurred() || !str_keys_only(fields))
        goto reference;
    PyObject *const read[LR_READ] = {str_stack_info, str_created, str_levelno, str_levelname, str_name,
                                     str_exc_info, str_pathname, str_func_name, str_lineno, str_thread,
                                     str_thread_name};
    for (int i = 0; i < LR_READ; i++) /* held at once: nothing allocates in between */
        if ((v[i] = Py_XNewRef(PyDict_GetItemWithError(fields, read[i]))) == NULL)
            goto reference;
    if (v[LR_STACK_INFO] != Py_None || !PyFloat_CheckExact(v[LR_CREATED]))
        goto reference;
    if ((extras = logrecord_extras(fields)) == NULL) {
        if (PyErr_Occurred())
            goto done;
        goto reference;
    }
    site = PyTuple_Pack(6, lr_site_keys, v[LR_PATHNAME], v[LR_FUNC_NAME], v[LR_LINENO], v[LR_THREAD],
                        v[LR_THREAD_NAME]);
    if (site == NULL || (when = PyLong_FromDouble(PyFloat_AS_DOUBLE(v[LR_CREATED]) * 1e9)) == NULL ||
        (attributes = PyDict_New()) == NULL)
        goto done;
    PyObject *call[C_ARGS] = {
        args[0], when, v[LR_LEVELNO], v[LR_LEVELNAME], v[LR_NAME], body, attributes, extras, v[LR_EXC_INFO],
        Py_None, site, lr_no_skip, Py_False, Py_True,
    };
    result = capture_record(module, call, C_ARGS, NULL);
    goto done;
reference:
    if (!PyErr_Occurred() || clear_exception() == 0)
        result = PyObject_CallFunctionObjArgs(lr_reference, args[0], record, body, NULL);
    goto done;
decline:
    if (!PyErr_Occurred())
        result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < LR_READ; i++)
        Py_XDECREF(v[i]);
    Py_DECREF(fields);
    Py_XDECREF(msg);
    Py_XDECREF(body);
    Py_XDECREF(extras);
    Py_XDECREF(site);
    Py_XDECREF(when);
    Py_XDECREF(attributes);
    return result;
}

/* Forks this process descends through, counted in every child of fork() by a pthread_atfork()
 * handler: also a fork in C that runs none of Python's hooks (uWSGI's workers).  Read on every
 * record: a memory read where os.getpid() is a system call. */
static volatile unsigned long fork_count = 0;

#ifndef _WIN32
#include <pthread.h>
static void count_fork(void) { fork_count++; }
#endif

PyDoc_STRVAR(forks_doc, "forks() -> int\n\nForks between the first process that imported this module and this one.");

static PyObject *forks(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLong(fork_count);
}

static PyMethodDef methods[] = {
    {"plain_logs", (PyCFunction)(void (*)(void))plain_logs, METH_FASTCALL, plain_logs_doc},
    {"capture_record", (PyCFunction)(void (*)(void))capture_record, METH_FASTCALL | METH_KEYWORDS,
     capture_record_doc},
    {"capture_setup", (PyCFunction)(void (*)(void))capture_setup, METH_FASTCALL, capture_setup_doc},
    {"chunk_clean", (PyCFunction)(void (*)(void))chunk_clean, METH_FASTCALL, chunk_clean_doc},
    {"set_triggers", (PyCFunction)(void (*)(void))set_triggers, METH_FASTCALL, set_triggers_doc},
    {"maybe_secret", (PyCFunction)maybe_secret_py, METH_O, maybe_secret_doc},
    {"structlog_event", (PyCFunction)(void (*)(void))structlog_event, METH_FASTCALL, structlog_event_doc},
    {"structlog_setup", (PyCFunction)(void (*)(void))structlog_setup, METH_FASTCALL, structlog_setup_doc},
    {"logrecord_event", (PyCFunction)(void (*)(void))logrecord_event, METH_FASTCALL, logrecord_event_doc},
    {"logrecord_setup", (PyCFunction)(void (*)(void))logrecord_setup, METH_FASTCALL, logrecord_setup_doc},
    {"forks", forks, METH_NOARGS, forks_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "highlight_logging._speedups", "_export.fastpath's fast path and capture_record() of _core/convert.py, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

static int rescue_add(PyObject *module); /* the SIGTERM rescue, at the end of this file */

PyMODINIT_FUNC PyInit__speedups(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    PyObject *layout = PyTuple_New(P_FIELDS); /* PENDING_FIELDS: this build's Pending layout */
    if (layout == NULL)
        return NULL;
    for (int i = 0; i < P_FIELDS; i++) {
        PyObject *name = PyUnicode_InternFromString(pending_names[i]);
        if (name == NULL) {
            Py_DECREF(layout);
            return NULL;
        }
        PyTuple_SET_ITEM(layout, i, name);
    }
    PyObject *record = PyImport_ImportModule("highlight_logging._core.record");
    PyObject *fields = NULL;
    int same = -1;
    if (record != NULL && (site_key_set = PyObject_GetAttrString(record, "SITE_KEY_SET")) != NULL) {
        PyObject *pending = PyObject_GetAttrString(record, "Pending");
        fields = pending == NULL ? NULL : PyObject_GetAttrString(pending, "_fields");
        Py_XDECREF(pending);
        if (fields != NULL)
            same = PyObject_RichCompareBool(fields, layout, Py_EQ);
    }
    Py_XDECREF(record);
    if (same == 0) /* RuntimeError, not ImportError: _core.native.load() warns, then runs pure Python */
        PyErr_Format(PyExc_RuntimeError, "built for another Pending layout: %R, not %R", layout, fields);
    Py_XDECREF(fields);
    if (same != 1) {
        Py_DECREF(layout);
        return NULL;
    }
#ifndef _WIN32
    static int counting = 0; /* once per process, should the module be initialised again */
    if (!counting) {
        if (pthread_atfork(NULL, NULL, count_fork) != 0) {
            Py_DECREF(layout);
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork() failed");
            return NULL;
        }
        counting = 1;
    }
#endif
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL || PyModule_AddObject(module, "PENDING_FIELDS", layout) < 0) {
        Py_DECREF(layout);
        Py_XDECREF(module);
        return NULL;
    }
    if ((str_tzinfo = PyUnicode_InternFromString("tzinfo")) == NULL ||
        PyModule_AddIntConstant(module, "SAME_MOMENT", (long)SAME_MOMENT) < 0 ||
        PyModule_AddIntConstant(module, "ABI", ABI) < 0 || rescue_add(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/* --- SIGTERM rescue (see highlight_logging/_sigterm.py) ------------------------------------------
 * Python runs its signal handlers only when the main thread next checks for signals: a SIGTERM that
 * lands just before that thread blocks in C (a pool worker taking its queue lock) is never acted on.
 * A C-level handler, installed over Python's own, writes one byte to a pipe (async-signal-safe) and
 * chains to Python's handler; a watcher on an OS thread reads the pipe and takes over if the Python
 * handler has not started.  Module init is single-phase, so these statics are per process. */

#ifndef _WIN32
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static int rescue_r = -1, rescue_w = -1;
static volatile pid_t rescue_pid = 0; /* the process the pipe belongs to: a forked child writes nothing */
static struct sigaction rescue_prev;  /* the handler ours chains to (Python's) */
static volatile sig_atomic_t rescue_on = 0;

static void rescue_handler(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    if (rescue_on && rescue_w >= 0 && getpid() == rescue_pid) {
        char byte = 1;
        ssize_t n = write(rescue_w, &byte, 1); /* non-blocking: a full pipe already says "SIGTERM" */
        (void)n;
    }
    errno = saved;
    if (rescue_prev.sa_flags & SA_SIGINFO) {
        if (rescue_prev.sa_sigaction != NULL)
            rescue_prev.sa_sigaction(sig, info, context);
    }
    else if (rescue_prev.sa_handler != SIG_DFL && rescue_prev.sa_handler != SIG_IGN && rescue_prev.sa_handler != NULL) {
        rescue_prev.sa_handler(sig);
    }
    errno = saved;
}

static void rescue_close(void)
{
    if (rescue_r >= 0)
        close(rescue_r);
    if (rescue_w >= 0)
        close(rescue_w);
    rescue_r = rescue_w = -1;
}

static int rescue_ours(void)
{
    struct sigaction now;
    if (sigaction(SIGTERM, NULL, &now) != 0)
        return 0;
    return (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == rescue_handler;
}

PyDoc_STRVAR(sigterm_arm_doc,
             "sigterm_arm() -> int | None\n\nPut the rescue handler over the current (Python's) SIGTERM handler, with a "
             "fresh pipe (the one a parent left a forked child is closed); return the pipe's read end, or None when "
             "SIGTERM's handler is not a function (default, ignored) or no pipe could be made.");

static PyObject *sigterm_arm(PyObject *module, PyObject *unused)
{
    struct sigaction now, ours;
    rescue_on = 0;
    rescue_close();
    if (sigaction(SIGTERM, NULL, &now) != 0)
        Py_RETURN_NONE;
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == rescue_handler)
        now = rescue_prev; /* armed already (or inherited over a fork): keep chaining to the same handler */
    else if (!(now.sa_flags & SA_SIGINFO) && (now.sa_handler == SIG_DFL || now.sa_handler == SIG_IGN))
        Py_RETURN_NONE;
    int fds[2];
    if (pipe(fds) != 0)
        Py_RETURN_NONE;
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFD);
        if (fl >= 0)
            fcntl(fds[i], F_SETFD, fl | FD_CLOEXEC);
    }
    int fl = fcntl(fds[1], F_GETFL);
    if (fl >= 0)
        fcntl(fds[1], F_SETFL, fl | O_NONBLOCK);
    rescue_r = fds[0];
    rescue_w = fds[1];
    rescue_prev = now;
    rescue_pid = getpid();
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = rescue_handler;
    ours.sa_flags = SA_SIGINFO | (now.sa_flags & (SA_ONSTACK | SA_RESTART));
    sigemptyset(&ours.sa_mask);
    rescue_on = 1;
    if (sigaction(SIGTERM, &ours, NULL) != 0) {
        rescue_on = 0;
        rescue_close();
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(rescue_r);
}

PyDoc_STRVAR(sigterm_wait_doc,
             "sigterm_wait(fd) -> bool\n\nBlock (without the GIL) until the rescue handler writes to the pipe "
             "whose read end is fd: True; False once that pipe is closed or replaced.");

static PyObject *sigterm_wait(PyObject *module, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    char buf[64];
    ssize_t n;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        n = read((int)fd, buf, sizeof buf);
        Py_END_ALLOW_THREADS
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    if (n > 0 && fd == rescue_r && rescue_pid == getpid())
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

PyDoc_STRVAR(sigterm_ours_doc, "sigterm_ours() -> bool\n\nWhether SIGTERM's C handler is still the rescue's.");

static PyObject *sigterm_ours(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(rescue_ours());
}

PyDoc_STRVAR(sigterm_disarm_doc,
             "sigterm_disarm() -> None\n\nPut back the handler the rescue chained to (if the rescue's is still SIGTERM's) "
             "and close the pipe.");

static PyObject *sigterm_disarm(PyObject *module, PyObject *unused)
{
    rescue_on = 0;
    if (rescue_ours())
        sigaction(SIGTERM, &rescue_prev, NULL);
    rescue_close();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sigterm_die_doc,
             "sigterm_die() -> None\n\nDie by SIGTERM from any thread: its default action, unblocked here, sent to "
             "the process.");

static PyObject *sigterm_die(PyObject *module, PyObject *unused)
{
    struct sigaction dfl;
    sigset_t term;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    rescue_on = 0;
    sigaction(SIGTERM, &dfl, NULL);
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &term, NULL);
    kill(getpid(), SIGTERM);
    Py_RETURN_NONE; /* not reached unless SIGTERM cannot be delivered */
}

static PyMethodDef rescue_methods[] = {
    {"sigterm_arm", sigterm_arm, METH_NOARGS, sigterm_arm_doc},
    {"sigterm_wait", sigterm_wait, METH_O, sigterm_wait_doc},
    {"sigterm_ours", sigterm_ours, METH_NOARGS, sigterm_ours_doc},
    {"sigterm_disarm", sigterm_disarm, METH_NOARGS, sigterm_disarm_doc},
    {"sigterm_die", sigterm_die, METH_NOARGS, sigterm_die_doc},
    {NULL, NULL, 0, NULL},
};

static int rescue_add(PyObject *module)
{
    return PyModule_AddFunctions(module, rescue_methods);
}
#else
static int rescue_add(PyObject *module)
{
    return 0; /* no SIGTERM to rescue */
}
#endif
