/* Unit tests for api/messages.c: Anthropic requests → OpenAI chat bodies, chat completions → messages, OpenAI
 * streams → Anthropic events (the same at every split), errors in Anthropic's shape. Tables, both directions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/messages.h"

/* Two JSON texts with the same content (members compared by name, arrays in order). */
static void assert_json_eq(const char *got, const char *want)
{
    cJSON *g = cJSON_Parse(got), *w = cJSON_Parse(want);
    if (w == NULL) fail_msg("the expected JSON does not parse: %s", want);
    if (g == NULL || !cJSON_Compare(g, w, true)) fail_msg("got  %s\nwant %s", got ? got : "(null)", want);
    cJSON_Delete(g);
    cJSON_Delete(w);
}

/* ---------- requests ---------- */

typedef struct {
    const char *name;
    const char *in;
    const char *out;
} req_case;

static const req_case req_ok[] = {
    {"plain: string content, system string, sampling, stop, user, stream, x_priority",
     "{\"model\":\"qwen\",\"max_tokens\":64,\"system\":\"Be terse.\",\"messages\":[{\"role\":\"user\",\"content\":"
     "\"Hi\"}],\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,\"stop_sequences\":[\"\\n\\n\",\"END\"],"
     "\"metadata\":{\"user_id\":\"u1\"},\"stream\":true,\"x_priority\":\"high\"}",
     "{\"model\":\"qwen\",\"messages\":[{\"role\":\"system\",\"content\":\"Be terse.\"},{\"role\":\"user\","
     "\"content\":\"Hi\"}],\"max_tokens\":64,\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,\"stop\":[\"\\n\\n\","
     "\"END\"],\"user\":\"u1\",\"x_priority\":\"high\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}"},
    {"system blocks and cache hints, images from base64 and url",
     "{\"model\":\"m\",\"max_tokens\":1,\"system\":[{\"type\":\"text\",\"text\":\"A\",\"cache_control\":{\"type\":"
     "\"ephemeral\"}},{\"type\":\"text\",\"text\":\"B\"}],\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
     "\"text\",\"text\":\"look\",\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"image\",\"source\":{\"type\":"
     "\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBOR\"}},{\"type\":\"image\",\"source\":{\"type\":\"url\","
     "\"url\":\"https://x/y.jpg\"}}]}],\"cache_control\":{\"type\":\"ephemeral\"},\"service_tier\":\"auto\"}",
     "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"A\\nB\"},{\"role\":\"user\",\"content\":[{"
     "\"type\":\"text\",\"text\":\"look\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,"
     "iVBOR\"}},{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.jpg\"}}]}],\"max_tokens\":1}"},
    {"a tool round trip: tool_use → tool_calls, tool_result → tool messages first, then the user's text",
     "{\"model\":\"m\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":"
     "\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Let me see.\"},{\"type\":\"tool_use\",\"id\":\"t1\","
     "\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}},{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"now\","
     "\"input\":{}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":"
     "\"18C\"},{\"type\":\"tool_result\",\"tool_use_id\":\"t2\",\"is_error\":true,\"content\":[{\"type\":\"text\","
     "\"text\":\"no\"},{\"type\":\"text\",\"text\":\"clock\"}]},{\"type\":\"text\",\"text\":\"thanks\"}]}]}",
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\",\"content\":"
     "\"Let me see.\",\"tool_calls\":[{\"id\":\"t1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
     "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":\"t2\",\"type\":\"function\",\"function\":{\"name\":"
     "\"now\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"18C\"},{\"role\":"
     "\"tool\",\"tool_call_id\":\"t2\",\"content\":\"Error: no\\nclock\"},{\"role\":\"user\",\"content\":\"thanks\"}],"
     "\"max_tokens\":9}"},
    {"an assistant turn of tool calls only has null content; a tool_result without content is empty",
     "{\"max_tokens\":2,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\","
     "\"name\":"
     "\"f\",\"input\":{\"k\":[1,2]}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"a\"}"
     "]}]}",
     "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"a\",\"type\":\"function\","
     "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"k\\\":[1,2]}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"a\","
     "\"content\":\"\"}],\"max_tokens\":2}"},
    {"a tool_result's image goes into the user message after the tool messages",
     "{\"max_tokens\":2,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
     "\"r\",\"content\":[{\"type\":\"text\",\"text\":\"the screenshot:\"},{\"type\":\"image\",\"source\":{"
     "\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AAAA\"}}]},{\"type\":\"text\",\"text\":"
     "\"what is it?\"}]}]}",
     "{\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"r\",\"content\":\"the screenshot:\\n[image follows]\"},{"
     "\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,"
     "AAAA\"}},{\"type\":\"text\",\"text\":\"what is it?\"}]}],\"max_tokens\":2}"},
    {"tools and tool_choice any; thinking disabled is accepted",
     "{\"model\":\"m\",\"max_tokens\":3,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"name\":"
     "\"get_weather\",\"description\":\"Weather\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":{"
     "\"type\":\"string\"}},\"required\":[\"city\"]},\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"custom\","
     "\"name\":\"now\",\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":\"any\"},\"thinking\":{"
     "\"type\":\"disabled\"}}",
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":3,\"tools\":[{\"type\":"
     "\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\",\"parameters\":{\"type\":"
     "\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},{\"type\":\"function\","
     "\"function\":{\"name\":\"now\",\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":\"required\"}"},
    {"tool_choice tool with disable_parallel_tool_use",
     "{\"max_tokens\":3,\"messages\":[],\"tool_choice\":{\"type\":\"tool\",\"name\":\"f\",\"disable_parallel_tool_use\""
     ":true}}",
     "{\"messages\":[],\"max_tokens\":3,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
     "\"parallel_tool_calls\":false}"},
    {"tool_choice auto and none pass as they are",
     "{\"max_tokens\":3,\"messages\":[],\"tool_choice\":{\"type\":\"none\"}}",
     "{\"messages\":[],\"max_tokens\":3,\"tool_choice\":\"none\"}"},
    {"stream false stays a plain request", "{\"max_tokens\":3,\"messages\":[],\"stream\":false}",
     "{\"messages\":[],\"max_tokens\":3}"},
    {"what Claude Code sends beside the conversation: betas, context_management, output_config.effort, tools' "
     "eager_input_streaming (dropped)",
     "{\"max_tokens\":3,\"messages\":[],\"betas\":[\"x\"],\"context_management\":{\"edits\":[{\"type\":"
     "\"clear_tool_uses_20250919\"}]},\"output_config\":{\"effort\":\"low\"},\"tools\":[{\"name\":\"f\","
     "\"input_schema\":{},\"eager_input_streaming\":true}]}",
     "{\"messages\":[],\"max_tokens\":3,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
     "\"parameters\":{}}}]}"},
};

static void test_request_ok(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof req_ok / sizeof req_ok[0]; i++) {
        lx_buf out;
        lx_buf_init(&out, 0);
        lx_messages_error e = {0};
        int rc = lx_messages_request(req_ok[i].in, strlen(req_ok[i].in), false, &out, &e);
        if (rc != 0) fail_msg("%s: refused: %s", req_ok[i].name, e.message);
        assert_json_eq(out.p, req_ok[i].out);
        lx_buf_free(&out);
    }
}

