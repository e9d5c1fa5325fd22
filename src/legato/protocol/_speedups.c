/* Compiled hot spots of the protocol core. Optional: masking.py falls back to pure
 * Python when this module is not built. Only code whose cost was measured lives here.
 *
 * apply_mask(data, mask) -> bytes
 *   RFC 6455 §5.3: XOR every payload byte with mask[i % 4]. Pure Python tops out near
 *   570 MB/s on 64 KiB; this does 8 bytes a step and runs at memory speed.
 * unmask_at(buffer, key_pos, end) -> bytes
 *   The payload buffer[key_pos+4:end] unmasked with the key at buffer[key_pos:key_pos+4],
 *   without the two intermediate slices Python would make (the server's receive path).
 * mask_frame(first, payload, key) -> bytes
 *   A complete masked client frame (header, key, masked payload) in one allocation.
 * utf8_check(data, state) -> int
 *   Incremental UTF-8 validation (Unicode Table 3-7) of a message arriving in pieces, so
 *   small pieces can be checked as they arrive without decoding them twice.
 *   state 0 = between characters; -1 = invalid; otherwise an open sequence encoded as
 *   remaining << 16 | low << 8 | high (the allowed range of the next byte).
 * read_messages(data, pos, max_message, max_frame, events) -> int
 *   The server's receive path for the common case: from pos, every whole frame that is
 *   a complete message by itself (FIN, no RSV bit, text or binary, masked, within both
 *   limits) becomes a TextMessage/BytesMessage appended to events, unmasked (and, for
 *   text, UTF-8 decoded strictly) in one pass. It stops at the first frame that is
 *   anything else, not yet whole, or invalid text, and returns that frame's position:
 *   Connection's general reader takes over there and reports whatever is wrong. In
 *   Python this loop cost ~1.1 us of the ~1.6 us a 32-byte message took to read.
 *   register_events(TextMessage, BytesMessage) names the classes (once, at import).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

static void
xor_into(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *key)
{
    Py_ssize_t i = 0;
    uint64_t key8;
    unsigned char k8[8];
    memcpy(k8, key, 4);
    memcpy(k8 + 4, key, 4);
    memcpy(&key8, k8, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, src + i, 8);
        chunk ^= key8;
        memcpy(dst + i, &chunk, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

static PyObject *
unmask_at(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t key_pos, end;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*nn:unmask_at", &buf, &key_pos, &end)) {
        return NULL;
    }
    if (key_pos < 0 || end > buf.len || key_pos + 4 > end) {
        PyErr_SetString(PyExc_ValueError, "unmask_at: positions out of range");
    }
    else {
        const unsigned char *base = (const unsigned char *)buf.buf;
        Py_ssize_t n = end - key_pos - 4;
        result = PyBytes_FromStringAndSize(NULL, n);
        if (result != NULL) {
            xor_into((unsigned char *)PyBytes_AS_STRING(result), base + key_pos + 4, n,
                     base + key_pos);
        }
    }
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *
mask_frame(PyObject *self, PyObject *args)
{
    int first;
    Py_buffer payload, key;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "iy*y*:mask_frame", &first, &payload, &key)) {
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes long");
    }
    else {
        Py_ssize_t n = payload.len, head = n < 126 ? 2 : (n < 65536 ? 4 : 10);
        result = PyBytes_FromStringAndSize(NULL, head + 4 + n);
        if (result != NULL) {
            unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
            dst[0] = (unsigned char)first;
            if (head == 2) {
                dst[1] = 0x80 | (unsigned char)n;
            }
            else if (head == 4) {
                dst[1] = 0x80 | 126;
                dst[2] = (unsigned char)(n >> 8);
                dst[3] = (unsigned char)n;
            }
            else {
                int k;
                dst[1] = 0x80 | 127;
                for (k = 0; k < 8; k++) {
                    dst[2 + k] = (unsigned char)((uint64_t)n >> (56 - 8 * k));
                }
            }
            memcpy(dst + head, key.buf, 4);
            xor_into(dst + head + 4, (const unsigned char *)payload.buf, n,
                     (const unsigned char *)key.buf);
        }
    }
    PyBuffer_Release(&payload);
    PyBuffer_Release(&key);
    return result;
}

static PyObject *
apply_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, mask;
    PyObject *result;
    if (!PyArg_ParseTuple(args, "y*y*:apply_mask", &data, &mask)) {
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes long");
        PyBuffer_Release(&data);
        PyBuffer_Release(&mask);
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        xor_into((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf,
                 data.len, (const unsigned char *)mask.buf);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

static long
utf8_scan(const unsigned char *p, Py_ssize_t n, long state)
{
    Py_ssize_t i = 0;
    unsigned int remaining = (unsigned int)(state >> 16);
    unsigned int low = (unsigned int)((state >> 8) & 0xFF);
    unsigned int high = (unsigned int)(state & 0xFF);
    while (i < n) {
        unsigned int c;
        if (remaining == 0) {
            /* ASCII runs 8 bytes at a time */
            while (i + 8 <= n) {
                uint64_t word;
                memcpy(&word, p + i, 8);
                if (word & UINT64_C(0x8080808080808080)) {
                    break;
                }
                i += 8;
            }
            if (i >= n) {
                break;
            }
            c = p[i++];
            if (c < 0x80) {
                continue;
            }
            if (c < 0xC2 || c > 0xF4) {
                return -1;
            }
            low = 0x80;
            high = 0xBF;
            if (c <= 0xDF) {
                remaining = 1;
            }
            else if (c <= 0xEF) {
                remaining = 2;
                if (c == 0xE0) low = 0xA0;      /* no overlong 3-byte forms */
                if (c == 0xED) high = 0x9F;     /* no surrogates */
            }
            else {
                remaining = 3;
                if (c == 0xF0) low = 0x90;      /* no overlong 4-byte forms */
                if (c == 0xF4) high = 0x8F;     /* nothing above U+10FFFF */
            }
            continue;
        }
        c = p[i++];
        if (c < low || c > high) {
            return -1;
        }
        remaining--;
        low = 0x80;
        high = 0xBF;
    }
    if (remaining == 0) {
        return 0;
    }
    return (long)((remaining << 16) | (low << 8) | high);
}

