#!/usr/bin/env python3
"""Write a tiny random-weight checkpoint in Stable-Diffusion-1.5 layout.

Only torch + safetensors are needed (no ComfyUI import).  The state dict is
built from scratch with the key names / shapes of an original (LDM-layout)
SD1.5 ``.safetensors`` checkpoint, but with the smallest architecture that
ComfyUI's ``CheckpointLoaderSimple`` still detects as "SD15":

UNet  (prefix ``model.diffusion_model.``)
    ComfyUI derives the whole UNet config from the weights.  SD15 is matched on
    model_channels == 320, context_dim == 768 (attn2.to_k input width),
    conv proj_in (not linear) and no label_emb.  Everything else (channel_mult,
    num_res_blocks, transformer depths, middle block) is read from the keys, so
    we use ONE level: conv_in -> [ResBlock + 1 SpatialTransformer] ->
    (no middle block) -> 2 output ResBlocks -> out.  ~13.7 M params.

VAE   (prefix ``first_stage_model.``)
    The SD KL-VAE config is hard coded in ComfyUI (ch=128, ch_mult 1,2,4,4,
    ~83 M params), so instead we store a TAESD-shaped autoencoder under
    ``first_stage_model.taesd_encoder.* / taesd_decoder.*`` which ComfyUI's VAE
    class recognises (key ``taesd_decoder.1.weight``).  Supports encode and
    decode, 8x down/up-scaling, 4 latent channels.  ~2.4 M params.

CLIP  (prefix ``cond_stage_model.transformer.text_model.``)
    ComfyUI builds the CLIP-L text model from a fixed json config (12 layers,
    768 wide, 49408 vocab = ~123 M params) and loads the checkpoint weights with
    strict=False.  Shapes therefore cannot be shrunk.
      --clip minimal (default): only the tiny tensors (layer norms, biases,
          position embedding) are written; the big matrices are MISSING.
          ComfyUI logs "clip missing: [...]" and leaves those weights
          uninitialised (torch.empty), so the text conditioning is arbitrary
          (possibly NaN) -- the graph still runs to success.
      --clip full: every CLIP weight is written (~246 MB at fp16, ~123 MB
          with --clip-dtype fp8), fully deterministic, no warning.
"""
import argparse
import math
import os
import sys

import torch
from safetensors.torch import save_file

DTYPES = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8": torch.float8_e4m3fn,
}


class Builder:
    def __init__(self, seed, dtype):
        self.g = torch.Generator().manual_seed(seed)
        self.dtype = dtype
        self.sd = {}

    def _put(self, key, t):
        assert key not in self.sd, key
        self.sd[key] = t.to(self.dtype).contiguous()

    def randn(self, key, shape, std):
        self._put(key, torch.randn(shape, generator=self.g) * std)

    def const(self, key, shape, value):
        self._put(key, torch.full(shape, float(value)))

    # layers -------------------------------------------------------------
    def linear(self, p, n_in, n_out, bias=True, gain=1.0):
        self.randn(p + "weight", (n_out, n_in), gain / math.sqrt(n_in))
        if bias:
            self.const(p + "bias", (n_out,), 0.0)

    def conv(self, p, n_in, n_out, k=3, bias=True, gain=1.0):
        self.randn(p + "weight", (n_out, n_in, k, k), gain / math.sqrt(n_in * k * k))
        if bias:
            self.const(p + "bias", (n_out,), 0.0)

    def norm(self, p, n):
        self.const(p + "weight", (n,), 1.0)
        self.const(p + "bias", (n,), 0.0)


# ---------------------------------------------------------------------------
# UNet (LDM openaimodel layout)
# ---------------------------------------------------------------------------
MC = 320          # model_channels: must be 320 for SD15 detection
TEMB = MC * 4     # time embedding width
CTX = 768         # context_dim: must be 768 for SD15 detection
FF_INNER = MC * 4


def resblock(b, p, ch_in, ch_out):
    b.norm(p + "in_layers.0.", ch_in)                 # GroupNorm(32)
    b.conv(p + "in_layers.2.", ch_in, ch_out)
    b.linear(p + "emb_layers.1.", TEMB, ch_out)
    b.norm(p + "out_layers.0.", ch_out)
    b.conv(p + "out_layers.3.", ch_out, ch_out, gain=0.5)
    if ch_in != ch_out:
        b.conv(p + "skip_connection.", ch_in, ch_out, k=1)


def spatial_transformer(b, p, ch, depth=1):
    b.norm(p + "norm.", ch)
    b.conv(p + "proj_in.", ch, ch, k=1)               # conv (use_linear=False)
    for i in range(depth):
        t = p + "transformer_blocks.{}.".format(i)
        for a, kv_dim in (("attn1.", ch), ("attn2.", CTX)):
            b.linear(t + a + "to_q.", ch, ch, bias=False)
            b.linear(t + a + "to_k.", kv_dim, ch, bias=False)
            b.linear(t + a + "to_v.", kv_dim, ch, bias=False)
            b.linear(t + a + "to_out.0.", ch, ch, gain=0.5)
        b.linear(t + "ff.net.0.proj.", ch, FF_INNER * 2)   # GEGLU
        b.linear(t + "ff.net.2.", FF_INNER, ch, gain=0.5)
        for n in ("norm1.", "norm2.", "norm3."):
            b.norm(t + n, ch)
    b.conv(p + "proj_out.", ch, ch, k=1, gain=0.5)


