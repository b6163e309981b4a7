/*
 * Any OpenAI-compatible server (OpenAI itself, a hosted vLLM, LM Studio, ...): the wire format as OpenAI
 * documents it, an API key as a bearer token, and GET /v1/models as the readiness check (such servers have
 * no /health).
 */
#include "backends/kinds.h"

const lx_kind lx_kind_openai = {
    .name = "openai",
    .request = lx_openai_request,
    .answer = lx_openai_answer,
    .health_path = "/v1/models",
    .models_path = "/v1/models",
    .parse_models = lx_openai_parse_models,
};
