"""Per-example gradients of each document's mean next-token loss, B at a time (METHODS §2).

Two batched methods, both equal to the one-at-a-time reference (`per_example_gradients_loop`)
to float rounding (tested):

- **taps**, for curate's proxy LM: one plain batched forward and a backward that stops at each
  layer's output. Examples never mix inside the model (no batch statistics), so the gradient of
  the summed losses at a layer's output, row b, is example b's own. Each weight's per-example
  gradient then follows from the layer's input and that output gradient: a batched matmul for
  a Linear, a sum for biases and LayerNorm, a scatter for embeddings. It keeps the fused
  attention kernel and costs about one batched backward (bench/bench_influence.py).
- **vmap** over `torch.func.grad`, for any other model (LoRA adapters on a Hugging Face LM).

Both run under bf16 autocast on CUDA and return float32.
"""

from __future__ import annotations

from typing import Any


def _torch() -> Any:
    import torch

    return torch


def per_example_gradients(model: Any, ids: Any, mask: Any, params: dict[str, Any] | None = None) -> Any:
    """B x P flattened gradients of each example's mean loss with respect to `params` (default:
    every parameter, in `named_parameters` order; for LoRA, the adapters)."""
    torch = _torch()
    on_cuda = ids.device.type == "cuda"
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=on_cuda):
        if _tappable(model, params):
            return tap_gradients(model, ids, mask).float()
        return vmap_gradients(model, ids, mask, params).float()


def _tappable(model: Any, params: dict[str, Any] | None) -> bool:
    from curate.proxy_lm import ProxyLMConfig

    if not isinstance(getattr(model, "config", None), ProxyLMConfig):
        return False
    return params is None or list(params) == [n for n, _ in model.named_parameters()]


def example_losses(model: Any, params: dict[str, Any], ids: Any, mask: Any) -> Any:
    """Mean next-token loss of one example (ids, mask: 1-D), as a function of the parameters."""
    torch = _torch()
    from torch.func import functional_call

    logits = functional_call(model, params, (ids[None, :-1],)).logits[0]
    ce = torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none")
    weights = mask[1:].float()
    return (ce * weights).sum() / weights.sum().clamp_min(1.0)


def vmap_gradients(model: Any, ids: Any, mask: Any, params: dict[str, Any] | None = None) -> Any:
    from torch.func import grad, vmap

    plain_attention(model, True)
    params = params if params is not None else {k: v.detach() for k, v in model.named_parameters()}
    batched = vmap(grad(example_losses, argnums=1), in_dims=(None, None, 0, 0))
    return flatten(batched(model, params, ids, mask), ids.shape[0])


def tap_gradients(model: Any, ids: Any, mask: Any) -> Any:
    """The proxy LM's per-example gradients from layer taps (see the module's docstring)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    plain_attention(model, False)
    seen: dict[Any, tuple[Any, Any]] = {}
    tapped = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.LayerNorm))] + [model.embed]
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.__setitem__(mod, (inp[0], out))) for m in tapped
    ]
    try:
        with torch.enable_grad():
            hidden = model.hidden(ids[:, :-1])
            tap = hidden.detach().requires_grad_(True)
            logits = model.head(tap)  # tied to the token embedding: its term is added below
            ce = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            weights = mask[:, 1:].float()
            loss = ((ce * weights).sum(1) / weights.sum(1).clamp_min(1.0)).sum()
            d_logits, d_hidden = torch.autograd.grad(loss, [logits, tap])
            taps = list(seen)
            d_outs = torch.autograd.grad(hidden, [seen[m][1] for m in taps], d_hidden, allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
    b = ids.shape[0]
    delta = dict(zip(taps, d_outs, strict=True))
    grads: dict[str, Any] = {}
    for name, m in model.named_modules():
        if m not in seen:
            continue
        inp, d = seen[m][0].detach(), delta[m]
        if isinstance(m, nn.Linear):
            grads[f"{name}.weight"] = torch.bmm(d.transpose(1, 2), inp.to(d.dtype))
            if m.bias is not None:
                grads[f"{name}.bias"] = d.sum(1)
        elif isinstance(m, nn.LayerNorm):
            grads[f"{name}.weight"] = (d * F.layer_norm(inp, m.normalized_shape, eps=m.eps)).sum(1)
            grads[f"{name}.bias"] = d.sum(1)
    tokens = delta[model.embed]  # the gradient at token + position embeddings, per example
    embed = torch.zeros(b, *model.embed.weight.shape, dtype=tokens.dtype, device=ids.device)
    embed.scatter_add_(1, ids[:, :-1, None].expand(-1, -1, tokens.shape[-1]), tokens)
    grads["embed.weight"] = embed + torch.bmm(d_logits.transpose(1, 2), hidden.detach().to(d_logits.dtype))
    pos = torch.zeros(b, *model.pos.weight.shape, dtype=tokens.dtype, device=ids.device)
    pos[:, : tokens.shape[1]] = tokens
    grads["pos.weight"] = pos
    return torch.cat([grads[n].reshape(b, -1).float() for n, _ in model.named_parameters()], dim=1)


def per_example_gradients_loop(model: Any, ids: Any, mask: Any) -> Any:
    """The same, one example at a time (the reference the batched methods are checked against)."""
    torch = _torch()
    from torch.func import grad

    plain_attention(model, False)  # the loop's best case: the fused attention kernel
    params = {k: v.detach() for k, v in model.named_parameters()}
    one = grad(example_losses, argnums=1)
    return torch.stack([flatten(one(model, params, ids[i], mask[i]), None) for i in range(len(ids))])


def plain_attention(model: Any, on: bool) -> None:
    """Attention as explicit matmuls when on: vmap has no batching rule for the fused CPU kernel
    and would fall back to a loop over the batch."""
    for block in getattr(model, "blocks", []):
        block.plain_attention = on


def flatten(grads: dict[str, Any], batch: int | None) -> Any:
    torch = _torch()
    parts = [g.reshape(batch, -1) if batch is not None else g.reshape(-1) for g in grads.values()]
    return torch.cat(parts, dim=-1)
