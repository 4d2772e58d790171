/* test_value.c: value validation and canonical forms (core/src/value.c), no server. */
#include <math.h>
#include <stdint.h>

#include "schema.h"
#include "task.h"

/* ------------------------------------------------------------------------ */
/* The entity "item" and one field per type and option.                     */

static const bee__entity_t item = {.name = "item", .table = "item", .mysql_pool = "default"};

#define INT_FIELD(fname, b, u) \
  { .name = fname, .type = BEE_FIELD_INT, .bits = (b), .is_unsigned = (u) }
static const bee__field_t f_i8 = INT_FIELD("i8", 8, 0), f_u8 = INT_FIELD("u8", 8, 1),
                          f_i16 = INT_FIELD("i16", 16, 0), f_u16 = INT_FIELD("u16", 16, 1),
                          f_i24 = INT_FIELD("i24", 24, 0), f_u24 = INT_FIELD("u24", 24, 1),
                          f_i32 = INT_FIELD("i32", 32, 0), f_u32 = INT_FIELD("u32", 32, 1),
                          f_i64 = INT_FIELD("i64", 64, 0), f_u64 = INT_FIELD("u64", 64, 1);
static const bee__field_t f_qty = {.name = "qty", .type = BEE_FIELD_INT, .required = 1, .bits = 32,
                                   .is_unsigned = 1};
static const bee__field_t f_flag = {.name = "flag", .type = BEE_FIELD_BOOL};
static const bee__field_t f_ratio = {.name = "ratio", .type = BEE_FIELD_FLOAT};
static const bee__field_t f_price = {.name = "price", .type = BEE_FIELD_DECIMAL, .precision = 10,
                                     .scale = 2};
static const bee__field_t f_whole = {.name = "whole", .type = BEE_FIELD_DECIMAL, .precision = 5,
                                     .scale = 0};
static const bee__field_t f_frac = {.name = "frac", .type = BEE_FIELD_DECIMAL, .precision = 2,
                                    .scale = 2};
static const bee__field_t f_name = {.name = "name", .type = BEE_FIELD_STRING, .length = 5};
static const bee__field_t f_title = {.name = "title", .type = BEE_FIELD_STRING, .required = 1,
                                     .length = 10};
static const bee__field_t f_body = {.name = "body", .type = BEE_FIELD_TEXT};
static const bee__field_t f_blob = {.name = "blob", .type = BEE_FIELD_BYTES};
static const bee__field_t f_day = {.name = "day", .type = BEE_FIELD_DATE};
static const bee__field_t f_at = {.name = "at", .type = BEE_FIELD_DATETIME};
static char *colors[] = {"red", "green", "blue"};
static const bee__field_t f_color = {.name = "color", .type = BEE_FIELD_ENUM, .values = colors,
                                     .value_count = 3};
#define OPTIONS_10(d) \
  "option_" d "0", "option_" d "1", "option_" d "2", "option_" d "3", "option_" d "4", \
  "option_" d "5", "option_" d "6", "option_" d "7", "option_" d "8", "option_" d "9"
static char *options[] = {OPTIONS_10("0"), OPTIONS_10("1"), OPTIONS_10("2"), OPTIONS_10("3")};
static const bee__field_t f_level = {.name = "level", .type = BEE_FIELD_ENUM, .values = options,
                                     .value_count = 40};
static char *tag_names[] = {"new", "hot", "sale"};
static const bee__field_t f_tags = {.name = "tags", .type = BEE_FIELD_SET, .values = tag_names,
                                    .value_count = 3};
static const bee__field_t f_owner = {.name = "owner", .type = BEE_FIELD_REF,
                                     .ref_entity = "user"};

/* Values as bee_value_t literals. */
#define VNIL {BEE_VALUE_NIL, 0, 0, NULL, 0}
#define VI(x) {BEE_VALUE_INT, (x), 0, NULL, 0}
#define VF(x) {BEE_VALUE_FLOAT, 0, (x), NULL, 0}
#define VB(x) {BEE_VALUE_BOOL, (x), 0, NULL, 0}
#define VS(lit) {BEE_VALUE_STRING, 0, 0, (lit), sizeof(lit) - 1}
#define VBIG(n) {BEE_VALUE_STRING, 0, 0, big, (n)}

