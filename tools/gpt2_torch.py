"""GPT-2 in plain PyTorch: the one definition shared by the reference generator
(tools/make_gpt2_reference.py) and the peer benchmark (bench/pytorch_gpt2.py).

Written from the GPT-2 description, not from Hugging Face transformers (which is not a dependency).
Parameter names match Hugging Face's GPT-2 checkpoints without the "transformer." prefix, and linear
weights use its Conv1D layout [in, out] (y = x @ W + b), so a state_dict of this module can be written
straight into a Switchyard/Hugging Face style safetensors file.

Model: wte [V, C] + wpe [maxT, C]; L pre-LayerNorm blocks
    x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
attn: causal multi-head self-attention, qkv = c_attn(x) split as [q | k | v] columns, each [NH, hs];
mlp: c_fc (C -> 4C), GELU (tanh approximation), c_proj (4C -> C); final ln_f; logits = x @ wte^T.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPT2Config:
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    n_positions: int
    layer_norm_epsilon: float = 1e-5
    # Full-sequence attention through F.scaled_dot_product_attention (flash kernels on GPUs) instead
    # of the explicit softmax: the same function, as the GPU peer benchmark runs it.
    sdpa: bool = False


PRESETS = {
    # The 124M-parameter GPT-2 (the smallest released model).
    "gpt2-124m": GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024),
    # Switchyard's `tiny` preset (src/model/gpt_config.cc): about 0.85M parameters, byte vocabulary.
    "tiny": GPT2Config(n_layer=4, n_head=4, n_embd=128, vocab_size=256, n_positions=256),
}


class Conv1D(nn.Module):
    """Affine map with the weight stored [in, out] (Hugging Face GPT-2 layout): y = x @ W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(
            *x.shape[:-1], self.weight.shape[1])


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = cfg.n_head
        self.sdpa = cfg.sdpa
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)

    def forward(self, x, past=None):
        """x: [B, T, C]. past: None or (k, v) each [B, NH, P, hs] for the P earlier positions.
        Returns (y [B, T, C], (k, v) [B, NH, P+T, hs])."""
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        P = k.shape[2] - T
        if self.sdpa and P == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)), (k, v)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # [B, NH, T, P+T]
        if T > 1:
            # Query i sits at position P+i and may see keys 0..P+i.
            allowed = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(diagonal=P)
            att = att.masked_fill(~allowed, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = Conv1D(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)

    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.init_random()

    @torch.no_grad()
    def init_random(self):
        """Random values for EVERY parameter (biases and LayerNorm too), so that each gradient in a
        parity test is non-trivial. Uses the global torch RNG: seed it first for determinism."""
        std = 0.02
        proj_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)  # residual projections, as in GPT-2
        for name, p in self.named_parameters():
            if ".ln_" in name or name.startswith("ln_f."):
                if name.endswith(".weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            elif name == "wpe.weight":
                p.normal_(0.0, 0.01)
            elif name.endswith("c_proj.weight"):
                p.normal_(0.0, proj_std)
            else:  # wte, c_attn/c_fc weights, all linear biases
                p.normal_(0.0, std)

    def forward(self, idx, targets=None, past=None):
        """idx: [B, T] int64 token ids. past: None or a list (one per layer) of (k, v) caches.
        Returns (logits [B, T, V], loss or None, presents)."""
        B, T = idx.shape
        P = 0 if past is None else past[0][0].shape[2]
        if P + T > self.cfg.n_positions:
            raise ValueError(f"sequence of {P + T} positions exceeds n_positions {self.cfg.n_positions}")
        pos = torch.arange(P, P + T, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        presents = []
        for i, block in enumerate(self.h):
            x, present = block(x, None if past is None else past[i])
            presents.append(present)
        x = self.ln_f(x)
        logits = x @ self.wte.weight.t()  # tied LM head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss, presents


def adamw_param_groups(model, weight_decay):
    """Weight decay on matrices (every weight, wte, wpe: dim >= 2), none on biases and LayerNorm."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
