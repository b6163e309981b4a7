/*
 * The anthropic backend kind (backends/anthropic.c), both directions, as tables:
 *  - requests: an OpenAI chat body → the Messages body expected (compared as JSON), or the 400 and the
 *    field it names; completions and embeddings refused;
 *  - answers: a Messages answer or an Anthropic error → the chat.completion or OpenAI envelope expected;
 *  - streams: Anthropic's events → the OpenAI chunks expected, and the same stream cut at every byte
 *    boundary gives the same bytes;
 *  - outcomes, probe headers, config (the key from a file or the environment, never quoted back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "backends/kind.h"
#include "support.h"

#define KEY "sk-ant-test-0123456789"

static const char yaml[] = "backends:\n"
                           "  claude: {type: anthropic, url: 'https://127.0.0.1:9', models: [claude-x], api_key: " KEY
                           ", default_max_tokens: 77}\n";

static const lx_kind *kind(void) { return lx_kind_get(LX_BACKEND_ANTHROPIC); }

/* Runs the request translator on body; returns its rc, with r and err filled. */
static int translate(const lx_config *c, lx_endpoint ep, const char *body, lx_kind_request *r, lx_kind_error *err)
{
    lx_body_fields f;
    lx_body_error berr;
    assert_int_equal(lx_body_scan(body, strlen(body), &f, &berr), 0);
    lx_kind_ctx ctx = {.ep = ep, .backend = &c->backends[0], .body = lx_slice_of(body), .fields = &f};
    *err = (lx_kind_error){.err = LX_ERR_INTERNAL};
    return kind()->request(&ctx, r, err);
}

static void assert_json_equal(const char *got, size_t len, const char *want)
{
    cJSON *g = cJSON_ParseWithLength(got, len), *w = cJSON_Parse(want);
    assert_non_null(w);
    if (!cJSON_Compare(g, w, true)) fail_msg("got  %.*s\nwant %s", (int)len, got, want);
    cJSON_Delete(g);
    cJSON_Delete(w);
}

/* ---------- requests ---------- */

typedef struct {
    const char *in, *out;
} req_row;