def build_unet(b, out_transformers=False):
    p = "model.diffusion_model."
    b.linear(p + "time_embed.0.", MC, TEMB)
    b.linear(p + "time_embed.2.", TEMB, TEMB)
    b.conv(p + "input_blocks.0.0.", 4, MC)
    resblock(b, p + "input_blocks.1.0.", MC, MC)
    spatial_transformer(b, p + "input_blocks.1.1.", MC)
    # no middle_block -> ComfyUI sets transformer_depth_middle = -2 (none)
    for i in range(2):                                 # num_res_blocks + 1
        resblock(b, p + "output_blocks.{}.0.".format(i), 2 * MC, MC)
        if out_transformers:
            spatial_transformer(b, p + "output_blocks.{}.1.".format(i), MC)
    b.norm(p + "out.0.", MC)
    b.conv(p + "out.2.", MC, 4, gain=0.5)


# ---------------------------------------------------------------------------
# TAESD-shaped VAE (ComfyUI: first_stage_model.taesd_encoder/decoder)
# ---------------------------------------------------------------------------
TC = 64


def taesd_block(b, p):
    for j in (0, 2, 4):
        b.conv(p + "conv.{}.".format(j), TC, TC, gain=0.5)


def build_vae(b):
    p = "first_stage_model.taesd_encoder."
    # Sequential: conv(3,64), Block, [conv s2 (no bias), Block x3] x3, conv(64,4)
    b.conv(p + "0.", 3, TC)
    taesd_block(b, p + "1.")
    i = 2
    for _ in range(3):
        b.conv(p + "{}.".format(i), TC, TC, bias=False)
        for j in range(1, 4):
            taesd_block(b, p + "{}.".format(i + j))
        i += 4
    b.conv(p + "{}.".format(i), TC, 4)                    # i == 14
    p = "first_stage_model.taesd_decoder."
    # Sequential: Clamp, conv(4,64), ReLU, [Block x3, Upsample, conv(no bias)] x3, Block, conv(64,3)
    b.conv(p + "1.", 4, TC)
    i = 3
    for _ in range(3):
        for j in range(3):
            taesd_block(b, p + "{}.".format(i + j))
        b.conv(p + "{}.".format(i + 4), TC, TC, bias=False)   # i+3 is Upsample
        i += 5
    taesd_block(b, p + "{}.".format(i))                   # i == 18
    b.conv(p + "{}.".format(i + 1), TC, 3)
    b.const("first_stage_model.vae_scale", (), 1.0)
    b.const("first_stage_model.vae_shift", (), 0.0)


# ---------------------------------------------------------------------------
# CLIP-L text encoder (HF CLIPTextModel layout under cond_stage_model.transformer.)
# ---------------------------------------------------------------------------
CLIP_W, CLIP_FF, CLIP_LAYERS, CLIP_VOCAB, CLIP_POS = 768, 3072, 12, 49408, 77


def build_clip(b, full):
    p = "cond_stage_model.transformer.text_model."
    if full:
        b.randn(p + "embeddings.token_embedding.weight", (CLIP_VOCAB, CLIP_W), 0.02)
    b.randn(p + "embeddings.position_embedding.weight", (CLIP_POS, CLIP_W), 0.01)
    for n in range(CLIP_LAYERS):
        l = p + "encoder.layers.{}.".format(n)
        for proj in ("q_proj.", "k_proj.", "v_proj.", "out_proj."):
            if full:
                b.linear(l + "self_attn." + proj, CLIP_W, CLIP_W, gain=0.5)
            else:
                b.const(l + "self_attn." + proj + "bias", (CLIP_W,), 0.0)
        if full:
            b.linear(l + "mlp.fc1.", CLIP_W, CLIP_FF, gain=0.5)
            b.linear(l + "mlp.fc2.", CLIP_FF, CLIP_W, gain=0.5)
        else:
            b.const(l + "mlp.fc1.bias", (CLIP_FF,), 0.0)
            b.const(l + "mlp.fc2.bias", (CLIP_W,), 0.0)
        b.norm(l + "layer_norm1.", CLIP_W)
        b.norm(l + "layer_norm2.", CLIP_W)
    b.norm(p + "final_layer_norm.", CLIP_W)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", help="path of the .safetensors file to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp16",
                    help="storage dtype of UNet + VAE weights (default fp16)")
    ap.add_argument("--clip", choices=("minimal", "full"), default="minimal",
                    help="minimal: only tiny CLIP tensors (big ones missing); full: all CLIP weights")
    ap.add_argument("--clip-dtype", choices=sorted(DTYPES), default=None,
                    help="storage dtype of CLIP weights (default: same as --dtype)")
    ap.add_argument("--unet-output-transformers", action="store_true",
                    help="also put a SpatialTransformer in each output block (bigger/slower, closer to SD1.5)")
    a = ap.parse_args(argv)

    b = Builder(a.seed, DTYPES[a.dtype])
    build_unet(b, out_transformers=a.unet_output_transformers)
    build_vae(b)
    b.dtype = DTYPES[a.clip_dtype or a.dtype]
    build_clip(b, full=(a.clip == "full"))

    d = os.path.dirname(os.path.abspath(a.output))
    os.makedirs(d, exist_ok=True)
    tmp = a.output + ".tmp"
    save_file(b.sd, tmp, metadata={"format": "pt", "modelspec.architecture": "stable-diffusion-v1",
                                   "tiny_random_checkpoint": "1"})
    os.chmod(tmp, 0o644)  # safetensors writes 0600
    os.replace(tmp, a.output)
    n = sum(t.numel() for t in b.sd.values())
    print("wrote {} ({} tensors, {:.2f} M params, {:.1f} MB)".format(
        a.output, len(b.sd), n / 1e6, os.path.getsize(a.output) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