typedef struct {
    const char *in;
    lx_err err;
    const char *param;
} req_bad;

static const req_bad req_refused[] = {
    {"not json", LX_ERR_INVALID_JSON, ""},
    {"[1]", LX_ERR_INVALID_JSON, ""},
    {"{\"messages\":[]}", LX_ERR_INVALID_FIELD, "max_tokens"},
    {"{\"max_tokens\":0,\"messages\":[]}", LX_ERR_INVALID_FIELD, "max_tokens"},
    {"{\"max_tokens\":1.5,\"messages\":[]}", LX_ERR_INVALID_FIELD, "max_tokens"},
    {"{\"max_tokens\":1}", LX_ERR_INVALID_FIELD, "messages"},
    {"{\"max_tokens\":1,\"model\":3,\"messages\":[]}", LX_ERR_INVALID_FIELD, "model"},
    {"{\"max_tokens\":1,\"stream\":\"yes\",\"messages\":[]}", LX_ERR_INVALID_FIELD, "stream"},
    {"{\"max_tokens\":1,\"messages\":[],\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}}",
     LX_ERR_INVALID_FIELD, "thinking"},
    {"{\"max_tokens\":1,\"messages\":[],\"frobnicate\":1}", LX_ERR_INVALID_FIELD, "frobnicate"},
    {"{\"max_tokens\":1,\"messages\":[],\"output_config\":{\"format\":{\"type\":\"json_schema\"}}}",
     LX_ERR_INVALID_FIELD, "output_config.format"},
    {"{\"max_tokens\":1,\"messages\":[],\"mcp_servers\":[]}", LX_ERR_INVALID_FIELD, "mcp_servers"},
    {"{\"max_tokens\":1,\"messages\":[],\"temperature\":\"hot\"}", LX_ERR_INVALID_FIELD, "temperature"},
    {"{\"max_tokens\":1,\"messages\":[],\"stop_sequences\":[1]}", LX_ERR_INVALID_FIELD, "stop_sequences"},
    {"{\"max_tokens\":1,\"messages\":[],\"metadata\":{\"user_id\":\"u\",\"x\":1}}", LX_ERR_INVALID_FIELD, "metadata.x"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", LX_ERR_INVALID_FIELD,
     "messages.0.role"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":3}]}", LX_ERR_INVALID_FIELD, "messages.0.content"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{}}]}]}",
     LX_ERR_INVALID_FIELD, "messages.0.content.0.type"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":[{"
     "\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"s\"}]}]}",
     LX_ERR_INVALID_FIELD, "messages.1.content.0.type"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"redacted_thinking\",\"data\":"
     "\"x\"}]}]}",
     LX_ERR_INVALID_FIELD, "messages.0.content.0.type"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"foo\":1}]}]}",
     LX_ERR_INVALID_FIELD, "messages.0.content.0.foo"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\","
     "\"content\":[{\"type\":\"image\",\"source\":{}}]}]}]}",
     LX_ERR_INVALID_FIELD, "messages.0.content.0.content.0.source"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\","
     "\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"document\"}]}]}]}",
     LX_ERR_INVALID_FIELD, "messages.0.content.0.content.1.type"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":"
     "\"file\",\"file_id\":\"f\"}}]}]}",
     LX_ERR_INVALID_FIELD, "messages.0.content.0.source"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":"
     "\"f\",\"input\":{}}]}]}",
     LX_ERR_INVALID_FIELD, "messages.0.content.0.type"},
    {"{\"max_tokens\":1,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\","
     "\"name\":\"f\",\"input\":\"x\"}]}]}",
     LX_ERR_INVALID_FIELD, "messages.0.content.0.input"},
    {"{\"max_tokens\":1,\"messages\":[],\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}]}",
     LX_ERR_INVALID_FIELD, "tools.0.type"},
    {"{\"max_tokens\":1,\"messages\":[],\"tools\":[{\"name\":\"f\"}]}", LX_ERR_INVALID_FIELD, "tools.0.input_schema"},
    {"{\"max_tokens\":1,\"messages\":[],\"tool_choice\":{\"type\":\"sometimes\"}}", LX_ERR_INVALID_FIELD,
     "tool_choice.type"},
    {"{\"max_tokens\":1,\"messages\":[],\"tool_choice\":{\"type\":\"tool\"}}", LX_ERR_INVALID_FIELD,
     "tool_choice.type"},
    {"{\"max_tokens\":1,\"system\":[{\"type\":\"image\"}],\"messages\":[]}", LX_ERR_INVALID_FIELD, "system.0.type"},
};

