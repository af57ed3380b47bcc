"""Every number in the committed reports comes from the JSON next to it.

``figures/table1.md``, ``figures/fashion_mlp/pruning.md``, ``figures/README.md``,
``figures/fashion_mlp/README.md`` and the Results section of ``README.md`` are parsed for numbers;
each must equal, to its printed precision, a value computed *here* from the committed JSON
(``table1.json``, ``fashion_mlp/pruning.json``, ``summary.json``, ``taylor.json``,
``coadaptation.json``): a leaf of the JSON, a mean or sample std over seeds, a paired difference or
its ``scipy.stats.ttest_rel`` 95% interval, a ratio, a duration.  The few numbers that describe
the method rather than a result (a network width, an issue number, a colour limit) are listed per
file with the reason.  Then the sentences: every "X ± H points more/less" claim has an interval
that excludes zero, every "no difference" one an interval that holds zero.
"""

from __future__ import annotations

import json
import math
import re
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
FIG = ROOT / "figures"
FASHION = FIG / "fashion_mlp"
RESNET = FIG / "resnet_cifar10"
NUMBER = re.compile(
    r"(?<![\w.\-−])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])"
)
DURATION = re.compile(r"(\d+) min (\d+) s")

# small integers are counts and labels everywhere (Figure 1, 3 seeds, top-5, 2 cores, ½ …)
SMALL = set(range(13))
# numbers that describe the method, not a result, per file (with where they come from)
METHOD = {
    "table1.md": {
        1000: "test_batch rebuilt from image 1000 on",
        9999: "… to 9999",
        95: "95% intervals (the level, statistics.LEVEL)",
    },
    "README.md": {
        784: "the seed's MLP widths (also in summary.json's network text)",
        0.001: "Adam lr 1e-3 (task fashion-mlp)",
        128: "batch 128 (task fashion-mlp)",
        255: "inputs / 255",
        30: "the 30-minute budget of issue #11",
        100: "the seed's 100 epochs",
        32: "of batch 32",
        0.5: "γ = α = 0.5 of the fashion task",
        19: "issue #19",
        11: "issue #11",
        95: "95% intervals",
        20: "the fashion-mlp default protocol's 20 epochs (task fashion-mlp)",
        34: "networks of the default fashion-mlp grid: 5 × 5 with biases, 3 × 3 without",
        60: "the protocol study's 60-epoch protocols (protocol_study.PROTOCOLS)",
        22: "issue 22",
        10000: "the CIFAR-10 test split's 10,000 images",
        0.01: "the toy task's 'sgd' protocol: lr 0.01 (task toy)",
        0.9: "… momentum 0.9 (task toy)",
        999: "../shared/data/README.md: test images 0–999 exact",
        9999: "… 1,000–9,999 decoded from JPEG copies",
    },
    "figures/README.md": {
        3000: "the published colour bar ±3000",
        30820: "3072·10 + 10·10 weights of the toy network",
        2000: "spectra on the first 2,000 holdout images (spectra settings)",
        25: "the top-left 25 × 25 block (25% kept)",
        32: "explorer screenshot: 32 × 32 blocks",
        31: "… columns 8–31",
        1e-6: "Lanczos tolerance",
        2.39: "the MLP's 2.39 M weights",
        100: "100 hidden→output weights",
        40: "40 random deletions (settings.random_masks)",
        95: "pruning fractions 5–95%",
        0.75: "γ = 0.75",
        0.5: "α = 0.5",
        1e-4: "L1 λ = 1e-4",
        0.01: "SGD lr 0.01",
        0.9: "momentum 0.9",
        128: "batch 128 / 128 bins",
        40000: "the 40,000-image train split",
        10000: "10,000-image splits",
        55: "the published image's diagonal reaches index 55 (REFERENCE.md)",
        0.375: "γ·α",
        19: "issue #19",
        22: "issue 22",
    },
    "figures/fashion_mlp/README.md": {100: "k = 100·γ"},
    "resnet_cifar10/pruning.md": {1: "seed 001 slides", 95: "95% t interval"},
    "resnet_cifar10/README.md": {
        22: "issue 22",
        95: "95% intervals",
        999: "../shared/data/README.md: test images 0–999 exact",
        1000: "… 1,000–9,999 decoded from JPEG copies",
        9999: "… to 9,999",
    },
    "pruning.md": {95: "95% intervals", 1000: "MLP widths", 500: "MLP widths", 200: "MLP widths"},
}


def load(path: Path):
    return json.loads(path.read_text())


