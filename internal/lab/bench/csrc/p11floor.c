/*
 * p11floor: the least PKCS#11 work that ods-keyguard's answers need, for
 * the benchmark's floor (internal/lab/bench, -hsm); and the generator of
 * the benchmark's key pairs. Built by the bench with gcc, never committed
 * as a binary.
 *
 *   p11floor MODULE LABEL PIN check        every private key's CKA_ID and key
 *                                          attributes (type, curve), one
 *                                          C_GetAttributeValue a key
 *   p11floor MODULE LABEL PIN verify       check, and every public key's
 *                                          CKA_ID and point
 *   p11floor MODULE LABEL PIN hook ID      the private key whose CKA_ID is ID
 *                                          (hex), and its public key's point
 *   p11floor MODULE LABEL PIN gen N        N EC P-256 key pairs, random
 *                                          16-byte CKA_IDs, printed in hex
 *
 * gcc -O2 -o p11floor p11floor.c -ldl -I/usr/include/p11-kit-1
 */
#define CRYPTOKI_GNU 1
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <p11-kit/pkcs11.h>

static struct ck_function_list *f;

static void die(const char *what, ck_rv_t rv)
{
	fprintf(stderr, "p11floor: %s: 0x%lx\n", what, (unsigned long)rv);
	exit(1);
}

#define CALL(what, expr)                    \
	do {                                \
		ck_rv_t rv_ = (expr);       \
		if (rv_ != CKR_OK)          \
			die(what, rv_);     \
	} while (0)

static ck_session_handle_t open_token(const char *label, const char *pin)
{
	unsigned long n = 0;
	CALL("C_GetSlotList", f->C_GetSlotList(1, NULL, &n));
	ck_slot_id_t *slots = calloc(n + 1, sizeof *slots);
	CALL("C_GetSlotList", f->C_GetSlotList(1, slots, &n));
	char want[32];
	memset(want, ' ', sizeof want);
	memcpy(want, label, strlen(label) < 32 ? strlen(label) : 32);
	for (unsigned long i = 0; i < n; i++) {
		struct ck_token_info ti;
		CALL("C_GetTokenInfo", f->C_GetTokenInfo(slots[i], &ti));
		if (memcmp(ti.label, want, 32) != 0)
			continue;
		ck_session_handle_t s;
		CALL("C_OpenSession", f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s));
		CALL("C_Login", f->C_Login(s, CKU_USER, (unsigned char *)pin, strlen(pin)));
		free(slots);
		return s;
	}
	fprintf(stderr, "p11floor: no token %s\n", label);
	exit(1);
}

/* find returns every object of class (with id, when given). */
static ck_object_handle_t *find(ck_session_handle_t s, ck_object_class_t class, unsigned char *id, unsigned long idlen, unsigned long *count)
{
	struct ck_attribute t[2] = {{CKA_CLASS, &class, sizeof class}, {CKA_ID, id, idlen}};
	CALL("C_FindObjectsInit", f->C_FindObjectsInit(s, t, id ? 2 : 1));
	unsigned long cap = 4096, n = 0, got;
	ck_object_handle_t *h = malloc(cap * sizeof *h);
	do {
		if (n + 4096 > cap)
			h = realloc(h, (cap *= 2) * sizeof *h);
		CALL("C_FindObjects", f->C_FindObjects(s, h + n, 4096, &got));
		n += got;
	} while (got > 0);
	CALL("C_FindObjectsFinal", f->C_FindObjectsFinal(s));
	*count = n;
	return h;
}

/* key reads a private key's CKA_ID and key attributes in one call. */
static void key(ck_session_handle_t s, ck_object_handle_t o)
{
	unsigned char id[256], params[64];
	ck_key_type_t type;
	struct ck_attribute t[3] = {{CKA_ID, id, sizeof id}, {CKA_KEY_TYPE, &type, sizeof type}, {CKA_EC_PARAMS, params, sizeof params}};
	CALL("C_GetAttributeValue", f->C_GetAttributeValue(s, o, t, 3));
}

