"""Aggregate metrics with stratified-bootstrap confidence intervals (rliable), on `load.SuiteScores` arrays.

Everything aggregates over runs (seeds) and target tasks together, as rliable does (Agarwal et al., 2021):
IQM = the 25%-trimmed mean of all run x task scores at a point, mean = their plain mean. Intervals are 95%
percentile intervals of rliable's stratified bootstrap (runs resampled within each task; a drawn run brings its whole
curve: `estimate_suite`).

rliable draws its resamples from numpy's *global* RNG (`StratifiedBootstrap.update_indices`), so every
estimate here seeds `np.random` first: the same inputs and seed give the same intervals.

To keep a report fast, each (suite, method) is bootstrapped once with a function that returns all its
statistics packed in one vector (`_Pack`): the IQM and mean curves, the final and area-under-curve scores
and the episodes the IQM curve needs to reach the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rliable import library as rly

from analysis.load import SuiteScores, check_scores


def iqm(scores: np.ndarray) -> np.ndarray:
    """rliable's `metrics.aggregate_iqm` (scipy's 25% `trim_mean` over runs x tasks) for every trailing index.

    The same arithmetic as scipy.stats.trim_mean (sort, cut int(0.25 n) values at each end, average the rest),
    written out in numpy because scipy's per-call overhead (~0.5 ms) dominates thousands of bootstrap
    resamples; tests check it equals `metrics.aggregate_iqm` point by point."""
    flat = np.sort(scores.reshape(scores.shape[0] * scores.shape[1], -1), axis=0)
    cut = int(0.25 * flat.shape[0])
    return flat[cut:flat.shape[0] - cut].mean(axis=0).reshape(scores.shape[2:])


def mean(scores: np.ndarray) -> np.ndarray:
    """rliable's `metrics.aggregate_mean` (mean over runs and tasks) for every trailing index at once."""
    return scores.mean(axis=(0, 1))


def seed_numpy(seed: int) -> None:
    # rliable's bootstrap ignores random_state for its resampling indices: it calls np.random.choice.
    np.random.seed(seed)


# --- per-(run, task) summaries of a curve --------------------------------------------------------------------
def final_scores(scores: np.ndarray) -> np.ndarray:
    """(runs, tasks): the score at the last point of the episode grid."""
    return scores[..., -1]