static void test_request_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof req_refused / sizeof req_refused[0]; i++) {
        const req_bad *c = &req_refused[i];
        lx_buf out;
        lx_buf_init(&out, 0);
        lx_messages_error e = {0};
        if (lx_messages_request(c->in, strlen(c->in), false, &out, &e) != -1) fail_msg("accepted: %s", c->in);
        if (e.err != c->err || strcmp(e.param, c->param) != 0)
            fail_msg("%s: err %d param '%s' (%s), want %d '%s'", c->in, e.err, e.param, e.message, c->err, c->param);
        if (c->param[0]) assert_non_null(strstr(e.message, c->param)); /* the message names the field */
        assert_int_equal(out.len, 0);
        lx_buf_free(&out);
    }
}

static void test_count_tokens_needs_no_max_tokens(void **state)
{
    (void)state;
    const char *in = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_messages_error e;
    assert_int_equal(lx_messages_request(in, strlen(in), false, &out, &e), -1);
    assert_int_equal(lx_messages_request(in, strlen(in), true, &out, &e), 0);
    assert_json_eq(out.p, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    lx_buf_free(&out);
}

/* ---------- answers ---------- */

#define ANSWER_HEAD                                                                                                    \
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"upstream\",\"choices\":[{\"index\":0,"
#define MSG_HEAD "{\"id\":\"msg_req1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"qwen\","

static const req_case answers[] = {
    {"text, stop → end_turn, cached tokens",
     ANSWER_HEAD "\"message\":{\"role\":\"assistant\",\"content\":\"Hello\",\"tool_calls\":[],\"reasoning_content\":"
                 "null},\"finish_reason\":\"stop\",\"stop_reason\":null}],\"usage\":{\"prompt_tokens\":12,"
                 "\"completion_tokens\":6,\"total_tokens\":18,\"prompt_tokens_details\":{\"cached_tokens\":8}}}",
     MSG_HEAD
     "\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
     "\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":8,\"output_tokens\":6}}"},
    {"vLLM names the stop string matched → stop_sequence",
     ANSWER_HEAD "\"message\":{\"content\":\"a\"},\"finish_reason\":\"stop\",\"stop_reason\":\"END\"}],\"usage\":{"
                 "\"prompt_tokens\":1,\"completion_tokens\":1}}",
     MSG_HEAD "\"content\":[{\"type\":\"text\",\"text\":\"a\"}],\"stop_reason\":\"stop_sequence\",\"stop_sequence\":"
              "\"END\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}"},
    {"a token id as stop_reason (eos) is not a stop sequence; length → max_tokens",
     ANSWER_HEAD "\"message\":{\"content\":\"abc\"},\"finish_reason\":\"length\",\"stop_reason\":151645}],\"usage\":{"
                 "\"prompt_tokens\":2,\"completion_tokens\":3}}",
     MSG_HEAD
     "\"content\":[{\"type\":\"text\",\"text\":\"abc\"}],\"stop_reason\":\"max_tokens\",\"stop_sequence\":null,"
     "\"usage\":{\"input_tokens\":2,\"output_tokens\":3}}"},
    {"tool calls → tool_use blocks with input objects",
     ANSWER_HEAD
     "\"message\":{\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{"
     "\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":\"call_2\",\"type\":"
     "\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"\"}}]},\"finish_reason\":\"tool_calls\"}],"
     "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}",
     MSG_HEAD "\"content\":[{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\",\"input\":{\"city\":"
              "\"Paris\"}},{\"type\":\"tool_use\",\"id\":\"call_2\",\"name\":\"now\",\"input\":{}}],\"stop_reason\":"
              "\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":7}}"},
    {"content_filter → refusal; no usage → zeros",
     ANSWER_HEAD "\"message\":{\"content\":\"\"},\"finish_reason\":\"content_filter\"}]}",
     MSG_HEAD "\"content\":[],\"stop_reason\":\"refusal\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,"
              "\"output_tokens\":0}}"},
};

