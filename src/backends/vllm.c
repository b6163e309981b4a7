/*
 * vLLM's OpenAI-compatible server (`vllm serve`, python -m vllm.entrypoints.openai.api_server): the
 * gateway's main backend. OpenAI's wire format with vLLM's extras: a flat error object before vLLM 0.10.1
 * (normalised by lx_openai_answer), GET /health for readiness, the `priority` request field (with
 * forward_priority) and /metrics for the adaptive reader (backends/backend.c).
 */
#include "backends/kinds.h"

const lx_kind lx_kind_vllm = {
    .name = "vllm",
    .request = lx_openai_request,
    .answer = lx_openai_answer,
    .health_path = "/health",
    .models_path = "/v1/models",
    .parse_models = lx_openai_parse_models,
};