/* 65536 bytes of 'a', filled before use: one past what TEXT and BLOB hold. */
static char big[65536];
static char buf[BEE__VALUE_BUF(sizeof big)];

static void fill_big(void) { memset(big, 'a', sizeof big); }

#define RANGE_I64 "(-9223372036854775808 to 9223372036854775807)"
#define RANGE_U64 "(0 to 18446744073709551615)"
#define NOT_DATE "' is not a valid date (expected YYYY-MM-DD)"
#define NOT_DATETIME "' is not a valid datetime (expected YYYY-MM-DD hh:mm:ss)"
#define NOT_DECIMAL "' is not a decimal number"
#define COLORS "' is not one of: red, green, blue"
#define TAGS "' is not one of: new, hot, sale"

static const struct {
  const bee__field_t *f;
  bee_value_t in;
  const char *message;
} bad[] = {
    /* int: every width, one past each bound */
    {&f_i8, VI(-129), "-129 is out of range for signed 8-bit int (-128 to 127)"},
    {&f_i8, VI(128), "128 is out of range for signed 8-bit int (-128 to 127)"},
    {&f_u8, VI(-1), "-1 is out of range for unsigned 8-bit int (0 to 255)"},
    {&f_u8, VI(256), "256 is out of range for unsigned 8-bit int (0 to 255)"},
    {&f_i16, VI(-32769), "-32769 is out of range for signed 16-bit int (-32768 to 32767)"},
    {&f_i16, VI(32768), "32768 is out of range for signed 16-bit int (-32768 to 32767)"},
    {&f_u16, VI(-1), "-1 is out of range for unsigned 16-bit int (0 to 65535)"},
    {&f_u16, VI(65536), "65536 is out of range for unsigned 16-bit int (0 to 65535)"},
    {&f_i24, VI(-8388609), "-8388609 is out of range for signed 24-bit int (-8388608 to 8388607)"},
    {&f_i24, VI(8388608), "8388608 is out of range for signed 24-bit int (-8388608 to 8388607)"},
    {&f_u24, VI(-1), "-1 is out of range for unsigned 24-bit int (0 to 16777215)"},
    {&f_u24, VI(16777216), "16777216 is out of range for unsigned 24-bit int (0 to 16777215)"},
    {&f_i32, VI(-2147483649LL),
     "-2147483649 is out of range for signed 32-bit int (-2147483648 to 2147483647)"},
    {&f_i32, VI(2147483648LL),
     "2147483648 is out of range for signed 32-bit int (-2147483648 to 2147483647)"},
    {&f_u32, VI(-1), "-1 is out of range for unsigned 32-bit int (0 to 4294967295)"},
    {&f_u32, VI(4294967296LL), "4294967296 is out of range for unsigned 32-bit int (0 to 4294967295)"},
    {&f_i64, VF(9223372036854775808.0),
     "9.2233720368547758e+18 is out of range for signed 64-bit int " RANGE_I64},
    {&f_i64, VF(-1e19), "-1e+19 is out of range for signed 64-bit int " RANGE_I64},
    {&f_u64, VI(-1), "-1 is out of range for unsigned 64-bit int " RANGE_U64},
    {&f_u64, VS("18446744073709551616"),
     "18446744073709551616 is out of range for unsigned 64-bit int " RANGE_U64},
    {&f_u64, VS("100000000000000000000"),
     "100000000000000000000 is out of range for unsigned 64-bit int " RANGE_U64},
    {&f_u64, VF(18446744073709551616.0),
     "1.8446744073709552e+19 is out of range for unsigned 64-bit int " RANGE_U64},
    {&f_u64, VF(-1.0), "-1 is out of range for unsigned 64-bit int " RANGE_U64},
    /* int: floats and wrong kinds */
    {&f_u8, VF(300.0), "300 is out of range for unsigned 8-bit int (0 to 255)"},
    {&f_i32, VF(5.5), "5.5 is not an integer"},
    {&f_i8, VF(0.1), "0.10000000000000001 is not an integer"},
    {&f_i32, VF(NAN), "is not a finite number"},
    {&f_i32, VF(INFINITY), "is not a finite number"},
    {&f_i32, VB(1), "expected an integer, got boolean"},
    {&f_i32, VS("5"), "expected an integer, got string"},
    {&f_i64, VS("5"), "expected an integer, got string"},
    {&f_u64, VS("007"), "expected an integer, got string"},
    {&f_u64, VS("-5"), "expected an integer, got string"},
    {&f_u64, VS(""), "expected an integer, got string"},
    {&f_u64, VS("12a"), "expected an integer, got string"},
    {&f_u64, VS(" 12"), "expected an integer, got string"},
    /* ref */
    {&f_owner, VI(0), "0 is not a valid id (ids are 1 or more)"},
    {&f_owner, VI(-1), "-1 is not a valid id (ids are 1 or more)"},
    {&f_owner, VS("0"), "0 is not a valid id (ids are 1 or more)"},
    {&f_owner, VS("abc"), "expected a positive integer id, got string"},
    {&f_owner, VF(1.5), "1.5 is not an integer"},
    {&f_owner, VF(-1e19), "-1e+19 is not a valid id (ids are 1 or more)"},
    {&f_owner, VB(1), "expected a positive integer id, got boolean"},
    {&f_owner, VS("18446744073709551616"),
     "18446744073709551616 is out of range for unsigned 64-bit int " RANGE_U64},
    /* bool */
    {&f_flag, VI(1), "expected a boolean, got integer"},
    {&f_flag, VS("true"), "expected a boolean, got string"},
    {&f_flag, VF(0.0), "expected a boolean, got float"},
    /* float */
    {&f_ratio, VF(NAN), "is not a finite number"},
    {&f_ratio, VF(INFINITY), "is not a finite number"},
    {&f_ratio, VF(-INFINITY), "is not a finite number"},
    {&f_ratio, VS("1.5"), "expected a number, got string"},
    {&f_ratio, VB(0), "expected a number, got boolean"},
    /* decimal */
    {&f_price, VS("123456789.00"), "'123456789.00' has too many digits before the point (at most 8)"},
    {&f_price, VS("-123456789"), "'-123456789' has too many digits before the point (at most 8)"},
    {&f_price, VI(123456789), "'123456789' has too many digits before the point (at most 8)"},
    {&f_price, VS("1.234"), "'1.234' has too many digits after the point (at most 2)"},
    {&f_price, VS("1.500"), "'1.500' has too many digits after the point (at most 2)"},
    {&f_whole, VS("1.5"), "'1.5' has too many digits after the point (at most 0)"},
    {&f_whole, VS("123456"), "'123456' has too many digits before the point (at most 5)"},
    {&f_frac, VS("1.00"), "'1.00' has too many digits before the point (at most 0)"},
    {&f_price, VS("abc"), "'abc" NOT_DECIMAL},
    {&f_price, VS("1."), "'1." NOT_DECIMAL},
    {&f_price, VS(".5"), "'.5" NOT_DECIMAL},
    {&f_price, VS("1e5"), "'1e5" NOT_DECIMAL},
    {&f_price, VS("+1"), "'+1" NOT_DECIMAL},
    {&f_price, VS("--1"), "'--1" NOT_DECIMAL},
    {&f_price, VS(" 1"), "' 1" NOT_DECIMAL},
    {&f_price, VS(""), "'" NOT_DECIMAL},
    {&f_price, VS("-"), "'-" NOT_DECIMAL},
    {&f_price, VS("1.2.3"), "'1.2.3" NOT_DECIMAL},
    {&f_price, VS("1,5"), "'1,5" NOT_DECIMAL},
    {&f_price, VS("1\n2"), "'1?2" NOT_DECIMAL},
    {&f_price, VS("12345678901234567890123456789012345678901234567890x"),
     "'1234567890123456789012345678901234567890" NOT_DECIMAL},
    {&f_price, VF(1.5), "expected a decimal string or an integer, got float (floats are inexact)"},
    {&f_price, VB(1), "expected a decimal string or an integer, got boolean"},
    /* string: length in characters, UTF-8 */
    {&f_name, VS("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"),
     "is too long: 6 characters, at most 5"},
    {&f_name, VS("abcdef"), "is too long: 6 characters, at most 5"},
    {&f_name, VS("\xC0\x80"), "is not valid UTF-8 (bad byte at offset 0)"},
    {&f_name, VS("ab\xED\xA0\x80"), "is not valid UTF-8 (bad byte at offset 2)"},
    {&f_name, VS("\xF4\x90\x80\x80"), "is not valid UTF-8 (bad byte at offset 0)"},
    {&f_name, VS("x\xE2\x82"), "is not valid UTF-8 (bad byte at offset 1)"},
    {&f_name, VS("\x80"), "is not valid UTF-8 (bad byte at offset 0)"},
    {&f_name, VS("a\xFF"), "is not valid UTF-8 (bad byte at offset 1)"},
    {&f_name, VS("\xE0\x80\xAF"), "is not valid UTF-8 (bad byte at offset 0)"},
    {&f_name, VS("\xF0\x8F\xBF\xBF"), "is not valid UTF-8 (bad byte at offset 0)"},
    {&f_name, VS("\xE2\x82" "a"), "is not valid UTF-8 (bad byte at offset 0)"},
    {&f_name, VI(5), "expected a string, got integer"},
    /* text, bytes */
    {&f_body, VBIG(65536), "is too long: 65536 bytes, at most 65535"},
    {&f_body, VS("ok\xED\xBF\xBF"), "is not valid UTF-8 (bad byte at offset 2)"},
    {&f_body, VB(0), "expected a string, got boolean"},
    {&f_blob, VBIG(65536), "is too long: 65536 bytes, at most 65535"},
    {&f_blob, VF(1.0), "expected a string, got float"},
    /* date */
    {&f_day, VS("2024-02-30"), "'2024-02-30" NOT_DATE},
    {&f_day, VS("2023-02-29"), "'2023-02-29" NOT_DATE},
    {&f_day, VS("1900-02-29"), "'1900-02-29" NOT_DATE},
    {&f_day, VS("2024-04-31"), "'2024-04-31" NOT_DATE},
    {&f_day, VS("2024-13-01"), "'2024-13-01" NOT_DATE},
    {&f_day, VS("2024-00-10"), "'2024-00-10" NOT_DATE},
    {&f_day, VS("2024-01-00"), "'2024-01-00" NOT_DATE},
    {&f_day, VS("0999-01-01"), "'0999-01-01" NOT_DATE},
    {&f_day, VS("0000-00-00"), "'0000-00-00" NOT_DATE},
    {&f_day, VS("2024-1-05"), "'2024-1-05" NOT_DATE},
    {&f_day, VS("2024-01-05x"), "'2024-01-05x" NOT_DATE},
    {&f_day, VS("2024/01/05"), "'2024/01/05" NOT_DATE},
    {&f_day, VS("2024-01-01 00:00:00"), "'2024-01-01 00:00:00" NOT_DATE},
    {&f_day, VS(""), "'" NOT_DATE},
    {&f_day, VI(20240101), "expected a date string YYYY-MM-DD, got integer"},
    /* datetime */
    {&f_at, VS("2024-01-01 24:00:00"), "'2024-01-01 24:00:00" NOT_DATETIME},
    {&f_at, VS("2024-01-01 12:60:00"), "'2024-01-01 12:60:00" NOT_DATETIME},
    {&f_at, VS("2024-01-01 12:00:60"), "'2024-01-01 12:00:60" NOT_DATETIME},
    {&f_at, VS("2024-01-01T10:00:00"), "'2024-01-01T10:00:00" NOT_DATETIME},
    {&f_at, VS("2023-02-29 10:00:00"), "'2023-02-29 10:00:00" NOT_DATETIME},
    {&f_at, VS("2024-01-01 10:00"), "'2024-01-01 10:00" NOT_DATETIME},
    {&f_at, VS("2024-01-01 10:00:00.5"), "'2024-01-01 10:00:00.5" NOT_DATETIME},
    {&f_at, VS("2024-01-01 1a:00:00"), "'2024-01-01 1a:00:00" NOT_DATETIME},
    {&f_at, VI(1), "expected a datetime string YYYY-MM-DD hh:mm:ss, got integer"},
    /* enum */
    {&f_color, VS("purple"), "'purple" COLORS},
    {&f_color, VS("Red"), "'Red" COLORS},
    {&f_color, VS("red "), "'red " COLORS},
    {&f_color, VS(""), "'" COLORS},
    {&f_color, VS("bl\x01ue\t\xc3\xbc"), "'bl?ue?\xc3\xbc" COLORS},
    {&f_color, VS("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9"),
     "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?" COLORS},
    {&f_color, VI(1), "expected a string, got integer"},
    {&f_level, VS("option_99"),
     "'option_99' is not one of: option_00, option_01, option_02, option_03, option_04, "
     "option_05, option_06, option_07, option_08, option_09, option_10, option_11, option_12, "
     "option_13, option_14, option_15, option_16, option_17, ..."},
    /* set */
    {&f_tags, VS("new,foo"), "'foo" TAGS},
    {&f_tags, VS("NEW"), "'NEW" TAGS},
    {&f_tags, VS("new, hot"), "' hot" TAGS},
    {&f_tags, VS("hot,hot"), "'hot' is given twice"},
    {&f_tags, VS("sale,new,sale"), "'sale' is given twice"},
    {&f_tags, VS("new,,hot"), "has an empty member"},
    {&f_tags, VS("new,"), "has an empty member"},
    {&f_tags, VS(",new"), "has an empty member"},
    {&f_tags, VS(","), "has an empty member"},
    {&f_tags, VI(1), "expected a string, got integer"},
    /* required */
    {&f_title, VNIL, "is required"},
    {&f_qty, VNIL, "is required"},
};