def leaves(obj) -> list[float]:
    """Every number of a JSON document, also those inside its strings."""
    out: list[float] = []
    if isinstance(obj, bool):
        return out
    if isinstance(obj, int | float):
        return [float(obj)] if math.isfinite(obj) else []
    if isinstance(obj, str):
        return [parse(m.group(0)) for m in NUMBER.finditer(obj)]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            out += leaves(v)
        if obj and all(isinstance(v, int | float) and not isinstance(v, bool) for v in obj):
            a = np.asarray(obj, float)
            out += [float(a.mean())] + ([float(a.std(ddof=1))] if a.size > 1 else [])
    return out


def parse(token: str) -> float:
    return float(token.replace(",", "").replace("−", "-"))


def decimals(token: str) -> int:
    mant = token.split("e")[0]
    return len(mant.split(".")[1]) if "." in mant else 0


def ttest(a, b) -> list[float]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    if np.all(d == d[0]):
        return [float(d.mean())]
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    return [float(d.mean()), float(ci.low), float(ci.high), float((ci.high - ci.low) / 2)]


def toy_candidates(t: dict) -> list[float]:
    c = leaves(t)
    s = t["settings"]
    c += [s["gamma"] * s["alpha"], t["seconds"], len(s["seeds"])]
    nets = {(r["regulariser"], r["seed"]) for r in t.get("pruning_curves", [])}
    c += [len(nets), len({r for r, _ in nets})]
    for p in t["paper_table1"].values():
        c.append(p["unpruned_accuracy"] - p["pruned_accuracy"])
    p = t["paper_table1"]
    c.append(p["none"]["abs_delta_e"] / p["targeted-weight"]["abs_delta_e"])
    for rows in t["table1"].values():
        lost = {r: np.subtract(v["accuracy"], v["pruned_accuracy"]) for r, v in rows.items()}
        for v in lost.values():
            c += [float(v.mean()), float(v.std(ddof=1))]
        for key in ("abs_estimate", "abs_measured"):
            c.append(np.mean(rows["none"][key]) / np.mean(rows["targeted-weight"][key]))
        for b in rows:
            if b == "targeted-weight":
                continue
            td, other = rows["targeted-weight"], rows[b]
            for key in ("accuracy", "pruned_accuracy", "abs_measured"):
                c += ttest(td[key], other[key])
            c += ttest(lost["targeted-weight"], lost[b])
        rel = [
            abs(e - m) / abs(m)
            for v in rows.values()
            for e, m in zip(v["abs_estimate"], v["abs_measured"], strict=True)
        ]
        c.append(max(rel))
    for blocks in t["figure1_set_pruning_mean_loss"].values():
        halves = [0.5 * b["pruned_pruned"] for b in blocks]
        c += [float(np.mean(halves)), float(np.std(halves, ddof=1))]
        n_out = s["base"]["num_classes"]
        c += [
            blocks[0]["n_pruned"] // n_out,
            (blocks[0]["n_pruned"] + blocks[0]["n_kept"]) // n_out,
        ]
        c.append(blocks[0]["n_pruned"] + blocks[0]["n_kept"])
    return c


def fashion_candidates(records: list[dict], summary: dict) -> list[float]:
    c = leaves(summary) + [summary["seconds"] / 60]
    groups: dict[tuple, dict[int, float]] = {}
    for r in records:
        key = (r["regulariser"], bool(r["bias"]), r["kind"], float(r["k"]))
        groups.setdefault(key, {})[int(r["seed"])] = r["accuracy"]
    for key, by_seed in groups.items():
        a = np.asarray(list(by_seed.values()), float)
        c += [float(a.mean())] + ([float(a.std(ddof=1))] if a.size > 1 else [])
        # each regulariser − none; each targeted kind − each control (dropout, DropConnect)
        bases = [] if key[0] == "none" else ["none"]
        if key[0].startswith("targeted"):
            bases += ["dropout", "dropconnect"]
        for b in bases:
            base = groups.get((b, *key[1:]), {})
            seeds = sorted(set(by_seed) & set(base))
            if len(seeds) > 1:
                c += ttest([by_seed[s] for s in seeds], [base[s] for s in seeds])
    for n in {len(v) for v in groups.values()} | {len({r["seed"] for r in records})}:
        if n > 1:
            c += [float(stats.t.ppf(0.975, n - 1)), n - 1]
    c += sorted({float(r["k"]) for r in records})
    rho = [r["estimate"] for r in summary["rank_correlations"] if r["kind"] == "all"]
    c += [min(rho), max(rho)]
    return c


