/* pd-llama-greedy: the measuring peer's greedy tokens for given prompt token ids, so that a
 * GGUF conversion of a pdkv model can be checked to compute the same function
 * (deploy/bench/llamacpp-peer.sh builds it against llama.cpp; nothing of it is part of pdkv).
 *
 *   pd-llama-greedy MODEL.gguf N_NEW ID,ID,...   -> N_NEW greedy token ids, comma-separated */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: pd-llama-greedy MODEL.gguf N_NEW ID,ID,...\n");
        return 2;
    }
    int n_new = atoi(argv[2]);
    int cap = 1, n = 0;
    for (const char *p = argv[3]; *p; p++)
        cap += *p == ',';
    llama_token *toks = malloc((size_t)(cap + n_new) * sizeof(llama_token));
    if (toks == NULL || n_new <= 0)
        return 2;
    for (char *p = argv[3], *end; *p; p = end + (*end == ',')) {
        toks[n++] = (llama_token)strtol(p, &end, 10);
        if (end == p)
            return 2;
    }
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (model == NULL)
        return 1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n + n_new + 16);
    cp.n_batch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (ctx == NULL)
        return 1;
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_batch b = llama_batch_get_one(toks, n);
    for (int i = 0; i < n_new; i++) {
        if (llama_decode(ctx, b) != 0)
            return 1;
        const float *logits = llama_get_logits_ith(ctx, -1);
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (logits[v] > logits[best])
                best = v;
        printf("%s%d", i ? "," : "", best);
        toks[n] = best;
        b = llama_batch_get_one(&toks[n], 1);
        n++;
    }
    printf("\n");
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(toks);
    return 0;
}