static const req_row requests[] = {
    /* system and developer messages → system; max_tokens from the backend's default */
    {"{\"model\":\"claude-x\",\"messages\":[{\"role\":\"system\",\"content\":\"Be terse.\"},"
     "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No emoji.\"}]},"
     "{\"role\":\"user\",\"content\":\"Hi\"}]}",
     "{\"model\":\"claude-x\",\"max_tokens\":77,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"Hi\"}]}],\"system\":[{\"type\":\"text\",\"text\":\"Be terse.\"},{\"type\":\"text\",\"text\":\"No "
     "emoji.\"}]}"},
    /* max_completion_tokens wins; temperature, top_p, stop (a string), user, stream; x_* and stream_options stay
     * Lexora's */
    {"{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":5,"
     "\"max_completion_tokens\":9,\"temperature\":0.5,\"top_p\":0.9,\"stop\":\"END\",\"user\":\"u1\",\"stream\":true,"
     "\"stream_options\":{\"include_usage\":true},\"x_priority\":\"high\",\"n\":1,\"logprobs\":false,"
     "\"presence_penalty\":0,\"response_format\":{\"type\":\"text\"}}",
     "{\"model\":\"claude-x\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"Hi\"}]}],\"temperature\":0.5,\"top_p\":0.9,\"stop_sequences\":[\"END\"],\"metadata\":{\"user_id\":"
     "\"u1\"},\"stream\":true}"},
    /* images: a data URL → base64, an https URL → url; stop as a list */
    {"{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What?\"},"
     "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0=\"}},"
     "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://e.x/a.jpg\",\"detail\":\"low\"}}]}],"
     "\"stop\":[\"a\",\"b\"]}",
     "{\"model\":\"claude-x\",\"max_tokens\":77,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"What?\"},{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":"
     "\"iVBORw0=\"}},{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://e.x/a.jpg\"}}]}],"
     "\"stop_sequences\":[\"a\",\"b\"]}"},
    /* tools; tool_choice required → any; parallel_tool_calls false */
    {"{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"}],\"tools\":[{\"type\":"
     "\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather of a city\",\"parameters\":{"
     "\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}},{\"type\":\"function\",\"function\":{"
     "\"name\":\"now\"}}],\"tool_choice\":\"required\",\"parallel_tool_calls\":false}",
     "{\"model\":\"claude-x\",\"max_tokens\":77,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"Weather?\"}]}],\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather of a city\","
     "\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}},{\"name\":\"now\","
     "\"input_schema\":{\"type\":\"object\",\"properties\":{}}}],\"tool_choice\":{\"type\":\"any\","
     "\"disable_parallel_tool_use\":true}}"},
    /* tool_choice: a named function → tool; none; auto */
    {"{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{\"type\":"
     "\"function\",\"function\":{\"name\":\"f\"}}}",
     "{\"model\":\"claude-x\",\"max_tokens\":77,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"x\"}]}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"f\"}}"},
    {"{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"none\"}",
     "{\"model\":\"claude-x\",\"max_tokens\":77,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"x\"}]}],\"tool_choice\":{\"type\":\"none\"}}"},
    {"{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"auto\"}",
     "{\"model\":\"claude-x\",\"max_tokens\":77,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"x\"}]}],\"tool_choice\":{\"type\":\"auto\"}}"},
    /* an assistant's tool_calls → tool_use (arguments → input); consecutive tool messages → one user turn of
     * tool_result blocks, and the user's next words join it */
    {"{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris and Rome?\"},"
     "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":"
     "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":\"toolu_2\",\"type\":"
     "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Rome\\\"}\"}}]},"
     "{\"role\":\"tool\",\"tool_call_id\":\"toolu_1\",\"content\":\"18C\"},"
     "{\"role\":\"tool\",\"tool_call_id\":\"toolu_2\",\"content\":[{\"type\":\"text\",\"text\":\"21C\"}]},"
     "{\"role\":\"user\",\"content\":\"Thanks\"}]}",
     "{\"model\":\"claude-x\",\"max_tokens\":77,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"Weather in Paris and Rome?\"}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":"
     "\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}},{\"type\":\"tool_use\",\"id\":\"toolu_2\","
     "\"name\":\"get_weather\",\"input\":{\"city\":\"Rome\"}}]},{\"role\":\"user\",\"content\":[{\"type\":"
     "\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":\"18C\"},{\"type\":\"tool_result\",\"tool_use_id\":"
     "\"toolu_2\",\"content\":[{\"type\":\"text\",\"text\":\"21C\"}]},{\"type\":\"text\",\"text\":\"Thanks\"}]}]}"},
};

static void test_requests(void **state)
{
    (void)state;
    lx_config *c = lx_test_config(yaml);
    for (size_t i = 0; i < LX_ARRAY_LEN(requests); i++) {
        lx_kind_request r = {0};
        lx_kind_error err;
        if (translate(c, LX_EP_CHAT, requests[i].in, &r, &err) != 0) fail_msg("row %zu: %s", i, err.message);
        assert_string_equal(r.path, "/v1/messages");
        assert_json_equal(r.body.p, r.body.len, requests[i].out);
        assert_int_equal(r.n_headers, 3);
        assert_string_equal(r.headers[0], "Content-Type: application/json");
        assert_string_equal(r.headers[1], "x-api-key: " KEY);
        assert_string_equal(r.headers[2], "anthropic-version: 2023-06-01");
        lx_kind_request_reset(&r);
    }
    lx_config_unref(c);
}

/* The model named upstream: the backend's name for it when the pipeline sets one. */
static void test_request_model(void **state)
{
    (void)state;
    lx_config *c = lx_test_config(yaml);
    const char *body = "{\"model\":\"alias\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}";
    lx_body_fields f;
    lx_body_error berr;
    assert_int_equal(lx_body_scan(body, strlen(body), &f, &berr), 0);
    lx_kind_ctx ctx = {
        .ep = LX_EP_CHAT, .backend = &c->backends[0], .body = lx_slice_of(body), .fields = &f, .set_model = "claude-y"};
    lx_kind_request r = {0};
    lx_kind_error err = {0};
    assert_int_equal(kind()->request(&ctx, &r, &err), 0);
    assert_non_null(strstr(r.body.p, "\"model\":\"claude-y\""));
    lx_kind_request_reset(&r);
    lx_config_unref(c);
}

typedef struct {
    const char *in;
    const char *param; /* the field the 400 names */
    const char *says;  /* a piece of its message */
} refuse_row;

