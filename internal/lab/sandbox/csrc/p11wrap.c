/*
 * p11wrap: a PKCS#11 module that passes every call to another one, for the
 * tests. The test harness builds it with gcc into a sandbox folder; it is
 * never installed nor committed as a binary.
 *
 *   P11WRAP_MODULE     the real module (required)
 *   P11WRAP_NSS_DIR    when set, C_Initialize passes NSS softoken's own
 *                      arguments (configdir='sql:DIR' ...), which it needs:
 *                      it answers CKR_ARGUMENTS_BAD to C_Initialize(NULL)
 *   P11WRAP_NSS_LABEL  the NSS token's label (dbTokenDescription)
 *   P11WRAP_LOG        when set, one line per C_Login is appended to this
 *                      file: the user type and the return value, never the
 *                      PIN. The tests count the wrong logins a token saw.
 *
 * gcc -shared -fPIC -o p11wrap.so p11wrap.c -ldl -I/usr/include/p11-kit-1
 */
#define CRYPTOKI_GNU 1
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

static struct ck_function_list wrapped;
static struct ck_function_list *real;

/* NSS's CK_C_INITIALIZE_ARGS: the reserved field carries its parameters,
 * followed by a pointer that must be NULL. */
struct nss_init_args {
	ck_createmutex_t create_mutex;
	ck_destroymutex_t destroy_mutex;
	ck_lockmutex_t lock_mutex;
	ck_unlockmutex_t unlock_mutex;
	ck_flags_t flags;
	char *library_parameters;
	void *reserved;
};

static char nss_params[4096];

static ck_rv_t wrap_initialize(void *args)
{
	const char *dir = getenv("P11WRAP_NSS_DIR");
	if (dir == NULL || *dir == '\0')
		return real->C_Initialize(args);
	const char *label = getenv("P11WRAP_NSS_LABEL");
	if (label == NULL)
		label = "";
	snprintf(nss_params, sizeof nss_params,
		 "configdir='sql:%s' certPrefix='' keyPrefix='' secmod='' flags=noModDB dbTokenDescription='%s'",
		 dir, label);
	struct nss_init_args a;
	memset(&a, 0, sizeof a);
	a.flags = CKF_OS_LOCKING_OK;
	a.library_parameters = nss_params;
	return real->C_Initialize(&a);
}

static ck_rv_t wrap_login(ck_session_handle_t s, ck_user_type_t user, unsigned char *pin, unsigned long len)
{
	ck_rv_t rv = real->C_Login(s, user, pin, len);
	const char *log = getenv("P11WRAP_LOG");
	if (log != NULL && *log != '\0') {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			char line[128];
			int n = snprintf(line, sizeof line, "C_Login user=%lu rv=0x%lX pid=%ld\n",
					 (unsigned long)user, (unsigned long)rv, (long)getpid());
			if (write(fd, line, n) != n) {
				/* nothing to do: the test sees the line missing */
			}
			close(fd);
		}
	}
	return rv;
}

ck_rv_t C_GetFunctionList(struct ck_function_list **list)
{
	if (real == NULL) {
		const char *path = getenv("P11WRAP_MODULE");
		if (path == NULL || *path == '\0')
			return CKR_GENERAL_ERROR;
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (h == NULL)
			return CKR_GENERAL_ERROR;
		ck_rv_t (*get)(struct ck_function_list **) = (ck_rv_t (*)(struct ck_function_list **))dlsym(h, "C_GetFunctionList");
		if (get == NULL)
			return CKR_GENERAL_ERROR;
		struct ck_function_list *r;
		ck_rv_t rv = get(&r);
		if (rv != CKR_OK)
			return rv;
		wrapped = *r;
		wrapped.C_Initialize = wrap_initialize;
		wrapped.C_Login = wrap_login;
		wrapped.C_GetFunctionList = C_GetFunctionList;
		real = r;
	}
	*list = &wrapped;
	return CKR_OK;
}