def resnet_candidates(records: list[dict], summary: dict, paper: dict) -> list[float]:
    """Every number the ResNet reports may print: the settings and timings of ``summary.json``,
    the paper's tables, mean and std per (regulariser, reading, kind, k), and every targeted
    reading minus each baseline (none, dropout) of the same seed, kind and k."""
    c = leaves(summary) + leaves(paper) + [summary["seconds"] / 60]
    # the networks' whole training time (hours), summed over every epoch of every network
    epochs = [h["seconds"] for n in summary.get("networks", []) for h in n.get("history", [])]
    c += [sum(epochs) / 3600, len(summary.get("networks", []))]
    # unpruned accuracy by evaluation split: mean and std per (regulariser, split), and the
    # paired differences over every network (test-exact − test, holdout − test-exact)
    by: dict[tuple, dict[tuple, float]] = {}
    for r in summary.get("split_accuracy", []):
        by.setdefault((r["regulariser"], r["split"]), {})[(r["regulariser"], r["seed"])] = r[
            "accuracy"
        ]
        c.append(r["n"] - 1)
    for v in by.values():
        a = np.asarray(list(v.values()), float)
        c += [float(a.mean())] + ([float(a.std(ddof=1))] if a.size > 1 else [])
    for a_split, b_split in (("test-exact", "test"), ("holdout", "test-exact")):
        a = {k: v for (_, sp), d in by.items() if sp == a_split for k, v in d.items()}
        b = {k: v for (_, sp), d in by.items() if sp == b_split for k, v in d.items()}
        nets = sorted(set(a) & set(b))
        if len(nets) > 1:
            c += ttest([a[n] for n in nets], [b[n] for n in nets])
    groups: dict[tuple, dict[int, float]] = {}
    for r in records:
        key = (r["regulariser"], r["reading"], r["kind"], float(r["k"]))
        groups.setdefault(key, {})[int(r["seed"])] = r["accuracy"]
    for (reg, _reading, kind, k), by_seed in groups.items():
        a = np.asarray(list(by_seed.values()), float)
        c += [float(a.mean())] + ([float(a.std(ddof=1))] if a.size > 1 else [])
        if not reg.startswith("targeted"):
            continue
        for b in ("none", "dropout"):
            base = groups.get((b, "trained", kind, k), {})
            seeds = sorted(set(by_seed) & set(base))
            if len(seeds) > 1:
                c += ttest([by_seed[s] for s in seeds], [base[s] for s in seeds])
    c += sorted({float(r["k"]) for r in records})
    return c


def length_pairs(records: list[dict]) -> dict[tuple, tuple[list[float], list[float]]]:
    """The training-length comparisons, by seed: (reg, kind, k, "long-short") → (200-epoch
    accuracies, 20-epoch ones), and ("td-none", kind, k) at the longest training."""
    acc: dict[tuple, dict[int, float]] = {}
    for r in records:
        acc.setdefault((r["regulariser"], r["kind"], float(r["k"]), r["epochs"]), {})[r["seed"]] = (
            r["accuracy"]
        )
    epochs = sorted({r["epochs"] for r in records})
    lo, hi = epochs[0], epochs[-1]
    out = {}
    for reg, kind, k, e in acc:
        if e == hi:
            seeds = sorted(acc[(reg, kind, k, hi)])
            out[(reg, kind, k, "long-short")] = (
                [acc[(reg, kind, k, hi)][s] for s in seeds],
                [acc[(reg, kind, k, lo)][s] for s in seeds],
            )
            if reg == "targeted-weight":
                out[("td-none", kind, k)] = (
                    [acc[(reg, kind, k, hi)][s] for s in seeds],
                    [acc[("none", kind, k, hi)][s] for s in seeds],
                )
    return out


def _length_acc(records: list[dict]) -> dict[tuple, dict[int, float]]:
    """(protocol, regulariser, kind, k, epochs) → {seed: accuracy}."""
    acc: dict[tuple, dict[int, float]] = {}
    for r in records:
        key = (r.get("protocol", "default"), r["regulariser"], r["kind"], float(r["k"]))
        acc.setdefault((*key, int(r["epochs"])), {})[int(r["seed"])] = r["accuracy"]
    return acc


def _paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    seeds = sorted(set(a) & set(b))
    return ttest([a[s] for s in seeds], [b[s] for s in seeds]) if len(seeds) > 1 else []


