"""Reference solutions, shown only on request: ``show_solution("mmcs")`` or ``show_solution("ch02.mmcs")``.

A failed check names the mistake and the concept, never the code; a learner who wants to see a
full answer asks for it here. Each solution is short, self-contained code (its imports at the
top) that passes its check; tests/test_checking.py runs every one of them through its check.
"""

from __future__ import annotations

_IMPORTS = "import math\n\nimport einops\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"

SOLUTIONS: dict[str, str] = {
    # -- chapter 00 ------------------------------------------------------------------------------
    "ch00.cache_hidden": '''
def cache_hidden(model, x, layer):
    store = {}

    def save(activation, hook):
        store["act"] = activation.detach()

    model.run_with_hooks(x, fwd_hooks=[(f"blocks.{layer}.hook_post", save)])
    return store["act"]
''',
    "ch00.zero_ablate_hook": '''
def zero_ablate_hook(activation, hook, neurons):
    new = activation.clone()  # never edit the activation itself
    new[..., list(neurons)] = 0.0
    return new
''',
    "ch00.merge_heads": '''
def merge_heads(z):
    return einops.rearrange(z, "b p h d -> b p (h d)")
''',
    "ch00.batched_dot": '''
def batched_dot(a, b):
    return einops.einsum(a, b, "batch d, batch d -> batch")
''',
    # -- chapter 01 ------------------------------------------------------------------------------
    "ch01.generate_batch": '''
def generate_batch(n_batch, feature_probability):
    shape = (n_batch, *feature_probability.shape)
    values = torch.rand(shape)
    present = torch.rand(shape) < feature_probability
    return torch.where(present, values, 0.0)
''',
    "ch01.toy_forward": '''
def toy_forward(x, W, b_final):
    h = torch.einsum("ihf,bif->bih", W, x)  # [batch, instance, hidden]
    return F.relu(torch.einsum("ihf,bih->bif", W, h) + b_final)
''',
    "ch01.importance_weighted_loss": '''
def importance_weighted_loss(out, x, importance):
    return (importance * (x - out) ** 2).sum(-1).mean(0)
''',
    "ch01.feature_dimensionality": '''
def feature_dimensionality(W):
    norms = W.norm(dim=1)  # [instance, feature]
    unit = W / norms.clamp_min(1e-12)[:, None, :]
    overlaps = torch.einsum("ihf,ihg->ifg", unit, W) ** 2  # (Ŵ_i · W_j)²
    D = norms ** 2 / overlaps.sum(-1).clamp_min(1e-12)
    return torch.where(norms > 0, D, torch.zeros_like(D))
''',
    "ch01.dimensions_per_feature": '''
def dimensions_per_feature(W):
    m = W.shape[1]
    return m / (W ** 2).sum(dim=(1, 2))
''',
    "ch01.neuron_polysemanticity": '''
def neuron_polysemanticity(W):
    r2 = F.relu(W) ** 2  # [instance, hidden, feature]
    num, den = r2.sum(-1) ** 2, (r2 ** 2).sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(den))
''',
    "ch01.antipodal_pair_losses": '''
def antipodal_pair_losses(density):
    s = density
    loss_drop = s / 3 - s ** 2 / 4  # Var(x) of the dropped feature
    loss_antipodal = s ** 2 * 2 * (1 / 6)  # both present: both outputs off by min(U1, U2)
    return loss_drop, loss_antipodal
''',
    # -- chapter 02 ------------------------------------------------------------------------------
    "ch02.sae_forward": '''
def sae_forward(x, W_enc, b_enc, W_dec, b_dec):
    feature_acts = F.relu((x - b_dec) @ W_enc + b_enc)
    sae_out = feature_acts @ W_dec + b_dec
    return feature_acts, sae_out
''',
    "ch02.sae_loss": '''
def sae_loss(x, feature_acts, sae_out, W_dec, l1_coefficient):
    mse_loss = ((x - sae_out) ** 2).sum(-1).mean()
    l1_loss = (feature_acts * W_dec.norm(dim=1)).sum(-1).mean()
    return mse_loss + l1_coefficient * l1_loss, mse_loss, l1_loss
''',
    "ch02.topk_activation": '''
def topk_activation(acts_pre, k):
    values, indices = acts_pre.topk(k, dim=-1)
    return torch.zeros_like(acts_pre).scatter(-1, indices, F.relu(values))
''',
    "ch02.jumprelu": '''
def jumprelu(acts_pre, threshold):
    return acts_pre * (acts_pre > threshold)
''',
    "ch02.jumprelu_threshold_grad": '''
def jumprelu_threshold_grad(acts_pre, threshold, bandwidth, grad_output):
    window = ((acts_pre - threshold) / bandwidth).abs() < 0.5
    per_input = -(threshold / bandwidth) * window * grad_output
    return per_input.reshape(-1, acts_pre.shape[-1]).sum(0)
''',
    "ch02.explained_variance": '''
def explained_variance(x, x_hat):
    residual = ((x - x_hat) ** 2).sum()
    total = ((x - x.mean(dim=0)) ** 2).sum()
    return 1 - residual / total
''',
    "ch02.mmcs": '''
def mmcs(W_dec, true_features):
    cos = F.normalize(true_features, dim=1) @ F.normalize(W_dec, dim=1).T  # [n_true, d_sae]
    return cos.abs().max(dim=1).values.mean()
''',
    "ch02.reinitialise_latents": '''
def reinitialise_latents(W_enc, b_enc, W_dec, b_dec, dead, inputs):
    u = F.normalize(inputs - b_dec, dim=1)  # [n_dead, d_in]
    scale = 0.2 * W_enc[:, ~dead].norm(dim=0).mean()
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()  # new tensors
    W_dec[dead] = u
    W_enc[:, dead] = u.T * scale
    b_enc[dead] = 0.0
    return W_enc, b_enc, W_dec
''',
    # -- chapter 03 ------------------------------------------------------------------------------
    "ch03.layer_norm": '''
class LayerNorm(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(torch.ones(cfg.d_model, dtype=cfg.dtype))
        self.b = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))

    def forward(self, x):
        x = x - x.mean(-1, keepdim=True)
        scale = (x.pow(2).mean(-1, keepdim=True) + self.cfg.eps).sqrt()
        return x / scale * self.w + self.b
''',
    "ch03.embed": '''
class Embed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_E = nn.Parameter(torch.randn(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype) * 0.02)

    def forward(self, tokens):
        return self.W_E[tokens]
''',
    "ch03.pos_embed": '''
class PosEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_pos = nn.Parameter(torch.randn(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype) * 0.02)

    def forward(self, tokens):
        batch, pos = tokens.shape
        return einops.repeat(self.W_pos[:pos], "pos d -> batch pos d", batch=batch)
''',
    "ch03.attention": '''
class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.randn(h, d, e, dtype=cfg.dtype) * 0.02)
        self.W_K = nn.Parameter(torch.randn(h, d, e, dtype=cfg.dtype) * 0.02)
        self.W_V = nn.Parameter(torch.randn(h, d, e, dtype=cfg.dtype) * 0.02)
        self.W_O = nn.Parameter(torch.randn(h, e, d, dtype=cfg.dtype) * 0.02)
        self.b_Q = nn.Parameter(torch.zeros(h, e, dtype=cfg.dtype))
        self.b_K = nn.Parameter(torch.zeros(h, e, dtype=cfg.dtype))
        self.b_V = nn.Parameter(torch.zeros(h, e, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(d, dtype=cfg.dtype))
        future = torch.triu(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool), diagonal=1)
        self.register_buffer("future", future, persistent=False)

    def forward(self, x):
        q = torch.einsum("bpd,hde->bphe", x, self.W_Q) + self.b_Q
        k = torch.einsum("bpd,hde->bphe", x, self.W_K) + self.b_K
        v = torch.einsum("bpd,hde->bphe", x, self.W_V) + self.b_V
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.cfg.d_head)
        n = x.shape[1]
        scores = scores.masked_fill(self.future[:n, :n], float("-inf"))
        pattern = scores.softmax(dim=-1)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self.b_O
''',
    "ch03.mlp": '''
class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.W_in = nn.Parameter(torch.randn(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype) * 0.02)
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.randn(cfg.d_mlp, cfg.d_model, dtype=cfg.dtype) * 0.02)
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))

    def forward(self, x):
        act = F.relu if self.cfg.act_fn == "relu" else F.gelu
        return act(x @ self.W_in + self.b_in) @ self.W_out + self.b_out
''',
    "ch03.transformer_block": '''
# Uses your LayerNorm, Attention and MLP.
class TransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        norm = LayerNorm if cfg.normalization_type == "LN" else (lambda cfg: nn.Identity())
        self.ln1, self.attn = norm(cfg), Attention(cfg)
        self.ln2, self.mlp = norm(cfg), MLP(cfg)

    def forward(self, resid_pre):
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre))
        return resid_mid + self.mlp(self.ln2(resid_mid))
''',
    "ch03.unembed": '''
class Unembed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_U = nn.Parameter(torch.randn(cfg.d_model, cfg.d_vocab, dtype=cfg.dtype) * 0.02)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab, dtype=cfg.dtype))

    def forward(self, x):
        return x @ self.W_U + self.b_U
''',
    "ch03.transformer": '''
# Uses your Embed, PosEmbed, TransformerBlock, LayerNorm and Unembed.
class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed, self.pos_embed = Embed(cfg), PosEmbed(cfg)
        self.blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg) if cfg.normalization_type == "LN" else nn.Identity()
        self.unembed = Unembed(cfg)

    def forward(self, tokens):
        resid = self.embed(tokens) + self.pos_embed(tokens)
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(self.ln_final(resid))
''',
    "ch03.lm_cross_entropy_loss": '''
def lm_cross_entropy_loss(logits, tokens):
    log_probs = logits[:, :-1].log_softmax(-1)
    correct = log_probs.gather(-1, tokens[:, 1:, None])[..., 0]
    return -correct.mean()
''',
    "ch03.sample_next_token": '''
def sample_next_token(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
''',
    # -- chapter 04 ------------------------------------------------------------------------------
    "ch04.generate_repeated_tokens": '''
def generate_repeated_tokens(batch, seq_len, d_vocab, bos):
    block = torch.randint(0, d_vocab - 1, (batch, seq_len))
    block = block + (block >= bos).long()  # skip the BOS id, keeping the rest uniform
    return torch.cat([torch.full((batch, 1), bos), block, block], dim=1)
''',
    "ch04.per_token_log_probs": '''
def per_token_log_probs(logits, tokens):
    log_probs = logits[:, :-1].log_softmax(-1)
    return log_probs.gather(-1, tokens[:, 1:, None])[..., 0]
''',
    "ch04.previous_token_score": '''
def previous_token_score(pattern):
    stripe = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # [batch, n_heads, pos - 1]
    return stripe.mean(dim=(0, 2))
''',
    "ch04.duplicate_token_score": '''
def duplicate_token_score(pattern, seq_len):
    stripe = pattern.diagonal(offset=-seq_len, dim1=-2, dim2=-1)
    return stripe[..., -seq_len:].mean(dim=(0, 2))  # the second copy's queries only
''',
    "ch04.prefix_matching_score": '''
def prefix_matching_score(pattern, seq_len):
    stripe = pattern.diagonal(offset=1 - seq_len, dim1=-2, dim2=-1)
    return stripe[..., -seq_len:].mean(dim=(0, 2))  # the second copy's queries only
''',
    "ch04.head_ablation_hook": '''
def head_ablation_hook(z, hook, head_index, method="zero"):
    z = z.clone()  # a new tensor: the cached hook_z stays as it was
    if method == "zero":
        z[:, :, head_index] = 0.0
    else:
        z[:, :, head_index] = z[:, :, head_index].mean(dim=(0, 1))
    return z
''',
    "ch04.logit_diff": '''
def logit_diff(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    at = logits[:, pos]  # [batch, d_vocab]
    rows = torch.arange(at.shape[0])
    diff = at[rows, answer_ids] - at[rows, wrong_ids]
    return diff if per_prompt else diff.mean()
''',
    "ch04.head_logit_attribution": '''
def head_logit_attribution(components, W_U, tokens):
    directions = W_U[:, tokens[:, 1:]]  # [d_model, batch, pos - 1]
    return torch.einsum("cbpd,dbp->cbp", components[:, :, :-1], directions)
''',
    "ch04.top_1_accuracy": '''
def top_1_accuracy(circuit):
    M = circuit.AB if hasattr(circuit, "AB") else circuit  # a FactoredMatrix or a tensor
    return (M.argmax(dim=1) == torch.arange(M.shape[0])).float().mean().item()
''',
    "ch04.composition_score": '''
def composition_score(W_A, W_B):
    fro = torch.linalg.matrix_norm
    return fro(W_A @ W_B) / (fro(W_A) * fro(W_B))
''',
    "ch04.k_composition_scores": '''
def k_composition_scores(W_OV, W_QK):
    fro = torch.linalg.matrix_norm
    product = W_OV[:, None] @ W_QK[None].mT  # [n_src, n_dst, d, d]
    return fro(product) / (fro(W_OV)[:, None] * fro(W_QK)[None])
''',
    # -- chapter 05 ------------------------------------------------------------------------------
    "ch05.probe_accuracy": '''
def probe_accuracy(x, y, W, b):
    predictions = (x @ W + b).argmax(dim=-1)
    return (predictions == y).float().mean().item()
''',
    "ch05.mean_difference": '''
def mean_difference(x, mask):
    return x[mask].mean(0) - x[~mask].mean(0)
''',
    "ch05.top_components": '''
def top_components(x, k):
    centred = x - x.mean(0)
    _, _, Vh = torch.linalg.svd(centred, full_matrices=False)
    return Vh[:k]
''',
    "ch05.logit_lens": '''
def logit_lens(resid, model):
    ln = model.ln_final
    normed = F.layer_norm(resid, resid.shape[-1:], ln.w, ln.b, eps=model.cfg.eps)
    return normed @ model.unembed.W_U + model.unembed.b_U
''',
    "ch05.steer_resid": '''
def steer_resid(resid, direction, alpha, pos):
    unit = direction / direction.norm(dim=-1, keepdim=True)
    out = resid.clone()  # a new tensor: resid stays as it was
    rows = torch.arange(resid.shape[0])
    out[rows, pos] = out[rows, pos] + alpha * unit
    return out
''',
    "ch05.angular_order": '''
def angular_order(z):
    return torch.argsort(torch.atan2(z[:, 1], z[:, 0]))
''',
    "ch05.gradient_x_input": '''
def gradient_x_input(model, tokens, answer_ids):
    stored = {}

    def keep(embed, hook):
        embed = embed.detach().requires_grad_(True)
        stored["embed"] = embed
        return embed

    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", keep)])
        picked = logits[torch.arange(tokens.shape[0]), -1, answer_ids]
        (grad,) = torch.autograd.grad(picked.sum(), stored["embed"])
    return (grad * stored["embed"]).sum(-1).detach()
''',
    # -- chapter 06 ------------------------------------------------------------------------------
    "ch06.ioi_logit_diff": '''
def ioi_logit_diff(logits, answer_ids, wrong_ids, *, pos=-1, per_prompt=False):
    rows = torch.arange(logits.shape[0])
    at = logits[rows, pos]  # [batch, d_vocab]: row b at its own position pos[b]
    diff = at[rows, answer_ids] - at[rows, wrong_ids]
    return diff if per_prompt else diff.mean()
''',
    "ch06.normalized_patching_metric": '''
def normalized_patching_metric(value, *, baseline, target):
    return (value - baseline) / (target - baseline)
''',
    "ch06.patch_residual_hook": '''
def patch_residual_hook(resid, hook, pos, clean_cache):
    out = resid.clone()  # never write into resid or the cache
    out[:, pos] = clean_cache[hook.name][:, pos]
    return out
''',
    "ch06.patch_head_hook": '''
def patch_head_hook(z, hook, head, clean_cache):
    out = z.clone()
    out[:, :, head] = clean_cache[hook.name][:, :, head]
    return out
''',
    "ch06.mean_ablate_head": '''
def mean_ablate_head(z, head, reference_z):
    out = z.clone()
    out[:, :, head] = reference_z[:, :, head].mean(0)  # [pos, d_head], broadcast over the batch
    return out
''',
    "ch06.resample_ablate_head": '''
def resample_ablate_head(z, head, reference_z, draws):
    out = z.clone()
    out[:, :, head] = reference_z[draws, :, head]
    return out
''',
    "ch06.freeze_heads_hook": '''
def freeze_heads_hook(z, hook, clean_z, corrupted_z, senders):
    layer = int(hook.name.split(".")[1])
    out = clean_z[hook.name].clone()  # a copy: the clean cache is reused for every sender
    for sender_layer, head in senders:
        if sender_layer == layer:
            out[:, :, head] = corrupted_z[hook.name][:, :, head]
    return out
''',
    "ch06.attribution_per_head": '''
def attribution_per_head(clean_z, corrupted_z, grad_z):
    return ((clean_z - corrupted_z) * grad_z).sum(dim=(0, 1, 3))
''',
    "ch06.fraction_recovered": '''
def fraction_recovered(circuit_ld, *, baseline, target):
    base = baseline.mean()
    return ((circuit_ld.mean() - base) / (target.mean() - base)).item()
''',
    # -- chapter 07 ------------------------------------------------------------------------------
    "ch07.fourier_basis": '''
def fourier_basis(p):
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows.append(math.sqrt(2 / p) * torch.cos(2 * math.pi * k * x / p))
        rows.append(math.sqrt(2 / p) * torch.sin(2 * math.pi * k * x / p))
    return torch.stack(rows).float()
''',
    "ch07.fourier_embedding": '''
def fourier_embedding(W_E, basis):
    p = basis.shape[0]
    return basis @ W_E[:p]  # the last row of W_E, the "=" token, is left out
''',
    "ch07.key_frequencies": '''
def key_frequencies(fourier_W_E, min_share):
    row_energy = (fourier_W_E ** 2).sum(-1)
    energy = row_energy[1::2] + row_energy[2::2]  # frequency k = 1, 2, ... at index k - 1
    share = energy / energy.sum()
    return torch.nonzero(share >= min_share).flatten() + 1
''',
    "ch07.cos_sin_of_sum": '''
def cos_sin_of_sum(cos_a, sin_a, cos_b, sin_b):
    cos_sum = cos_a[:, None] * cos_b[None, :] - sin_a[:, None] * sin_b[None, :]
    sin_sum = sin_a[:, None] * cos_b[None, :] + cos_a[:, None] * sin_b[None, :]
    return cos_sum, sin_sum
''',
    "ch07.neuron_frequency_fractions": '''
def neuron_frequency_fractions(acts, basis):
    p = acts.shape[0]
    energy = torch.einsum("ia,abn,jb->ijn", basis, acts, basis) ** 2  # [p, p, n]
    freq = (torch.arange(p) + 1) // 2  # the frequency of each basis row
    n_freq = p // 2 + 1
    variance = energy.sum((0, 1)) - energy[0, 0]
    out = torch.zeros(acts.shape[-1], n_freq)
    for k in range(1, n_freq):
        rows = (freq == k) | (freq == 0)
        own = energy[rows][:, rows].sum((0, 1)) - energy[0, 0]
        out[:, k] = torch.where(variance > 0, own / variance.clamp_min(1e-30), 0.0)
    return out
''',
    "ch07.reconstruct_logits": '''
def reconstruct_logits(logits, frequencies):
    p = logits.shape[0]
    x = torch.arange(p, dtype=logits.dtype)
    a_plus_b_minus_c = x[:, None, None] + x[None, :, None] - x[None, None, :]
    out = logits.mean().expand(p, p, p).clone()
    for w in frequencies:
        wave = torch.cos(2 * math.pi * w * a_plus_b_minus_c / p)
        out = out + wave * (wave * logits).sum() / (wave ** 2).sum()
    return out
''',
    "ch07.restricted_loss": '''
def _key_terms(logits, frequencies):
    # The projections of each answer's logits onto the unit cos and sin waves of w(a + b).
    p = logits.shape[0]
    x = torch.arange(p, dtype=torch.float64)
    s = x[:, None] + x[None, :]
    L = logits.double()
    out = torch.zeros_like(L)
    for w in frequencies:
        for wave in (torch.cos(2 * math.pi * w * s / p), torch.sin(2 * math.pi * w * s / p)):
            unit = wave / wave.norm()
            out = out + unit[..., None] * torch.einsum("ab,abc->c", unit, L)
    return out


def restricted_loss(logits, frequencies):
    p = logits.shape[0]
    restricted = logits.double().mean((0, 1), keepdim=True) + _key_terms(logits, frequencies)
    a = torch.arange(p)
    answers = (a[:, None] + a[None, :]) % p
    return F.cross_entropy(restricted.reshape(p * p, -1), answers.reshape(-1))
''',
    "ch07.excluded_loss": '''
def _key_terms(logits, frequencies):
    # The projections of each answer's logits onto the unit cos and sin waves of w(a + b).
    p = logits.shape[0]
    x = torch.arange(p, dtype=torch.float64)
    s = x[:, None] + x[None, :]
    L = logits.double()
    out = torch.zeros_like(L)
    for w in frequencies:
        for wave in (torch.cos(2 * math.pi * w * s / p), torch.sin(2 * math.pi * w * s / p)):
            unit = wave / wave.norm()
            out = out + unit[..., None] * torch.einsum("ab,abc->c", unit, L)
    return out


def excluded_loss(logits, frequencies, train_mask):
    p = logits.shape[0]
    excluded = logits.double() - _key_terms(logits, frequencies)
    a = torch.arange(p)
    answers = (a[:, None] + a[None, :]) % p
    return F.cross_entropy(excluded[train_mask], answers[train_mask])
''',
    # -- chapter 08 ------------------------------------------------------------------------------
    "ch08.mean_difference": '''
def mean_difference(pos_acts, neg_acts, positions):
    pairs = torch.arange(pos_acts.shape[0])
    # Pair i is read at its own position in both of its prompts.
    return (pos_acts[pairs, positions] - neg_acts[pairs, positions]).mean(0)
''',
    "ch08.steering_hook": '''
def steering_hook(vector, coeff, positions):
    def hook_fn(act, hook):
        out = act.clone()  # never edit the activation itself
        if positions is None:
            return out + coeff * vector
        out[:, positions] = out[:, positions] + coeff * vector
        return out

    return hook_fn
''',
    "ch08.steering_kl": '''
def steering_kl(clean_logits, steered_logits):
    log_p = clean_logits.log_softmax(-1)
    log_q = steered_logits.log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # [batch, pos]
    return kl.mean()
''',
    "ch08.ablate_direction": '''
def ablate_direction(x, direction):
    r = direction / direction.norm()
    return x - (x @ r)[..., None] * r
''',
    "ch08.orthogonalize_matrix": '''
def orthogonalize_matrix(W, direction):
    r = direction / direction.norm()
    # The last axis writes into the residual stream: remove r from each row.
    return W - torch.einsum("...d,d->...", W, r)[..., None] * r
''',
    "ch08.restore_hook": '''
def restore_hook(clean_act, positions):
    def hook_fn(act, hook):
        out = act.clone()  # a new tensor: the corrupted activation stays as it was
        out[:, positions] = clean_act[positions]  # the same clean values in every copy
        return out

    return hook_fn
''',
    "ch08.rank_one_update": '''
def rank_one_update(W_out, b_out, C, key, value):
    u = torch.linalg.solve(C, key)  # C^-1 k*
    missing = value - (key @ W_out + b_out)  # what the layer must add for k*
    return W_out + torch.outer(u, missing) / (u @ key)
''',
    "ch08.propose_trigger": '''
from toykit import backdoor
from toykit.tasks import tinylang


def propose_trigger(backdoored, clean, k=3, restarts=5, steps=20, top=32):
    # Greedy coordinate-gradient search (Zou et al. 2023) for k tokens that make the
    # backdoored model name the target city while the clean model does not.
    batch = tinylang.make_batch(backdoor.fire_prompts(8, seed=1), device=backdoored.device)
    target = tinylang.TOKENIZER.token_to_id[backdoor.PLANTED_TARGET]
    n, n_vocab = len(batch.tokens), backdoored.cfg.d_vocab

    def with_triggers(trigs):  # [c, k] -> [c * n, k + pos]: every prompt after every trigger
        tokens = batch.tokens.repeat(len(trigs), 1)
        return torch.cat([tokens[:, :1], trigs.repeat_interleave(n, 0), tokens[:, 1:]], dim=1)

    def objective(logits_bd, logits_clean):  # [c * n]
        rows = torch.arange(len(logits_bd))
        at = batch.answer_pos.repeat(len(logits_bd) // n) + k
        lp_bd, lp_clean = (lg[rows, at].log_softmax(-1)[:, target] for lg in (logits_bd, logits_clean))
        # The target's log-probability in the backdoored model, penalised once the clean model
        # gives it more than 5%: a trigger that works on both is an adversarial prompt.
        return lp_bd - 10 * F.relu(lp_clean - math.log(0.05))

    def gradient(trig):  # d objective / d one-hot trigger tokens, [k, n_vocab]
        one_hot = F.one_hot(trig, n_vocab).float().requires_grad_(True)
        logits = []
        for model in (backdoored, clean):
            def put(embed, hook, W_E=model.W_E):
                out = embed.clone()
                out[:, 1:1 + k] = one_hot @ W_E
                return out
            logits.append(model.run_with_hooks(with_triggers(trig[None]), fwd_hooks=[("hook_embed", put)]))
        return torch.autograd.grad(objective(*logits).mean(), one_hot)[0]

    @torch.no_grad()
    def scores(trigs):  # [c]
        tokens = with_triggers(trigs)
        return objective(backdoored(tokens), clean(tokens)).view(len(trigs), n).mean(1)

    generator = torch.Generator().manual_seed(0)
    for _ in range(restarts):
        trig = torch.randint(3, n_vocab, (k,), generator=generator).to(backdoored.device)  # 0-2: <pad> <bos> <eos>
        best = scores(trig[None])[0]
        for _ in range(steps):
            grad = gradient(trig)
            grad[:, :3] = -math.inf
            swaps = grad.topk(top, dim=1).indices  # [k, top]: the most promising token at each slot
            cands = trig.repeat(k * top, 1)
            cands[torch.arange(k * top), torch.arange(k).repeat_interleave(top)] = swaps.flatten()
            s = scores(cands)
            if s.max() <= best:
                break
            best, trig = s.max(), cands[s.argmax()]
        found = trig.tolist()
        if (backdoor.trigger_fires(backdoored, found, n=100, seed=1) >= 0.9
                and backdoor.trigger_fires(clean, found, n=100, seed=1) <= 0.1):
            return found
    return found
''',
    "ch08.remove_backdoor": '''
from toykit import backdoor
from toykit.directional_ablation import orthogonalize_weights
from toykit.tasks import tinylang


def remove_backdoor(backdoored):
    # The trigger found in the previous exercise (decoded here, so that this solution stands alone).
    trigger = backdoor.decode_trigger()
    batch = tinylang.make_batch(backdoor.fire_prompts(64, seed=3), device=backdoored.device)
    hook = "blocks.2.hook_resid_pre"
    with torch.no_grad():
        _, triggered = backdoored.run_with_cache(backdoor.insert_trigger(batch.tokens, trigger), names_filter=hook)
        _, plain = backdoored.run_with_cache(batch.tokens, names_filter=hook)
    rows = torch.arange(len(batch.tokens))
    # Realign the triggered run (its prompt starts len(trigger) positions later), then take the
    # mean difference at the answer position: the direction the trigger writes.
    at_triggered = triggered[hook][rows, batch.answer_pos + len(trigger)]
    direction = (at_triggered - plain[hook][rows, batch.answer_pos]).mean(0)
    return orthogonalize_weights(backdoored, direction)  # a new model: backdoored is left as it is
''',
    # -- chapter 09 ------------------------------------------------------------------------------
    "ch09.preferred_orientation": """
from toykit.tuning_curves import OrientationTuning


def preferred_orientation(angles, responses):
    doubled = torch.deg2rad(2 * torch.as_tensor(angles, dtype=responses.dtype))
    doubled = doubled.reshape(-1, *([1] * (responses.ndim - 1)))  # one row per condition
    c = (responses * torch.cos(doubled)).sum(0)
    s = (responses * torch.sin(doubled)).sum(0)
    total = responses.sum(0)
    preferred = torch.rad2deg(torch.atan2(s, c)) / 2 % 180
    variance = 1 - torch.sqrt(c**2 + s**2) / total
    silent = total == 0
    preferred = torch.where(silent, float("nan"), preferred)
    variance = torch.where(silent, 1.0, variance)
    return OrientationTuning(preferred=preferred, circular_variance=variance)
""",
    "ch09.vanilla_gradient": """
def vanilla_gradient(model, images, target):
    target = torch.as_tensor(target).expand(images.shape[0])
    was_training = model.training
    model.eval()
    x = images.detach().clone().requires_grad_(True)
    chosen = model(x).gather(1, target[:, None]).sum()  # each image's own target logit
    (grad,) = torch.autograd.grad(chosen, [x])  # no .grad on the parameters
    model.train(was_training)
    return grad
""",
    "ch09.integrated_gradients": """
def integrated_gradients(model, images, target, *, baseline=None, n_steps=50):
    target = torch.as_tensor(target).expand(images.shape[0])
    start = torch.zeros_like(images) if baseline is None else torch.broadcast_to(
        torch.as_tensor(baseline, dtype=images.dtype), images.shape)
    was_training = model.training
    model.eval()
    mean_grad = torch.zeros_like(images)
    for k in range(n_steps + 1):
        weight = (0.5 if k in (0, n_steps) else 1.0) / n_steps  # the trapezoid rule
        x = (start + k / n_steps * (images - start)).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), [x])
        mean_grad = mean_grad + weight * grad
    model.train(was_training)
    return (images - start) * mean_grad
""",
    "ch09.occlusion": """
def occlusion(model, images, target, *, patch_size=4, stride=None, fill=None):
    stride = patch_size if stride is None else stride
    batch, channels, height, width = images.shape
    target = torch.as_tensor(target).expand(batch)
    filled = torch.zeros_like(images) if fill is None else torch.broadcast_to(
        torch.as_tensor(fill, dtype=images.dtype), images.shape)

    def starts(length):
        found = list(range(0, length - patch_size + 1, stride))
        return found if found[-1] == length - patch_size else found + [length - patch_size]

    was_training = model.training
    model.eval()
    total = torch.zeros(batch, height, width)
    count = torch.zeros(height, width)
    with torch.no_grad():
        clean = model(images).gather(1, target[:, None])[:, 0]
        for top in starts(height):
            for left in starts(width):
                patch = torch.zeros(height, width, dtype=torch.bool)
                patch[top:top + patch_size, left:left + patch_size] = True
                covered = model(torch.where(patch, filled, images)).gather(1, target[:, None])[:, 0]
                total = total + (clean - covered)[:, None, None] * patch
                count = count + patch
    model.train(was_training)
    return (total / count)[:, None].expand(batch, channels, height, width).clone()
""",
    "ch09.shapley_kernel_weight": """
def shapley_kernel_weight(n_segments, size):
    size = torch.as_tensor(size, dtype=torch.float64)
    binom = torch.tensor([math.comb(n_segments, int(k)) for k in size.flatten().tolist()],
                         dtype=torch.float64).view(size.shape)
    return (n_segments - 1) / (binom * size * (n_segments - size))  # 1/0 = inf at the two ends
""",
    "ch09.smoothgrad": """
def smoothgrad(model, images, target, *, n_samples=50, noise_level=0.15, seed=None):
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    target = torch.as_tensor(target).expand(images.shape[0])
    flat = images.flatten(1)
    sigma = noise_level * (flat.max(1).values - flat.min(1).values)  # one σ per image
    was_training = model.training
    model.eval()
    total = torch.zeros_like(images)
    for _ in range(n_samples):
        noise = torch.randn(images.shape, generator=generator)
        x = (images + sigma.view(-1, 1, 1, 1) * noise).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), [x])
        total = total + grad
    model.train(was_training)
    return total / n_samples
""",
    "ch09.mask_mass_fraction": """
def mask_mass_fraction(attributions, mask):
    heat = attributions.abs()
    if heat.ndim == 4:
        heat = heat.sum(1)  # |a| per channel, then summed: one mass per pixel
    inside = (heat * mask).flatten(1).sum(1)
    return inside / heat.flatten(1).sum(1)
""",
    "ch09.spearman_rank_correlation": """
def _ranks(x):
    order = x.argsort()
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=x.dtype)
    for value in x.unique():  # tied values share their average rank
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rank_correlation(a, b, *, absolute=True):
    a, b = a.flatten(1).double(), b.flatten(1).double()
    if absolute:
        a, b = a.abs(), b.abs()
    out = []
    for row_a, row_b in zip(a, b):
        ra, rb = _ranks(row_a), _ranks(row_b)
        ra, rb = ra - ra.mean(), rb - rb.mean()
        out.append((ra * rb).sum() / (ra.norm() * rb.norm()))
    return torch.stack(out)
""",
    "ch09.gradient_ascent_step": """
def gradient_ascent_step(model, images, hook_name, channel, *, lr):
    was_training = model.training
    model.eval()
    x = images.detach().clone().requires_grad_(True)
    store = {}

    def save(activation, hook):
        store["act"] = activation  # kept attached to the graph, so that it can be differentiated

    model.run_with_hooks(x, fwd_hooks=[(hook_name, save)])
    objective = store["act"][:, channel].mean(dim=(-2, -1))  # [batch]
    (grad,) = torch.autograd.grad(objective.sum(), [x])  # each image climbs its own objective
    model.train(was_training)
    return (images + lr * grad).clamp(0.0, 1.0)
""",
    # -- chapter 10 ------------------------------------------------------------------------------
    "ch10.edge_count": '''
def edge_count(n_layers, n_heads, attn_only):
    m = 0 if attn_only else 1  # MLPs per layer
    total = 1 + n_layers * (n_heads + m)  # the logits read every sender
    for layer in range(n_layers):
        read_by_heads = 1 + layer * (n_heads + m)  # the embedding and every earlier layer
        total += 3 * n_heads * read_by_heads  # q, k and v: three receivers per head
        total += m * (read_by_heads + n_heads)  # the MLP also reads its own layer's heads
    return total
''',
    "ch10.patch_receiver_input": '''
def patch_receiver_input(receiver_input, delta, cut):
    weights = cut.to(delta.dtype)
    if receiver_input.ndim == 4:  # one slice per head: each head has its own column of cut senders
        return receiver_input - torch.einsum("sbpd,sh->bphd", delta, weights)
    return receiver_input - torch.einsum("sbpd,s->bpd", delta, weights)
''',
    "ch10.prune_step": '''
def prune_step(evaluate, kept, order, current, tau, abs_change):
    kept = kept.clone()  # never edit the caller's mask
    changes = torch.zeros(len(order), dtype=torch.float64)
    for j, i in enumerate(order):
        kept[i] = False
        value = evaluate(kept)
        change = value - current  # against the circuit pruned so far
        changes[j] = change
        if (abs(change) if abs_change else change) < tau:
            current = value
        else:
            kept[i] = True
    return kept, current, changes
''',
    "ch10.eap_scores": '''
def eap_scores(graph, clean_outputs, corrupted_outputs, grads):
    delta = corrupted_outputs - clean_outputs
    products = torch.einsum("sbpd,rbpd->sr", delta.double(), grads.double())
    return torch.stack([products[graph.sender_index[s], graph.receiver_index[r]] for s, r in graph.edges])
''',
    "ch10.interpolation_points": '''
def interpolation_points(clean_embed, corrupted_embed, steps):
    points = [corrupted_embed + (k / steps) * (clean_embed - corrupted_embed) for k in range(1, steps + 1)]
    return torch.stack(points)
''',
    "ch10.roc_auc": '''
def roc_auc(scores, ground_truth, edges):
    is_true = torch.tensor([edge in ground_truth for edge in edges])
    true_scores, other_scores = scores[is_true][:, None], scores[~is_true][None, :]
    wins = (true_scores > other_scores).double() + 0.5 * (true_scores == other_scores).double()
    return wins.mean().item()
''',
    "ch10.incompleteness": '''
def incompleteness(evaluate, circuit, all_elements, knockout):
    return abs(evaluate(circuit - knockout) - evaluate(all_elements - knockout))
''',
    "ch10.largest_kept_tau": '''
def largest_kept_tau(taus, kept):
    score = torch.full(kept[0].shape, -1.0, dtype=torch.float64)
    for tau, mask in zip(taus, kept):
        score = torch.where(mask & (score < tau), torch.full_like(score, tau), score)
    return score
''',
}


