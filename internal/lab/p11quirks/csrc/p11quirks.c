/*
 * p11quirks: a PKCS#11 module that passes every call to a real one
 * (SoftHSMv2 in the tests) and, as its configuration says, behaves the way
 * real HSMs do and soft tokens do not: errors at a chosen call, latency on
 * every call, few sessions, short C_FindObjects batches, refused
 * attributes, slow or hanging initialise and finalise, slots that get new
 * numbers. For the tests and for an operator who wants to see what
 * ods-keyguard does when their HSM does the same. README.md beside this
 * file documents every knob. It is never built into a release.
 *
 * gcc -shared -fPIC -o p11quirks.so p11quirks.c -ldl -I/usr/include/p11-kit-1
 */
#define CRYPTOKI_GNU 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

static struct ck_function_list wrapped;
static struct ck_function_list *real;

/* The functions that are wrapped: counted, delayed, failed, hung. */
enum fn {
	F_INITIALIZE, F_FINALIZE, F_GETINFO, F_GETSLOTLIST, F_GETSLOTINFO,
	F_GETTOKENINFO, F_GETMECHANISMLIST, F_OPENSESSION, F_CLOSESESSION,
	F_CLOSEALLSESSIONS, F_GETSESSIONINFO, F_LOGIN, F_LOGOUT,
	F_FINDOBJECTSINIT, F_FINDOBJECTS, F_FINDOBJECTSFINAL,
	F_GETATTRIBUTEVALUE, NFN,
	F_ANY = NFN /* "*": any wrapped call, counted across all */
};

static const char *fn_names[NFN + 1] = {
	"C_Initialize", "C_Finalize", "C_GetInfo", "C_GetSlotList", "C_GetSlotInfo",
	"C_GetTokenInfo", "C_GetMechanismList", "C_OpenSession", "C_CloseSession",
	"C_CloseAllSessions", "C_GetSessionInfo", "C_Login", "C_Logout",
	"C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal",
	"C_GetAttributeValue", "*",
};

static const struct { const char *name; ck_rv_t rv; } ckrs[] = {
	{"CKR_CANCEL", 0x1}, {"CKR_HOST_MEMORY", 0x2}, {"CKR_SLOT_ID_INVALID", 0x3},
	{"CKR_GENERAL_ERROR", 0x5}, {"CKR_FUNCTION_FAILED", 0x6}, {"CKR_ARGUMENTS_BAD", 0x7},
	{"CKR_ATTRIBUTE_SENSITIVE", 0x11}, {"CKR_ATTRIBUTE_TYPE_INVALID", 0x12},
	{"CKR_DEVICE_ERROR", 0x30}, {"CKR_DEVICE_MEMORY", 0x31}, {"CKR_DEVICE_REMOVED", 0x32},
	{"CKR_OBJECT_HANDLE_INVALID", 0x82}, {"CKR_OPERATION_NOT_INITIALIZED", 0x91},
	{"CKR_PIN_INCORRECT", 0xa0}, {"CKR_PIN_EXPIRED", 0xa3}, {"CKR_PIN_LOCKED", 0xa4},
	{"CKR_SESSION_CLOSED", 0xb0}, {"CKR_SESSION_COUNT", 0xb1},
	{"CKR_SESSION_HANDLE_INVALID", 0xb3}, {"CKR_TOKEN_NOT_PRESENT", 0xe0},
	{"CKR_TOKEN_NOT_RECOGNIZED", 0xe1}, {"CKR_USER_ALREADY_LOGGED_IN", 0x100},
	{"CKR_USER_NOT_LOGGED_IN", 0x101}, {"CKR_BUFFER_TOO_SMALL", 0x150},
	{"CKR_CRYPTOKI_NOT_INITIALIZED", 0x190}, {"CKR_CRYPTOKI_ALREADY_INITIALIZED", 0x191},
};

static const struct { const char *name; unsigned long type; } ckas[] = {
	{"CKA_CLASS", 0x0}, {"CKA_LABEL", 0x3}, {"CKA_KEY_TYPE", 0x100}, {"CKA_ID", 0x102},
	{"CKA_SENSITIVE", 0x103}, {"CKA_MODULUS", 0x120}, {"CKA_PUBLIC_EXPONENT", 0x122},
	{"CKA_EXTRACTABLE", 0x162}, {"CKA_LOCAL", 0x163}, {"CKA_NEVER_EXTRACTABLE", 0x164},
	{"CKA_EC_PARAMS", 0x180}, {"CKA_EC_POINT", 0x181},
};

