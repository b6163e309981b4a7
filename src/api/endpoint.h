/* The OpenAI endpoints the gateway proxies (src/proxy.c), and their paths. Pure; any thread. */
#ifndef LX_ENDPOINT_H
#define LX_ENDPOINT_H

typedef enum { LX_EP_CHAT = 0, LX_EP_COMPLETIONS, LX_EP_EMBEDDINGS, LX_EP_COUNT } lx_endpoint;

/* "/v1/chat/completions", "/v1/completions", "/v1/embeddings" */
static inline const char *lx_endpoint_path(lx_endpoint ep)
{
    static const char *const paths[LX_EP_COUNT] = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"};
    return paths[(unsigned)ep < LX_EP_COUNT ? ep : 0];
}

#endif
