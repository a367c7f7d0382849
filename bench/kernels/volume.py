"""GRAM volumes of sets of vectors, batched, for any number k of vectors.

For k vectors stacked as the rows of A (k x d), with Gram matrix G = A A^T, the volume of the
parallelotope they span is Vol = sqrt(det G) (GRAM, Cicchetti et al., ICLR 2025): 1 for
orthonormal unit vectors, 0 for linearly dependent ones, |sin angle| for k = 2, independent of the
order. ftbench trains with the delta-regularised volume sqrt(det(G + delta I)) (`gram_volume`,
Notes: why, and its bounds), whose gradient is finite where contrastive training pushes the
positives (collinear views); `delta` is the objective's `volume_delta` option, and delta = 0 gives
GRAM's exact sqrt(|det G|). Missing vectors (mask False) are left out: their rows and columns of G
are the identity's (no delta), which multiplies det by 1; a set with no vector has volume 1.
`pairwise_log_volume` gives all (anchor_i, set_j) volumes from one Cholesky factor per set
(Notes: the Schur-complement form and its cost).

References: Cicchetti, Grassucci, Sigillo, Comminiello, "Gramian Multimodal Representation Learning
and Alignment", ICLR 2025 (code: ispamm/GRAM, utils/volume.py).
"""

from __future__ import annotations

import torch


def gram_matrix(vectors: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """G = A A^T of the sets in `vectors` [..., k, d]; masked-out rows/columns set to the identity's.

    Returns [..., k, k]. With `mask` None every vector is used.
    """
    gram = vectors @ vectors.transpose(-1, -2)
    if mask is None:
        return gram
    mask = mask.to(torch.bool)
    both = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return torch.where(both, gram, eye.expand_as(gram))


def _regularise(gram: torch.Tensor, mask: torch.Tensor | None, delta: float) -> torch.Tensor:
    """G + delta * I on the valid diagonal entries only (padding keeps its identity block)."""
    k = gram.shape[-1]
    diag = torch.full(gram.shape[:-1], float(delta), dtype=gram.dtype, device=gram.device)
    if mask is not None:
        diag = diag * mask.to(gram.dtype)
    return gram + torch.diag_embed(diag) if k else gram


def _cholesky(matrix: torch.Tensor, what: str) -> torch.Tensor:
    """Lower Cholesky factor; on failure in low precision, retries in float64 and casts back."""
    factor, info = torch.linalg.cholesky_ex(matrix)
    if bool((info != 0).any()):
        if matrix.dtype != torch.float64:
            factor64, info = torch.linalg.cholesky_ex(matrix.double())
            factor = factor64.to(matrix.dtype)
        if bool((info != 0).any()):
            raise ValueError(
                f"{what}: Gram matrix + delta*I is not positive definite; the vectors contain NaN/inf "
                "or delta (objective option 'volume_delta') is too small for this precision"
            )
    return factor


def gram_log_volume(vectors: torch.Tensor, mask: torch.Tensor | None = None, delta: float = 1e-4) -> torch.Tensor:
    """log Vol_delta = 1/2 logdet(G + delta I) of each set in `vectors` [..., k, d] -> [...].

    delta must be > 0 (use `gram_volume(..., delta=0)` for GRAM's unregularised volume).
    """
    if delta <= 0:
        raise ValueError(f"gram_log_volume needs delta > 0 (got {delta}); the log-volume of a degenerate set is -inf")
    gram = _regularise(gram_matrix(vectors, mask), mask, delta)
    factor = _cholesky(gram, "gram_log_volume")
    return torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)


def gram_volume(vectors: torch.Tensor, mask: torch.Tensor | None = None, delta: float = 1e-4) -> torch.Tensor:
    """Vol_delta = sqrt(det(G + delta I)) of each set in `vectors` [..., k, d] -> [...].

    delta > 0: exp of `gram_log_volume` (finite gradients everywhere). delta == 0: GRAM's exact
    sqrt(|det G|) via `torch.linalg.det`, whose gradient is infinite at degenerate sets.

    Notes
    -----
    d sqrt(x)/dx = 1/(2 sqrt x) is infinite at det G = 0, which is exactly where contrastive
    training pushes the positives, and `torch.linalg.det` of a singular matrix has no useful
    gradient either. Hence::

        Vol_delta(A) = sqrt(det(G + delta I)) = exp( 1/2 logdet(G + delta I) ),

    with logdet from a Cholesky factorisation G + delta I = L L^T (logdet = 2 sum_u log L_uu). G is
    positive semi-definite, so every eigenvalue of G + delta I is >= delta: the factorisation exists
    and Vol_delta >= delta^(k/2) > 0, so every gradient is finite. Vol_delta -> Vol as delta -> 0
    (for unit vectors, |Vol_delta^2 - Vol^2| <= (1 + delta)^k - 1).
    """
    if delta < 0:
        raise ValueError(f"volume delta must be >= 0, got {delta}")
    if delta == 0:
        return torch.sqrt(torch.abs(torch.linalg.det(gram_matrix(vectors, mask))))
    return torch.exp(gram_log_volume(vectors, mask, delta))


