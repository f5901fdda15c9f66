#!/usr/bin/env python3
"""CPU forward-pass benchmark of a diffusers transformer built from a benchmark JSON.

The JSON has the form
    {"class": "WanTransformer3DModel", "config": {...diffusers config...},
     "inputs": {"batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32, "text_tokens": 128}}

The model is built from `config` with random weights (torch.manual_seed(0), diffusers' default init),
random inputs of the given sizes are built following the class's forward signature (as the matching
diffusers pipeline would call it), and the forward pass is timed with torch.set_num_threads(N) under
torch.inference_mode(): W warm-up forwards, then R timed forwards; the median is printed.

Usage:
    /work/venv-torch/bin/python bench_forward.py CONFIG.json --dtype float32|bfloat16|int8 [--repeats 5]

--dtype int8 = bfloat16 model + torchao int8 weight-only quantization of the Linear layers.

Fully supported (pipeline-faithful inputs): WanTransformer3DModel, FluxTransformer2DModel.
Also implemented: HunyuanVideoTransformer3DModel, MochiTransformer3DModel, LTXVideoTransformer3DModel,
CogVideoXTransformer3DModel, ConsisIDTransformer3DModel, Lumina2Transformer2DModel, LuminaNextDiT2DModel,
EasyAnimateTransformer3DModel, CosmosTransformer3DModel, LatteTransformer3DModel, HiDreamImageTransformer2DModel.
"""

import argparse
import json
import math
import platform
import statistics
import sys
import time

import torch
import diffusers

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.bfloat16}


def rnd(*shape, dtype):
    return torch.randn(*shape, dtype=torch.float32).to(dtype)


# --------------------------------------------------------------------------------------------------
# Input builders: (model, cfg, inputs, dtype) -> kwargs for model.forward
# --------------------------------------------------------------------------------------------------

def inputs_wan(model, cfg, inp, dtype):
    # WanPipeline: latents [B, z_dim=16, latent_frames, latent_h, latent_w]; prompt_embeds [B, T, text_dim]
    # (umT5 4096); timestep = t.expand(B) with t in [0, 1000).
    B = inp.get("batch", 1)
    return dict(
        hidden_states=rnd(B, cfg["in_channels"], inp["latent_frames"], inp["latent_height"], inp["latent_width"], dtype=dtype),
        encoder_hidden_states=rnd(B, inp["text_tokens"], cfg["text_dim"], dtype=dtype),
        timestep=torch.full((B,), 500.0),
        return_dict=False,
    )


