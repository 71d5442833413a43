/* Log lines: the text, logfmt and JSON forms of a record, their escaping and
 * cutting, and the levels a logger lets through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/log.h"

#define T_NS 1767323045678000000ull /* 2026-01-02T03:04:05.678Z */

static struct log_record rec_of(const char *msg, int32_t shard, uint64_t group)
{
	return (struct log_record){.level = LOG_LEVEL_INFO,
				   .node_id = 2,
				   .shard = shard,
				   .group = group,
				   .time_ns = T_NS,
				   .msg = msg};
}

/* A JSON string at *p (RFC 8259): no raw control bytes, known escapes only. */
static bool json_string(const char **p)
{
	const char *s = *p;

	if (*s++ != '"')
		return false;
	while (*s != '"') {
		if ((unsigned char)*s < 0x20)
			return false;
		if (*s == '\\') {
			s++;
			if (*s == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
						return false;
				s += 4;
			} else if (!*s || !strchr("\"\\/bfnrt", *s)) {
				return false;
			}
		}
		s++;
	}
	*p = s + 1;
	return true;
}

/* A whole line: one flat object of strings and whole numbers, then "\n". */
static bool json_line_is_valid(const char *line)
{
	const char *p = line;

	if (*p++ != '{')
		return false;
	for (;;) {
		if (!json_string(&p) || *p++ != ':')
			return false;
		if (*p == '"') {
			if (!json_string(&p))
				return false;
		} else {
			if (*p < '0' || *p > '9')
				return false;
			while (*p >= '0' && *p <= '9')
				p++;
		}
		if (*p == '}')
			break;
		if (*p++ != ',')
			return false;
	}
	return strcmp(p, "}\n") == 0;
}

static void test_text_line_reads_as_before_with_a_level(void **state)
{
	char buf[LOG_LINE_SIZE];
	struct log_record rec = rec_of("leader is node 3, term 5", 0, 17);
	size_t n = log_format_line(buf, sizeof(buf), &rec, LOG_FORMAT_TEXT);

	(void)state;
	buf[n] = '\0';
	assert_string_equal(
	    buf, "2026-01-02T03:04:05.678Z INFO node 2: group 17: leader is node 3, term 5\n");
	rec = rec_of("connection to node 3 lost: reset", 1, 0);
	rec.level = LOG_LEVEL_WARN;
	n = log_format_line(buf, sizeof(buf), &rec, LOG_FORMAT_TEXT);
	buf[n] = '\0';
	assert_string_equal(
	    buf,
	    "2026-01-02T03:04:05.678Z WARN node 2: shard 1: connection to node 3 lost: reset\n");
}

static void test_text_line_stays_one_line(void **state)
{
	char buf[LOG_LINE_SIZE];
	struct log_record rec = rec_of("two\nlines", -1, 0);
	size_t n = log_format_line(buf, sizeof(buf), &rec, LOG_FORMAT_TEXT);

	(void)state;
	buf[n] = '\0';
	assert_string_equal(buf, "2026-01-02T03:04:05.678Z INFO node 2: two lines\n");
}

static void test_logfmt_gives_fields_and_escapes_the_message(void **state)
{
	char buf[LOG_LINE_SIZE];
	struct log_record rec = rec_of("say \"hi\" \\ then\nmore\x01", 0, 17);
	size_t n = log_format_line(buf, sizeof(buf), &rec, LOG_FORMAT_LOGFMT);

	(void)state;
	buf[n] = '\0';
	assert_string_equal(buf, "ts=2026-01-02T03:04:05.678Z level=info node=2 shard=0 group=17 "
				 "msg=\"say \\\"hi\\\" \\\\ then\\nmore\\x01\"\n");
	rec = rec_of("started", -1, 0);
	n = log_format_line(buf, sizeof(buf), &rec, LOG_FORMAT_LOGFMT);
	buf[n] = '\0';
	assert_string_equal(buf, "ts=2026-01-02T03:04:05.678Z level=info node=2 msg=\"started\"\n");
}

static void test_json_escapes_quotes_backslashes_and_control_bytes(void **state)
{
	char buf[LOG_LINE_SIZE];
	struct log_record rec = rec_of("say \"hi\" \\ then\nmore\ttab\x01\x1f", 3, 9);
	size_t n = log_format_line(buf, sizeof(buf), &rec, LOG_FORMAT_JSON);

	(void)state;
	buf[n] = '\0';
	assert_string_equal(buf,
			    "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"info\",\"node\":2,"
			    "\"shard\":3,\"group\":9,\"msg\":\"say \\\"hi\\\" \\\\ "
			    "then\\nmore\\ttab\\u0001\\u001f\"}\n");
	assert_true(json_line_is_valid(buf));
}

/* A 2 KiB message is cut to fit the line, which stays one valid object. */
static void test_json_cuts_a_long_message_and_stays_valid(void **state)
{
	char msg[2048 + 1], buf[LOG_LINE_SIZE + 1];
	struct log_record rec = rec_of(msg, 0, 5);
	size_t n;

	(void)state;
	for (size_t i = 0; i < 2048; i++)
		msg[i] = "ab\"\\\n"[i % 5];
	msg[2048] = '\0';
	n = log_format_line(buf, LOG_LINE_SIZE, &rec, LOG_FORMAT_JSON);
	assert_true(n <= LOG_LINE_SIZE);
	assert_true(n > LOG_LINE_SIZE - 16); /* Cut, not dropped. */
	buf[n] = '\0';
	assert_true(json_line_is_valid(buf));
}

