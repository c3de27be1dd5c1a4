"""transformers: ``attn_implementation="stem"``.

    import stem.integrations.transformers as stem_tf
    stem_tf.register()                      # once per process
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="stem")

Prefill (a causal call with as many queries as keys, no padding mask) runs
through :func:`stem.prefill`; everything else (decode steps, chunked
prefill against a cache, padded batches, non-causal layers) runs through
transformers' own SDPA function, unchanged. The module's ``layer_idx`` is
passed as the layer index, so the first ``dense_layers`` layers (2) run
dense, as in the Stem paper.

Options are set with :func:`register` (selector, block_size, any stem_config
field) and apply to every layer.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

NAME = "stem"

_options: Dict[str, Any] = {"selector": "stem", "block_size": 128}
_stats = {"stem": 0, "sdpa": 0}


def stats() -> Dict[str, int]:
    """How many attention calls went through libstem and through SDPA."""
    return dict(_stats)


def _sdpa(*args, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    return sdpa_attention_forward(*args, **kwargs)


def stem_attention_forward(module: Any, query: Any, key: Any, value: Any,
                           attention_mask: Optional[Any], dropout: float = 0.0,
                           scaling: Optional[float] = None, is_causal: Optional[bool] = None,
                           **kwargs: Any) -> Tuple[Any, None]:
    """An attention function for transformers' AttentionInterface.

    query [B, Hq, q_len, d], key/value [B, Hkv, kv_len, d] (the layout
    transformers passes); returns ([B, q_len, Hq, d], None) like the SDPA
    function it stands in for.
    """
    import stem

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    q_len, kv_len = query.shape[2], key.shape[2]
    prefill = (causal and attention_mask is None and q_len == kv_len and q_len > 1
               and dropout == 0.0 and not kwargs.get("output_attentions", False)
               and query.dtype in _dtypes() and query.device.type in ("cuda", "cpu"))
    if not prefill:
        _stats["sdpa"] += 1
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout,
                     scaling=scaling, is_causal=is_causal, **kwargs)
    _stats["stem"] += 1
    opts = dict(_options)
    layer = getattr(module, "layer_idx", None)
    out = stem.prefill(query, key, value, softmax_scale=scaling,
                       layer_index=-1 if layer is None else int(layer), **opts)
    return out.transpose(1, 2).contiguous(), None


def _dtypes():
    import torch
    return (torch.float32, torch.float16, torch.bfloat16)


def register(selector: str = "stem", block_size: int = 128, **config: Any) -> None:
    """Registers ``"stem"`` in transformers' attention registry (and its mask
    function as SDPA's, so an unpadded causal prefill comes without a mask
    and runs through libstem). Arguments as :func:`stem.prefill`; they apply
    to every layer of every model using attn_implementation="stem"."""
    from transformers import AttentionInterface
    _options.clear()
    _options.update({"selector": selector, "block_size": block_size, **config})
    AttentionInterface.register(NAME, stem_attention_forward)
    # transformers >= 4.53 builds masks per attention implementation, and
    # none at all for a name it has no mask function for (padded batches
    # would then look causal): use SDPA's, which is None exactly when the
    # call is plain causal attention.
    try:
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError:
        return
    sdpa_mask = AttentionMaskInterface._global_mapping.get("sdpa")
    if sdpa_mask is not None:
        AttentionMaskInterface.register(NAME, sdpa_mask)