def inputs_flux(model, cfg, inp, dtype):
    # FluxPipeline: latents [B, C, H, W] (H, W = latent grid; C = in_channels // 4) are packed 2x2 into
    # [B, (H/2)*(W/2), C*4]; img_ids = _prepare_latent_image_ids(B, H//2, W//2) -> [(H/2)*(W/2), 3]
    # with (0, row, col); txt_ids = zeros[T, 3]; timestep = t/1000 in latents dtype;
    # guidance = full([B], guidance_scale) float32 if guidance_embeds.
    B = inp.get("batch", 1)
    H, W, T = inp["latent_height"], inp["latent_width"], inp["text_tokens"]
    assert H % 2 == 0 and W % 2 == 0, "FLUX latent_height/latent_width must be even (2x2 packing)"
    in_ch = cfg.get("in_channels", 64)
    C = in_ch // 4
    latents = torch.randn(B, C, H, W)
    packed = latents.view(B, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (H // 2) * (W // 2), C * 4)
    img_ids = torch.zeros(H // 2, W // 2, 3)
    img_ids[..., 1] += torch.arange(H // 2)[:, None]
    img_ids[..., 2] += torch.arange(W // 2)[None, :]
    img_ids = img_ids.reshape(-1, 3)
    kw = dict(
        hidden_states=packed.to(dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("joint_attention_dim", 4096), dtype=dtype),
        pooled_projections=rnd(B, cfg.get("pooled_projection_dim", 768), dtype=dtype),
        timestep=torch.full((B,), 0.5).to(dtype),
        img_ids=img_ids.to(dtype),
        txt_ids=torch.zeros(T, 3).to(dtype),
        return_dict=False,
    )
    if cfg.get("guidance_embeds", False):
        kw["guidance"] = torch.full((B,), 3.5, dtype=torch.float32)
    return kw


def inputs_hunyuan(model, cfg, inp, dtype):
    # HunyuanVideoPipeline: latents [B, 16, F, H, W]; prompt_embeds [B, T, text_embed_dim];
    # mask [B, T]; pooled [B, pooled_projection_dim]; timestep t (0..1000) in latents dtype;
    # guidance = guidance_scale * 1000.
    B, T = inp.get("batch", 1), inp["text_tokens"]
    kw = dict(
        hidden_states=rnd(B, cfg.get("in_channels", 16), inp["latent_frames"], inp["latent_height"], inp["latent_width"], dtype=dtype),
        timestep=torch.full((B,), 500.0).to(dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("text_embed_dim", 4096), dtype=dtype),
        encoder_attention_mask=torch.ones(B, T, dtype=torch.bool),
        pooled_projections=rnd(B, cfg.get("pooled_projection_dim", 768), dtype=dtype),
        return_dict=False,
    )
    if cfg.get("guidance_embeds", True):
        kw["guidance"] = torch.full((B,), 6000.0).to(dtype)
    return kw


def inputs_mochi(model, cfg, inp, dtype):
    B, T = inp.get("batch", 1), inp["text_tokens"]
    return dict(
        hidden_states=rnd(B, cfg.get("in_channels", 12), inp["latent_frames"], inp["latent_height"], inp["latent_width"], dtype=dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("text_embed_dim", 4096), dtype=dtype),
        timestep=torch.full((B,), 500.0).to(dtype),
        encoder_attention_mask=torch.ones(B, T, dtype=torch.bool),
        return_dict=False,
    )


def inputs_ltx(model, cfg, inp, dtype):
    # LTXPipeline: latents [B, C, F, H, W] packed to [B, F/pt*H/p*W/p, C*pt*p*p];
    # rope_interpolation_scale = (temporal_ratio 8 / frame_rate 25, 32, 32).
    B, T = inp.get("batch", 1), inp["text_tokens"]
    F, H, W = inp["latent_frames"], inp["latent_height"], inp["latent_width"]
    p, pt = cfg.get("patch_size", 1), cfg.get("patch_size_t", 1)
    C = cfg.get("in_channels", 128) // (p * p * pt)
    lat = torch.randn(B, C, F, H, W)
    lat = lat.reshape(B, C, F // pt, pt, H // p, p, W // p, p).permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4, 7).flatten(1, 3)
    return dict(
        hidden_states=lat.to(dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("caption_channels", 4096), dtype=dtype),
        timestep=torch.full((B,), 500.0),
        encoder_attention_mask=torch.ones(B, T, dtype=torch.long),
        num_frames=F // pt,
        height=H // p,
        width=W // p,
        rope_interpolation_scale=(8 / 25.0, 32, 32),
        return_dict=False,
    )


def inputs_cogvideox(model, cfg, inp, dtype):
    # CogVideoXPipeline: latents [B, F, C, H, W] (frames before channels); 3D RoPE from
    # _prepare_rotary_positional_embeddings when use_rotary_positional_embeddings.
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    def get_resize_crop_region_for_grid(src, tgt_width, tgt_height):
        # The base grid fitted into the target grid with its aspect ratio kept, centred: (top, left), (bottom, right).
        h, w = src
        if h / w > tgt_height / tgt_width:
            rh, rw = tgt_height, int(round(tgt_height / h * w))
        else:
            rw, rh = tgt_width, int(round(tgt_width / w * h))
        top, left = int(round((tgt_height - rh) / 2.0)), int(round((tgt_width - rw) / 2.0))
        return (top, left), (top + rh, left + rw)
    B, T = inp.get("batch", 1), inp["text_tokens"]
    F, H, W = inp["latent_frames"], inp["latent_height"], inp["latent_width"]
    p, pt = cfg.get("patch_size", 2), cfg.get("patch_size_t")
    kw = dict(
        hidden_states=rnd(B, F, cfg.get("in_channels", 16), H, W, dtype=dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("text_embed_dim", 4096), dtype=dtype),
        timestep=torch.full((B,), 500, dtype=torch.long),
        return_dict=False,
    )
    if cfg.get("use_rotary_positional_embeddings", False):
        gh, gw = H // p, W // p
        bw, bh = cfg.get("sample_width", 90) // p, cfg.get("sample_height", 60) // p
        if pt is None:
            crops = get_resize_crop_region_for_grid((gh, gw), bw, bh)
            cos, sin = get_3d_rotary_pos_embed(embed_dim=cfg["attention_head_dim"], crops_coords=crops,
                                               grid_size=(gh, gw), temporal_size=F)
        else:
            cos, sin = get_3d_rotary_pos_embed(embed_dim=cfg["attention_head_dim"], crops_coords=None,
                                               grid_size=(gh, gw), temporal_size=(F + pt - 1) // pt,
                                               grid_type="slice", max_size=(bh, bw))
        kw["image_rotary_emb"] = (cos, sin)
    return kw


def inputs_consisid(model, cfg, inp, dtype):
    # ConsisIDPipeline: the CogVideoX 1.0 inputs, hidden_states = cat([latents, image_latents], dim=2) (in_channels
    # = 2x the latent channels), plus id_cond [B_id, LFE_id_dim] and id_vit_hidden (LFE_num_scale tensors
    # [B_id, vit_tokens, LFE_vit_dim]) when is_train_face.
    kw = inputs_cogvideox(model, cfg, inp, dtype)
    if cfg.get("is_train_face", False):
        b_id = inp.get("id_batch", inp.get("batch", 1))
        kw["id_cond"] = rnd(b_id, cfg.get("LFE_id_dim", 1280), dtype=dtype)
        kw["id_vit_hidden"] = [rnd(b_id, inp["vit_tokens"], cfg.get("LFE_vit_dim", 1024), dtype=dtype)
                               for _ in range(cfg.get("LFE_num_scale", 5))]
    return kw


def inputs_lumina2(model, cfg, inp, dtype):
    B, T = inp.get("batch", 1), inp["text_tokens"]
    return dict(
        hidden_states=rnd(B, cfg.get("in_channels", 16), inp["latent_height"], inp["latent_width"], dtype=dtype),
        timestep=torch.full((B,), 0.5).to(dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("cap_feat_dim", 1024), dtype=dtype),
        encoder_attention_mask=torch.ones(B, T, dtype=torch.bool),
        return_dict=False,
    )


def inputs_lumina_next(model, cfg, inp, dtype):
    # LuminaPipeline: image_rotary_emb = get_2d_rotary_pos_embed_lumina(head_dim, 384, 384, ...),
    # scaling_factor = sqrt(w*h / default_image_size**2), base_sequence_length = (default_image_size//16)**2.
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina
    B, T = inp.get("batch", 1), inp["text_tokens"]
    H, W = inp["latent_height"], inp["latent_width"]
    s = cfg.get("sample_size", 128)
    scaling = math.sqrt(H * W / float(s * s))
    rope = get_2d_rotary_pos_embed_lumina(model.head_dim, 384, 384, linear_factor=1.0, ntk_factor=scaling)
    return dict(
        hidden_states=rnd(B, cfg.get("in_channels", 4), H, W, dtype=dtype),
        timestep=torch.full((B,), 0.5).to(dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("cross_attention_dim", 2048), dtype=dtype),
        encoder_mask=torch.ones(B, T, dtype=torch.long),
        image_rotary_emb=rope,
        cross_attention_kwargs={"base_sequence_length": (s * 8 // 16) ** 2},
        return_dict=False,
    )


def inputs_easyanimate(model, cfg, inp, dtype):
    # EasyAnimatePipeline: latents [B, out_channels, F, H, W]; prompt_embeds [B, T, text_embed_dim] (Qwen2-VL);
    # timestep = t.expand(B) in [0, 1000); an InP/control model (in_channels > out_channels) gets the rest of
    # its channels as inpaint_latents.
    B, T = inp.get("batch", 1), inp["text_tokens"]
    F, H, W = inp["latent_frames"], inp["latent_height"], inp["latent_width"]
    C = cfg["out_channels"]
    kw = dict(
        hidden_states=rnd(B, C, F, H, W, dtype=dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("text_embed_dim", 3584), dtype=dtype),
        timestep=torch.full((B,), 500.0).to(dtype),
        return_dict=False,
    )
    if cfg["in_channels"] > C:
        kw["inpaint_latents"] = rnd(B, cfg["in_channels"] - C, F, H, W, dtype=dtype)
    return kw


def inputs_cosmos(model, cfg, inp, dtype):
    # CosmosTextToWorldPipeline / CosmosVideoToWorldPipeline: latents [B, 16, F, H, W]; prompt_embeds
    # [B, T, text_embed_dim] (T5-XXL); timestep = EDM c_noise 0.25*ln(sigma); fps 30; padding_mask zeros
    # [1, 1, height, width] (resized to the latent grid inside) when concat_padding_mask; Video2World adds
    # condition_mask [B, condition_channels, F, H, W] (1 on the conditioning frames).
    # diffusers resizes the padding mask with torchvision, which this environment may lack: a stand-in
    # with torch's nearest interpolation (what torchvision's NEAREST resize of a tensor calls) is installed.
    import types
    import diffusers.models.transformers.transformer_cosmos as tc
    if not hasattr(tc, "transforms"):
        def resize(img, size, interpolation=None):
            return torch.nn.functional.interpolate(img, size=list(size), mode="nearest")
        tc.transforms = types.SimpleNamespace(
            functional=types.SimpleNamespace(resize=resize), InterpolationMode=types.SimpleNamespace(NEAREST="nearest"))
    B, T = inp.get("batch", 1), inp["text_tokens"]
    F, H, W = inp["latent_frames"], inp["latent_height"], inp["latent_width"]
    m = inp.get("condition_channels", 0)
    kw = dict(
        hidden_states=rnd(B, cfg.get("in_channels", 16) - m, F, H, W, dtype=dtype),
        timestep=torch.full((B,), 0.25 * math.log(0.5)).to(dtype),
        encoder_hidden_states=rnd(B, T, cfg.get("text_embed_dim", 1024), dtype=dtype),
        fps=30,
        return_dict=False,
    )
    if m > 0:
        cm = torch.zeros(B, m, F, H, W)
        cm[:, :, 0] = 1
        kw["condition_mask"] = cm.to(dtype)
    if cfg.get("concat_padding_mask", True):
        kw["padding_mask"] = torch.zeros(1, 1, H, W, dtype=dtype)
    return kw


def inputs_latte(model, cfg, inp, dtype):
    # LattePipeline: latents [B, C, F, H, W]; prompt_embeds [B, T, caption_channels] (T5, 120 tokens);
    # timestep = t.expand(B); enable_temporal_attentions=True; no encoder_attention_mask.
    B = inp.get("batch", 1)
    return dict(
        hidden_states=rnd(B, cfg["in_channels"], inp["latent_frames"], inp["latent_height"], inp["latent_width"], dtype=dtype),
        timestep=torch.full((B,), 500.0),
        encoder_hidden_states=rnd(B, inp["text_tokens"], cfg["caption_channels"], dtype=dtype),
        enable_temporal_attentions=True,
        return_dict=False,
    )


def inputs_hidream_i1(model, cfg, inp, dtype):
    # HiDreamImagePipeline: latents [B, C, H, W] (square: the pipeline's non-square path pads to max_resolution);
    # T5 states [B, L_t5, caption_channels[0]], the stacked llama hidden states [n_llama, B, L_llama,
    # caption_channels[1]], pooled CLIP embeddings [B, text_emb_dim]; timesteps = t in [0, 1000).
    B = inp.get("batch", 1)
    n = inp.get("llama_layers", max(k if k >= 0 else -k - 1 for k in cfg["llama_layers"]) + 1)
    return dict(
        hidden_states=rnd(B, cfg["in_channels"], inp["latent_height"], inp["latent_width"], dtype=dtype),
        timesteps=torch.full((B,), 500.0).to(dtype),
        encoder_hidden_states_t5=rnd(B, inp["t5_tokens"], cfg["caption_channels"][0], dtype=dtype),
        encoder_hidden_states_llama3=rnd(n, B, inp["llama_tokens"], cfg["caption_channels"][1], dtype=dtype),
        pooled_embeds=rnd(B, cfg["text_emb_dim"], dtype=dtype),
        return_dict=False,
    )


BUILDERS = {
    "WanTransformer3DModel": inputs_wan,
    "FluxTransformer2DModel": inputs_flux,
    "HunyuanVideoTransformer3DModel": inputs_hunyuan,
    "MochiTransformer3DModel": inputs_mochi,
    "LTXVideoTransformer3DModel": inputs_ltx,
    "CogVideoXTransformer3DModel": inputs_cogvideox,
    "ConsisIDTransformer3DModel": inputs_consisid,
    "Lumina2Transformer2DModel": inputs_lumina2,
    "LuminaNextDiT2DModel": inputs_lumina_next,
    "EasyAnimateTransformer3DModel": inputs_easyanimate,
    "CosmosTransformer3DModel": inputs_cosmos,
    "LatteTransformer3DModel": inputs_latte,
    "HiDreamImageTransformer2DModel": inputs_hidream_i1,
}


def cast_dtype(model, dtype, keep, plain=False):
    """Cast like ModelMixin.from_pretrained(torch_dtype=dtype) does: every floating state-dict entry goes
    to `dtype`, except those under a module named in the class's _keep_in_fp32_modules (kept float32);
    non-persistent buffers keep their init dtype. plain=True: model.to(dtype)."""
    if dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters()):
        return  # from_config already built it in float32
    if plain or dtype == torch.float32:
        model.to(dtype)
        return
    sd_keys = set(model.state_dict().keys())
    def target(name):
        return torch.float32 if any(k in name.split(".") for k in keep) else dtype
    for name, p in model.named_parameters():
        if p.is_floating_point():
            p.data = p.data.to(target(name))
    for mod_name, mod in model.named_modules():
        for b_name, b in list(mod._buffers.items()):
            full = f"{mod_name}.{b_name}" if mod_name else b_name
            if b is not None and b.is_floating_point() and full in sd_keys:
                mod._buffers[b_name] = b.to(target(full))


def torch_config_summary():
    lines = [l.strip(" -") for l in torch.__config__.show().splitlines()]
    keep = [l for l in lines if any(k in l for k in ("Math Kernel Library", "MKL-DNN", "oneDNN", "CPU capability"))]
    bs = torch.__config__.show()
    flags = [f for f in ("BLAS_INFO=mkl", "USE_MKL=ON", "USE_MKLDNN=ON") if f in bs]
    keep.append("flags: " + ", ".join(flags) + f"; mkldnn available={torch.backends.mkldnn.is_available()}")
    return keep


def describe(x):
    if torch.is_tensor(x):
        return f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in x) + ")"
    return repr(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="benchmark JSON: {class, config, inputs}")
    ap.add_argument("--dtype", choices=list(DTYPES), default="float32")
    ap.add_argument("--repeats", type=int, default=5, help="timed forwards (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up forwards (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--plain-cast", action="store_true",
                    help="cast with model.to(dtype) instead of keeping _keep_in_fp32_modules in float32 as from_pretrained does")
    ap.add_argument("--dry-run", action="store_true", help="build model and inputs, print shapes, do not run forward")
    ap.add_argument("--json-out", help="also write the result as JSON to this file")
    args = ap.parse_args()

    spec = json.load(open(args.config))
    cls_name, cfg, inp = spec["class"], dict(spec["config"]), spec["inputs"]
    if cls_name not in BUILDERS:
        sys.exit(f"unsupported class {cls_name}; supported: {', '.join(BUILDERS)}")
    cls = getattr(diffusers, cls_name)
    dtype = DTYPES[args.dtype]

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    model = cls.from_config(cfg)  # random weights, diffusers' default init
    keep = list(model._keep_in_fp32_modules or []) if not args.plain_cast else []
    cast_dtype(model, dtype, keep, plain=args.plain_cast)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    quant = "none"
    if args.dtype == "int8":
        try:
            import torchao
            from torchao.quantization import quantize_
            try:
                from torchao.quantization import Int8WeightOnlyConfig
                qcfg = Int8WeightOnlyConfig()
            except ImportError:  # older torchao
                from torchao.quantization import int8_weight_only
                qcfg = int8_weight_only()
        except ImportError as e:
            sys.exit(f"--dtype int8 needs torchao, which is not importable: {e}")
        # Quantize the Linear layers, except those diffusers keeps in float32 (_keep_in_fp32_modules).
        quantize_(model, qcfg, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear)
                  and not any(k in fqn.split(".") for k in keep))
        quant = f"torchao {torchao.__version__} {type(qcfg).__name__}"
    build_s = time.perf_counter() - t0

    torch.manual_seed(0)
    kwargs = BUILDERS[cls_name](model, cfg, inp, dtype)

    print(f"class: {cls_name}  params: {n_params / 1e6:.2f}M  build: {build_s:.1f}s")
    n_fp32 = sum(p.numel() for p in model.parameters() if p.dtype == torch.float32)
    print(f"dtype: {args.dtype} (model weights {str(dtype).replace('torch.', '')}, quantization: {quant}; "
          f"cast: {'model.to(dtype)' if args.plain_cast else 'from_pretrained-style, fp32 kept for ' + str(keep)}; "
          f"{n_fp32 / 1e6:.2f}M params in float32)")
    print(f"versions: torch {torch.__version__}, diffusers {diffusers.__version__}, python {platform.python_version()}")
    print(f"threads: {torch.get_num_threads()}")
    for line in torch_config_summary():
        print(f"torch config: {line}")
    for k, v in kwargs.items():
        if k != "return_dict":
            print(f"input {k}: {describe(v)}")
    if args.dry_run:
        return

    times = []
    with torch.inference_mode():
        for _ in range(args.warmup):
            out = model(**kwargs)[0]
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = model(**kwargs)[0]
            times.append((time.perf_counter() - t) * 1000.0)
    med = statistics.median(times)
    print(f"output: {describe(out)}  finite: {bool(torch.isfinite(out.float()).all())}")
    print("times_ms: " + ", ".join(f"{t:.1f}" for t in times))
    print(f"median_ms: {med:.1f}  (dtype={args.dtype}, warmup={args.warmup}, repeats={args.repeats}, threads={args.threads})")
    if args.json_out:
        json.dump(dict(config=args.config, cls=cls_name, dtype=args.dtype, quantization=quant, threads=args.threads,
                       warmup=args.warmup, repeats=args.repeats, times_ms=times, median_ms=med,
                       torch=torch.__version__, diffusers=diffusers.__version__, params=n_params,
                       torch_config=torch_config_summary()), open(args.json_out, "w"), indent=1)


if __name__ == "__main__":
    main()