def _schur_terms(
    anchor: torch.Tensor, sets: torch.Tensor, mask: torch.Tensor | None, delta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/2 logdet(G_j + delta I) [B2], residual [B2, B1]) of the block-determinant form: one
    Cholesky factor per set, one triangular inverse per set, one matrix product for all anchors (see `pairwise_log_volume`).
    The residual <a_i, a_i> + delta - |L_j^{-1} X_j a_i|^2 is clamped below at delta, its exact
    lower bound, so round-off cannot make it non-positive."""
    if delta <= 0:
        raise ValueError(f"pairwise volumes need delta > 0 (got {delta})")
    if anchor.ndim != 2 or sets.ndim != 3 or anchor.shape[-1] != sets.shape[-1]:
        raise ValueError(
            f"pairwise volume expects anchor [B1, d] and sets [B2, n, d], got {tuple(anchor.shape)} and {tuple(sets.shape)}"
        )
    b1, b2, n = anchor.shape[0], sets.shape[0], sets.shape[1]
    anchor_sq = (anchor * anchor).sum(-1) + delta  # [B1]
    if n == 0:
        return anchor_sq.new_zeros(b2), anchor_sq.unsqueeze(0).expand(b2, b1)
    if mask is not None:
        # a member masked out in every set contributes an identity row and no cross term anywhere
        # (det and residual unchanged): leave it out of the products, e.g. the anchor's own slot
        kept = mask.to(torch.bool).any(dim=0)
        if not bool(kept.all()):
            sets, mask = sets[:, kept], mask[:, kept]
            n = sets.shape[1]
            if n == 0:
                return anchor_sq.new_zeros(b2), anchor_sq.unsqueeze(0).expand(b2, b1)
        sets = sets * mask.to(sets.dtype).unsqueeze(-1)  # padding contributes no cross terms
    gram = _regularise(gram_matrix(sets, mask), mask, delta)  # [B2, n, n]
    factor = _cholesky(gram, "pairwise_log_volume")
    log_det_sets = torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)  # 1/2 logdet, [B2]
    # y_ij = L_j^{-1} X_j a_i = W_j a_i with W_j = L_j^{-1} X_j: the triangular solve runs on the
    # n x n identity (n right-hand sides, not B1) and the B1 B2 n d products are one matrix
    # product, whose backward is two more (a batched solve against B1 right-hand sides and the
    # einsum "jnd,id->jni" backward were ~3x the forward on CPU)
    eye = torch.eye(n, dtype=factor.dtype, device=factor.device).expand_as(factor)
    factor_inv = torch.linalg.solve_triangular(factor, eye, upper=False)  # L_j^{-1} [B2, n, n]
    whitened = factor_inv @ sets  # W_j [B2, n, d]
    solved = (whitened.reshape(b2 * n, -1) @ anchor.t()).view(b2, n, b1)  # y_ij [B2, n, B1]
    residual = anchor_sq.unsqueeze(0) - (solved * solved).sum(1)  # [B2, B1]
    return log_det_sets, residual.clamp_min(delta)


def signed_lift(vectors: torch.Tensor) -> torch.Tensor:
    """(v, 1) / sqrt 2 for every unit vector v in `vectors` [..., d] -> [..., d + 1], unit again.

    GRAM's volume is blind to signs: flipping any vector of a set flips a row and a column of G
    and leaves det G unchanged, so a view and its negation are equally "close" to an anchor. In the
    lifted space <v', w'> = (1 + <v, w>) / 2, so the pair volume sqrt(1 - <v', w'>^2) is zero only
    at w = v and largest at w = -v, and a set of lifted vectors is linearly dependent only when the
    anchor lies on the affine hull of the set (for unit vectors: on the circle, sphere, ... through
    them), never at the antipode of a member.
    """
    ones = torch.ones((*vectors.shape[:-1], 1), dtype=vectors.dtype, device=vectors.device)
    return torch.cat([vectors, ones], dim=-1) * (0.5**0.5)


def pairwise_log_volume(
    anchor: torch.Tensor, sets: torch.Tensor, mask: torch.Tensor | None = None, delta: float = 1e-4
) -> torch.Tensor:
    """log Vol_delta(anchor_i, set_j) for all pairs: anchor [B1, d], sets [B2, n, d] -> [B1, B2].

    With L_j the Cholesky factor of G_j + delta I and y_ij = L_j^{-1} (X_j anchor_i),

        log Vol_delta = sum_u log (L_j)_uu + 1/2 log(<a_i, a_i> + delta - |y_ij|^2).

    The residual is clamped below at delta, its exact lower bound, so round-off cannot make it
    non-positive. Masked set members (mask [B2, n] False) are left out.

    Notes
    -----
    For an anchor a and a set X_j (n x d, Gram G_j, a_j = X_j a) the block determinant (Schur
    complement) gives::

        det [[<a,a> + delta, a_j^T], [a_j, G_j + delta I]]
            = det(G_j + delta I) * (<a,a> + delta - a_j^T (G_j + delta I)^{-1} a_j),

    so one Cholesky factor per set (B2 factorisations of n x n) gives all B1 x B2 volumes: with
    W_j = L_j^{-1} X_j (one triangular inverse per set), a_ij^T (G_j + delta I)^{-1} a_ij = |W_j a_i|^2,
    one [B2 n, d] x [d, B1] matrix product. O(B2 n^3 + B2 n^2 d + B1 B2 n d) time instead of
    B1 B2 (n+1)^3 for separate determinants, and O(B1 B2 n) memory. The second factor is the squared
    distance (in the delta-metric) from the anchor to the span of the set; it is >= delta (it is
    1 / (M^{-1})_11 for the full regularised matrix M, whose eigenvalues are all >= delta).
    """
    log_det_sets, residual = _schur_terms(anchor, sets, mask, delta)
    return (log_det_sets.unsqueeze(1) + 0.5 * torch.log(residual)).t()


def pairwise_span_distance(
    anchor: torch.Tensor, sets: torch.Tensor, mask: torch.Tensor | None = None, delta: float = 1e-4
) -> torch.Tensor:
    """Vol_delta(anchor_i, set_j) / Vol_delta(set_j) = dist_delta(anchor_i, span set_j), [B1, B2].

    The second factor of the Schur form alone: sqrt(<a_i, a_i> + delta - |L_j^{-1} X_j a_i|^2),
    the (delta-regularised) distance from the anchor to the span of the set. Equal to
    exp(pairwise_log_volume - gram_log_volume(sets)) to round-off, without the second Cholesky
    factorisation of every set, the log-determinants and the exp/log round trip.
    """
    return torch.sqrt(_schur_terms(anchor, sets, mask, delta)[1]).t()


def pairwise_volume(
    anchor: torch.Tensor, sets: torch.Tensor, mask: torch.Tensor | None = None, delta: float = 1e-4
) -> torch.Tensor:
    """Vol_delta(anchor_i, set_j) for all pairs: anchor [B1, d], sets [B2, n, d] -> [B1, B2].

    delta > 0: exp of `pairwise_log_volume` (Schur form, finite gradients). delta == 0: GRAM's
    sqrt(|det G|) on the explicit [B1, B2, n+1, n+1] Gram matrices (memory B1 B2 (n+1)^2).
    """
    if delta < 0:
        raise ValueError(f"volume delta must be >= 0, got {delta}")
    if delta > 0:
        return torch.exp(pairwise_log_volume(anchor, sets, mask, delta))
    b1, b2 = anchor.shape[0], sets.shape[0]
    stacked = torch.cat([anchor[:, None, None, :].expand(b1, b2, 1, -1), sets.unsqueeze(0).expand(b1, -1, -1, -1)], dim=2)
    full_mask = None
    if mask is not None:
        ones = torch.ones(b1, b2, 1, dtype=torch.bool, device=mask.device)
        full_mask = torch.cat([ones, mask.to(torch.bool).unsqueeze(0).expand(b1, -1, -1)], dim=2)
    return gram_volume(stacked, full_mask, 0.0)