#define USER "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]"

static const refuse_row refusals[] = {
    {"{" USER ",\"n\":2}", "n", "n cannot be translated"},
    {"{" USER ",\"logprobs\":true}", "logprobs", "logprobs"},
    {"{" USER ",\"top_logprobs\":3}", "top_logprobs", "top_logprobs"},
    {"{" USER ",\"logit_bias\":{\"50256\":-100}}", "logit_bias", "logit_bias"},
    {"{" USER ",\"presence_penalty\":0.5}", "presence_penalty", "presence_penalty"},
    {"{" USER ",\"frequency_penalty\":-1}", "frequency_penalty", "frequency_penalty"},
    {"{" USER ",\"seed\":42}", "seed", "seed"},
    {"{" USER ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}", "response_format", "leave it out"},
    {"{" USER ",\"audio\":{\"voice\":\"x\"}}", "audio", "audio"},
    {"{" USER ",\"modalities\":[\"text\",\"audio\"]}", "modalities", "modalities"},
    {"{" USER ",\"functions\":[]}", "functions", "functions"},
    {"{" USER ",\"temperature\":1.5}", "temperature", "from 0 to 1"},
    {"{" USER ",\"max_tokens\":0}", "max_tokens", "positive integer"},
    {"{" USER ",\"tools\":[{\"type\":\"web_search\"}]}", "tools", "tools[0]"},
    {"{" USER ",\"tool_choice\":\"sometimes\"}", "tool_choice", "tool_choice"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{}}]}]}", "messages",
     "messages[0].content[0]: a part of type \"input_audio\""},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"ftp://x\"}}]}]}",
     "messages", "messages[0].content[0].image_url.url"},
    {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"t\",\"function\":{\"name\":\"f\","
     "\"arguments\":\"{nope\"}}]}]}",
     "messages", "messages[0].tool_calls[0].function.arguments"},
    {"{\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", "messages", "role \"function\""},
    {"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages", "tool_call_id"},
    {"{\"messages\":[]}", "messages", "non-empty"},
    {"{\"messages\":[{\"role\":\"system\",\"content\":\"only this\"}]}", "messages", "no user or assistant"},
};

static void test_refusals(void **state)
{
    (void)state;
    lx_config *c = lx_test_config(yaml);
    for (size_t i = 0; i < LX_ARRAY_LEN(refusals); i++) {
        lx_kind_request r = {0};
        lx_kind_error err;
        char body[1024];
        snprintf(body, sizeof body, "%s", refusals[i].in);
        if (strstr(body, "\"model\"") == NULL) { /* every row names the model */
            memmove(body + 20, body + 1, strlen(body));
            memcpy(body, "{\"model\":\"claude-x\",", 20);
        }
        if (translate(c, LX_EP_CHAT, body, &r, &err) == 0) fail_msg("row %zu translated: %s", i, r.body.p);
        assert_int_equal(err.err, LX_ERR_INVALID_FIELD);
        if (strcmp(err.param, refusals[i].param) != 0) fail_msg("row %zu: param %s", i, err.param);
        if (strstr(err.message, refusals[i].says) == NULL) fail_msg("row %zu: message %s", i, err.message);
        assert_null(strstr(err.message, KEY));
        assert_null(r.body.p); /* nothing is sent */
        lx_kind_request_reset(&r);
    }
    /* completions and embeddings: a clear 400 */
    for (lx_endpoint ep = LX_EP_COMPLETIONS; ep <= LX_EP_EMBEDDINGS; ep++) {
        lx_kind_request r = {0};
        lx_kind_error err;
        const char *body = ep == LX_EP_COMPLETIONS ? "{\"model\":\"claude-x\",\"prompt\":\"Hi\"}"
                                                   : "{\"model\":\"claude-x\",\"input\":\"Hi\"}";
        assert_int_equal(translate(c, ep, body, &r, &err), -1);
        assert_int_equal(err.err, LX_ERR_INVALID_FIELD);
        assert_non_null(strstr(err.message, "serves only /v1/chat/completions"));
        assert_non_null(strstr(err.message, lx_endpoint_path(ep)));
        lx_kind_request_reset(&r);
    }
    lx_config_unref(c);
}

/* ---------- answers ---------- */

typedef struct {
    int status;
    const char *in, *out; /* out without "created" (the time of the translation) */
} answer_row;