static int all_bytes_are(const void *p, size_t n, unsigned char b) {
  for (size_t i = 0; i < n; i++)
    if (((const unsigned char *)p)[i] != b) return 0;
  return 1;
}

TEST_IMPL(value_check_rejects_bad_values_with_exact_messages) {
  fill_big();
  ASSERT(sizeof bad / sizeof *bad >= 70);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    bee_value_t out;
    bee_error_t err;
    memset(&out, 0x5a, sizeof out);
    memset(buf, 0x5a, 128);
    int rc = bee__value_check(&item, bad[i].f, &bad[i].in, &out, buf, sizeof buf, &err);
    if (rc != BEE_EVALIDATION || strcmp(err.message, bad[i].message) != 0)
      fprintf(stderr, "  bad row %zu (field %s)\n", i, bad[i].f->name);
    ASSERT_EQ(rc, BEE_EVALIDATION);
    ASSERT_EQ(err.code, BEE_EVALIDATION);
    ASSERT_EQ(err.temporary, 0);
    ASSERT_STR_EQ(err.message, bad[i].message);
    ASSERT_STR_EQ(err.entity, "item");
    ASSERT_STR_EQ(err.field, bad[i].f->name);
    ASSERT(all_bytes_are(&out, sizeof out, 0x5a));
    ASSERT(all_bytes_are(buf, 128, 0x5a));
  }
  return 0;
}