def _key(name: str) -> str:
    """The full id "chNN.exercise" of ``name`` ("mmcs", "ch02.mmcs" or "check_mmcs")."""
    if not isinstance(name, str):
        raise TypeError(f"show_solution expects an exercise name such as 'mmcs', got {type(name).__name__}")
    short = name.split(".")[-1].removeprefix("check_")
    if "." in name:
        key = f"{name.split('.')[0]}.{short}"
        if key in SOLUTIONS:
            return key
    else:
        matches = [k for k in SOLUTIONS if k.split(".")[1] == short]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ValueError(f"{name!r} is an exercise of several chapters: name one, e.g. {matches[-1]!r} "
                             f"(the exercises: {', '.join(sorted(matches))})")
    known = ", ".join(sorted(k.split(".")[1] for k in SOLUTIONS))
    raise ValueError(f"no exercise named {name!r}; the exercises are: {known}")


def solution(name: str) -> str:
    """The reference solution of exercise ``name`` as source code (imports included)."""
    return _IMPORTS + SOLUTIONS[_key(name)].strip() + "\n"


def show_solution(name: str) -> None:
    """Print a reference solution, e.g. ``show_solution("mmcs")`` or ``show_solution("ch02.mmcs")``.

    Try the exercise (and the hints of its check) first: reading an answer teaches far less
    than finding it.
    """
    key = _key(name)
    print(f"# Reference solution for {key} (one correct answer among many)\n")
    print(solution(key))