static const answer_row answers[] = {
    {200,
     "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[{\"type\":"
     "\"text\",\"text\":\"Hello\"},{\"type\":\"text\",\"text\":\" there\"}],\"stop_reason\":\"end_turn\","
     "\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":6}}",
     "{\"id\":\"msg_1\",\"object\":\"chat.completion\",\"model\":\"claude-x\",\"choices\":[{\"index\":0,\"message\":"
     "{\"role\":\"assistant\",\"content\":\"Hello there\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
     "\"prompt_tokens\":12,\"completion_tokens\":6,\"total_tokens\":18,\"prompt_tokens_details\":{\"cached_tokens\":"
     "0}}}"},
    /* tool use; cache reads and writes counted in prompt_tokens */
    {200,
     "{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[{\"type\":"
     "\"thinking\",\"thinking\":\"hmm\"},{\"type\":\"text\",\"text\":\"Let me check.\"},{\"type\":\"tool_use\",\"id\":"
     "\"toolu_9\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}}],\"stop_reason\":\"tool_use\",\"usage\":{"
     "\"input_tokens\":3,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":200,\"output_tokens\":20}}",
     "{\"id\":\"msg_2\",\"object\":\"chat.completion\",\"model\":\"claude-x\",\"choices\":[{\"index\":0,\"message\":"
     "{\"role\":\"assistant\",\"content\":\"Let me check.\",\"tool_calls\":[{\"id\":\"toolu_9\",\"type\":"
     "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
     "\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":303,\"completion_tokens\":20,"
     "\"total_tokens\":323,\"prompt_tokens_details\":{\"cached_tokens\":200}}}"},
    {200,
     "{\"id\":\"m\",\"type\":\"message\",\"model\":\"c\",\"content\":[],\"stop_reason\":\"max_tokens\",\"usage\":{"
     "\"input_tokens\":1,\"output_tokens\":2}}",
     "{\"id\":\"m\",\"object\":\"chat.completion\",\"model\":\"c\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
     "\"assistant\",\"content\":null},\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":1,"
     "\"completion_tokens\":2,\"total_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":0}}}"},
    {200,
     "{\"id\":\"m\",\"type\":\"message\",\"model\":\"c\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}],"
     "\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",
     "{\"id\":\"m\",\"object\":\"chat.completion\",\"model\":\"c\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
     "\"assistant\",\"content\":\"a\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,"
     "\"completion_tokens\":1,\"total_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":0}}}"},
    /* errors → OpenAI's envelope */
    {429, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of requests too high\"}}",
     "{\"error\":{\"message\":\"Number of requests too high\",\"type\":\"requests\",\"param\":null,\"code\":"
     "\"rate_limit_exceeded\"}}"},
    {529, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
     "{\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":\"overloaded\"}}"},
    {401, "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}}",
     "{\"error\":{\"message\":\"invalid x-api-key\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":"
     "\"invalid_api_key\"}}"},
    {400, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"messages: bad\"}}",
     "{\"error\":{\"message\":\"messages: bad\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":"
     "\"invalid_request\"}}"},
    {502, "<html>Bad gateway</html>",
     "{\"error\":{\"message\":\"The backend answered HTTP 502.\",\"type\":\"server_error\",\"param\":null,\"code\":"
     "\"upstream_error\"}}"},
    /* a 2xx that is not a message */
    {200, "{\"type\":\"other\"}",
     "{\"error\":{\"message\":\"The Anthropic backend answered something other than a message.\",\"type\":"
     "\"server_error\",\"param\":null,\"code\":\"upstream_bad_response\"}}"},
};

static void test_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < LX_ARRAY_LEN(answers); i++) {
        lx_buf out;
        lx_buf_init(&out, 0);
        assert_int_equal(kind()->answer(NULL, answers[i].status, lx_slice_of(answers[i].in), &out), 1);
        cJSON *got = cJSON_ParseWithLength(out.p, out.len);
        assert_non_null(got);
        if (answers[i].status == 200 && cJSON_GetObjectItem(got, "created")) {
            assert_true(cJSON_IsNumber(cJSON_GetObjectItem(got, "created")));
            cJSON_DeleteItemFromObject(got, "created");
        }
        char *txt = cJSON_PrintUnformatted(got);
        assert_json_equal(txt, strlen(txt), answers[i].out);
        cJSON_free(txt);
        cJSON_Delete(got);
        lx_buf_free(&out);
    }
}