def fashion_length_candidates(study: dict) -> list[float]:
    """Every number the fashion training-length tables and sentences may print, recomputed
    here, per protocol: mean and std per (regulariser, epochs, kind, k), their seed counts, each
    length minus the one before it, paired by seed; for a further protocol, it minus the
    default protocol at the same length, and targeted weight dropout minus none."""
    c = leaves({k: v for k, v in study.items() if k != "records"})
    c += sorted({int(r["batch_size"]) for r in study["records"]})
    acc = _length_acc(study["records"])
    for v in acc.values():
        a = np.asarray(list(v.values()), float)
        c += [float(a.mean()), len(a)] + ([float(a.std(ddof=1))] if a.size > 1 else [])
    for proto in {key[0] for key in acc}:
        epochs = sorted({key[-1] for key in acc if key[0] == proto})
        c += epochs
        for _, reg, kind, k, e in (key for key in acc if key[0] == proto):
            if e != epochs[0]:
                prev = epochs[epochs.index(e) - 1]
                c += _paired(
                    acc[(proto, reg, kind, k, e)], acc.get((proto, reg, kind, k, prev), {})
                )
            if proto != "default":
                ref = acc.get(("default", reg, kind, k, e), {})
                c += _paired(acc[(proto, reg, kind, k, e)], ref)
                none = acc.get((proto, "none", kind, k, e), {})
                c += _paired(acc[(proto, reg, kind, k, e)], none)
        if proto != "default":
            continue
        # per step: how many (regulariser, panel) differences exist and leave zero out
        panels = {("weight", 0.0), ("weight", 90.0), ("unit", 50.0)}
        for short, long in zip(epochs[:-1], epochs[1:], strict=True):
            n = moved = 0
            for _, reg, kind, k, e in (key for key in acc if key[0] == proto):
                if e != long or (kind, k) not in panels:
                    continue
                d = _paired(
                    acc[(proto, reg, kind, k, long)], acc.get((proto, reg, kind, k, short), {})
                )
                if not d:
                    continue
                n += 1
                moved += len(d) > 1 and (d[1] > 0 or d[2] < 0) or (len(d) == 1 and d[0] != 0)
            c += [n, moved]
    return c


def explained(token: str, pool: np.ndarray, method: dict, percent: bool = False) -> bool:
    """``token`` equals a pool value (or 100× one) to its printed precision; an integer that is
    not a rounded percentage must match exactly (a count, a size, a setting)."""
    x = abs(parse(token))
    if x in SMALL and "." not in token:
        return True
    if any(math.isclose(x, m, rel_tol=1e-12) for m in method):
        return True
    tol = 0.5 * 10.0 ** -decimals(token) * 1.001 + 1e-12
    if "e" in token:
        tol = abs(x) * 1e-9
    elif "." not in token and not percent:
        tol = 1e-9 * max(1.0, x)
    return bool(
        np.any(np.abs(np.abs(pool) - x) <= tol) or np.any(np.abs(100 * np.abs(pool) - x) <= tol)
    )


def unexplained(text: str, pool: list[float], method: dict, seconds: list[float]) -> list[str]:
    arr = np.asarray(pool, float)
    bad = []
    for m in DURATION.finditer(text):
        got = int(m.group(1)) * 60 + int(m.group(2))
        if not any(abs(got - round(s)) < 0.5 for s in seconds):
            bad.append(m.group(0))
    text = DURATION.sub(" ", text)
    text = re.sub(r"<!--.*?-->", " ", text)  # markers
    text = re.sub(r"\(https?://[^)]*\)|\[[^\]]*#\d+\]", " ", text)  # links
    for m in NUMBER.finditer(text):
        if not explained(m.group(0), arr, method, text[m.end() : m.end() + 1] == "%"):
            bad.append(f"{m.group(0)!r} in …{text[max(0, m.start() - 50) : m.end() + 20]}…")
    return bad


@pytest.fixture(scope="module")
def sources():
    t = load(FIG / "table1.json")
    records = load(FASHION / "pruning.json")
    summary = load(FASHION / "summary.json")
    coad = load(FASHION / "coadaptation.json")
    toy = toy_candidates(t)
    study = load(FIG / "training_length.json") if (FIG / "training_length.json").is_file() else None
    if study:  # the training-length study: its settings and its paired differences
        toy += leaves({k: v for k, v in study.items() if k != "records"})
        for pair in length_pairs(study["records"]).values():
            toy += ttest(*pair)
    fashion = fashion_candidates(records, summary) + leaves(
        [m.get("num_weights") for m in coad if isinstance(m, dict)]
    )
    fstudy_path = FASHION / "training_length.json"
    fstudy = load(fstudy_path) if fstudy_path.is_file() else None
    if fstudy:  # the fashion training-length study: its settings, cells and paired steps
        fashion += fashion_length_candidates(fstudy)
    resnet = None
    if (RESNET / "pruning.json").is_file():
        resnet = {
            "records": load(RESNET / "pruning.json"),
            "summary": load(RESNET / "summary.json"),
        }
        paper = load(ROOT / "td_analysis" / "paper_resnet32.json")
        resnet["pool"] = resnet_candidates(resnet["records"], resnet["summary"], paper)
        resnet["test_pool"] = []
        if (RESNET / "pruning_test.json").is_file():  # the same prunings on the whole test split
            test = load(RESNET / "pruning_test.json")
            assert {r["split"] for r in test} == {"test"}
            resnet["test_pool"] = resnet_candidates(test, resnet["summary"], paper)
    return {
        "resnet": resnet,
        "resnet_pool": resnet["pool"] if resnet else [],
        "study": study,
        "table1": t,
        "records": records,
        "summary": summary,
        "toy": toy,
        # table1.md's "Protocol study" section comes from protocol_study.json
        "protocol": leaves(load(PS)) if (PS := FIG / "protocol_study.json").is_file() else [],
        "fashion": fashion,
        "seconds": [t["seconds"], summary["seconds"]]
        + ([study["seconds"]] if study else [])
        + ([fstudy["seconds"]] if fstudy else [])
        + [run["seconds"] for runs in (fstudy or {}).get("protocols", {}).values() for run in runs]
        + ([resnet["summary"]["seconds"]] if resnet else []),
        "fashion_study": fstudy,
    }