static void test_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        lx_buf out;
        lx_buf_init(&out, 0);
        if (lx_messages_answer(answers[i].in, strlen(answers[i].in), "req1", "qwen", &out) != 0)
            fail_msg("%s: refused", answers[i].name);
        assert_json_eq(out.p, answers[i].out);
        lx_buf_free(&out);
    }
}

static void test_answers_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "not json",
        "{\"object\":\"list\",\"data\":[]}",
        "{\"choices\":[]}",
        ANSWER_HEAD
        "\"message\":{\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]}}]}",
        ANSWER_HEAD
        "\"message\":{\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}}]}",
        ANSWER_HEAD "\"message\":{\"tool_calls\":[{\"id\":\"c\",\"function\":{\"arguments\":\"{}\"}}]}}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lx_buf out;
        lx_buf_init(&out, 0);
        if (lx_messages_answer(bad[i], strlen(bad[i]), "r", "m", &out) != -1) fail_msg("accepted: %s", bad[i]);
        assert_int_equal(out.len, 0);
        lx_buf_free(&out);
    }
}

/* ---------- errors ---------- */

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *type;
    } types[] = {{400, "invalid_request_error"},
                 {401, "authentication_error"},
                 {403, "permission_error"},
                 {404, "not_found_error"},
                 {405, "invalid_request_error"},
                 {413, "request_too_large"},
                 {429, "rate_limit_error"},
                 {500, "api_error"},
                 {502, "api_error"},
                 {503, "overloaded_error"},
                 {504, "api_error"},
                 {529, "overloaded_error"}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        assert_string_equal(lx_messages_error_type(types[i].status), types[i].type);

    lx_buf out;
    lx_buf_init(&out, 0);
    lx_messages_error_body(&out, 429, "slow \"down\"\n");
    assert_json_eq(
        out.p, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow \\\"down\\\"\\n\"}}");
    lx_buf_reset(&out);
    const char *env = "{\"error\":{\"message\":\"This model's maximum context length is 8\",\"type\":"
                      "\"BadRequestError\",\"param\":null,\"code\":400}}";
    lx_messages_error_of(&out, 400, env, strlen(env));
    assert_json_eq(out.p, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"This "
                          "model's maximum context length is 8\"}}");
    lx_buf_reset(&out);
    lx_messages_error_of(&out, 502, "<html>bad gateway</html>", 24);
    assert_json_eq(out.p, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"the backend answered "
                          "HTTP 502: <html>bad gateway</html>\"}}");
    lx_buf_free(&out);
}