/* ---------- streams ---------- */

static const char stream_in[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,"
    "\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
    "event: content_block_delta\r\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" \\\"w\\\"\"}}"
    "\r\n\r\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\","
    "\"name\":\"get_weather\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
    "\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
    "\"{\\\"city\\\": \"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
    "\"\\\"Paris\\\"}\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\","
    "\"name\":\"now\",\"input\":{}}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{"
    "\"output_tokens\":15}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

#define HEAD                                                                                                           \
    "data: {\"id\":\"msg_s\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"claude-x\",\"choices\":["
#define CHOICE(delta, fin) HEAD "{\"index\":0,\"delta\":" delta ",\"logprobs\":null,\"finish_reason\":" fin "}]}\n\n"

static const char stream_out[] = CHOICE("{\"role\":\"assistant\",\"content\":\"\"}", "null") /* message_start */
    CHOICE("{\"content\":\"Hello\"}", "null")                                                /* text */
    CHOICE("{\"content\":\" \\\"w\\\"\"}", "null")                                           /* text, \r\n framing */
    CHOICE("{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":"
           "\"get_weather\",\"arguments\":\"\"}}]}",
           "null") /* tool_use block */
    CHOICE("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\": \"}}]}", "null")
        CHOICE("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}", "null")
            CHOICE("{\"tool_calls\":[{\"index\":1,\"id\":\"toolu_2\",\"type\":\"function\",\"function\":{\"name\":"
                   "\"now\",\"arguments\":\"\"}}]}",
                   "null") CHOICE("{}", "\"tool_calls\"") /* message_delta: the finish chunk, then usage */
    HEAD "],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":15,\"total_tokens\":45,\"prompt_tokens_details\":{"
         "\"cached_tokens\":5}}}\n\n"
         "data: [DONE]\n\n";

static void collect(void *ud, const char *data, size_t len) { lx_buf_append(ud, data, len); }

/* "created":<digits> → "created":0, so runs in different seconds compare equal. */
static void zero_created(lx_buf *b)
{
    lx_buf out;
    lx_buf_init(&out, 0);
    const char *p = b->p ? b->p : "", *end = p + b->len, *at;
    while ((at = strstr(p, "\"created\":")) != NULL) {
        at += 10;
        lx_buf_append(&out, p, (size_t)(at - p));
        lx_buf_append(&out, "0", 1);
        while (at < end && *at >= '0' && *at <= '9')
            at++;
        p = at;
    }
    lx_buf_append(&out, p, (size_t)(end - p));
    lx_buf_free(b);
    *b = out;
}

/* The stream fed in pieces cut at the given offsets; 0 or the first -1. */
static int run_stream(const char *in, size_t n, const size_t *cuts, size_t n_cuts, lx_buf *out)
{
    lx_kind_stream s;
    lx_kind_stream_init(&s, kind(), 1 << 16);
    size_t from = 0;
    int rc = 0;
    for (size_t i = 0; i <= n_cuts && rc == 0; i++) {
        size_t to = i < n_cuts ? cuts[i] : n;
        rc = lx_kind_stream_feed(&s, NULL, in + from, to - from, collect, out);
        from = to;
    }
    if (rc == 0) rc = lx_kind_stream_end(&s, NULL, collect, out);
    lx_kind_stream_free(&s);
    zero_created(out);
    return rc;
}

static void test_stream(void **state)
{
    (void)state;
    size_t n = sizeof stream_in - 1;
    lx_buf whole;
    lx_buf_init(&whole, 0);
    assert_int_equal(run_stream(stream_in, n, NULL, 0, &whole), 0);
    assert_string_equal(whole.p, stream_out);
    for (size_t cut = 0; cut <= n; cut++) { /* one cut at every byte boundary */
        lx_buf out;
        lx_buf_init(&out, 0);
        assert_int_equal(run_stream(stream_in, n, &cut, 1, &out), 0);
        if (out.len != whole.len || memcmp(out.p, whole.p, out.len) != 0) fail_msg("cut at %zu:\n%s", cut, out.p);
        lx_buf_free(&out);
    }
    size_t every[sizeof stream_in]; /* one byte at a time */
    for (size_t i = 0; i < n; i++)
        every[i] = i + 1;
    lx_buf out;
    lx_buf_init(&out, 0);
    assert_int_equal(run_stream(stream_in, n, every, n - 1, &out), 0);
    assert_string_equal(out.p, stream_out);
    lx_buf_free(&out);
    lx_buf_free(&whole);
}

/* An error event mid-stream: the usage so far, OpenAI's error event, [DONE]. */
static void test_stream_error(void **state)
{
    (void)state;
    static const char in[] =
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"model\":\"claude-x\",\"usage\":{"
        "\"input_tokens\":4,\"output_tokens\":1}}}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"Hi\"}}\n\n"
        "event: error\n"
        "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    static const char want[] =
        CHOICE("{\"role\":\"assistant\",\"content\":\"\"}", "null") CHOICE("{\"content\":\"Hi\"}", "null") HEAD
        "],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"total_tokens\":5,\"prompt_tokens_details\":{"
        "\"cached_tokens\":0}}}\n\n"
        "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":"
        "\"overloaded\"}}\n\n"
        "data: [DONE]\n\n";
    size_t n = sizeof in - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        lx_buf out;
        lx_buf_init(&out, 0);
        assert_int_equal(run_stream(in, n, &cut, 1, &out), 0);
        assert_string_equal(out.p, want);
        lx_buf_free(&out);
    }
}