def results_section(readme: str) -> str:
    start = readme.index("\n## Results")
    nxt = readme.find("\n## ", start + 5)
    return readme[start : nxt if nxt > 0 else None]


@pytest.mark.parametrize(
    ("name", "path", "pools"),
    [
        ("table1.md", FIG / "table1.md", ("toy", "protocol")),
        ("pruning.md", FASHION / "pruning.md", ("fashion",)),
        ("README.md", ROOT / "README.md", ("toy", "fashion", "resnet_pool")),
        ("figures/README.md", FIG / "README.md", ("toy", "fashion", "resnet_pool")),
        ("figures/fashion_mlp/README.md", FASHION / "README.md", ("fashion",)),
        ("training_length.md", FASHION / "training_length.md", ("fashion",)),
        ("resnet_cifar10/pruning.md", RESNET / "pruning.md", ("resnet_pool",)),
        ("resnet_cifar10/README.md", RESNET / "README.md", ("resnet_pool",)),
    ],
)
def test_every_number_comes_from_the_json(sources, name, path, pools) -> None:
    if not path.is_file():
        pytest.skip(f"{path.name} is not committed")
    text = path.read_text()
    if name == "README.md":
        text = results_section(text)
    if name == "resnet_cifar10/pruning.md":  # its last section: test_resnet_test_split_section
        text = text.split(RESNET_TEST_SECTION)[0]
    pool = [v for p in pools for v in sources[p]]
    bad = unexplained(text, pool, METHOD.get(name, {}), sources["seconds"])
    assert not bad, f"{name}: numbers not found in the JSON:\n" + "\n".join(bad)


RESNET_TEST_SECTION = "## The same prunings on the whole test split"


def test_resnet_test_split_section_comes_from_pruning_test_json(sources) -> None:
    """The last section of resnet_cifar10/pruning.md (the tables on the whole test split) holds
    only numbers of ``pruning_test.json``, never the pruning split's."""
    path = RESNET / "pruning.md"
    if not path.is_file() or not (RESNET / "pruning_test.json").is_file():
        pytest.skip("resnet_cifar10/pruning_test.json is not committed")
    head, sep, text = path.read_text().partition(RESNET_TEST_SECTION)
    assert sep, f"{path} has no section on the whole test split"
    pool = sources["resnet"]["test_pool"]
    bad = unexplained(text, pool, {1: "images 1,000–9,999", 9999: "… to 9,999"}, [])
    assert not bad, "pruning.md, test-split section: numbers not in pruning_test.json:\n" + (
        "\n".join(bad)
    )


CLAIM = re.compile(r"95% t interval ([-+][\d.]+) to ([-+][\d.]+)")