/* A call selector: FUNC, FUNC#N (its Nth call), FUNC#N+ (the Nth and every
 * later one). N counts from 1 within the process, since C_Initialize. */
struct sel {
	int fn;
	unsigned long nth;
	int onward;
};

#define MAXRULES 16

static struct config {
	char module[4096];
	long latency_us;
	struct { struct sel at; ck_rv_t rv; } fail[MAXRULES];
	int nfail;
	struct sel hang[MAXRULES];
	int nhang;
	struct { int fn; long us; } delay[MAXRULES];
	int ndelay;
	struct sel invalidate[MAXRULES];
	int ninvalidate;
	struct sel replug[MAXRULES];
	int nreplug;
	unsigned long find_batch;
	long max_sessions;
	int login_shared;
	int already_initialized;
	unsigned long sensitive[MAXRULES];
	int nsensitive;
	unsigned long too_small[MAXRULES];
	int ntoo_small;
	int public_no_id;
	char count[4096];
	char error[256];
} cfg;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long calls[NFN + 1];
static long open_sessions;
static unsigned long slot_generation;
static int counted;

/* Slot numbers move by this much each time the token is "re-plugged". */
#define REPLUG_SHIFT 0x100UL

static void set_error(const char *what, const char *val)
{
	if (cfg.error[0] == '\0')
		snprintf(cfg.error, sizeof cfg.error, "p11quirks: %s: %s", what, val);
}

static int parse_fn(const char *s, size_t n)
{
	for (int i = 0; i <= NFN; i++)
		if (strlen(fn_names[i]) == n && strncmp(fn_names[i], s, n) == 0)
			return i;
	return -1;
}

static int parse_sel(const char *s, struct sel *out)
{
	const char *hash = strchr(s, '#');
	size_t n = hash ? (size_t)(hash - s) : strlen(s);
	out->fn = parse_fn(s, n);
	out->nth = 1;
	out->onward = 0;
	if (out->fn < 0)
		return -1;
	if (hash) {
		char *end;
		out->nth = strtoul(hash + 1, &end, 10);
		if (out->nth == 0)
			return -1;
		if (*end == '+') {
			out->onward = 1;
			end++;
		}
		if (*end != '\0')
			return -1;
	}
	return 0;
}

static int parse_rv(const char *s, ck_rv_t *rv)
{
	for (size_t i = 0; i < sizeof ckrs / sizeof ckrs[0]; i++)
		if (strcmp(ckrs[i].name, s) == 0) {
			*rv = ckrs[i].rv;
			return 0;
		}
	char *end;
	if (strncmp(s, "0x", 2) == 0) {
		*rv = strtoul(s + 2, &end, 16);
		return *end == '\0' && end != s + 2 ? 0 : -1;
	}
	return -1;
}

static int parse_attr(const char *s, unsigned long *t)
{
	for (size_t i = 0; i < sizeof ckas / sizeof ckas[0]; i++)
		if (strcmp(ckas[i].name, s) == 0) {
			*t = ckas[i].type;
			return 0;
		}
	char *end;
	if (strncmp(s, "0x", 2) == 0) {
		*t = strtoul(s + 2, &end, 16);
		return *end == '\0' && end != s + 2 ? 0 : -1;
	}
	return -1;
}

/* parse_duration reads 250us, 2ms, 1.5s (a plain number is milliseconds). */
static int parse_duration(const char *s, long *us)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		return -1;
	if (strcmp(end, "us") == 0)
		*us = (long)v;
	else if (strcmp(end, "ms") == 0 || *end == '\0')
		*us = (long)(v * 1000);
	else if (strcmp(end, "s") == 0)
		*us = (long)(v * 1000000);
	else
		return -1;
	return 0;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

static void parse_list(const char *key, char *val, unsigned long *out, int *n)
{
	for (char *tok = strtok(val, ","); tok; tok = strtok(NULL, ",")) {
		tok = trim(tok);
		if (*n == MAXRULES || parse_attr(tok, &out[*n]) < 0) {
			set_error(key, tok);
			return;
		}
		(*n)++;
	}
}