/* What is not Anthropic's stream fails it: no JSON, no type, a delta for a block not open, events before
 * message_start. */
static void test_stream_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "data: nope\n\n",
        "data: {\"no\":\"type\"}\n\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
        "data: {\"type\":\"message_start\",\"message\":{}}\n\ndata: {\"type\":\"content_block_delta\",\"index\":3,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
    };
    for (size_t i = 0; i < LX_ARRAY_LEN(bad); i++) {
        lx_buf out;
        lx_buf_init(&out, 0);
        assert_int_equal(run_stream(bad[i], strlen(bad[i]), NULL, 0, &out), -1);
        lx_buf_free(&out);
    }
    /* ping and an event type added later: nothing; a comment line: nothing */
    static const char quiet[] = ": hi\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n"
                                "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n"
                                "data: {\"type\":\"brand_new_event\"}\n\n";
    lx_buf out;
    lx_buf_init(&out, 0);
    assert_int_equal(run_stream(quiet, sizeof quiet - 1, NULL, 0, &out), 0);
    assert_non_null(strstr(out.p, "\"role\":\"assistant\""));
    assert_null(strstr(out.p, "brand_new"));
    lx_buf_free(&out);
}

/* ---------- outcomes, probes, config ---------- */

static void test_outcome_and_probe(void **state)
{
    (void)state;
    assert_int_equal(kind()->outcome(LX_UP_OK, 429), LX_OUT_BUSY);
    assert_int_equal(kind()->outcome(LX_UP_OK, 529), LX_OUT_FAILING);
    assert_int_equal(kind()->outcome(LX_UP_OK, 500), LX_OUT_FAILING);
    assert_int_equal(kind()->outcome(LX_UP_OK, 503), LX_OUT_FAILING);
    assert_int_equal(kind()->outcome(LX_UP_OK, 400), LX_OUT_OK);
    assert_int_equal(kind()->outcome(LX_UP_OK, 200), LX_OUT_OK);
    assert_int_equal(kind()->outcome(LX_UP_CONNECT, 0), LX_OUT_CONNECT);
    assert_true(lx_outcome_get(LX_OUT_FAILING)->retryable);

    lx_config *c = lx_test_config(yaml);
    lx_kind_request r = {0};
    kind()->probe_headers(&c->backends[0], &r);
    assert_int_equal(r.n_headers, 2);
    assert_string_equal(r.headers[0], "x-api-key: " KEY);
    assert_string_equal(r.headers[1], "anthropic-version: 2023-06-01");
    lx_kind_request_reset(&r);
    assert_string_equal(kind()->models_path, "/v1/models");
    const char *models = "{\"data\":[{\"type\":\"model\",\"id\":\"claude-sonnet-4-5\",\"display_name\":\"Claude\"}],"
                         "\"has_more\":false}";
    lx_buf out;
    lx_buf_init(&out, 0);
    assert_int_equal(kind()->parse_models(models, strlen(models), &out), 0);
    assert_string_equal(out.p, "claude-sonnet-4-5\n");
    lx_buf_free(&out);
    assert_true(c->backends[0].tls_verify); /* the default */
    assert_null(c->backends[0].ca_file);
    lx_config_unref(c);
}