static PyObject *
utf8_check(PyObject *self, PyObject *args)
{
    Py_buffer data;
    long state, result;
    if (!PyArg_ParseTuple(args, "y*l:utf8_check", &data, &state)) {
        return NULL;
    }
    if (state < 0) {
        PyBuffer_Release(&data);
        return PyLong_FromLong(-1);
    }
    result = utf8_scan((const unsigned char *)data.buf, data.len, state);
    PyBuffer_Release(&data);
    return PyLong_FromLong(result);
}

/* ----------------------------------------------------------------- read_messages */

/* The event classes, and the offset of their one slot (`data`) when it is a plain
 * object slot: then an event is allocated and filled without running the dataclass's
 * __init__ (a Python call that would cost as much as the rest of the read). */
static PyObject *text_type, *bytes_type;
static Py_ssize_t text_offset = -1, bytes_offset = -1;

static Py_ssize_t
data_slot_offset(PyObject *type)
{
    Py_ssize_t offset = -1;
    PyObject *descr = PyObject_GetAttrString(type, "data");
    if (descr == NULL) {
        PyErr_Clear();
        return -1;
    }
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY)) {
            offset = member->offset;
        }
    }
    Py_DECREF(descr);
    return offset;
}

static PyObject *
register_events(PyObject *self, PyObject *args)
{
    PyObject *text, *binary;
    if (!PyArg_ParseTuple(args, "O!O!:register_events", &PyType_Type, &text,
                          &PyType_Type, &binary)) {
        return NULL;
    }
    Py_INCREF(text);
    Py_INCREF(binary);
    Py_XSETREF(text_type, text);
    Py_XSETREF(bytes_type, binary);
    text_offset = data_slot_offset(text);
    bytes_offset = data_slot_offset(binary);
    Py_RETURN_NONE;
}

/* A new event of `type` carrying `payload` (a reference this steals). */
static PyObject *
new_event(PyObject *type, Py_ssize_t offset, PyObject *payload)
{
    PyObject *event;
    if (offset < 0) {
        event = PyObject_CallOneArg(type, payload);
        Py_DECREF(payload);
        return event;
    }
    event = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
    if (event == NULL) {
        Py_DECREF(payload);
        return NULL;
    }
    *(PyObject **)((char *)event + offset) = payload;
    return event;
}

static int
all_ascii(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    uint64_t acc = 0;
    unsigned char tail = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, p + i, 8);
        acc |= word;
    }
    for (; i < n; i++) {
        tail |= p[i];
    }
    return !(acc & UINT64_C(0x8080808080808080)) && !(tail & 0x80);
}