/* Expected outputs: `rewritten` says the canonical text is in buf, not the input. */
static const struct {
  const bee__field_t *f;
  bee_value_t in;
  bee_value_t want;
  int rewritten;
} good[] = {
    /* int bounds */
    {&f_i8, VI(-128), VI(-128), 0},
    {&f_i8, VI(127), VI(127), 0},
    {&f_u8, VI(0), VI(0), 0},
    {&f_u8, VI(255), VI(255), 0},
    {&f_i16, VI(-32768), VI(-32768), 0},
    {&f_i16, VI(32767), VI(32767), 0},
    {&f_u16, VI(65535), VI(65535), 0},
    {&f_i24, VI(-8388608), VI(-8388608), 0},
    {&f_i24, VI(8388607), VI(8388607), 0},
    {&f_u24, VI(16777215), VI(16777215), 0},
    {&f_i32, VI(INT32_MIN), VI(INT32_MIN), 0},
    {&f_i32, VI(INT32_MAX), VI(INT32_MAX), 0},
    {&f_u32, VI(4294967295LL), VI(4294967295LL), 0},
    {&f_i64, VI(INT64_MIN), VI(INT64_MIN), 0},
    {&f_i64, VI(INT64_MAX), VI(INT64_MAX), 0},
    {&f_u64, VI(0), VI(0), 0},
    {&f_u64, VI(INT64_MAX), VI(INT64_MAX), 0},
    {&f_u64, VS("18446744073709551615"), VS("18446744073709551615"), 0},
    {&f_u64, VS("9223372036854775808"), VS("9223372036854775808"), 0},
    {&f_u64, VS("9223372036854775807"), VI(INT64_MAX), 0},
    {&f_u64, VS("0"), VI(0), 0},
    {&f_u64, VF(9223372036854775808.0), VS("9223372036854775808"), 1},
    {&f_i32, VF(5.0), VI(5), 0},
    {&f_i8, VF(-128.0), VI(-128), 0},
    {&f_i32, VF(-0.0), VI(0), 0},
    /* ref */
    {&f_owner, VI(1), VI(1), 0},
    {&f_owner, VS("42"), VI(42), 0},
    {&f_owner, VF(7.0), VI(7), 0},
    {&f_owner, VS("18446744073709551615"), VS("18446744073709551615"), 0},
    /* bool, float */
    {&f_flag, VB(1), VB(1), 0},
    {&f_flag, VB(0), VB(0), 0},
    {&f_flag, VB(5), VB(1), 0},
    {&f_ratio, VI(3), VF(3.0), 0},
    {&f_ratio, VF(-2.5), VF(-2.5), 0},
    {&f_ratio, VF(1e308), VF(1e308), 0},
    /* decimal */
    {&f_price, VS("12.50"), VS("12.50"), 0},
    {&f_price, VS("99999999.99"), VS("99999999.99"), 0},
    {&f_price, VS("-99999999.99"), VS("-99999999.99"), 0},
    {&f_price, VS("007.5"), VS("7.50"), 1},
    {&f_price, VS("-0"), VS("0.00"), 1},
    {&f_price, VS("-0.00"), VS("0.00"), 1},
    {&f_price, VS("-00.10"), VS("-0.10"), 1},
    {&f_price, VS("0.5"), VS("0.50"), 1},
    {&f_price, VS("00000000000099999999.99"), VS("99999999.99"), 1},
    {&f_price, VI(12), VS("12.00"), 1},
    {&f_price, VI(-12), VS("-12.00"), 1},
    {&f_whole, VS("99999"), VS("99999"), 0},
    {&f_whole, VS("-007"), VS("-7"), 1},
    {&f_whole, VI(0), VS("0"), 1},
    {&f_frac, VS("0.99"), VS("0.99"), 0},
    {&f_frac, VS("-0.5"), VS("-0.50"), 1},
    {&f_frac, VS("0"), VS("0.00"), 1},
    /* string, text, bytes: bytes above L but characters at L are fine */
    {&f_name, VS("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"),
     VS("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"), 0},
    {&f_name, VS("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"),
     VS("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"), 0},
    {&f_name, VS("abcde"), VS("abcde"), 0},
    {&f_name, VS(""), VS(""), 0},
    {&f_name, VS("\xef\xbf\xbf\xf4\x8f\xbf\xbf"), VS("\xef\xbf\xbf\xf4\x8f\xbf\xbf"), 0},
    {&f_body, VBIG(65535), VBIG(65535), 0},
    {&f_body, VS("ok \xc3\xbc"), VS("ok \xc3\xbc"), 0},
    {&f_blob, VBIG(65535), VBIG(65535), 0},
    {&f_blob, VS("\xff\x00\xc0"), VS("\xff\x00\xc0"), 0},
    /* date, datetime */
    {&f_day, VS("2024-02-29"), VS("2024-02-29"), 0},
    {&f_day, VS("2000-02-29"), VS("2000-02-29"), 0},
    {&f_day, VS("1000-01-01"), VS("1000-01-01"), 0},
    {&f_day, VS("9999-12-31"), VS("9999-12-31"), 0},
    {&f_at, VS("2024-01-01"), VS("2024-01-01 00:00:00"), 1},
    {&f_at, VS("2024-02-29 23:59:59"), VS("2024-02-29 23:59:59"), 0},
    {&f_at, VS("1000-01-01 00:00:00"), VS("1000-01-01 00:00:00"), 0},
    /* enum, set */
    {&f_color, VS("red"), VS("red"), 0},
    {&f_color, VS("blue"), VS("blue"), 0},
    {&f_level, VS("option_39"), VS("option_39"), 0},
    {&f_tags, VS(""), VS(""), 0},
    {&f_tags, VS("hot"), VS("hot"), 0},
    {&f_tags, VS("new,hot,sale"), VS("new,hot,sale"), 0},
    {&f_tags, VS("sale,new"), VS("new,sale"), 1},
    {&f_tags, VS("sale,hot,new"), VS("new,hot,sale"), 1},
    /* nil where allowed */
    {&f_name, VNIL, VNIL, 0},
    {&f_i32, VNIL, VNIL, 0},
    {&f_owner, VNIL, VNIL, 0},
};