/* point reads a public key's CKA_ID and point in one call. */
static void point(ck_session_handle_t s, ck_object_handle_t o)
{
	unsigned char id[256], pt[160];
	struct ck_attribute t[2] = {{CKA_ID, id, sizeof id}, {CKA_EC_POINT, pt, sizeof pt}};
	CALL("C_GetAttributeValue", f->C_GetAttributeValue(s, o, t, 2));
}

static void gen(ck_session_handle_t s, int n)
{
	static unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	unsigned char yes = 1, no = 0;
	struct ck_mechanism mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	FILE *r = fopen("/dev/urandom", "r");
	for (int i = 0; i < n; i++) {
		unsigned char id[16];
		char hex[33];
		if (fread(id, 1, sizeof id, r) != sizeof id)
			die("urandom", 0);
		for (int j = 0; j < 16; j++)
			sprintf(hex + 2 * j, "%02x", id[j]);
		struct ck_attribute pub[] = {
			{CKA_TOKEN, &yes, 1}, {CKA_VERIFY, &yes, 1}, {CKA_EC_PARAMS, p256, sizeof p256},
			{CKA_ID, id, 16}, {CKA_LABEL, hex, 32},
		};
		struct ck_attribute priv[] = {
			{CKA_TOKEN, &yes, 1}, {CKA_PRIVATE, &yes, 1}, {CKA_SENSITIVE, &yes, 1},
			{CKA_EXTRACTABLE, &no, 1}, {CKA_SIGN, &yes, 1}, {CKA_ID, id, 16}, {CKA_LABEL, hex, 32},
		};
		ck_object_handle_t hp, hk;
		CALL("C_GenerateKeyPair", f->C_GenerateKeyPair(s, &mech, pub, 5, priv, 7, &hp, &hk));
		printf("%s\n", hex);
	}
	fclose(r);
}

static unsigned long unhex(const char *s, unsigned char *out)
{
	unsigned long n = 0;
	for (; s[0] && s[1] && n < 256; s += 2)
		sscanf(s, "%2hhx", &out[n++]);
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: p11floor MODULE LABEL PIN check|verify|hook ID|gen N\n");
		return 2;
	}
	void *h = dlopen(argv[1], RTLD_NOW);
	if (h == NULL) {
		fprintf(stderr, "p11floor: %s\n", dlerror());
		return 1;
	}
	ck_rv_t (*get)(struct ck_function_list **) = (ck_rv_t (*)(struct ck_function_list **))dlsym(h, "C_GetFunctionList");
	CALL("C_GetFunctionList", get(&f));
	CALL("C_Initialize", f->C_Initialize(NULL));
	ck_session_handle_t s = open_token(argv[2], argv[3]);
	const char *what = argv[4];
	unsigned long n;
	if (strcmp(what, "check") == 0 || strcmp(what, "verify") == 0) {
		ck_object_handle_t *hs = find(s, CKO_PRIVATE_KEY, NULL, 0, &n);
		for (unsigned long i = 0; i < n; i++)
			key(s, hs[i]);
		if (strcmp(what, "verify") == 0) {
			hs = find(s, CKO_PUBLIC_KEY, NULL, 0, &n);
			for (unsigned long i = 0; i < n; i++)
				point(s, hs[i]);
		}
	} else if (strcmp(what, "hook") == 0 && argc == 6) {
		unsigned char id[256];
		unsigned long idlen = unhex(argv[5], id);
		ck_object_handle_t *hs = find(s, CKO_PRIVATE_KEY, id, idlen, &n);
		if (n != 1)
			die("hook: private keys with that CKA_ID", n);
		key(s, hs[0]);
		hs = find(s, CKO_PUBLIC_KEY, id, idlen, &n);
		if (n != 1)
			die("hook: public keys with that CKA_ID", n);
		point(s, hs[0]);
	} else if (strcmp(what, "gen") == 0 && argc == 6) {
		gen(s, atoi(argv[5]));
	} else {
		fprintf(stderr, "p11floor: bad command %s\n", what);
		return 2;
	}
	f->C_Logout(s);
	f->C_CloseSession(s);
	f->C_Finalize(NULL);
	return 0;
}