def auc_scores(scores: np.ndarray, episodes: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """(runs, tasks): the area under each step curve over `window` divided by its width = the mean score over it.

    Curves are step functions (each evaluation holds until the next, see load.py), so the integral is exact.
    Dividing by the width keeps the metric's units (success rate / subtasks) and makes methods comparable on
    a common window even when their episode budgets differ."""
    lo, hi = window
    if not (episodes[0] <= lo < hi):
        raise ValueError(f"AUC window {window} starts before the episode grid's first point {episodes[0]}")
    edges = np.clip(np.append(episodes, np.inf), lo, hi)
    widths = np.diff(edges)  # time each evaluation's value holds inside the window
    return (scores * widths).sum(axis=-1) / (hi - lo)


def episodes_to_threshold(curve: np.ndarray, episodes: np.ndarray, threshold: float, not_reached: float) -> float:
    """The first grid episode at which an aggregate `curve` reaches `threshold`, else `not_reached`."""
    hit = np.nonzero(curve >= threshold)[0]
    return float(episodes[hit[0]]) if hit.size else not_reached


def common_auc_window(data: SuiteScores) -> tuple[float, float]:
    """The episodes every method's grid covers: [latest first point, earliest last point]."""
    lo = max(float(e[0]) for e in data.episodes.values())
    hi = min(float(e[-1]) for e in data.episodes.values())
    if hi <= lo:  # degenerate (a single evaluation point): the last evaluation holds for one episode
        hi = lo + 1.0
    return lo, hi


# --- all statistics of one method in one bootstrap ------------------------------------------------------------
@dataclass(frozen=True)
class _Pack:
    """Layout of the packed statistic vector of one method."""

    num_points: int

    def slices(self) -> dict[str, slice]:
        p = self.num_points
        names = ["iqm_curve", "mean_curve", "final_iqm", "final_mean", "auc_iqm", "auc_mean", "threshold_episodes"]
        sizes = [p, p, 1, 1, 1, 1, 1]
        bounds = np.cumsum([0] + sizes)
        return {n: slice(int(a), int(b)) for n, a, b in zip(names, bounds[:-1], bounds[1:])}


@dataclass
class Estimate:
    """A point estimate and its 95% interval (lower, upper)."""

    point: np.ndarray | float
    lower: np.ndarray | float
    upper: np.ndarray | float


@dataclass
class MethodEstimates:
    episodes: np.ndarray
    num_runs: int
    iqm_curve: Estimate
    mean_curve: Estimate
    final_iqm: Estimate
    final_mean: Estimate
    auc_iqm: Estimate
    auc_mean: Estimate
    threshold_episodes: Estimate  # values >= not_reached mean "not reached within the budget"
    not_reached: float


@dataclass
class SuiteEstimates:
    data: SuiteScores
    methods: dict[str, MethodEstimates]
    auc_window: tuple[float, float]
    threshold: float  # in the metric's units (fraction x max_score)
    poi: dict[str, Estimate]  # baseline -> P(simpl > baseline) on final scores
    profile_taus: np.ndarray
    profiles: dict[str, Estimate]  # method -> fraction of runs x tasks with final score > tau


def estimate_suite(data: SuiteScores, reps: int = 2000, seed: int = 0, threshold_fraction: float = 0.8,
                   reference: str = "simpl") -> SuiteEstimates:
    """Every number of the report for one suite: curves, final, AUC, threshold, P(improvement), profiles."""
    window = common_auc_window(data)
    threshold = threshold_fraction * data.max_score
    methods = {}
    for i, method in enumerate(data.methods):
        scores, episodes = data.scores[method], data.episodes[method]
        check_scores(scores, len(data.seeds[method]), len(data.tasks))
        not_reached = float(episodes[-1]) + 1e9  # a finite stand-in keeps bootstrap percentiles finite
        pack = _Pack(scores.shape[-1])

        def packed(x: np.ndarray, episodes=episodes, not_reached=not_reached) -> np.ndarray:
            # (runs, tasks, points + 2): the curve, then the final and the AUC score of each run x task
            per_run = np.concatenate([x, final_scores(x)[..., None], auc_scores(x, episodes, window)[..., None]], -1)
            iqms, means = iqm(per_run), mean(per_run)
            p = x.shape[-1]
            return np.concatenate([iqms[:p], means[:p], [iqms[p], means[p], iqms[p + 1], means[p + 1],
                                   episodes_to_threshold(iqms[:p], episodes, threshold, not_reached)]])

        # rliable's StratifiedBootstrap draws one run index per array element: given (runs, tasks, points) it would
        # build each resampled curve point by point from different runs, and a whole-curve statistic (AUC, episodes
        # to the threshold) would get intervals too narrow (about half as wide on real curves, up to sqrt(points)
        # times on flat ones). So the bootstrap runs over the (runs, tasks) array of run numbers, and the statistic
        # gathers each drawn run's whole curve for that task.
        runs = np.repeat(np.arange(scores.shape[0], dtype=float)[:, None], scores.shape[1], axis=1)

        def packed_runs(run_ids: np.ndarray, scores=scores, packed=packed,
                        tasks=np.arange(scores.shape[1])[None, :]) -> np.ndarray:
            return packed(scores[run_ids.astype(int), tasks])

        seed_numpy(seed + i)
        points, intervals = rly.get_interval_estimates({method: runs}, packed_runs, reps=reps)
        point, (lower, upper) = points[method], intervals[method]
        fields = {name: Estimate(_squeeze(point[s]), _squeeze(lower[s]), _squeeze(upper[s]))
                  for name, s in pack.slices().items()}
        methods[method] = MethodEstimates(episodes=episodes, num_runs=scores.shape[0], not_reached=not_reached,
                                          **fields)
    poi = probability_of_improvement(data, reference, reps=reps, seed=seed)
    taus = np.linspace(0.0, data.max_score, 41)
    profiles = performance_profiles(data, taus, reps=reps, seed=seed)
    return SuiteEstimates(data=data, methods=methods, auc_window=window, threshold=threshold, poi=poi,
                          profile_taus=taus, profiles=profiles)


def _squeeze(x: np.ndarray) -> np.ndarray | float:
    return float(x[0]) if x.shape == (1,) else x


def probability_of_improvement(data: SuiteScores, reference: str = "simpl", reps: int = 2000,
                               seed: int = 0) -> dict[str, Estimate]:
    """rliable's P(reference > baseline) on final scores, for every other method (empty if no reference)."""
    if reference not in data.scores:
        return {}
    pairs = {f"{reference},{m}": (final_scores(data.scores[reference]), final_scores(data.scores[m]))
             for m in data.methods if m != reference}
    if not pairs:
        return {}
    seed_numpy(seed)
    points, intervals = rly.get_interval_estimates(pairs, lambda x, y: np.array([poi(x, y)]), reps=reps)
    return {key.split(",", 1)[1]: Estimate(float(points[key][0]), float(intervals[key][0, 0]),
                                            float(intervals[key][1, 0])) for key in pairs}


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rliable's default profile (fraction of all run x task scores > tau), vectorised over taus."""
    return (scores.reshape(-1, 1) > np.asarray(taus)[None, :]).mean(axis=0)


def poi(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's `metrics.probability_of_improvement`: P(X > Y) + P(X = Y) / 2 per task, averaged over tasks.

    That is the Mann-Whitney U statistic over run pairs divided by num_runs_x * num_runs_y, which rliable gets
    from scipy.stats.mannwhitneyu one task at a time; counted over all pairs at once here for speed (tests
    check it equals rliable's)."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]  # (runs_x, runs_y, tasks)
    return float(((x > y) + 0.5 * (x == y)).mean(axis=(0, 1)).mean())


def performance_profiles(data: SuiteScores, taus: np.ndarray, reps: int = 2000, seed: int = 0) -> dict[str, Estimate]:
    """rliable score distributions of final scores: fraction of runs x tasks scoring above each tau."""
    seed_numpy(seed)  # create_performance_profile takes no random_state at all
    finals = {m: final_scores(s) for m, s in data.scores.items()}
    profiles, cis = rly.create_performance_profile(finals, taus, reps=reps, custom_profile_func=score_distribution)
    return {m: Estimate(profiles[m], cis[m][0], cis[m][1]) for m in finals}