TEST_IMPL(value_check_accepts_good_values_in_canonical_form) {
  fill_big();
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    bee_value_t out;
    bee_error_t err;
    memset(&out, 0x5a, sizeof out);
    int rc = bee__value_check(&item, good[i].f, &good[i].in, &out, buf, sizeof buf, &err);
    if (rc != 0) fprintf(stderr, "  good row %zu (field %s): %s\n", i, good[i].f->name, err.message);
    ASSERT_EQ(rc, 0);
    const bee_value_t *want = &good[i].want;
    if (out.kind != want->kind) fprintf(stderr, "  good row %zu (field %s)\n", i, good[i].f->name);
    ASSERT_EQ(out.kind, want->kind);
    switch (want->kind) {
      case BEE_VALUE_INT:
      case BEE_VALUE_BOOL:
        ASSERT_EQ(out.i, want->i);
        break;
      case BEE_VALUE_FLOAT:
        ASSERT(out.f == want->f);
        break;
      case BEE_VALUE_STRING:
        if (out.len != want->len || memcmp(out.str, want->str, want->len) != 0)
          fprintf(stderr, "  good row %zu: got \"%.*s\"\n", i, (int)out.len, out.str);
        ASSERT_EQ(out.len, want->len);
        ASSERT(memcmp(out.str, want->str, want->len) == 0);
        if (good[i].rewritten) {
          ASSERT(out.str == buf);
          ASSERT_EQ(buf[out.len], '\0');
        } else {
          ASSERT(out.str == good[i].in.str);
        }
        break;
      case BEE_VALUE_NIL:
        break;
    }
  }
  return 0;
}

