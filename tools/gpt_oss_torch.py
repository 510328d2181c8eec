"""gpt-oss (OpenAI's open-weight mixture-of-experts family) in plain PyTorch: the one definition used
by the reference generator (tools/make_gpt_oss_reference.py) and its checks
(tools/check_gpt_oss_reference.py).

Written from the published architecture (docs/models.md, "gpt-oss: the architecture as published"),
not from Hugging Face transformers (which is not a dependency). Parameter names and layouts are
those of the Hugging Face checkpoints (model.embed_tokens.weight, ..., lm_head.weight), so a
state_dict of this module is a Hugging Face style unquantised checkpoint.

Model (all fp32 here):
    x = embed_tokens[ids]                                   (no position embedding)
    per layer:  x = x + attn(rmsnorm(x));  x = x + moe(rmsnorm(x))
    logits = lm_head(rmsnorm(x))                            (untied, no bias)
attn: grouped-query attention, q/k/v/o projections with biases, head_dim independent of hidden;
    RoPE on q and k in the half-split layout, frequencies YaRN-scaled and cos/sin multiplied by
    YaRN's attention factor; scores scaled by 1/sqrt(head_dim); one learned sink logit per query
    head joins the softmax (it takes part in the max and the denominator, carries no value);
    "sliding_attention" layers see keys t-W+1..t, "full_attention" layers keys 0..t.
moe: router logits = x @ router.weight^T + router.bias over E experts; the top-k logits, softmaxed
    among themselves, weight the k chosen experts. Expert e: h = x @ gate_up_proj[e] +
    gate_up_proj_bias[e] ([hidden, 2I], gate = even columns, up = odd columns);
    gate = min(gate, 7), up = clamp(up, -7, 7), a = (up + 1) * gate * sigmoid(1.702 * gate);
    out = a @ down_proj[e] + down_proj_bias[e] ([I, hidden]).
loss: mean token cross-entropy + router_aux_loss_coef * the load-balancing loss over all layers'
    router logits (load_balancing_loss below).

MXFP4 (the published expert storage): decode_mxfp4 / encode_mxfp4, and the checkpoint orientation
helpers experts_to_mxfp4 / experts_from_mxfp4.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GptOssConfig:
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_local_experts: int
    num_experts_per_tok: int
    intermediate_size: int
    sliding_window: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_beta_fast: float = 32.0
    rope_beta_slow: float = 1.0
    rope_original_max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    router_aux_loss_coef: float = 0.9
    swiglu_limit: float = 7.0
    swiglu_alpha: float = 1.702
    # Published default: even layers slide, odd layers attend to everything.
    layer_types: list = field(default=None)

    def __post_init__(self):
        if self.layer_types is None:
            self.layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention"
                                for i in range(self.num_hidden_layers)]
        assert len(self.layer_types) == self.num_hidden_layers
        assert self.num_attention_heads % self.num_key_value_heads == 0
        assert self.head_dim % 2 == 0
        assert self.num_experts_per_tok <= self.num_local_experts

    def window_of(self, layer):
        """Keys a query sees on this layer, itself included; 0 means all earlier positions."""
        return self.sliding_window if self.layer_types[layer] == "sliding_attention" else 0


PRESETS = {
    # gpt-oss-20b as published (config.json of openai/gpt-oss-20b).
    "gpt-oss-20b": GptOssConfig(num_hidden_layers=24, hidden_size=2880, num_attention_heads=64,
                                num_key_value_heads=8, head_dim=64, num_local_experts=32,
                                num_experts_per_tok=4, intermediate_size=2880, sliding_window=128,
                                vocab_size=201088, max_position_embeddings=131072),
    # gpt-oss-120b as published: 36 layers and 128 experts, the rest as in gpt-oss-20b.
    "gpt-oss-120b": GptOssConfig(num_hidden_layers=36, hidden_size=2880, num_attention_heads=64,
                                 num_key_value_heads=8, head_dim=64, num_local_experts=128,
                                 num_experts_per_tok=4, intermediate_size=2880, sliding_window=128,
                                 vocab_size=201088, max_position_embeddings=131072),
}


# ---------------------------------------------------------------- RoPE with YaRN scaling

def yarn_inv_freq(cfg):
    """Returns (inv_freq [head_dim/2] float64, attention_factor).

    YaRN with truncate = false (the published setting): the correction dimensions are not rounded.
    For dimension pair i (0 <= i < d/2), with base b, original context L0 and factor s:
        corr(beta) = d * ln(L0 / (2*pi*beta)) / (2 * ln b)
        low = max(corr(beta_fast), 0); high = min(corr(beta_slow), d - 1)
        ramp_i = clamp((i - low) / (high - low), 0, 1)
        inv_freq_i = b^(-2i/d) * ((1 - ramp_i) + ramp_i / s)
    so fast-rotating pairs (i <= low) keep their frequency and slow ones (i >= high) are divided by
    s. attention_factor = 0.1 * ln(s) + 1 multiplies both cos and sin.
    Computed in float64 (the published code uses float32; the difference is below 1e-7 relative)."""
    d = cfg.head_dim
    base = float(cfg.rope_theta)
    s = float(cfg.rope_scaling_factor)
    i = torch.arange(d // 2, dtype=torch.float64)
    extrapolation = 1.0 / base ** (2.0 * i / d)
    if s <= 1.0:
        return extrapolation, 1.0

    def corr(beta):
        return d * math.log(cfg.rope_original_max_position_embeddings / (2 * math.pi * beta)) / (
            2 * math.log(base))

    low = max(corr(cfg.rope_beta_fast), 0.0)
    high = min(corr(cfg.rope_beta_slow), d - 1.0)
    if low == high:
        high += 0.001  # as published: avoids dividing by zero
    ramp = ((i - low) / (high - low)).clamp(0.0, 1.0)
    inv_freq = extrapolation * (1.0 - ramp) + (extrapolation / s) * ramp
    return inv_freq, 0.1 * math.log(s) + 1.0


def rope_cos_sin(cfg, positions):
    """positions: int64 [N]. Returns (cos, sin) float64 [N, head_dim/2], already multiplied by
    YaRN's attention factor; the model rounds them once to its own dtype."""
    inv_freq, factor = yarn_inv_freq(cfg)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos() * factor, angles.sin() * factor


