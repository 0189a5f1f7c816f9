//go:build cgo

package hsmcheck

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// The start of CK_FUNCTION_LIST, up to C_GetAttributeValue: a version,
// then the functions in the order PKCS#11 fixes (2.40 and 3.0 alike).
typedef unsigned long ulong_t;
typedef struct {
	ulong_t type;
	void *value;
	ulong_t len;
} attr_t;
typedef ulong_t (*getattr_fn)(ulong_t, ulong_t, attr_t *, ulong_t);
typedef struct {
	unsigned char version[2];
	void *before[24]; // C_Initialize ... C_GetObjectSize
	getattr_fn get_attribute_value;
} flist_t;

// function_list finds the function list of a module this process loaded
// already (RTLD_NOLOAD: it loads nothing), or NULL.
static void *function_list(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (h == NULL)
		return NULL;
	ulong_t (*get)(void **) = (ulong_t (*)(void **))dlsym(h, "C_GetFunctionList");
	void *list = NULL;
	if (get == NULL || get(&list) != 0)
		list = NULL;
	dlclose(h); // the module stays loaded: miekg/pkcs11 holds it
	return list;
}

static ulong_t get_attributes(void *list, ulong_t session, ulong_t object, attr_t *tmpl, ulong_t n) {
	return ((flist_t *)list)->get_attribute_value(session, object, tmpl, n);
}
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// attrReader reads an object's attributes in one C_GetAttributeValue,
// into buffers large enough for any key's attribute, where miekg/pkcs11
// makes two calls (the lengths, then the values): on a network HSM every
// call is a round trip, and a token of 10,000 keys is read at one call a
// key instead of two.
type attrReader struct{ list unsafe.Pointer }

// directAttributes is the attrReader of the module at path, loaded by
// miekg/pkcs11 in this process; nil when its function list cannot be had.
func directAttributes(path string) *attrReader {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	list := C.function_list(cpath)
	if list == nil {
		return nil
	}
	return &attrReader{list: list}
}

// errBufferTooSmall: an attribute was larger than its buffer, and the
// two-call way is needed.
var errBufferTooSmall = errors.New("attribute larger than its buffer")

// attrBuffer is the room given to an attribute: a byte string as large as
// any CKA_ID, label or key material a DNSSEC key has (an RSA 16384-bit
// modulus is 2,048 bytes); a CK_ULONG or CK_BBOOL in 8.
func attrBuffer(a Attr) int {
	switch a {
	case AttrKeyType, AttrSensitive, AttrExtractable, AttrNeverExtractable, AttrLocal:
		return 8
	case AttrModulus:
		return 2048
	}
	return 512
}

func (r *attrReader) get(session, object uint, attrs []Attr) ([][]byte, error) {
	if len(attrs) == 0 {
		return nil, nil
	}
	size := 0
	for _, a := range attrs {
		size += attrBuffer(a)
	}
	n := C.size_t(len(attrs)) * C.size_t(unsafe.Sizeof(C.attr_t{}))
	tmpl := (*[1 << 20]C.attr_t)(C.malloc(n))[:len(attrs):len(attrs)]
	defer C.free(unsafe.Pointer(&tmpl[0]))
	buf := C.malloc(C.size_t(size))
	defer C.free(buf)
	off := 0
	for i, a := range attrs {
		tmpl[i] = C.attr_t{_type: C.ulong_t(a), value: unsafe.Add(buf, off), len: C.ulong_t(attrBuffer(a))}
		off += attrBuffer(a)
	}
	rv := C.get_attributes(r.list, C.ulong_t(session), C.ulong_t(object), &tmpl[0], C.ulong_t(len(attrs)))
	switch rv {
	case 0:
	case ckrBufferTooSmall:
		return nil, errBufferTooSmall
	default:
		return nil, convert(pkcs11.Error(rv))
	}
	out := make([][]byte, len(attrs))
	for i, a := range attrs {
		l := tmpl[i].len
		if l == C.ulong_t(^uint(0)) {
			continue
		}
		if l > C.ulong_t(attrBuffer(a)) {
			// A module that answers CKR_OK with a length past the
			// buffer it was given: not trusted, asked the two-call way.
			return nil, errBufferTooSmall
		}
		out[i] = C.GoBytes(tmpl[i].value, C.int(l))
	}
	return out, nil
}
