/*
 * Ollama, through its OpenAI-compatible endpoints (/v1/chat/completions, /v1/completions,
 * /v1/embeddings). Readiness is GET / ("Ollama is running"); what it serves is GET /api/tags,
 * {"models":[{"name":"llama3.2:latest", ...}]}.
 */
#include "backends/kinds.h"

static int parse_tags(const char *body, size_t len, lx_buf *out)
{
    return lx_json_names(body, len, "models", "name", out);
}

const lx_kind lx_kind_ollama = {
    .name = "ollama",
    .request = lx_openai_request,
    .answer = lx_openai_answer,
    .health_path = "/",
    .models_path = "/api/tags",
    .parse_models = parse_tags,
};