/* knob applies one "key = value" line. */
static void knob(char *line)
{
	char *hash = strstr(line, " #");
	if (hash)
		*hash = '\0';
	line = trim(line);
	if (*line == '\0' || *line == '#')
		return;
	char *eq = strchr(line, '=');
	if (eq == NULL) {
		set_error("not key = value", line);
		return;
	}
	*eq = '\0';
	char *key = trim(line), *val = trim(eq + 1);
	struct sel s;
	if (strcmp(key, "module") == 0) {
		snprintf(cfg.module, sizeof cfg.module, "%s", val);
	} else if (strcmp(key, "latency") == 0) {
		if (parse_duration(val, &cfg.latency_us) < 0)
			set_error(key, val);
	} else if (strcmp(key, "fail") == 0) {
		char *colon = strrchr(val, ':');
		ck_rv_t rv;
		if (colon == NULL || cfg.nfail == MAXRULES) {
			set_error(key, val);
			return;
		}
		*colon = '\0';
		if (parse_sel(trim(val), &s) < 0 || parse_rv(trim(colon + 1), &rv) < 0) {
			set_error(key, val);
			return;
		}
		cfg.fail[cfg.nfail].at = s;
		cfg.fail[cfg.nfail++].rv = rv;
	} else if (strcmp(key, "hang") == 0 || strcmp(key, "invalidate") == 0 || strcmp(key, "replug") == 0) {
		struct sel *list = cfg.hang;
		int *n = &cfg.nhang;
		if (key[0] == 'i')
			list = cfg.invalidate, n = &cfg.ninvalidate;
		else if (key[0] == 'r')
			list = cfg.replug, n = &cfg.nreplug;
		if (*n == MAXRULES || parse_sel(val, &s) < 0) {
			set_error(key, val);
			return;
		}
		list[(*n)++] = s;
	} else if (strcmp(key, "delay") == 0) {
		char *colon = strrchr(val, ':');
		if (colon == NULL || cfg.ndelay == MAXRULES) {
			set_error(key, val);
			return;
		}
		*colon = '\0';
		val = trim(val);
		int fn = parse_fn(val, strlen(val));
		if (fn < 0 || parse_duration(trim(colon + 1), &cfg.delay[cfg.ndelay].us) < 0) {
			set_error(key, val);
			return;
		}
		cfg.delay[cfg.ndelay++].fn = fn;
	} else if (strcmp(key, "find_batch") == 0) {
		cfg.find_batch = strtoul(val, NULL, 10);
		if (cfg.find_batch == 0)
			set_error(key, val);
	} else if (strcmp(key, "max_sessions") == 0) {
		cfg.max_sessions = strtol(val, NULL, 10);
		if (cfg.max_sessions <= 0)
			set_error(key, val);
	} else if (strcmp(key, "login_shared") == 0) {
		cfg.login_shared = strcmp(val, "1") == 0;
	} else if (strcmp(key, "already_initialized") == 0) {
		cfg.already_initialized = strcmp(val, "1") == 0;
	} else if (strcmp(key, "public_no_id") == 0) {
		cfg.public_no_id = strcmp(val, "1") == 0;
	} else if (strcmp(key, "sensitive") == 0) {
		parse_list(key, val, cfg.sensitive, &cfg.nsensitive);
	} else if (strcmp(key, "too_small") == 0) {
		parse_list(key, val, cfg.too_small, &cfg.ntoo_small);
	} else if (strcmp(key, "count") == 0) {
		snprintf(cfg.count, sizeof cfg.count, "%s", val);
	} else {
		set_error("unknown knob", key);
	}
}

/* load reads the knobs: the file $P11QUIRKS_CONF, then $P11QUIRKS (knobs
 * separated by ';'), and the real module from $P11QUIRKS_MODULE unless a
 * knob names it. Called at C_GetFunctionList and at every C_Initialize. */
static void load(void)
{
	memset(&cfg, 0, sizeof cfg);
	const char *m = getenv("P11QUIRKS_MODULE");
	if (m != NULL)
		snprintf(cfg.module, sizeof cfg.module, "%s", m);
	const char *path = getenv("P11QUIRKS_CONF");
	if (path != NULL && *path != '\0') {
		FILE *f = fopen(path, "re");
		if (f == NULL) {
			if (errno != ENOENT)
				set_error("P11QUIRKS_CONF", strerror(errno));
		} else {
			char line[4096];
			while (fgets(line, sizeof line, f) != NULL) {
				line[strcspn(line, "\n")] = '\0';
				knob(line);
			}
			fclose(f);
		}
	}
	const char *inline_knobs = getenv("P11QUIRKS");
	if (inline_knobs != NULL) {
		char *copy = strdup(inline_knobs), *save = NULL;
		for (char *k = strtok_r(copy, ";", &save); k; k = strtok_r(NULL, ";", &save))
			knob(k);
		free(copy);
	}
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int matches(const struct sel *s, int fn, unsigned long n, unsigned long any)
{
	if (s->fn == F_ANY)
		n = any;
	else if (s->fn != fn)
		return 0;
	return s->onward ? n >= s->nth : n == s->nth;
}

static void write_counts(void)
{
	if (cfg.count[0] == '\0' || counted)
		return;
	counted = 1;
	char line[2048];
	int n = snprintf(line, sizeof line, "pid=%ld calls=%lu", (long)getpid(), calls[F_ANY]);
	for (int i = 0; i < NFN && n < (int)sizeof line - 64; i++)
		if (calls[i] > 0)
			n += snprintf(line + n, sizeof line - n, " %s=%lu", fn_names[i], calls[i]);
	n += snprintf(line + n, sizeof line - n, "\n");
	int fd = open(cfg.count, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, line, n) != n) {
			/* the test sees the line missing */
		}
		close(fd);
	}
}