TEST_IMPL(value_field_type_names) {
  static const struct {
    bee_field_type_t t;
    const char *name;
  } names[] = {
      {BEE_FIELD_INT, "int"},       {BEE_FIELD_BOOL, "bool"},         {BEE_FIELD_FLOAT, "float"},
      {BEE_FIELD_DECIMAL, "decimal"}, {BEE_FIELD_STRING, "string"},   {BEE_FIELD_TEXT, "text"},
      {BEE_FIELD_BYTES, "bytes"},   {BEE_FIELD_DATE, "date"},         {BEE_FIELD_DATETIME, "datetime"},
      {BEE_FIELD_ENUM, "enum"},     {BEE_FIELD_SET, "set"},           {BEE_FIELD_REF, "ref"},
  };
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    ASSERT_STR_EQ(bee__field_type_name(names[i].t), names[i].name);
  ASSERT_STR_EQ(bee__field_type_name((bee_field_type_t)0), "?");
  ASSERT_STR_EQ(bee__field_type_name((bee_field_type_t)99), "?");
  return 0;
}

TEST_IMPL(value_check_rewrite_needs_a_big_enough_buffer) {
  static const struct {
    const bee__field_t *f;
    bee_value_t in;
  } rewrites[] = {
      {&f_price, VS("7.5")},
      {&f_price, VI(7)},
      {&f_at, VS("2024-01-01")},
      {&f_tags, VS("sale,new")},
      {&f_u64, VF(9223372036854775808.0)},
  };
  char small[BEE__VALUE_BUF(16)];
  for (size_t i = 0; i < sizeof rewrites / sizeof *rewrites; i++) {
    const bee_value_t *in = &rewrites[i].in;
    size_t need = BEE__VALUE_BUF(in->kind == BEE_VALUE_STRING ? in->len : 0);
    bee_value_t out;
    bee_error_t err;
    memset(&out, 0x5a, sizeof out);
    ASSERT_EQ(bee__value_check(&item, rewrites[i].f, in, &out, small, need - 1, &err), BEE_EINVAL);
    ASSERT_STR_EQ(err.message, "value buffer too small");
    ASSERT(all_bytes_are(&out, sizeof out, 0x5a));
    ASSERT_EQ(bee__value_check(&item, rewrites[i].f, in, &out, NULL, 0, &err), BEE_EINVAL);
    ASSERT_EQ(bee__value_check(&item, rewrites[i].f, in, &out, small, need, &err), 0);
    ASSERT(out.str == small);
  }
  /* Already canonical: no buffer is needed at all. */
  static const struct {
    const bee__field_t *f;
    bee_value_t in;
  } canonical[] = {
      {&f_price, VS("7.50")},
      {&f_at, VS("2024-01-01 00:00:00")},
      {&f_tags, VS("new,sale")},
      {&f_u64, VS("18446744073709551615")},
  };
  for (size_t i = 0; i < sizeof canonical / sizeof *canonical; i++) {
    bee_value_t out;
    bee_error_t err;
    ASSERT_EQ(bee__value_check(&item, canonical[i].f, &canonical[i].in, &out, NULL, 0, &err), 0);
    ASSERT(out.str == canonical[i].in.str);
  }
  return 0;
}