/* ---------- streams ---------- */

#define CH             "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"up\","
#define EV(type, rest) "event: " type "\ndata: {\"type\":\"" type "\"" rest "}\n\n"
#define START                                                                                                          \
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_r1\",\"type\":\"message\","     \
    "\"role\":\"assistant\",\"model\":\"qwen\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{" \
    "\"input_tokens\":7,\"output_tokens\":0}}}\n\n"

/* vLLM's text stream (role chunk, tokens, finish, usage-only chunk, [DONE]), with \r\n in one event. */
static const char text_stream[] =
    CH "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
       ": a comment\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\r\n\r\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\\"\xc3\xa9\\\"\"},\"finish_reason\":null}]}\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\",\"stop_reason\":\"END\"}]}"
       "\n\n" CH "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15,"
       "\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n"
       "data: [DONE]\n\n";

static const char text_events[] = START EV("content_block_start",
                                           ",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}")
    EV("content_block_delta", ",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}")
        EV("content_block_delta", ",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo \\\"\xc3\xa9\\\"\"}")
            EV("content_block_stop", ",\"index\":0")
                EV("message_delta", ",\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\"},"
                                    "\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":4,"
                                    "\"output_tokens\":3}") EV("message_stop", "");

/* Text, then two tool calls whose arguments come in pieces (as vLLM's tool parsers send them). */
static const char tool_stream[] =
    CH "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Checking.\"},\"finish_reason\":null}]}\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\","
       "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\": "
       "\"}}]},\"finish_reason\":null}]}\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}"
       "\"}}]},\"finish_reason\":null}]}\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\","
       "\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},\"finish_reason\":null}]}\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":20,"
       "\"completion_tokens\":9}}\n\n"
       "data: [DONE]\n\n";

