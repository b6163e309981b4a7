/* The endpoints the gateway proxies (src/proxy.c), and their paths: OpenAI's, and Anthropic's Messages API
 * (api/messages.h), which the pipeline runs as a chat completion. Pure; any thread. */
#ifndef LX_ENDPOINT_H
#define LX_ENDPOINT_H

typedef enum {
    LX_EP_CHAT = 0,
    LX_EP_COMPLETIONS,
    LX_EP_EMBEDDINGS,
    LX_EP_MESSAGES,     /* Anthropic's; translated to LX_EP_CHAT at intake */
    LX_EP_COUNT_TOKENS, /* Anthropic's; answered from the token estimate, never sent */
    LX_EP_COUNT
} lx_endpoint;

/* "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages", "/v1/messages/count_tokens" */
static inline const char *lx_endpoint_path(lx_endpoint ep)
{
    static const char *const paths[LX_EP_COUNT] = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                                   "/v1/messages", "/v1/messages/count_tokens"};
    return paths[(unsigned)ep < LX_EP_COUNT ? ep : 0];
}

#endif
