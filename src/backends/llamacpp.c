/*
 * llama.cpp's llama-server: OpenAI's wire format; GET /health answers 503 {"error":{"code":503,"message":
 * "Loading model"}} until the model is loaded, and only its 200 counts as ready.
 */
#include "backends/kinds.h"

const lx_kind lx_kind_llamacpp = {
    .name = "llamacpp",
    .request = lx_openai_request,
    .answer = lx_openai_answer,
    .health_path = "/health",
    .models_path = "/v1/models",
    .parse_models = lx_openai_parse_models,
};