static const char tool_events[] = START EV("content_block_start",
                                           ",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}")
    EV("content_block_delta", ",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking.\"}")
        EV("content_block_stop", ",\"index\":0") EV(
            "content_block_start",
            ",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"get_weather\","
            "\"input\":{}}") EV("content_block_delta",
                                ",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\""
                                ": \"}") EV("content_block_delta", ",\"index\":1,\"delta\":{\"type\":\"input_json_"
                                                                   "delta\",\"partial_json\":\"\\\"Paris\\\"}\"}")
            EV("content_block_stop", ",\"index\":1")
                EV("content_block_start", ",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_b\","
                                          "\"name\":\"now\",\"input\":{}}")
                    EV("content_block_delta", ",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
                                              "\"{}\"}") EV("content_block_stop", ",\"index\":2")
                        EV("message_delta",
                           ",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{"
                           "\"input_tokens\":20,\"output_tokens\":9}") EV("message_stop", "");

/* A backend's error chunk mid-stream: an error event, and nothing after it. */
static const char error_stream[] =
    CH "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
       "data: {\"error\":{\"message\":\"engine died\",\"type\":\"InternalServerError\",\"code\":500}}\n\n" CH
       "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"more\"},\"finish_reason\":null}]}\n\n"
       "data: [DONE]\n\n";

static const char error_events[] = START EV("content_block_start",
                                            ",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}")
    EV("content_block_delta",
       ",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}") "event: error\ndata: "
                                                                           "{\"type\":\"error\",\"error\":{\"type\":"
                                                                           "\"api_error\",\"message\":\"engine "
                                                                           "died\"}}\n\n";

/* Feeds in cut at the given points (cuts[] ascending, n_cuts of them) and returns what came out. */
static int feed_cut(const char *in, size_t len, const size_t *cuts, size_t n_cuts, lx_buf *out)
{
    lx_messages_stream s;
    lx_messages_stream_init(&s, "r1", "qwen", 7, 1 << 20);
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; i <= n_cuts && rc == 0; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        rc = lx_messages_stream_feed(&s, in + at, end - at, out);
        at = end;
    }
    lx_messages_stream_free(&s);
    return rc;
}

static void check_every_split(const char *in, const char *want)
{
    size_t len = strlen(in);
    lx_buf whole;
    lx_buf_init(&whole, 0);
    assert_int_equal(feed_cut(in, len, NULL, 0, &whole), 0);
    if (strcmp(whole.p, want) != 0) fail_msg("got\n%s\nwant\n%s", whole.p, want);
    for (size_t cut = 0; cut <= len; cut++) { /* one cut at every byte boundary */
        lx_buf out;
        lx_buf_init(&out, 0);
        assert_int_equal(feed_cut(in, len, &cut, 1, &out), 0);
        if (strcmp(out.p, want) != 0) fail_msg("cut at %zu:\n%s", cut, out.p);
        lx_buf_free(&out);
    }
    size_t *cuts = malloc(len * sizeof *cuts); /* and one byte at a time */
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    lx_buf out;
    lx_buf_init(&out, 0);
    assert_int_equal(feed_cut(in, len, cuts, len, &out), 0);
    assert_string_equal(out.p, want);
    free(cuts);
    lx_buf_free(&out);
    lx_buf_free(&whole);
}

static void test_stream_text(void **state)
{
    (void)state;
    check_every_split(text_stream, text_events);
}