static void close_all_sessions(void)
{
	unsigned long n = 0;
	if (real->C_GetSlotList(1, NULL, &n) != CKR_OK || n == 0)
		return;
	ck_slot_id_t *slots = calloc(n, sizeof *slots);
	if (slots != NULL && real->C_GetSlotList(1, slots, &n) == CKR_OK)
		for (unsigned long i = 0; i < n; i++)
			real->C_CloseAllSessions(slots[i]);
	free(slots);
	pthread_mutex_lock(&mu);
	open_sessions = 0;
	pthread_mutex_unlock(&mu);
}

/* enter counts a call of fn and applies the knobs that any call has: a
 * nonzero return is what the call answers instead of calling through. */
static ck_rv_t enter(int fn)
{
	pthread_mutex_lock(&mu);
	unsigned long n = ++calls[fn], any = ++calls[F_ANY];
	int hang = 0, invalidate = 0;
	ck_rv_t rv = CKR_OK;
	long delay = cfg.latency_us;
	for (int i = 0; i < cfg.ndelay; i++)
		if (cfg.delay[i].fn == fn)
			delay += cfg.delay[i].us;
	for (int i = 0; i < cfg.nhang; i++)
		hang |= matches(&cfg.hang[i], fn, n, any);
	for (int i = 0; i < cfg.ninvalidate; i++)
		invalidate |= matches(&cfg.invalidate[i], fn, n, any);
	for (int i = 0; i < cfg.nreplug; i++)
		if (matches(&cfg.replug[i], fn, n, any))
			slot_generation++;
	for (int i = 0; i < cfg.nfail && rv == CKR_OK; i++)
		if (matches(&cfg.fail[i].at, fn, n, any))
			rv = cfg.fail[i].rv;
	pthread_mutex_unlock(&mu);
	if (delay > 0)
		sleep_us(delay);
	if (hang)
		for (;;)
			pause(); /* until the process is killed */
	if (invalidate && real != NULL)
		close_all_sessions(); /* an HA fail-over: every handle gone */
	return rv;
}

#define ENTER(fn)                      \
	do {                           \
		ck_rv_t r_ = enter(fn); \
		if (r_ != CKR_OK)      \
			return r_;     \
	} while (0)

/* Slot numbers as the caller sees them move with slot_generation. */
static ck_slot_id_t slot_out(ck_slot_id_t id) { return id + slot_generation * REPLUG_SHIFT; }

static int slot_in(ck_slot_id_t id, ck_slot_id_t *realid)
{
	if (id < slot_generation * REPLUG_SHIFT)
		return -1;
	*realid = id - slot_generation * REPLUG_SHIFT;
	return 0;
}

