"""The "Protocol study" section of ``table1.md`` (issue #19, part 4), written from
``protocol_study.json`` alone (:mod:`td_analysis.pipelines.protocol_study` runs the study and
writes it)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["REGULARISERS", "BLOCKS", "TABLE_KEYS", "paper_number", "study_markdown"]

REGULARISERS = ("none", "targeted-weight")
BLOCKS = ("kept_kept", "kept_pruned", "pruned_pruned")
TABLE_KEYS = ("abs_estimate", "abs_measured", "accuracy", "pruned_accuracy")


def paper_number(paper: Mapping, reg: str, key: str, scale: str = "drawn") -> float:
    """The paper's ``key`` for ``reg`` from ``paper`` (``{"table1", "drawn", "issue_shares"}``,
    the JSON's ``"paper"``): a share ``share_<block>`` of |C| in Figure 1's block as the published
    image draws it (``scale="drawn"``; any other scale: as issue #19 quotes it), else Table 1's
    number (``abs_*`` → |ΔE|, ``accuracy`` → the unpruned accuracy)."""
    if key.startswith("share_"):
        i = BLOCKS.index(key[6:])
        shares = paper["drawn"][reg]["shares"] if scale == "drawn" else paper["issue_shares"][reg]
        return shares[i]
    key = "abs_delta_e" if key.startswith("abs_") else key
    return paper["table1"][reg]["unpruned_accuracy" if key == "accuracy" else key]


def study_markdown(study: Mapping) -> str:
    """The "Protocol study" section of ``table1.md``, from ``protocol_study.json`` alone (the
    paper's numbers too: its ``"paper"``)."""
    means, v, prot, paper = study["means"], study["verdict"], list(study["means"]), study["paper"]
    scale = study["published_scale"]
    names = {"none": "none", "targeted-weight": "targeted dropout"}
    keys = (*TABLE_KEYS, *(f"share_{b}" for b in BLOCKS))
    lines = [
        "## Protocol study\n",
        f"Made by `{study['command']}` (`protocol_study.json`), seeds "
        f"{', '.join(map(str, study['seeds']))}, holdout split: means over seeds of Table 1's "
        "numbers and Figure 1's shares of |C| in the kept×kept, kept×pruned, pruned×pruned blocks "
        f"as drawn at ±{scale['vmax']:.0f} in {scale['colours']} colours (paper: its images).",
        "",
        "| regularisation | protocol | abs(ΔE) estimate | measured abs(ΔE) | unpruned | pruned "
        "| share kk | share kp | share pp | closest on |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for reg in REGULARISERS:
        for p in [*prot, "paper"]:
            x = [
                paper_number(paper, reg, k) if p == "paper" else means[p][f"{reg}.{k}"]
                for k in keys
            ]
            won = sum(b == p and k.startswith(f"{reg}.") for k, b in v["best"].items())
            cells = [f"{x[0]:.4f}", f"{x[1]:.4f}", f"{x[2]:.2%}", f"{x[3]:.2%}"]
            cells += [f"{c:.3f}" for c in x[4:]] + ["" if p == "paper" else str(won)]
            lines.append(f"| {names[reg]} | {p} | " + " | ".join(cells) + " |")
    wins = ", ".join(f"{p} {v['wins'][p]}" for p in prot)
    share = ", ".join(f"{p} {d:.3f}" for p, d in study["mean_share_distance"].items())
    top, k = v["wins"][v["closest"][0]], v["numbers"]
    closer = ", ".join(f"{p} {v['closer_than'][p][prot[0]]}" for p in prot[1:])
    beats = " and ".join(v["beats_all"]) or "No protocol"
    lines += [
        "",
        f"Closest to the paper: **{' and '.join(v['closest'])}**, the smallest |ours − paper| on "
        f"{top} of the {k} numbers ({'a' if 2 * top > k else 'not a'} majority; wins: {wins}). "
        f"Closer than {prot[0]} on how many of the {k}: {closer}. {beats} is closer than every "
        f"other protocol on most of the {k}. Mean distance over the six shares: {share}.",
        "",
    ]
    n = study["delta_e_normalisation"]
    rows = [n["rows"][reg] for reg in REGULARISERS]

    def each(f) -> str:  # "x (none) and y (targeted dropout)"
        return " and ".join(f"{f(r)} ({names[g]})" for r, g in zip(rows, REGULARISERS, strict=True))

    def spread(d: Mapping, fmt: str) -> str:
        return f"{d['median']:{fmt}} ({d['min']:{fmt}}–{d['max']:{fmt}})"

    paper = each(lambda r: format(r["paper_half_pp"], ".1f"))
    ours = each(lambda r: format(r["ours_half_pp"]["median"], ".1f"))
    drawn = each(lambda r: format(r["drawn_over_own"]["median"], ".0%"))
    literal = each(lambda r: format(r["literal_n"], ","))
    q, implied = (
        each(lambda r: spread(r["q_table1"], ".3f")),
        each(lambda r: spread(r["implied_n"], ",.0f")),
    )
    fits = each(lambda r: ", ".join(f"{c:,}" for c in r["fits"]) or "no candidate")
    both = ", ".join(f"{c:,}" for c in n["fits_both"])
    end = f"N = {both} fits both rows." if both else "No candidate fits both rows."
    lines.append(
        "|ΔE| scale. Eq. (3) makes Table 1's |ΔE| ½Σ of Figure 1's lower-right block. The "
        f"published images give ½Σ = {paper}; ours, C summed over our {rows[0]['n_ours']:,} "
        f"holdout images, {ours} (medians over protocols and seeds; a drawing at the published "
        f"scale shows {drawn} of it). Read literally (|ΔE| = ½Σ/N), Table 1 needs N = {literal}. "
        f"Our networks give q = ½Σ/(N·|ΔE|) = {q}; the paper's numbers, computed as ours, then "
        f"imply N = {implied}, which holds {fits} of the candidates "
        f"{', '.join(f'{c:,}' for c in n['candidates'])}. {end}"
    )
    return "\n".join([*lines, ""])