@pytest.mark.parametrize(
    "path",
    [
        FIG / "table1.md",
        FASHION / "pruning.md",
        ROOT / "README.md",
        FASHION / "training_length.md",
        RESNET / "README.md",
    ],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_sentences_state_a_difference_only_when_the_interval_excludes_zero(path) -> None:
    if not path.is_file():
        pytest.skip(f"{path.name} is not committed")
    bullets = [
        ln for ln in path.read_text().splitlines() if "t interval" in ln and ln.startswith("- ")
    ]
    assert bullets, f"{path} has no sentences on paired differences"
    for ln in bullets:
        lo, hi = (float(v) for v in CLAIM.search(ln).groups())
        says_none = "no difference within the seeds' spread" in ln
        assert says_none == (lo <= 0 <= hi), ln
        if not says_none:
            assert re.search(r"\b(more|less|larger|smaller)\b", ln), ln


def test_readme_blocks_are_what_the_reports_write_from_the_json(sources) -> None:
    """The generated blocks are current: rewriting them from the committed JSON changes nothing
    (a hand edit inside a block, or JSON committed without its README, shows here)."""
    from td_analysis.report import compat as reports

    readme = (ROOT / "README.md").read_text()
    again = reports.replace_generated(readme, "toy", reports.readme_toy_results(sources["table1"]))
    again = reports.replace_generated(
        again, "fashion-mlp", reports.readme_fashion_results(sources["records"], sources["summary"])
    )
    if sources["study"]:
        again = reports.replace_generated(
            again, "training-length", reports.readme_training_length(sources["study"])
        )
    if sources["fashion_study"]:
        again = reports.replace_generated(
            again,
            "fashion-training-length",
            reports.fashion_training_length_markdown(sources["fashion_study"], heading="####"),
        )
    if sources["resnet"]:
        from td_analysis.report.resnet import readme_resnet_results

        again = reports.replace_generated(
            again,
            "resnet",
            readme_resnet_results(sources["resnet"]["records"], sources["resnet"]["summary"]),
        )
    assert again == readme


def test_the_false_sentences_of_issue_19_are_gone() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "changes no network's accuracy by more than 0.1" not in readme
    assert "75% lowest of the 100" not in (FIG / "table1.md").read_text()
    durations = {
        m.group(0)
        for p in (ROOT / "README.md", FIG / "README.md")
        for m in DURATION.finditer(
            results_section(p.read_text())
            if p.name == "README.md" and p.parent == ROOT
            else p.read_text()
        )
    }
    t = load(FIG / "table1.json")
    m, s = divmod(round(t["seconds"]), 60)
    toy = f"{m} min {s} s"
    assert toy in durations


def test_pairs_are_by_seed(sources) -> None:
    """table1.json lists every column in the order of settings.seeds, one value per seed, so
    the i-th entries of two regularisers are the same seed (what the pairing relies on)."""
    t = sources["table1"]
    n = len(t["settings"]["seeds"])
    for rows in t["table1"].values():
        for a, b in combinations(rows, 2):
            assert len(rows[a]["accuracy"]) == len(rows[b]["accuracy"]) == n


# ------------------------------------------------------------------------------------------------
# Cell by cell: the committed tables against the JSON, by position
# ------------------------------------------------------------------------------------------------
PM = re.compile(r"(-?[\d.]+) ± ([\d.]+)%?")
DIFF = re.compile(r"([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]")


def table_rows(block: str) -> list[list[str]]:
    """The body rows of the first markdown table in ``block`` (cells stripped)."""
    rows, seen = [], False
    for ln in block.splitlines():
        if ln.startswith("|"):
            seen = True
            if not ln.startswith("|---"):
                rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
        elif seen:
            break
    return rows[1:]


def close(printed: str, value: float, scale: float = 1.0) -> bool:
    return abs(float(printed) - scale * value) <= 0.5 * 10.0 ** -decimals(printed) * 1.001 + 1e-12


def check_diff_cell(cell: str, a, b, scale: float) -> None:
    mean, lo, hi = ttest(a, b)[:3] if len(ttest(a, b)) > 1 else ttest(a, b) * 3
    got = DIFF.fullmatch(cell).groups()
    assert all(close(g, w, scale) for g, w in zip(got, (mean, lo, hi), strict=True)), cell


def test_committed_table1_cells(sources) -> None:
    t = sources["table1"]
    md = (FIG / "table1.md").read_text()
    label = {"none": "none", "targeted-weight": "targeted dropout"}
    for split, rows in t["table1"].items():
        section = md[md.index(f"## {split} split") :]
        body = table_rows(section)
        assert [r[0].split(" α")[0].lower() for r in body] == [label.get(reg, reg) for reg in rows]
        for cells, (reg, cols) in zip(body, rows.items(), strict=True):
            for cell, key, scale in zip(
                cells[1:5],
                ("abs_estimate", "abs_measured", "accuracy", "pruned_accuracy"),
                (1, 1, 100, 100),
                strict=True,
            ):
                m, s = PM.fullmatch(cell).groups()
                a = np.asarray(cols[key], float)
                assert close(m, a.mean(), scale) and close(s, a.std(ddof=1), scale), (reg, key)
        diffs = table_rows(section[section.index("Paired differences") :])
        others = [reg for reg in rows if reg != "targeted-weight"]
        assert len(diffs) == len(others)
        td = rows["targeted-weight"]
        for cells, reg in zip(diffs, others, strict=True):
            o = rows[reg]
            check_diff_cell(cells[1], td["accuracy"], o["accuracy"], 100)
            check_diff_cell(cells[2], td["pruned_accuracy"], o["pruned_accuracy"], 100)
            check_diff_cell(
                cells[3],
                np.subtract(td["accuracy"], td["pruned_accuracy"]),
                np.subtract(o["accuracy"], o["pruned_accuracy"]),
                100,
            )
            check_diff_cell(cells[4], td["abs_measured"], o["abs_measured"], 1)


def test_committed_pruning_cells(sources) -> None:
    recs = sources["records"]
    md = (FASHION / "pruning.md").read_text()

    def acc(reg, kind, bias, k):
        return [
            r["accuracy"]
            for r in sorted(recs, key=lambda r: r["seed"])
            if (r["regulariser"], r["kind"], bool(r["bias"]), float(r["k"])) == (reg, kind, bias, k)
        ]

    head = [ln for ln in md.splitlines() if ln.startswith("| k (%)")]
    first = [c.strip() for c in head[0].strip("|").split("|")][1:]
    for cells in table_rows(md):
        k = float(cells[0])
        for col, cell in zip(first, cells[1:], strict=True):
            kind, reg, bias = (p.strip() for p in col.split("·"))
            a = np.asarray(acc(reg, kind, bias == "bias", k))
            m, s = PM.fullmatch(cell).groups()
            assert close(m, a.mean(), 100) and close(s, a.std(ddof=1), 100), (col, k)
    section = md[md.index("## Paired differences") :]
    tables = [t for t in section.split("\n### ")[1:] if "| k (%)" in t]
    assert len(tables) == len(head) - 1
    for table, header in zip(tables, head[1:], strict=True):
        cols = [c.strip() for c in header.strip("|").split("|")][1:]
        for cells in table_rows(table):
            k = float(cells[0])
            for col, cell in zip(cols, cells[1:], strict=True):
                kind, comp, bias = (p.strip() for p in col.split("·"))
                a, b = (FASHION_REGS[x] for x in comp.split(" − "))
                check_diff_cell(
                    cell, acc(a, kind, bias == "bias", k), acc(b, kind, bias == "bias", k), 100
                )


FASHION_REGS = {
    "none": "none",
    "targeted weight dropout": "targeted-weight",
    "targeted unit dropout": "targeted-unit",
    "dropout": "dropout",
    "DropConnect": "dropconnect",
}


def _fashion_pair(sentence: str) -> tuple[str, str]:
    """The two regularisers a pruning.md sentence compares (``a`` first)."""
    rest = sentence.split("): ", 1)[1]
    names = sorted(FASHION_REGS, key=len, reverse=True)
    first = next(n for n in names if rest.startswith(n))
    second = next(n for n in names if f"than {n} (" in rest or f" vs {n}, " in rest)
    return FASHION_REGS[first], FASHION_REGS[second]


def test_committed_sentences_by_value(sources) -> None:
    """Each sentence of table1.md and pruning.md: its numbers are the scipy interval of the
    comparison it names, recomputed from the JSON (wording checked in test_report_claims)."""
    from test_report_claims import METRIC_VALUES, METRIC_WORDS, check_sentence

    t = sources["table1"]
    md = (FIG / "table1.md").read_text()
    names = {"none": "none", "dropout": "dropout α = ", "dropconnect": "DropConnect α = "}
    for split, rows in t["table1"].items():
        section = md[md.index(f"## {split} split") :]
        section = section[: section.index("\n## ", 3)] if "\n## " in section[3:] else section
        bullets = [ln[2:] for ln in section.splitlines() if ln.startswith("- ")]
        assert len(bullets) == 4 * (len(rows) - 1)
        for b in rows:
            if b == "targeted-weight":
                continue
            for key, get in METRIC_VALUES.items():
                (s,) = [
                    x
                    for x in bullets
                    if any(w in x for w in METRIC_WORDS[key])
                    and re.search(rf"(than|vs|that of) {re.escape(names[b])}", x)
                    and (
                        b != "none" or not re.search(r"(than|vs|that of) (dropout|DropConnect)", x)
                    )
                ]
                ref = ttest(get(rows["targeted-weight"]), get(rows[b]))
                scale, digits = (1, 4) if key == "abs_measured" else (100, 2)
                check_sentence(s, tuple(ref[:3]), scale, digits)
    recs = sources["records"]
    text = (FASHION / "pruning.md").read_text()
    bullets = [ln[2:] for ln in text.splitlines() if ln.startswith("- At k = ")]
    assert bullets
    for s in bullets:
        k, kind, bias = re.match(r"At k = ([\d.]+) \((\w+) pruning, (bias|no bias)\)", s).groups()
        a, b = _fashion_pair(s)

        def acc(reg, kind=kind, bias=bias, k=k):
            return [
                r["accuracy"]
                for r in sorted(recs, key=lambda r: r["seed"])
                if (r["regulariser"], r["kind"], bool(r["bias"]), float(r["k"]))
                == (reg, kind, bias == "bias", float(k))
            ]

        ref = ttest(acc(a), acc(b))
        check_sentence(s, tuple(ref[:3]) if len(ref) > 1 else (ref[0],) * 3, 100, 2)


def test_training_length_sentences_by_value(sources) -> None:
    """The README's training-length sentences: 200 − 20 epochs per regulariser and targeted
    dropout − none at 200 epochs, paired by seed, recomputed from training_length.json."""
    from test_report_claims import check_sentence

    if not sources["study"]:
        pytest.skip("no training_length.json committed")
    pairs = length_pairs(sources["study"]["records"])
    readme = (ROOT / "README.md").read_text()
    block = readme[
        readme.index("generated: training-length") : readme.index(
            "<!-- end generated: training-length"
        )
    ]
    bullets = [ln[2:] for ln in block.splitlines() if ln.startswith("- ")]
    assert len(bullets) == 3 * 4
    for s in bullets:
        where, rest = s.split(": ", 1)
        kind, k = (
            ("weight", 0.0)
            if where == "Unpruned"
            else (
                where.split()[0].lower(),
                float(where.rsplit("= ", 1)[1]),
            )
        )
        if rest.startswith("targeted dropout") and "none trained" in rest:
            key = ("td-none", kind, k)
        else:
            reg = "none" if rest.startswith("none") else "targeted-weight"
            key = (reg, kind, k, "long-short")
        ref = ttest(*pairs[key])
        check_sentence(s, tuple(ref[:3]) if len(ref) > 1 else (ref[0],) * 3, 100, 2)


def test_fashion_training_length_sentences_by_value(sources) -> None:
    """Each sentence of ``figures/fashion_mlp/training_length.md``: the regulariser, the two
    lengths and the pruning it names, paired by seed, recomputed from training_length.json."""
    from test_report_claims import check_sentence

    study = sources["fashion_study"]
    if not study:
        pytest.skip("no fashion training_length.json committed")
    names = {
        "targeted weight dropout": "targeted-weight",
        "targeted unit dropout": "targeted-unit",
        "DropConnect": "dropconnect",
        "dropout": "dropout",
        "none": "none",
    }
    acc = _length_acc(study["records"])
    md = (FASHION / "training_length.md").read_text()
    bullets = [ln[2:] for ln in md.splitlines() if ln.startswith("- ")]
    assert bullets
    step = re.compile(
        r"(.+?)(?: under protocol (\w+))? trained (\d+) epochs (?:is|vs) .*?trained (\d+)\b"
    )
    across = re.compile(
        r"(.+?) under protocol (\w+) (?:is|vs) .*?under protocol (\w+) \((\d+) epochs each\)"
    )
    versus_none = re.compile(
        r"targeted weight dropout under protocol (\w+) \((\d+) epochs\) (?:is|vs) .*none"
    )
    protocols = set()
    for s in bullets:
        where, rest = s.split(": ", 1)
        kind, k = (
            ("weight", 0.0)
            if where == "Unpruned"
            else (where.split()[0].lower(), float(where.rsplit("= ", 1)[1]))
        )
        rest = _capital_off(rest)
        if m := versus_none.match(rest):
            proto, e = m.group(1), int(m.group(2))
            a, b = acc[(proto, "targeted-weight", kind, k, e)], acc[(proto, "none", kind, k, e)]
        elif m := across.match(rest):
            name, proto, ref, e = m.groups()
            a, b = (
                acc[(proto, names[name], kind, k, int(e))],
                acc[(ref, names[name], kind, k, int(e))],
            )
        else:
            name, proto, long, short = step.match(rest).groups()
            proto = proto or "default"
            reg = names[name]
            a, b = acc[(proto, reg, kind, k, int(long))], acc[(proto, reg, kind, k, int(short))]
        protocols.add(proto)
        seeds = sorted(set(a) & set(b))
        ref = ttest([a[x] for x in seeds], [b[x] for x in seeds])
        check_sentence(s, tuple(ref[:3]) if len(ref) > 1 else (ref[0],) * 3, 100, 2)
    # every protocol the study holds has its sentences
    assert protocols == {r.get("protocol", "default") for r in study["records"]}


def _capital_off(text: str) -> str:
    return text if text.startswith("DropConnect") else text[:1].lower() + text[1:]
