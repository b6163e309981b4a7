/* The built-in backend kinds, one file each (backends/vllm.c, openai.c, ollama.c, llamacpp.c); kind.c lists
 * them in its table. Nothing else should need these names: go through lx_kind_get. */
#ifndef LX_KINDS_H
#define LX_KINDS_H

#include "backends/kind.h"

extern const lx_kind lx_kind_vllm;
extern const lx_kind lx_kind_openai;
extern const lx_kind lx_kind_ollama;
extern const lx_kind lx_kind_llamacpp;

#endif