#define SLOT_IN(id)                               \
	ck_slot_id_t real_##id;                   \
	if (slot_in(id, &real_##id) < 0)          \
		return CKR_SLOT_ID_INVALID

static ck_rv_t q_initialize(void *args)
{
	load();
	pthread_mutex_lock(&mu);
	memset(calls, 0, sizeof calls);
	open_sessions = 0;
	slot_generation = 0;
	counted = 0;
	pthread_mutex_unlock(&mu);
	if (cfg.error[0] != '\0') {
		fprintf(stderr, "%s\n", cfg.error);
		return CKR_GENERAL_ERROR;
	}
	ENTER(F_INITIALIZE);
	ck_rv_t rv = real->C_Initialize(args);
	if (rv == CKR_OK && cfg.already_initialized)
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	return rv;
}

static ck_rv_t q_finalize(void *reserved)
{
	ENTER(F_FINALIZE);
	ck_rv_t rv = real->C_Finalize(reserved);
	write_counts();
	return rv;
}

static ck_rv_t q_getinfo(struct ck_info *info)
{
	ENTER(F_GETINFO);
	return real->C_GetInfo(info);
}

static ck_rv_t q_getslotlist(unsigned char present, ck_slot_id_t *list, unsigned long *count)
{
	ENTER(F_GETSLOTLIST);
	ck_rv_t rv = real->C_GetSlotList(present, list, count);
	if (rv == CKR_OK && list != NULL)
		for (unsigned long i = 0; i < *count; i++)
			list[i] = slot_out(list[i]);
	return rv;
}

static ck_rv_t q_getslotinfo(ck_slot_id_t id, struct ck_slot_info *info)
{
	ENTER(F_GETSLOTINFO);
	SLOT_IN(id);
	return real->C_GetSlotInfo(real_id, info);
}

static ck_rv_t q_gettokeninfo(ck_slot_id_t id, struct ck_token_info *info)
{
	ENTER(F_GETTOKENINFO);
	SLOT_IN(id);
	return real->C_GetTokenInfo(real_id, info);
}

static ck_rv_t q_getmechanismlist(ck_slot_id_t id, ck_mechanism_type_t *list, unsigned long *count)
{
	ENTER(F_GETMECHANISMLIST);
	SLOT_IN(id);
	return real->C_GetMechanismList(real_id, list, count);
}

static ck_rv_t q_opensession(ck_slot_id_t id, ck_flags_t flags, void *app, ck_notify_t notify, ck_session_handle_t *s)
{
	ENTER(F_OPENSESSION);
	SLOT_IN(id);
	pthread_mutex_lock(&mu);
	int full = cfg.max_sessions > 0 && open_sessions >= cfg.max_sessions;
	pthread_mutex_unlock(&mu);
	if (full)
		return CKR_SESSION_COUNT;
	ck_rv_t rv = real->C_OpenSession(real_id, flags, app, notify, s);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		open_sessions++;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static ck_rv_t q_closesession(ck_session_handle_t s)
{
	ENTER(F_CLOSESESSION);
	ck_rv_t rv = real->C_CloseSession(s);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		if (open_sessions > 0)
			open_sessions--;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static ck_rv_t q_closeallsessions(ck_slot_id_t id)
{
	ENTER(F_CLOSEALLSESSIONS);
	SLOT_IN(id);
	ck_rv_t rv = real->C_CloseAllSessions(real_id);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		open_sessions = 0;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static ck_rv_t q_getsessioninfo(ck_session_handle_t s, struct ck_session_info *info)
{
	ENTER(F_GETSESSIONINFO);
	ck_rv_t rv = real->C_GetSessionInfo(s, info);
	if (rv == CKR_OK)
		info->slot_id = slot_out(info->slot_id);
	return rv;
}

static ck_rv_t q_login(ck_session_handle_t s, ck_user_type_t user, unsigned char *pin, unsigned long len)
{
	ENTER(F_LOGIN);
	ck_rv_t rv = real->C_Login(s, user, pin, len);
	if (rv == CKR_OK && cfg.login_shared)
		return CKR_USER_ALREADY_LOGGED_IN;
	return rv;
}

static ck_rv_t q_logout(ck_session_handle_t s)
{
	ENTER(F_LOGOUT);
	return real->C_Logout(s);
}

/* An ID no key carries: a search for a public key by CKA_ID finds nothing
 * when public keys have no CKA_ID (public_no_id). */
static unsigned char no_such_id[] = "p11quirks: public keys carry no CKA_ID";

static ck_rv_t q_findobjectsinit(ck_session_handle_t s, struct ck_attribute *templ, unsigned long count)
{
	ENTER(F_FINDOBJECTSINIT);
	if (cfg.public_no_id && templ != NULL) {
		int public = 0, id = -1;
		for (unsigned long i = 0; i < count; i++) {
			if (templ[i].type == CKA_CLASS && templ[i].value_len == sizeof(ck_object_class_t) &&
			    *(ck_object_class_t *)templ[i].value == CKO_PUBLIC_KEY)
				public = 1;
			if (templ[i].type == CKA_ID)
				id = (int)i;
		}
		if (public && id >= 0 && count <= 16) {
			struct ck_attribute t[16];
			memcpy(t, templ, count * sizeof *t);
			t[id].value = no_such_id;
			t[id].value_len = sizeof no_such_id;
			return real->C_FindObjectsInit(s, t, count);
		}
	}
	return real->C_FindObjectsInit(s, templ, count);
}

static ck_rv_t q_findobjects(ck_session_handle_t s, ck_object_handle_t *obj, unsigned long max, unsigned long *count)
{
	ENTER(F_FINDOBJECTS);
	if (cfg.find_batch > 0 && max > cfg.find_batch)
		max = cfg.find_batch;
	return real->C_FindObjects(s, obj, max, count);
}

static ck_rv_t q_findobjectsfinal(ck_session_handle_t s)
{
	ENTER(F_FINDOBJECTSFINAL);
	return real->C_FindObjectsFinal(s);
}

static int listed(const unsigned long *list, int n, unsigned long t)
{
	for (int i = 0; i < n; i++)
		if (list[i] == t)
			return 1;
	return 0;
}

static ck_rv_t q_getattributevalue(ck_session_handle_t s, ck_object_handle_t o, struct ck_attribute *templ, unsigned long count)
{
	ENTER(F_GETATTRIBUTEVALUE);
	ck_rv_t rv = real->C_GetAttributeValue(s, o, templ, count);
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_BUFFER_TOO_SMALL)
		return rv;
	int public = 0;
	if (cfg.public_no_id) {
		ck_object_class_t class = 0;
		struct ck_attribute c = {CKA_CLASS, &class, sizeof class};
		public = real->C_GetAttributeValue(s, o, &c, 1) == CKR_OK && class == CKO_PUBLIC_KEY;
	}
	for (unsigned long i = 0; i < count; i++) {
		if (listed(cfg.sensitive, cfg.nsensitive, templ[i].type)) {
			templ[i].value_len = CK_UNAVAILABLE_INFORMATION;
			if (rv == CKR_OK)
				rv = CKR_ATTRIBUTE_SENSITIVE;
		} else if (templ[i].value != NULL && listed(cfg.too_small, cfg.ntoo_small, templ[i].type)) {
			templ[i].value_len = CK_UNAVAILABLE_INFORMATION;
			if (rv == CKR_OK)
				rv = CKR_BUFFER_TOO_SMALL;
		} else if (public && templ[i].type == CKA_ID) {
			templ[i].value_len = 0;
		}
	}
	return rv;
}

static void at_exit(void) { write_counts(); }

ck_rv_t C_GetFunctionList(struct ck_function_list **list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	if (real == NULL) {
		load();
		if (cfg.module[0] == '\0') {
			fprintf(stderr, "p11quirks: no real module: set P11QUIRKS_MODULE or module = PATH\n");
			return CKR_GENERAL_ERROR;
		}
		void *h = dlopen(cfg.module, RTLD_NOW | RTLD_LOCAL);
		if (h == NULL) {
			fprintf(stderr, "p11quirks: %s\n", dlerror());
			return CKR_GENERAL_ERROR;
		}
		ck_rv_t (*get)(struct ck_function_list **) = (ck_rv_t (*)(struct ck_function_list **))dlsym(h, "C_GetFunctionList");
		if (get == NULL)
			return CKR_GENERAL_ERROR;
		struct ck_function_list *r;
		ck_rv_t rv = get(&r);
		if (rv != CKR_OK)
			return rv;
		wrapped = *r;
		wrapped.C_Initialize = q_initialize;
		wrapped.C_Finalize = q_finalize;
		wrapped.C_GetInfo = q_getinfo;
		wrapped.C_GetFunctionList = C_GetFunctionList;
		wrapped.C_GetSlotList = q_getslotlist;
		wrapped.C_GetSlotInfo = q_getslotinfo;
		wrapped.C_GetTokenInfo = q_gettokeninfo;
		wrapped.C_GetMechanismList = q_getmechanismlist;
		wrapped.C_OpenSession = q_opensession;
		wrapped.C_CloseSession = q_closesession;
		wrapped.C_CloseAllSessions = q_closeallsessions;
		wrapped.C_GetSessionInfo = q_getsessioninfo;
		wrapped.C_Login = q_login;
		wrapped.C_Logout = q_logout;
		wrapped.C_FindObjectsInit = q_findobjectsinit;
		wrapped.C_FindObjects = q_findobjects;
		wrapped.C_FindObjectsFinal = q_findobjectsfinal;
		wrapped.C_GetAttributeValue = q_getattributevalue;
		real = r;
		atexit(at_exit);
	}
	*list = &wrapped;
	return CKR_OK;
}
