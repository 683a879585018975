"""Numeric kernels for selection and pre-optimisation analysis, vectorised across assets.

Every kernel takes a 2-D ``float64`` array of simple returns shaped ``(T, N)`` (T bars in time
order, oldest first; N assets) and returns a 1-D array of shape ``(N,)``; the single-series
helpers (``haar_turbulence``, ``adf_test``) take shape ``(T,)``. Kernels are pure: no I/O, no
globals. A statistic that is undefined for a column (too few bars, zero variance, a NaN in the
input) comes back as NaN — never as a "neutral" number — and the caller decides what that means.

Algorithms
1. ``momentum``: mean · periods_per_year (annualised arithmetic mean, a fraction per year).
2. ``annual_vol``: sample std (ddof 1) · √periods_per_year; ``stability`` = 1 / annual_vol.
3. ``efficiency_ratio``: |Σ r| / Σ |r| over the last ``window`` bars (all bars when fewer).
4. ``permutation_entropy`` (numba): ordinal patterns of ``order`` consecutive values (delay 1)
   over the last ``window`` bars. Each pattern is encoded by its Lehmer code
   (c_i = #{j > i : x_j < x_i}, index = Σ c_i·(order−1−i)!), which is a bijection onto the
   order! permutations and breaks ties by position like a stable argsort. Shannon entropy of the
   pattern frequencies / ln(order!) ∈ [0, 1].
5. ``hurst_rs`` (numba): rescaled range over lags 8, 16, …, 512 with lag ≤ T/2. For each lag
   the series is cut into ⌊T/lag⌋ non-overlapping chunks aligned to the window end; per chunk
   R = range of the cumulated deviations from the chunk mean, S = population std; chunks with
   S = 0 are skipped. H = OLS slope of ln(mean R/S) on ln(lag) (≥ 2 usable lags and T ≥ 32,
   else NaN). ``hurst_clean`` = clip(1 − 2|H − 0.5|, 0, 1).
6. ``skewness`` / ``excess_kurtosis`` (both from one pass: ``skew_kurtosis``): moment
   estimators, bias-corrected by default (the same numbers as pandas ``skew`` / ``kurt`` and
   scipy with ``bias=False``).
7. ``cvar``: mean of the returns ≤ the (1 − level) quantile (linear interpolation), a return
   per bar (negative for a loss).
8. ``haar_turbulence``: orthonormal Haar DWT of the last ``window`` bars (truncated to a multiple
   of 2^levels), detail energy / total energy ∈ [0, 1] (white noise ≈ 1 − 2^−levels).
9. ``adf_test``: augmented Dickey–Fuller regression Δy_t = a + γ·y_{t−1} + Σ_{i≤p} b_i·Δy_{t−i},
   p chosen by AIC over 0..maxlag (maxlag = ⌈12·(T/100)^¼⌉ capped at T//2 − 2) on the common
   sample, then re-estimated on the full sample for the chosen p; statistic = t(γ); p-value from
   MacKinnon's (1994, 2010) response-surface approximation for the constant-only case. This
   reproduces ``statsmodels.tsa.stattools.adfuller(x, regression="c", autolag="AIC")``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba
import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import ndtr

__all__ = [
    "AdfResult",
    "adf_pvalue",
    "adf_test",
    "annual_vol",
    "as_matrix",
    "cvar",
    "efficiency_ratio",
    "excess_kurtosis",
    "haar_turbulence",
    "hurst_clean",
    "hurst_lags",
    "hurst_rs",
    "mackinnon_pvalue_c",
    "momentum",
    "permutation_entropy",
    "skew_kurtosis",
    "skewness",
    "stability",
]

HURST_LAGS = (8, 16, 32, 64, 128, 256, 512)
HURST_MIN_BARS = 32


def per_bar_rate(annual: float, periods_per_year: int) -> float:
    """An annual rate per bar: (1 + r)^(1/P) − 1 (SPEC §6.5, §6.7)."""
    return float((1.0 + annual) ** (1.0 / periods_per_year) - 1.0)


def as_matrix(returns: np.ndarray) -> np.ndarray:
    """Return ``returns`` as a 2-D float64 array ``(T, N)``; a 1-D input becomes ``(T, 1)``.

    Read-only inputs (pandas 3 copy-on-write views) are accepted as they are: the numba
    kernels only read them, so no copy and no silent fallback is needed.
    """
    x = np.asarray(returns, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"returns must be 1-D or 2-D (T, N), got shape {x.shape}")
    return x


def _tail(x: np.ndarray, window: int | None) -> np.ndarray:
    if window is None or window >= x.shape[0]:
        return x
    if window < 1:
        raise ValueError(f"window must be >= 1 bar, got {window}")
    return x[-window:]


# ----------------------------------------------------------------------------- moments


def momentum(returns: np.ndarray, periods_per_year: int) -> np.ndarray:
    """Annualised mean return: mean · periods_per_year, shape ``(N,)``, fraction per year."""
    x = as_matrix(returns)
    return x.mean(axis=0) * float(periods_per_year)


def annual_vol(returns: np.ndarray, periods_per_year: int, ddof: int = 1) -> np.ndarray:
    """Annualised volatility: std(ddof) · √periods_per_year, shape ``(N,)``; NaN if T ≤ ddof."""
    x = as_matrix(returns)
    if x.shape[0] <= ddof:
        return np.full(x.shape[1], np.nan)
    return x.std(axis=0, ddof=ddof) * math.sqrt(periods_per_year)


def stability(returns: np.ndarray, periods_per_year: int) -> np.ndarray:
    """1 / annual volatility, shape ``(N,)``; NaN where the volatility is zero or undefined."""
    vol = annual_vol(returns, periods_per_year)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 / vol
    out[~np.isfinite(out)] = np.nan
    return out


def _central_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n = x.shape[0]
    d = x - x.mean(axis=0)
    d2 = d * d  # products, not powers: np.power with an integer exponent is ~20x slower
    m2 = d2.mean(axis=0)
    m3 = (d2 * d).mean(axis=0)
    m4 = (d2 * d2).mean(axis=0)
    return m2, m3, m4, n


def _zero_var(m2: np.ndarray, x: np.ndarray) -> np.ndarray:
    # Relative test: a column whose deviations are pure rounding noise counts as constant.
    scale = np.maximum(np.abs(x).max(axis=0, initial=0.0), 1e-300)
    return m2 <= (1e-14 * scale) ** 2


def skewness(returns: np.ndarray, bias: bool = False) -> np.ndarray:
    """Sample skewness, shape ``(N,)``; NaN for constant columns or T < 3 (bias-corrected)."""
    return skew_kurtosis(returns, bias)[0]


def excess_kurtosis(returns: np.ndarray, bias: bool = False) -> np.ndarray:
    """Excess (Fisher) kurtosis, shape ``(N,)``; NaN for constant columns or T < 4."""
    return skew_kurtosis(returns, bias)[1]


def skew_kurtosis(returns: np.ndarray, bias: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`skewness` and :func:`excess_kurtosis` from one pass over the central moments."""
    x = as_matrix(returns)
    m2, m3, m4, n = _central_moments(x)
    zero = _zero_var(m2, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        g1 = m3 / m2**1.5
        g2 = m4 / m2**2 - 3.0
        if not bias:
            g1 = g1 * math.sqrt(n * (n - 1)) / (n - 2) if n > 2 else np.full_like(g1, np.nan)
            if n > 3:
                g2 = ((n + 1) * g2 + 6.0) * (n - 1) / ((n - 2) * (n - 3))
            else:
                g2 = np.full_like(g2, np.nan)
    return np.where(zero, np.nan, g1), np.where(zero, np.nan, g2)


def cvar(returns: np.ndarray, level: float = 0.95) -> np.ndarray:
    """Conditional value at risk: mean of returns ≤ the (1 − level) quantile, shape ``(N,)``.

    A return per bar (negative = loss); NaN for an empty column.
    """
    x = as_matrix(returns)
    if x.shape[0] == 0:
        return np.full(x.shape[1], np.nan)
    q = np.quantile(x, 1.0 - level, axis=0)
    mask = x <= q
    return (x * mask).sum(axis=0) / mask.sum(axis=0)


# ----------------------------------------------------------------------------- path shape


def efficiency_ratio(returns: np.ndarray, window: int | None = 120) -> np.ndarray:
    """Kaufman efficiency ratio |Σ r| / Σ |r| over the last ``window`` bars, shape ``(N,)``.

    ∈ [0, 1]; NaN where Σ|r| = 0 (no movement at all).
    """
    x = _tail(as_matrix(returns), window)
    den = np.abs(x).sum(axis=0)
    num = np.abs(x.sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[den <= 0] = np.nan
    return out


@numba.njit(cache=True)
def _perm_entropy_kernel(x: np.ndarray, order: int) -> np.ndarray:
    t, n = x.shape
    out = np.empty(n)
    nperm = 1
    for k in range(2, order + 1):
        nperm *= k
    fact = np.empty(order, dtype=np.int64)
    f = 1
    for i in range(order - 1, -1, -1):
        fact[i] = f
        f *= order - i
    npat = t - order + 1
    counts = np.zeros(nperm, dtype=np.int64)
    for col in range(n):
        bad = False
        for s in range(t):
            if not np.isfinite(x[s, col]):
                bad = True
                break
        if bad or npat < 1:
            out[col] = np.nan
            continue
        counts[:] = 0
        for s in range(npat):
            idx = 0
            for i in range(order - 1):
                xi = x[s + i, col]
                c = 0
                for j in range(i + 1, order):
                    if x[s + j, col] < xi:
                        c += 1
                idx += c * fact[i]
            counts[idx] += 1
        h = 0.0
        for k in range(nperm):
            if counts[k] > 0:
                p = counts[k] / npat
                h -= p * math.log(p)
        out[col] = h / math.log(nperm)
    return out


def permutation_entropy(
    returns: np.ndarray, order: int = 5, window: int | None = None
) -> np.ndarray:
    """Normalised permutation entropy (delay 1) of the last ``window`` bars, shape ``(N,)``.

    ∈ [0, 1] (1 = every ordinal pattern equally frequent); NaN if fewer than ``order`` bars or
    a non-finite value in the column.
    """
    if not 2 <= order <= 8:
        raise ValueError(f"order must be in 2..8, got {order}")
    x = _tail(as_matrix(returns), window)
    return _perm_entropy_kernel(x, order)


@numba.njit(cache=True)
def _hurst_kernel(x: np.ndarray, lags: np.ndarray) -> np.ndarray:
    t, n = x.shape
    out = np.empty(n)
    nl = lags.shape[0]
    logl = np.empty(nl)
    logrs = np.empty(nl)
    for col in range(n):
        bad = False
        for s in range(t):
            if not np.isfinite(x[s, col]):
                bad = True
                break
        if bad:
            out[col] = np.nan
            continue
        m = 0
        for li in range(nl):
            lag = lags[li]
            nchunk = t // lag
            start0 = t - nchunk * lag
            acc = 0.0
            used = 0
            for c in range(nchunk):
                a = start0 + c * lag
                mu = 0.0
                for s in range(a, a + lag):
                    mu += x[s, col]
                mu /= lag
                cum = 0.0
                cmax = -np.inf
                cmin = np.inf
                ss = 0.0
                for s in range(a, a + lag):
                    d = x[s, col] - mu
                    cum += d
                    ss += d * d
                    cmax = max(cmax, cum)
                    cmin = min(cmin, cum)
                sd = math.sqrt(ss / lag)
                if sd > 0.0:
                    acc += (cmax - cmin) / sd
                    used += 1
            if used > 0 and acc > 0.0:
                logl[m] = math.log(lag)
                logrs[m] = math.log(acc / used)
                m += 1
        if m < 2:
            out[col] = np.nan
            continue
        mx = 0.0
        my = 0.0
        for i in range(m):
            mx += logl[i]
            my += logrs[i]
        mx /= m
        my /= m
        sxy = 0.0
        sxx = 0.0
        for i in range(m):
            sxy += (logl[i] - mx) * (logrs[i] - my)
            sxx += (logl[i] - mx) ** 2
        out[col] = sxy / sxx
    return out


def hurst_lags(n_bars: int) -> np.ndarray:
    """The R/S lags used for a series of ``n_bars``: 8, 16, …, 512 with lag ≤ n_bars / 2."""
    return np.array([lag for lag in HURST_LAGS if lag <= n_bars // 2], dtype=np.int64)


def hurst_rs(returns: np.ndarray) -> np.ndarray:
    """Hurst exponent by rescaled range, shape ``(N,)``; NaN when T < 32 or < 2 usable lags."""
    x = as_matrix(returns)
    if x.shape[0] < HURST_MIN_BARS:
        return np.full(x.shape[1], np.nan)
    return _hurst_kernel(x, hurst_lags(x.shape[0]))


def hurst_clean(h: np.ndarray) -> np.ndarray:
    """clip(1 − 2|H − 0.5|, 0, 1): 1 at H = 0.5, 0 at H ∈ {0, 1}; NaN stays NaN."""
    return np.clip(1.0 - 2.0 * np.abs(np.asarray(h, dtype=np.float64) - 0.5), 0.0, 1.0)


# ----------------------------------------------------------------------------- regime helpers


def haar_turbulence(series: np.ndarray, window: int = 64, levels: int = 3) -> float:
    """Share of energy in the Haar detail coefficients of the last ``window`` bars ∈ [0, 1].

    The tail is truncated (oldest bars dropped) to a multiple of 2^levels; NaN if that leaves
    no bars or the energy is zero.
    """
    x = np.asarray(series, dtype=np.float64).ravel()[-window:]
    block = 2**levels
    usable = (x.shape[0] // block) * block
    if usable == 0:
        return float("nan")
    a = x[x.shape[0] - usable :]
    detail = 0.0
    for _ in range(levels):
        even, odd = a[0::2], a[1::2]
        detail += float(np.sum(((even - odd) / math.sqrt(2.0)) ** 2))
        a = (even + odd) / math.sqrt(2.0)
    total = detail + float(np.sum(a * a))
    if not total > 0.0:
        return float("nan")
    return detail / total


# MacKinnon (2010) response surface, constant-only ADF, one series (N = 1); the same
# coefficients statsmodels uses in tsa/adfvalues.py.
_TAU_MAX_C = 2.74
_TAU_MIN_C = -18.83
_TAU_STAR_C = -1.61
_TAU_SMALLP_C = (2.1659, 1.4412, 0.038269)
_TAU_LARGEP_C = (1.7339, 0.93202, -0.12745, -0.010368)


def mackinnon_pvalue_c(stat: float) -> float:
    """Approximate p-value of an ADF t-statistic (constant, no trend, N = 1)."""
    if not math.isfinite(stat):
        return float("nan")
    if stat > _TAU_MAX_C:
        return 1.0
    if stat < _TAU_MIN_C:
        return 0.0
    coef = _TAU_SMALLP_C if stat <= _TAU_STAR_C else _TAU_LARGEP_C
    z = sum(c * stat**k for k, c in enumerate(coef))
    return float(ndtr(z))


@dataclass(frozen=True)
class AdfResult:
    """ADF test outcome: t-statistic of γ, MacKinnon p-value, lag order and observations used."""

    stat: float
    pvalue: float
    usedlag: int
    nobs: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ols_ssr_t0(y: np.ndarray, x: np.ndarray, want_t: bool) -> tuple[float, float]:
    q, r = np.linalg.qr(x)
    diag = np.abs(np.diag(r))
    if not diag.min() > 1e-10 * diag.max():
        return float("nan"), float("nan")  # collinear design: the regression is degenerate
    beta = solve_triangular(r, q.T @ y)
    resid = y - x @ beta
    ssr = float(resid @ resid)
    if not want_t:
        return ssr, float("nan")
    dof = x.shape[0] - x.shape[1]
    # Var(beta_0) = s² (R⁻¹R⁻ᵀ)_00 = s² |row 0 of R⁻¹|², that row from one solve with Rᵀ
    e0 = np.zeros(r.shape[0])
    e0[0] = 1.0
    row0 = solve_triangular(r, e0, trans="T")
    var0 = ssr / dof * float(row0 @ row0)
    return ssr, float(beta[0] / math.sqrt(var0)) if var0 > 0 else float("nan")


def _adf_design(y: np.ndarray, dy: np.ndarray, lag: int, nobs: int) -> np.ndarray:
    # Columns: level y_{t-1}, Δy_{t-1..t-lag}, constant — the level first so t(γ) is index 0.
    t = dy.shape[0]
    cols = [y[t - nobs : t]]
    for i in range(1, lag + 1):
        cols.append(dy[t - nobs - i : t - i])
    cols.append(np.ones(nobs))
    return np.column_stack(cols)


def adf_test(series: np.ndarray, maxlag: int | None = None) -> AdfResult:
    """Augmented Dickey–Fuller test with a constant and AIC lag selection (see module doc).

    series: shape ``(T,)``. Returns NaN statistic / p-value for a constant or too-short series.
    """
    y = np.asarray(series, dtype=np.float64).ravel()
    n = y.shape[0]
    nan = AdfResult(float("nan"), float("nan"), 0, 0)
    if n < 8 or not np.all(np.isfinite(y)) or y.max() == y.min():
        return nan
    cap = n // 2 - 2
    if maxlag is None:
        maxlag = min(cap, math.ceil(12.0 * (n / 100.0) ** 0.25))
    elif maxlag > cap:
        raise ValueError(f"maxlag must be <= T//2 - 2 = {cap}, got {maxlag}")
    if maxlag < 0:
        return nan
    dy = np.diff(y)
    t = dy.shape[0]
    nobs = t - maxlag
    target = dy[t - nobs :]
    # The regressions of every lag on the same sample are nested: with the columns ordered
    # level, constant, Δy lags 1..maxlag, one QR serves them all. With z = Q'y, the first k
    # columns leave SSR_k = SSR_full + Σ_{i>=k} z_i² (no refit per lag, no cancellation).
    full = _adf_design(y, dy, maxlag, nobs)
    x = np.column_stack([full[:, 0], full[:, -1], full[:, 1:-1]])
    q, r = np.linalg.qr(x)
    z = q.T @ target
    resid = target - q @ z
    z2 = np.append(z * z, 0.0)
    tail = float(resid @ resid) + np.cumsum(z2[::-1])[::-1]  # tail[k]: SSR of k columns
    diag = np.abs(np.diag(r))
    best = (math.inf, 0)
    for lag in range(maxlag + 1):
        k = 2 + lag
        ssr = float(tail[k])
        if not diag[:k].min() > 1e-10 * diag[:k].max() or not ssr > 0.0:
            return nan  # collinear or a perfect fit: no test statistic exists
        aic = nobs * (math.log(2 * math.pi) + math.log(ssr / nobs) + 1.0) + 2 * k
        best = min(best, (aic, lag))
    lag = best[1]
    nobs = t - lag
    x = _adf_design(y, dy, lag, nobs)
    _, stat = _ols_ssr_t0(dy[t - nobs :], x, want_t=True)
    return AdfResult(stat, mackinnon_pvalue_c(stat), lag, nobs)


def adf_pvalue(series: np.ndarray) -> float:
    """MacKinnon p-value of the ADF test (constant, AIC autolag); NaN if undefined."""
    return adf_test(series).pvalue
