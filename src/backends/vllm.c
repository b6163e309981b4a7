/*
 * vLLM's OpenAI-compatible server (`vllm serve`, python -m vllm.entrypoints.openai.api_server): the
 * gateway's main backend. OpenAI's wire format with vLLM's extras: a flat error object before vLLM 0.10.1
 * (normalised by lx_openai_answer), GET /health for readiness, the `priority` request field (with
 * forward_priority) and /metrics for the adaptive reader (backends/backend.c).
 */
#include "backends/kinds.h"

/* A LoRA model (lora_path) is an adapter loaded at run time (VLLM_ALLOW_RUNTIME_LORA_UPDATING); the base
 * model of a server started with --enable-sleep-mode wakes up and goes to sleep (level 1: weights offloaded). */
static int vllm_load(const lx_kind_ctx *ctx, const char *model, lx_kind_request *out)
{
    const char *lora = lx_backend_conf_lora(ctx->backend, model);
    if (lora == NULL) return lx_kind_control(ctx, out, "/wake_up", NULL, NULL, NULL, NULL, NULL);
    return lx_kind_control(ctx, out, "/v1/load_lora_adapter", "lora_name",
                           lx_backend_conf_upstream(ctx->backend, model), "lora_path", lora, NULL);
}

static int vllm_unload(const lx_kind_ctx *ctx, const char *model, lx_kind_request *out)
{
    if (lx_backend_conf_lora(ctx->backend, model) == NULL)
        return lx_kind_control(ctx, out, "/sleep?level=1", NULL, NULL, NULL, NULL, NULL);
    return lx_kind_control(ctx, out, "/v1/unload_lora_adapter", "lora_name",
                           lx_backend_conf_upstream(ctx->backend, model), NULL, NULL, NULL);
}

/* 400 "The lora adapter 'N' has already been loaded." for a load, 404 "... cannot be found." for an unload: the
 * state wanted holds already. */
static bool vllm_control_done(int status, lx_slice body, bool unload)
{
    if (status >= 200 && status < 300) return true;
    if (unload) return status == 404;
    return status == 400 && memmem(body.p, body.len, "already been loaded", 19) != NULL;
}

const lx_kind lx_kind_vllm = {
    .name = "vllm",
    .request = lx_openai_request,
    .answer = lx_openai_answer,
    .health_path = "/health",
    .models_path = "/v1/models",
    .parse_models = lx_openai_parse_models,
    .load = vllm_load,
    .unload = vllm_unload,
    .control_done = vllm_control_done,
};