def apply_rope(x, cos, sin):
    """x: [B, heads, T, d]; cos, sin: [B, T, d/2] (or broadcastable). Half-split rotation: the
    first half of each head is paired with the second half."""
    x1, x2 = x.chunk(2, dim=-1)
    c, s = cos[:, None], sin[:, None]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


# ---------------------------------------------------------------- blocks

class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in fp32; no bias, no mean subtraction."""

    def __init__(self, n, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        # fp32 for bf16/fp16 activations; a float64 model (the gradient checks) stays float64.
        t = x.to(torch.promote_types(x.dtype, torch.float32))
        t = t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + self.eps)
        return (t * self.weight).to(x.dtype)


def attention_mask(q_pos, k_pos, window):
    """Boolean [.., Tq, Tk]: True where query position q_pos may see key position k_pos.
    Causal; with window W > 0 only keys q-W+1..q."""
    d = q_pos[..., :, None] - k_pos[..., None, :]
    allowed = d >= 0
    if window > 0:
        allowed = allowed & (d < window)
    return allowed


def sink_softmax(scores, sinks):
    """scores: [B, H, Tq, Tk] (masked entries -inf); sinks: [H]. Softmax over the keys plus one
    extra logit per head that is dropped afterwards, so a query may give weight to nothing."""
    B, H, Tq, _ = scores.shape
    sink = sinks.reshape(1, H, 1, 1).expand(B, H, Tq, 1).to(scores.dtype)
    combined = torch.cat((scores, sink), dim=-1)
    combined = combined - combined.max(dim=-1, keepdim=True).values
    return F.softmax(combined, dim=-1)[..., :-1]


class Attention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.cfg = cfg
        self.window = cfg.window_of(layer)
        H, KV, D, C = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
        self.q_proj = nn.Linear(C, H * D)
        self.k_proj = nn.Linear(C, KV * D)
        self.v_proj = nn.Linear(C, KV * D)
        self.o_proj = nn.Linear(H * D, C)
        self.sinks = nn.Parameter(torch.zeros(H))

    def forward(self, x, positions, cos, sin, past=None):
        """x: [B, T, C]; positions: int64 [B, T]; cos, sin: [B, T, D/2]. past: None or (k, v, pos)
        with k, v [B, KV, P, D] (RoPE applied) and pos [B, P]. Returns (y, (k, v, pos))."""
        cfg = self.cfg
        B, T, _ = x.shape
        H, KV, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = self.q_proj(x).view(B, T, H, D).transpose(1, 2)
        k = self.k_proj(x).view(B, T, KV, D).transpose(1, 2)
        v = self.v_proj(x).view(B, T, KV, D).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k_pos = positions
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
            k_pos = torch.cat((past[2], positions), dim=1)
        # Query head h reads kv head h // (H / KV).
        group = H // KV
        kk = k.repeat_interleave(group, dim=1)
        vv = v.repeat_interleave(group, dim=1)
        scores = (q @ kk.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        allowed = attention_mask(positions, k_pos, self.window)[:, None]
        scores = scores.masked_fill(~allowed, float("-inf"))
        y = (sink_softmax(scores, self.sinks) @ vv).transpose(1, 2).reshape(B, T, H * D)
        return self.o_proj(y), (k, v, k_pos)


class Router(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cfg.num_local_experts, cfg.hidden_size))
        self.bias = nn.Parameter(torch.zeros(cfg.num_local_experts))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def clamped_swiglu(h, alpha, limit):
    """h: [..., 2I] with gate and up interleaved (gate = even, up = odd columns)."""
    gate, up = h[..., ::2], h[..., 1::2]
    gate = gate.clamp(max=limit)
    up = up.clamp(min=-limit, max=limit)
    return (up + 1.0) * (gate * torch.sigmoid(alpha * gate))


class Experts(nn.Module):
    """Hugging Face's unquantised layout: gate_up_proj [E, hidden, 2I], gate_up_proj_bias [E, 2I],
    down_proj [E, I, hidden], down_proj_bias [E, hidden] (y = x @ W + b)."""

    def __init__(self, cfg):
        super().__init__()
        E, C, I = cfg.num_local_experts, cfg.hidden_size, cfg.intermediate_size
        self.alpha, self.limit = cfg.swiglu_alpha, cfg.swiglu_limit
        self.gate_up_proj = nn.Parameter(torch.zeros(E, C, 2 * I))
        self.gate_up_proj_bias = nn.Parameter(torch.zeros(E, 2 * I))
        self.down_proj = nn.Parameter(torch.zeros(E, I, C))
        self.down_proj_bias = nn.Parameter(torch.zeros(E, C))

    def expert(self, e, x):
        """One expert on rows x [N, hidden]."""
        h = x @ self.gate_up_proj[e] + self.gate_up_proj_bias[e]
        return clamped_swiglu(h, self.alpha, self.limit) @ self.down_proj[e] + self.down_proj_bias[e]

    def forward(self, x, indices, weights):
        """x: [N, hidden]; indices, weights: [N, k]. Grouped: each expert runs once on the rows
        routed to it, and its weighted output is added back to those rows."""
        out = torch.zeros_like(x)
        for e in range(self.gate_up_proj.shape[0]):
            rows, slot = torch.nonzero(indices == e, as_tuple=True)
            if rows.numel() == 0:
                continue
            y = self.expert(e, x[rows]) * weights[rows, slot][:, None]
            out = out.index_add(0, rows, y)
        return out


def route(router_logits, k):
    """Top-k experts of each row and their weights: a softmax over the k selected logits only."""
    top, indices = torch.topk(router_logits, k, dim=-1)
    return indices, F.softmax(top, dim=-1)


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.k = cfg.num_experts_per_tok
        self.router = Router(cfg)
        self.experts = Experts(cfg)

    def forward(self, x):
        """x: [B, T, C]. Returns (y [B, T, C], router_logits [B*T, E])."""
        B, T, C = x.shape
        flat = x.reshape(B * T, C)
        logits = self.router(flat)
        indices, weights = route(logits, self.k)
        return self.experts(flat, indices, weights).view(B, T, C), logits


def load_balancing_loss(router_logits, num_experts, k):
    """Switch-Transformer style auxiliary loss as Hugging Face transformers computes it for this
    family (load_balancing_loss_func, no padding mask). router_logits: one [N, E] tensor per layer,
    concatenated over layers (the means run over all layers' tokens together):
        p = softmax(logits) over all E;  chosen = one_hot(top-k of p)  [N*L, k, E]
        f = mean over rows of chosen     [k, E]  (fraction of rows whose j-th choice is e)
        P = mean over rows of p          [E]
        loss = E * sum_{j,e} f[j, e] * P[e]
    Gradients flow through P only."""
    logits = torch.cat(list(router_logits), dim=0)
    p = F.softmax(logits, dim=-1)
    _, chosen = torch.topk(p, k, dim=-1)
    f = F.one_hot(chosen, num_experts).to(p.dtype).mean(dim=0)
    P = p.mean(dim=0)
    return (f * P[None, :]).sum() * num_experts


class DecoderLayer(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MoE(cfg)

    def forward(self, x, positions, cos, sin, past=None):
        a, present = self.self_attn(self.input_layernorm(x), positions, cos, sin, past)
        x = x + a
        m, router_logits = self.mlp(self.post_attention_layernorm(x))
        return x + m, present, router_logits


class Body(nn.Module):
    """The Hugging Face "model." prefix: embeddings, layers, final norm."""

    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class GptOss(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Body(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    @torch.no_grad()
    def init_random(self):
        """Random values for EVERY parameter (biases, sinks and norm weights too), so that each
        gradient in a parity test is non-trivial. Scales are chosen so that attention is far from
        uniform, routing has clear winners, and some expert activations pass the SwiGLU clamps
        (both branches of the clamp are exercised). Uses the global torch RNG: seed it first."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("sinks"):
                p.normal_(0.0, 1.0)
            elif name.endswith("router.weight"):
                p.normal_(0.0, 0.3)
            elif name.endswith("router.bias"):
                p.normal_(0.0, 0.3)
            elif name.endswith("q_proj.weight") or name.endswith("k_proj.weight"):
                p.normal_(0.0, 0.15)
            elif name.endswith("gate_up_proj"):
                p.normal_(0.0, 0.5)
            elif name.endswith("gate_up_proj_bias"):
                p.normal_(0.0, 0.5)
            elif name.endswith("down_proj"):
                p.normal_(0.0, 0.05)
            elif name.endswith("embed_tokens.weight"):
                p.normal_(0.0, 1.0)
            elif name == "lm_head.weight":
                p.normal_(0.0, 0.3)
            else:  # v/o weights, q/k/v/o biases, expert down biases
                p.normal_(0.0, 0.1)

    def forward(self, idx, targets=None, past=None, positions=None):
        """idx: [B, T] int64. past: None or one (k, v, pos) per layer. positions: [B, T] int64,
        by default P..P+T-1 after P cached positions. Returns (logits [B, T, V], losses, presents)
        where losses is None without targets, else a dict lm, aux, total (total = lm +
        router_aux_loss_coef * aux)."""
        cfg = self.cfg
        B, T = idx.shape
        if positions is None:
            P = 0 if past is None else past[0][2].shape[1]
            positions = torch.arange(P, P + T, device=idx.device).expand(B, T)
        if int(positions.max()) >= cfg.max_position_embeddings:
            raise ValueError(f"position {int(positions.max())} is past max_position_embeddings "
                             f"{cfg.max_position_embeddings}")
        cos, sin = rope_cos_sin(cfg, positions.reshape(-1))
        cos = cos.view(B, T, -1).to(self.lm_head.weight.dtype)
        sin = sin.view(B, T, -1).to(self.lm_head.weight.dtype)
        x = self.model.embed_tokens(idx)
        presents, router_logits = [], []
        for i, layer in enumerate(self.model.layers):
            x, present, rl = layer(x, positions, cos, sin, None if past is None else past[i])
            presents.append(present)
            router_logits.append(rl)
        logits = self.lm_head(self.model.norm(x))
        losses = None
        if targets is not None:
            lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            aux = load_balancing_loss(router_logits, cfg.num_local_experts, cfg.num_experts_per_tok)
            losses = {"lm": lm, "aux": aux, "total": lm + cfg.router_aux_loss_coef * aux}
        return logits, losses, presents

    @torch.no_grad()
    def greedy(self, prompt, n_new):
        """Greedy decoding of one sequence with the KV cache: one prefill of the prompt, then one
        token at a time. prompt: list of ints. Returns (new ids, per-step margin between the best
        and second-best logit)."""
        idx = torch.tensor([prompt], dtype=torch.long)
        logits, _, past = self(idx)
        out, margins = [], []
        for _ in range(n_new):
            last = logits[0, -1]
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            nxt = int(torch.argmax(last))
            out.append(nxt)
            if len(out) == n_new:
                break
            logits, _, past = self(torch.tensor([[nxt]], dtype=torch.long), past=past)
        return out, margins


def adamw_param_groups(model, weight_decay):
    """Weight decay on weight matrices (embeddings, projections, router and expert matrices); none
    on biases (expert biases are 2-D but still biases), norm weights and attention sinks."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if name.endswith("bias") or name.endswith("norm.weight") or name.endswith("sinks"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------- MXFP4

# The 16 FP4 E2M1 values by code: bit 3 is the sign, bits 2..1 the exponent, bit 0 the mantissa.
FP4_E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
            -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
MXFP4_BLOCK = 32  # values sharing one E8M0 scale; 16 bytes of codes


def decode_mxfp4(blocks, scales):
    """blocks: uint8 [..., G, 16]; scales: uint8 [..., G]. Returns float32 [..., G*32].
    Byte j of a block holds value 2j in its low nibble and value 2j+1 in its high nibble;
    value = FP4_E2M1[code] * 2^(scale - 127)."""
    assert blocks.dtype == torch.uint8 and scales.dtype == torch.uint8
    assert blocks.shape[-1] == 16 and blocks.shape[:-1] == scales.shape
    lut = torch.tensor(FP4_E2M1, dtype=torch.float32)
    lo = lut[(blocks & 0x0F).long()]
    hi = lut[(blocks >> 4).long()]
    vals = torch.stack((lo, hi), dim=-1).reshape(*blocks.shape[:-1], 32)
    vals = torch.ldexp(vals, (scales.to(torch.int32) - 127)[..., None].to(torch.float32))
    return vals.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def _nearest_e2m1_code(m):
    """m: float64 magnitudes in [0, 6]. Nearest of the 8 non-negative E2M1 values; an exact tie
    goes to the even code (mantissa bit 0), as IEEE round-to-nearest-even does."""
    mags = torch.tensor(FP4_E2M1[:8], dtype=torch.float64)
    dist = (m[..., None] - mags).abs()
    best = dist.min(dim=-1, keepdim=True).values
    # Among the (one or two) nearest codes prefer an even one.
    candidates = dist == best
    codes = torch.arange(8)
    even_first = torch.where(candidates, (codes % 2) * 8 + codes, torch.full_like(codes, 99))
    return even_first.argmin(dim=-1)


def encode_mxfp4(w):
    """w: float [..., cols] with cols a multiple of 32. Returns (blocks uint8 [..., cols/32, 16],
    scales uint8 [..., cols/32]).

    The rule: for each block of 32 values with largest magnitude a, the shared exponent is the
    smallest e with a / 2^e <= 6 (the largest E2M1 value), i.e. e = ceil(log2(a / 6)), so nothing
    saturates; a block of zeros gets e = -127. The stored scale is e + 127 (clamped to 0..254).
    Each value v is then rounded to the nearest E2M1 value of v / 2^e, ties to the even code; the
    sign goes to bit 3 (a value that rounds to zero keeps its sign as -0)."""
    assert w.shape[-1] % MXFP4_BLOCK == 0, "MXFP4 rows need a multiple of 32 values"
    v = w.detach().to(torch.float64).reshape(*w.shape[:-1], w.shape[-1] // MXFP4_BLOCK, MXFP4_BLOCK)
    a = v.abs().amax(dim=-1)
    e = torch.where(a > 0, torch.ceil(torch.log2(a / 6.0)), torch.full_like(a, -127.0))
    # log2 of an exact power of two times 1/6 can land a hair above an integer; make sure a / 2^e
    # really is <= 6 and that e is the smallest such exponent.
    e = torch.where((a > 0) & (a / torch.pow(2.0, e) > 6.0), e + 1, e)
    e = torch.where((a > 0) & (a / torch.pow(2.0, e - 1) <= 6.0), e - 1, e)
    e = e.clamp(-127, 127)
    m = (v.abs() / torch.pow(2.0, e)[..., None]).clamp(max=6.0)
    codes = _nearest_e2m1_code(m) + 8 * torch.signbit(v).long()
    codes = codes.to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    scales = (e + 127).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


def experts_to_mxfp4(weight):
    """Hugging Face unquantised expert weight [E, in, out] -> checkpoint (blocks [E, out, in/32, 16],
    scales [E, out, in/32]): the checkpoint stores each output row's inputs in blocks of 32."""
    return encode_mxfp4(weight.detach().transpose(1, 2).contiguous())


def experts_from_mxfp4(blocks, scales):
    """Inverse orientation of experts_to_mxfp4: decoded [E, out, in] transposed to [E, in, out]."""
    return decode_mxfp4(blocks, scales).transpose(1, 2).contiguous()