TEST_IMPL(value_check_error_line_names_entity_and_field) {
  bee_value_t in = VS("1.234"), out;
  bee_error_t err;
  char line[BEE_ERROR_MESSAGE_MAX + 256];
  ASSERT_EQ(bee__value_check(&item, &f_price, &in, &out, buf, sizeof buf, &err), BEE_EVALIDATION);
  bee_error_format(&err, line, sizeof line);
  ASSERT_STR_EQ(line,
                "beeorm error [validation] item.price: '1.234' has too many digits after the "
                "point (at most 2)");
  /* err may be NULL: the code alone still comes back. */
  ASSERT_EQ(bee__value_check(&item, &f_price, &in, &out, buf, sizeof buf, NULL), BEE_EVALIDATION);
  return 0;
}

TEST_IMPL(value_check_bad_arguments_are_einval) {
  bee_value_t in = VI(1), out;
  bee_error_t err;
  bee__field_t odd = {.name = "odd", .type = (bee_field_type_t)99};
  ASSERT_EQ(bee__value_check(&item, &odd, &in, &out, buf, sizeof buf, &err), BEE_EINVAL);
  bee__field_t wide = {.name = "wide", .type = BEE_FIELD_INT, .bits = 12};
  ASSERT_EQ(bee__value_check(&item, &wide, &in, &out, buf, sizeof buf, &err), BEE_EINVAL);
  bee__field_t dec = {.name = "dec", .type = BEE_FIELD_DECIMAL, .precision = 5, .scale = 6};
  ASSERT_EQ(bee__value_check(&item, &dec, &in, &out, buf, sizeof buf, &err), BEE_EINVAL);
  bee_value_t weird = {.kind = (bee_value_kind_t)42};
  ASSERT_EQ(bee__value_check(&item, &f_i32, &weird, &out, buf, sizeof buf, &err), BEE_EINVAL);
  bee_value_t hollow = {.kind = BEE_VALUE_STRING, .str = NULL, .len = 3};
  ASSERT_EQ(bee__value_check(&item, &f_name, &hollow, &out, buf, sizeof buf, &err), BEE_EINVAL);
  ASSERT_EQ(bee__value_check(&item, &f_i32, NULL, &out, buf, sizeof buf, &err), BEE_EINVAL);
  ASSERT_EQ(bee__value_check(&item, &f_i32, &in, NULL, buf, sizeof buf, &err), BEE_EINVAL);
  return 0;
}