static void test_stream_tools(void **state)
{
    (void)state;
    check_every_split(tool_stream, tool_events);
    /* every event is valid JSON whose partial_json pieces add up to the arguments */
    lx_buf out;
    lx_buf_init(&out, 0);
    feed_cut(tool_stream, strlen(tool_stream), NULL, 0, &out);
    lx_buf args;
    lx_buf_init(&args, 0);
    for (char *line = strstr(out.p, "data: "); line; line = strstr(line + 1, "\ndata: ")) {
        char *d = strstr(line, "data: ") + 6, *end = strchr(d, '\n');
        cJSON *ev = cJSON_ParseWithLength(d, (size_t)(end - d));
        assert_non_null(ev);
        cJSON *pj = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "delta"), "partial_json");
        if (cJSON_IsString(pj) && cJSON_GetObjectItem(ev, "index")->valueint == 1)
            lx_buf_append_str(&args, pj->valuestring);
        cJSON_Delete(ev);
    }
    assert_string_equal(args.p, "{\"city\": \"Paris\"}");
    lx_buf_free(&args);
    lx_buf_free(&out);
}

static void test_stream_error(void **state)
{
    (void)state;
    check_every_split(error_stream, error_events);
    /* the gateway's own error after the stream began: one error event, once */
    lx_messages_stream s;
    lx_messages_stream_init(&s, "r1", "qwen", 7, 1 << 20);
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_messages_stream_begin(&s, &out);
    lx_messages_stream_begin(&s, &out);
    assert_string_equal(out.p, START);
    lx_buf_reset(&out);
    lx_messages_stream_error(&s, 504, "backend b did not answer within 5 s", &out);
    lx_messages_stream_error(&s, 504, "twice", &out);
    assert_string_equal(out.p, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":"
                               "\"backend b did not answer within 5 s\"}}\n\n");
    lx_buf_free(&out);
    lx_messages_stream_free(&s);
}

static void test_stream_refused(void **state)
{
    (void)state;
    /* a tool call resumed after the next one began cannot be expressed as Anthropic blocks */
    static const char resumed[] = CH
        "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":"
        "\"f\"}}]}}]}\n\n" CH "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"b\","
        "\"function\":{\"name\":\"g\"}}]}}]}\n\n" CH "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\""
        ":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n";
    lx_buf out;
    lx_buf_init(&out, 0);
    assert_int_equal(feed_cut(resumed, strlen(resumed), NULL, 0, &out), -1);
    lx_buf_free(&out);
    /* an event larger than the cap */
    lx_messages_stream s;
    lx_messages_stream_init(&s, "r", "m", 0, 64);
    lx_buf_init(&out, 0);
    char big[100];
    memset(big, 'a', sizeof big);
    assert_int_equal(lx_messages_stream_feed(&s, "data: ", 6, &out), 0);
    assert_int_equal(lx_messages_stream_feed(&s, big, sizeof big, &out), -1);
    assert_int_equal(lx_messages_stream_feed(&s, "\n\n", 2, &out), -1);
    lx_messages_stream_free(&s);
    lx_buf_free(&out);
}

/* The usage the pipeline reads is the OpenAI stream's (api/sse.c, before translation): the translation adds
 * nothing the relay scanner would read as usage. Here: the last message_delta carries the stream's own figures. */
static void test_stream_without_usage(void **state)
{
    (void)state;
    static const char in[] = CH "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}"
                                "]}\n\ndata: [DONE]\n\n";
    lx_buf out;
    lx_buf_init(&out, 0);
    assert_int_equal(feed_cut(in, strlen(in), NULL, 0, &out), 0);
    assert_non_null(strstr(out.p, EV("message_delta", ",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":"
                                                      "null},\"usage\":{\"output_tokens\":0}")));
    lx_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_ok),
        cmocka_unit_test(test_request_refused),
        cmocka_unit_test(test_count_tokens_needs_no_max_tokens),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_answers_refused),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tools),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_stream_refused),
        cmocka_unit_test(test_stream_without_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