static lx_config *parse(const char *text, lx_buf *errs)
{
    lx_buf_init(errs, 0);
    return lx_config_parse("cfg.yaml", text, strlen(text), errs);
}

static void test_config_keys(void **state)
{
    (void)state;
    char file[] = "/tmp/lexora-anthropic-keyXXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, KEY "\n\n", sizeof KEY + 1), (ssize_t)sizeof KEY + 1);
    close(fd);
    char yaml2[512];
    lx_buf errs;
    snprintf(yaml2, sizeof yaml2,
             "backends:\n  c: {type: anthropic, url: 'https://x', models: [m], api_key_file: %s, tls_verify: false, "
             "ca_file: %s}\n",
             file, file);
    lx_config *c = parse(yaml2, &errs);
    assert_non_null(c);
    assert_string_equal(c->backends[0].api_key, KEY); /* trimmed */
    assert_false(c->backends[0].tls_verify);
    assert_string_equal(c->backends[0].ca_file, file);
    assert_int_equal(c->backends[0].default_max_tokens, 4096);
    lx_config_unref(c);
    lx_buf_free(&errs);

    setenv("LEXORA_TEST_ANTHROPIC_KEY", KEY, 1);
    c = parse(
        "backends:\n  c: {type: anthropic, url: 'https://x', models: [m], api_key_env: LEXORA_TEST_ANTHROPIC_KEY}\n",
        &errs);
    assert_non_null(c);
    assert_string_equal(c->backends[0].api_key, KEY);
    lx_config_unref(c);
    lx_buf_free(&errs);

    static const struct {
        const char *yaml, *says;
    } bad[] = {
        {"backends:\n  c: {type: anthropic, url: 'https://x', models: [m]}\n", "type anthropic needs a key"},
        {"backends:\n  c: {type: anthropic, url: 'https://x', models: [m], api_key_env: LEXORA_TEST_NOT_SET_X}\n",
         "LEXORA_TEST_NOT_SET_X is not set"},
        {"backends:\n  c: {type: anthropic, url: 'https://x', models: [m], api_key_env: LEXORA_TEST_ANTHROPIC_KEY, "
         "api_key: " KEY "}\n",
         "give one of api_key, api_key_file and api_key_env"},
        {"backends:\n  c: {type: anthropic, url: 'https://x', models: [m], api_key_file: /nonexistent/k}\n",
         "cannot read \"/nonexistent/k\""},
        {"backends:\n  c: {type: vllm, url: 'https://x', models: [m], ca_file: /nonexistent/ca.pem}\n",
         "backends.c.ca_file: cannot read \"/nonexistent/ca.pem\""},
        {"backends:\n  c: {type: anthropic, url: 'https://x', models: [m], api_key: " KEY ", default_max_tokens: 0}\n",
         "default_max_tokens"},
    };
    for (size_t i = 0; i < LX_ARRAY_LEN(bad); i++) {
        c = parse(bad[i].yaml, &errs);
        assert_null(c);
        if (strstr(errs.p, bad[i].says) == NULL) fail_msg("row %zu: %s", i, errs.p);
        assert_null(strstr(errs.p, KEY)); /* never quoted back */
        lx_buf_free(&errs);
    }
    /* a disabled entry's key is not read (nor required) until it is enabled */
    c = parse(
        "backends:\n  c: {type: anthropic, url: 'https://x', models: [m], api_key: " KEY "}\n"
        "  d: {type: anthropic, url: 'https://x', models: [n], enabled: false, api_key_env: LEXORA_TEST_NOT_SET_X}\n",
        &errs);
    assert_non_null(c);
    assert_null(c->backends[1].api_key);
    lx_config_unref(c);
    lx_buf_free(&errs);
    unsetenv("LEXORA_TEST_ANTHROPIC_KEY");
    unlink(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),       cmocka_unit_test(test_request_model),
        cmocka_unit_test(test_refusals),       cmocka_unit_test(test_answers),
        cmocka_unit_test(test_stream),         cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_stream_garbage), cmocka_unit_test(test_outcome_and_probe),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
