#!/usr/bin/env python3
"""Write a pdkv Hugging Face checkpoint of a byte-level preset (e.g. `pdctl model new
--preset m50`, f32 safetensors) as a GGUF file for llama.cpp, the measuring peer of
docs/PERFORMANCE.md's compute section. Uses gguf-py from the peer's own tree (built by
deploy/bench/llamacpp-peer.sh) and numpy (Debian python3-numpy); nothing of it is part of
pdkv.

    PYTHONPATH=PEER/llama.cpp/gguf-py /usr/bin/python3 deploy/bench/gguf-from-pdkv.py \
        MODEL_DIR OUT.gguf --outtype f32|bf16|q8_0

The q and k rows of each head are permuted from rotate-half (Hugging Face) to interleaved
pairs, as llama.cpp's own Llama converter does, since llama.cpp's Llama rotates pairs. The
vocabulary is written as a SentencePiece-style one of the same size (ids 0-2 unknown,
BOS, EOS; then one byte token per id), so token ids mean the same on both sides.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("gguf-from-pdkv: gguf-py not found: set PYTHONPATH=PEER/llama.cpp/gguf-py")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            if t["dtype"] != "F32":
                sys.exit(f"gguf-from-pdkv: {name} is {t['dtype']}; write the model in f32")
            b, e = t["data_offsets"]
            f.seek(base + b)
            out[name] = np.frombuffer(f.read(e - b), dtype=np.float32).reshape(t["shape"])
        return out


def permute(w, n_head):
    """Rows of each head from halves (i, i + d/2) to pairs (2i, 2i + 1)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--outtype", choices=["f32", "bf16", "q8_0"], default="f32")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    t = read_safetensors(os.path.join(a.model, "model.safetensors"))
    L, D = cfg["num_hidden_layers"], cfg["hidden_size"]
    H, KV, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
    hd = cfg.get("head_dim", D // H)
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "bf16": gguf.GGMLQuantizationType.BF16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[a.outtype]
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[a.outtype]

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name(cfg.get("pdkv_model_id", "pdkv"))
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_vocab_size(V)
    w.add_file_type(ftype)
    # SentencePiece-style vocabulary: <unk>, <s>, </s>, then byte tokens
    toks = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(V - 3)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + \
        [gguf.TokenType.BYTE] * (V - 3)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * V)
    w.add_token_types(types)
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    w.add_eos_token_id(cfg.get("eos_token_id", 2))
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)

    def mat(name, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, x)
        else:
            q = gguf.quants.quantize(x, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)

    def vec(name, x):
        w.add_tensor(name, np.ascontiguousarray(x, dtype=np.float32))

    mat("token_embd.weight", t["model.embed_tokens.weight"])
    for i in range(L):
        p = f"model.layers.{i}."
        vec(f"blk.{i}.attn_norm.weight", t[p + "input_layernorm.weight"])
        mat(f"blk.{i}.attn_q.weight", permute(t[p + "self_attn.q_proj.weight"], H))
        mat(f"blk.{i}.attn_k.weight", permute(t[p + "self_attn.k_proj.weight"], KV))
        mat(f"blk.{i}.attn_v.weight", t[p + "self_attn.v_proj.weight"])
        mat(f"blk.{i}.attn_output.weight", t[p + "self_attn.o_proj.weight"])
        vec(f"blk.{i}.ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
        mat(f"blk.{i}.ffn_gate.weight", t[p + "mlp.gate_proj.weight"])
        mat(f"blk.{i}.ffn_up.weight", t[p + "mlp.up_proj.weight"])
        mat(f"blk.{i}.ffn_down.weight", t[p + "mlp.down_proj.weight"])
    vec("output_norm.weight", t["model.norm.weight"])
    if "lm_head.weight" in t:
        mat("output.weight", t["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"gguf-from-pdkv: wrote {a.out} ({a.outtype})")


if __name__ == "__main__":
    main()