/* Cut anywhere, an escape is never split: every cut stays valid. */
static void test_json_cut_never_splits_an_escape(void **state)
{
	char msg[2048 + 1], buf[LOG_LINE_SIZE + 1];
	struct log_record rec = rec_of(msg, -1, 0);

	(void)state;
	memset(msg, '\x02', 2048); /* Six bytes each: \u0002. */
	msg[2048] = '\0';
	for (size_t size = 192; size <= LOG_LINE_SIZE; size += 7) {
		size_t n = log_format_line(buf, size, &rec, LOG_FORMAT_JSON);

		assert_true(n <= size);
		buf[n] = '\0';
		assert_true(json_line_is_valid(buf));
	}
}

/* A cut UTF-8 sequence would make the line invalid UTF-8: it is dropped whole. */
static void test_cut_never_splits_a_utf8_sequence(void **state)
{
	char msg[1200 + 1], buf[400];
	struct log_record rec = rec_of(msg, -1, 0);
	size_t n;

	(void)state;
	for (size_t i = 0; i + 2 <= 1200; i += 2)
		memcpy(msg + i, "\xc3\xa9", 2); /* é */
	msg[1200] = '\0';
	for (size_t size = 192; size < sizeof(buf); size++) {
		n = log_format_line(buf, size, &rec, LOG_FORMAT_JSON);
		assert_true(n >= 3);
		assert_memory_equal(buf + n - 3, "\"}\n", 3);
		assert_int_not_equal((unsigned char)buf[n - 4], 0xc3);
	}
}

struct sink {
	int count;
	struct log_record last;
	char msg[LOG_MSG_SIZE];
};

static void sink_record(void *arg, const struct log_record *rec)
{
	struct sink *k = arg;

	k->count++;
	k->last = *rec;
	strcpy(k->msg, rec->msg);
	k->last.msg = k->msg;
}

static void test_levels_below_the_minimum_are_not_delivered(void **state)
{
	struct sink k = {0};
	struct logger lg = {
	    .node_id = 4, .level_min = LOG_LEVEL_WARN, .sink = sink_record, .sink_arg = &k};

	(void)state;
	log_at(&lg, LOG_LEVEL_INFO, "info %d", 1);
	log_at(&lg, LOG_LEVEL_DEBUG, "debug");
	assert_int_equal(k.count, 0);
	log_group(&lg, LOG_LEVEL_WARN, 2, 77, "warn %d", 2);
	assert_int_equal(k.count, 1);
	assert_int_equal(k.last.level, LOG_LEVEL_WARN);
	assert_int_equal(k.last.node_id, 4);
	assert_int_equal(k.last.shard, 2);
	assert_int_equal(k.last.group, 77);
	assert_string_equal(k.last.msg, "warn 2");
	assert_true(k.last.time_ns > T_NS - 1000000000ull * 86400 * 365);
	log_shard(&lg, LOG_LEVEL_ERROR, 1, "error");
	assert_int_equal(k.count, 2);
	assert_int_equal(k.last.shard, 1);
	assert_int_equal(k.last.group, 0);
	lg.level_min = 0; /* The default: info. */
	log_at(&lg, LOG_LEVEL_INFO, "info");
	log_at(&lg, LOG_LEVEL_DEBUG, "debug");
	assert_int_equal(k.count, 3);
	assert_int_equal(k.last.shard, -1);
	lg.level_min = LOG_LEVEL_DEBUG;
	log_at(&lg, LOG_LEVEL_DEBUG, "debug");
	assert_int_equal(k.count, 4);
}

/* Muting stderr (tests) leaves a sink its lines. */
static void test_mute_silences_stderr_only(void **state)
{
	struct sink k = {0};
	struct logger lg = {.node_id = 1, .sink = sink_record, .sink_arg = &k};
	struct logger plain = {.node_id = 1};

	(void)state;
	log_mute(true);
	assert_false(log_enabled(&plain, LOG_LEVEL_ERROR));
	log_at(&lg, LOG_LEVEL_INFO, "still here");
	assert_int_equal(k.count, 1);
	log_mute(false);
	assert_true(log_enabled(&plain, LOG_LEVEL_ERROR));
}

static void test_level_and_format_names_parse(void **state)
{
	(void)state;
	assert_int_equal(log_level_parse("error"), LOG_LEVEL_ERROR);
	assert_int_equal(log_level_parse("warn"), LOG_LEVEL_WARN);
	assert_int_equal(log_level_parse("info"), LOG_LEVEL_INFO);
	assert_int_equal(log_level_parse("debug"), LOG_LEVEL_DEBUG);
	assert_int_equal(log_level_parse("verbose"), -1);
	assert_int_equal(log_format_parse("text"), LOG_FORMAT_TEXT);
	assert_int_equal(log_format_parse("logfmt"), LOG_FORMAT_LOGFMT);
	assert_int_equal(log_format_parse("json"), LOG_FORMAT_JSON);
	assert_int_equal(log_format_parse("xml"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_text_line_reads_as_before_with_a_level),
	    cmocka_unit_test(test_text_line_stays_one_line),
	    cmocka_unit_test(test_logfmt_gives_fields_and_escapes_the_message),
	    cmocka_unit_test(test_json_escapes_quotes_backslashes_and_control_bytes),
	    cmocka_unit_test(test_json_cuts_a_long_message_and_stays_valid),
	    cmocka_unit_test(test_json_cut_never_splits_an_escape),
	    cmocka_unit_test(test_cut_never_splits_a_utf8_sequence),
	    cmocka_unit_test(test_levels_below_the_minimum_are_not_delivered),
	    cmocka_unit_test(test_mute_silences_stderr_only),
	    cmocka_unit_test(test_level_and_format_names_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
