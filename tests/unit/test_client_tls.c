/* The client roles (tools/client_tls.c): which ops each role may run, and
 * the role a certificate's subject names. Certificates are built in memory
 * with OpenSSL; nothing here opens a socket. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/client.h"

/* A self-signed certificate whose subject has the OUs given (NULL-ended). */
static X509 *cert_with_ous(const char *const *ous)
{
	X509 *cert = X509_new();
	X509_NAME *name = X509_get_subject_name(cert);
	EVP_PKEY *key = EVP_EC_gen("P-256");

	assert_non_null(cert);
	assert_non_null(key);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Flotilla", -1,
				   -1, 0);
	for (; *ous != NULL; ous++)
		X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC, (const unsigned char *)*ous,
					   -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"x", -1, -1, 0);
	X509_set_issuer_name(cert, name);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, key);
	assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
	EVP_PKEY_free(key);
	return cert;
}

/* The role of a certificate with these OUs, through its DER bytes too. */
static uint32_t role_of(const char *const *ous)
{
	X509 *cert = cert_with_ous(ous);
	unsigned char *der = NULL;
	int size = i2d_X509(cert, &der);
	uint32_t role = client_tls_cert_role(cert);

	assert_true(size > 0);
	assert_int_equal(client_tls_der_role(der, (size_t)size), role);
	OPENSSL_free(der);
	X509_free(cert);
	return role;
}

/* A certificate's role is its subject's single OU, byte for byte. */
static void test_certificate_role_is_its_single_ou(void **state)
{
	(void)state;
	assert_int_equal(role_of((const char *[]){"data", NULL}), CLIENT_ACCESS_DATA);
	assert_int_equal(role_of((const char *[]){"admin", NULL}), CLIENT_ACCESS_ADMIN);
	assert_int_equal(role_of((const char *[]){"node", NULL}), CLIENT_ACCESS_NODE);
	assert_int_equal(role_of((const char *[]){NULL}), CLIENT_ACCESS_NONE);
	assert_int_equal(role_of((const char *[]){"Admin", NULL}), CLIENT_ACCESS_NONE);
	assert_int_equal(role_of((const char *[]){"admins", NULL}), CLIENT_ACCESS_NONE);
	assert_int_equal(role_of((const char *[]){"data", "admin", NULL}), CLIENT_ACCESS_NONE);
}

/* Bytes that are no certificate have no role. */
static void test_garbage_certificate_has_no_role(void **state)
{
	static const unsigned char junk[] = {0x30, 0x82, 0xff, 0xff, 0x01, 0x02};

	(void)state;
	assert_int_equal(client_tls_der_role(junk, sizeof(junk)), CLIENT_ACCESS_NONE);
	assert_int_equal(client_tls_der_role(junk, 0), CLIENT_ACCESS_NONE);
}

/* The data role runs the data ops and read-only inspection, nothing else;
 * the admin role runs everything; no role runs nothing. */
static void test_data_role_runs_data_ops_only(void **state)
{
	static const uint32_t data_ops[] = {
	    CLIENT_OP_PUT,       CLIENT_OP_GET,        CLIENT_OP_DELETE,    CLIENT_OP_CAS,
	    CLIENT_OP_STALE_GET, CLIENT_OP_LEADER,     CLIENT_OP_LOCAL_GET, CLIENT_OP_MEMBERS,
	    CLIENT_OP_DIGEST,    CLIENT_OP_NODE_STATUS};
	static const uint32_t admin_ops[] = {CLIENT_OP_DROP,
					     CLIENT_OP_JOIN,
					     CLIENT_OP_REMOVE_MEMBER,
					     CLIENT_OP_TRANSFER,
					     CLIENT_OP_ADD_LEARNER,
					     CLIENT_OP_PROMOTE,
					     CLIENT_OP_ADD_WITNESS,
					     CLIENT_OP_SNAPSHOT,
					     CLIENT_OP_CHECK,
					     CLIENT_OP_REBUILD,
					     CLIENT_OP_RECOVER,
					     CLIENT_OP_PEERS,
					     CLIENT_OP_SET_PEER,
					     CLIENT_OP_REMOVE_PEER,
					     CLIENT_OP_CHECK_STATUS,
					     CLIENT_OP_CORRUPT,
					     999};
	char text[160];

	(void)state;
	for (size_t i = 0; i < sizeof(data_ops) / sizeof(data_ops[0]); i++) {
		assert_true(client_role_allows(CLIENT_ACCESS_DATA, data_ops[i]));
		assert_true(client_role_allows(CLIENT_ACCESS_ADMIN, data_ops[i]));
		assert_false(client_role_allows(CLIENT_ACCESS_NONE, data_ops[i]));
		assert_false(client_role_allows(CLIENT_ACCESS_NODE, data_ops[i]));
	}
	for (size_t i = 0; i < sizeof(admin_ops) / sizeof(admin_ops[0]); i++) {
		assert_int_equal(client_op_role(admin_ops[i]), CLIENT_ACCESS_ADMIN);
		assert_false(client_role_allows(CLIENT_ACCESS_DATA, admin_ops[i]));
		assert_true(client_role_allows(CLIENT_ACCESS_ADMIN, admin_ops[i]));
	}
	client_forbidden_text(CLIENT_OP_DROP, CLIENT_ACCESS_DATA, text, sizeof(text));
	assert_string_equal(text,
			    "DROP needs the admin role; this connection's certificate has the data "
			    "role");
}

/* A client certificate without its key, or without a CA, is refused; no
 * settings at all mean plaintext. */
static void test_tls_setup_needs_ca_cert_and_key_together(void **state)
{
	char err[256];

	(void)state;
	unsetenv("FLOTILLA_TLS_CA");
	unsetenv("FLOTILLA_TLS_CERT");
	unsetenv("FLOTILLA_TLS_KEY");
	assert_int_equal(client_tls_setup(NULL, "c.pem", NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--tls-key"));
	assert_int_equal(client_tls_setup(NULL, "c.pem", "c.key", err, sizeof(err)), -EINVAL);
	assert_int_equal(client_tls_setup("/nonexistent/ca.pem", NULL, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
	assert_int_equal(client_tls_setup(NULL, NULL, NULL, err, sizeof(err)), 0);
	assert_false(client_tls_enabled());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_certificate_role_is_its_single_ou),
	    cmocka_unit_test(test_garbage_certificate_has_no_role),
	    cmocka_unit_test(test_data_role_runs_data_ops_only),
	    cmocka_unit_test(test_tls_setup_needs_ca_cert_and_key_together),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