/* The text payload unmasked and decoded; NULL with no error set when it is not valid
 * UTF-8 (the general reader reports that), NULL with an error on memory failure. */
static PyObject *
unmask_text(const unsigned char *src, Py_ssize_t n, const unsigned char *key)
{
    PyObject *text = PyUnicode_New(n, 127);
    unsigned char *dst;
    PyObject *decoded;
    if (text == NULL || n == 0) {
        return text;
    }
    dst = PyUnicode_1BYTE_DATA(text);
    xor_into(dst, src, n, key);
    if (all_ascii(dst, n)) {
        return text;  /* the common case: one pass, no second copy */
    }
    decoded = PyUnicode_DecodeUTF8((const char *)dst, n, "strict");
    Py_DECREF(text);
    if (decoded == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
    }
    return decoded;
}

static PyObject *
read_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    Py_ssize_t pos, end, max_message, max_frame, limit;
    PyObject *events;
    const unsigned char *data;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "read_messages expects 5 arguments");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    max_message = PyLong_AsSsize_t(args[2]);
    max_frame = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    events = args[4];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "read_messages: events must be a list");
        return NULL;
    }
    if (text_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "read_messages: register_events() first");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    data = (const unsigned char *)buf.buf;
    end = buf.len;
    limit = max_message < max_frame ? max_message : max_frame;
    if (pos < 0 || pos > end) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "read_messages: position out of range");
        return NULL;
    }
    while (end - pos >= 6) {  /* the smallest masked frame: 2 header bytes + key */
        unsigned int first = data[pos], second = data[pos + 1];
        Py_ssize_t start = pos + 2;
        uint64_t length = second & 0x7F;
        PyObject *payload, *event;
        int ok;
        if ((first != 0x81 && first != 0x82) || !(second & 0x80)) {
            break;
        }
        if (length == 126) {
            if (end - start < 2) {
                break;
            }
            length = ((uint64_t)data[start] << 8) | data[start + 1];
            start += 2;
        }
        else if (length == 127) {
            int k;
            if (end - start < 8) {
                break;
            }
            length = 0;
            for (k = 0; k < 8; k++) {
                length = (length << 8) | data[start + k];
            }
            start += 8;
        }
        if (length > (uint64_t)limit || end - start < 4
                || (uint64_t)(end - start - 4) < length) {
            break;  /* too big (the reader fails it) or not whole yet */
        }
        if (first == 0x81) {
            payload = unmask_text(data + start + 4, (Py_ssize_t)length, data + start);
            if (payload == NULL) {
                if (PyErr_Occurred()) {
                    PyBuffer_Release(&buf);
                    return NULL;
                }
                break;  /* invalid UTF-8: the reader fails the connection with 1007 */
            }
            event = new_event(text_type, text_offset, payload);
        }
        else {
            payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
            if (payload == NULL) {
                PyBuffer_Release(&buf);
                return NULL;
            }
            xor_into((unsigned char *)PyBytes_AS_STRING(payload), data + start + 4,
                     (Py_ssize_t)length, data + start);
            event = new_event(bytes_type, bytes_offset, payload);
        }
        if (event == NULL) {
            PyBuffer_Release(&buf);
            return NULL;
        }
        ok = PyList_Append(events, event);
        Py_DECREF(event);
        if (ok < 0) {
            PyBuffer_Release(&buf);
            return NULL;
        }
        pos = start + 4 + (Py_ssize_t)length;
    }
    PyBuffer_Release(&buf);
    return PyLong_FromSsize_t(pos);
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask (RFC 6455 5.3)."},
    {"unmask_at", unmask_at, METH_VARARGS,
     "unmask_at(buffer, key_pos, end) -> bytes: buffer[key_pos+4:end] unmasked."},
    {"mask_frame", mask_frame, METH_VARARGS,
     "mask_frame(first, payload, key) -> bytes: a complete masked frame."},
    {"utf8_check", utf8_check, METH_VARARGS,
     "utf8_check(data, state) -> int: incremental UTF-8 validation; -1 when invalid."},
    {"read_messages", (PyCFunction)(void (*)(void))read_messages, METH_FASTCALL,
     "read_messages(data, pos, max_message, max_frame, events) -> int: whole one-frame "
     "messages from pos appended to events; the position where they stop."},
    {"register_events", register_events, METH_VARARGS,
     "register_events(TextMessage, BytesMessage): the classes read_messages builds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "legato.protocol._speedups",
    "Compiled hot spots of legato's protocol core.", -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
