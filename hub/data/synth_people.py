"""Synthetic people: the four basic clinical attributes (10-year age band, sex, prefecture,
disease name with ICD-10 code) with site-specific mixes, and a quantitative and a
binary phenotype with planted causal variants, covariate effects and a per-site shift;
written as the dataset's clinical and phenotype tables (hub.data.synth puts a cohort
together).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from extensions.contracts.datasets import CLINICAL, PHENOTYPES
from hub.data.synth_genotypes import MISSING, VariantTable

if TYPE_CHECKING:
    from hub.data.synth import SiteSpec

AGE_BANDS = ["20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89"]
AGE_WEIGHTS = [0.08, 0.11, 0.15, 0.19, 0.22, 0.17, 0.08]

# The 47 prefectures in their official (JIS X 0401) order, which runs roughly
# north to south, so neighbours in the list are mostly neighbours on the map.
PREFECTURES = [
    "Hokkaido", "Aomori", "Iwate", "Miyagi", "Akita", "Yamagata", "Fukushima",
    "Ibaraki", "Tochigi", "Gunma", "Saitama", "Chiba", "Tokyo", "Kanagawa",
    "Niigata", "Toyama", "Ishikawa", "Fukui", "Yamanashi", "Nagano", "Gifu",
    "Shizuoka", "Aichi", "Mie", "Shiga", "Kyoto", "Osaka", "Hyogo", "Nara",
    "Wakayama", "Tottori", "Shimane", "Okayama", "Hiroshima", "Yamaguchi",
    "Tokushima", "Kagawa", "Ehime", "Kochi", "Fukuoka", "Saga", "Nagasaki",
    "Kumamoto", "Oita", "Miyazaki", "Kagoshima", "Okinawa",
]  # fmt: skip

CASE_DISEASE = ("Type 2 diabetes mellitus", "E11")
# (name, ICD-10, category); categories let a site weigh what it mostly sees.
DISEASES = [
    ("Essential hypertension", "I10", "general"),
    ("Dyslipidaemia", "E78", "general"),
    ("Chronic kidney disease", "N18", "general"),
    ("Atrial fibrillation", "I48", "general"),
    ("Asthma", "J45", "immune"),
    ("Rheumatoid arthritis", "M06", "immune"),
    ("Atopic dermatitis", "L20", "immune"),
    ("Ulcerative colitis", "K51", "immune"),
    ("Malignant neoplasm of stomach", "C16", "cancer"),
    ("Malignant neoplasm of colon", "C18", "cancer"),
    ("Malignant neoplasm of bronchus and lung", "C34", "cancer"),
    ("Malignant neoplasm of breast", "C50", "cancer"),
    ("Malignant neoplasm of liver", "C22", "cancer"),
    ("Acute myeloid leukaemia", "C92", "haematology"),
    ("Multiple myeloma", "C90", "haematology"),
    ("Pulmonary tuberculosis", "A15", "infection"),
    ("Chronic viral hepatitis B", "B18", "infection"),
    ("Human immunodeficiency virus disease", "B20", "infection"),
    ("Alzheimer disease", "G30", "general"),
    ("Major depressive disorder", "F32", "general"),
]
SITE_FOCUS = {
    "ncc": {"cancer": 5.0},
    "ncgm": {"infection": 5.0},
    "imsut": {"haematology": 4.0, "immune": 2.0},
}

# Covariate effects on the quantitative trait and on the case liability: per
# 10-year age band above 20-29, and for male sex.
QUANT_AGE, QUANT_MALE = 0.12, 0.4
CASE_AGE, CASE_MALE = 0.15, 0.2
CASE_FRACTION = 0.3


@dataclass
class Effects:
    """The planted model: causal variants and effects, and per-site mean shifts."""

    causal_q: np.ndarray
    beta_q: np.ndarray
    causal_b: np.ndarray
    beta_b: np.ndarray
    shift_q: np.ndarray
    shift_b: np.ndarray


def plant_effects(rng: np.random.Generator, variants: int, n_sites: int) -> Effects:
    # 15 + 10 causal SNPs of moderate effect: the strongest stand out in a GWAS
    # of a thousand people, the weakest need the pooled cohort
    k_q, k_b = min(15, variants // 4), min(10, variants // 4)
    return Effects(
        causal_q=np.sort(rng.choice(variants, k_q, replace=False)),
        beta_q=rng.choice([-1, 1], k_q) * rng.uniform(0.15, 0.35, k_q),
        causal_b=np.sort(rng.choice(variants, k_b, replace=False)),
        beta_b=rng.choice([-1, 1], k_b) * rng.uniform(0.2, 0.45, k_b),
        shift_q=rng.normal(0, 0.25, n_sites),
        shift_b=rng.normal(0, 0.2, n_sites),
    )


def _prefecture_weights(region: str) -> np.ndarray:
    home = PREFECTURES.index(region) if region in PREFECTURES else PREFECTURES.index("Tokyo")
    distance = np.abs(np.arange(len(PREFECTURES)) - home)
    w = np.exp(-distance / 2.5) + 0.02
    return w / w.sum()


def _disease_weights(site_id: str) -> np.ndarray:
    focus = SITE_FOCUS.get(site_id, {})
    w = np.array([focus.get(cat, 1.0) for _, _, cat in DISEASES])
    return w / w.sum()


def clinical_attributes(rng: np.random.Generator, spec: SiteSpec, n: int) -> dict[str, np.ndarray]:
    return {
        "age_band": rng.choice(len(AGE_BANDS), size=n, p=AGE_WEIGHTS),
        "sex": rng.integers(0, 2, n),  # 0 female, 1 male
        "prefecture": rng.choice(len(PREFECTURES), size=n, p=_prefecture_weights(spec.region)),
        "disease": rng.choice(len(DISEASES), size=n, p=_disease_weights(spec.site_id)),
    }


def _standardised(g: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """(samples, k) dosages centred and scaled by the ancestral frequency; missing counts as mean."""
    mean = 2 * freq
    sd = np.sqrt(2 * freq * (1 - freq))
    x = np.where(g == MISSING, mean[:, None], g).astype(float)
    return ((x - mean[:, None]) / sd[:, None]).T


def traits(
    rng: np.random.Generator,
    clin: dict[str, np.ndarray],
    causal_g: dict[str, np.ndarray],
    table: VariantTable,
    fx: Effects,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The quantitative trait and the case liability of one site's people."""
    n = clin["sex"].size
    age = clin["age_band"].astype(float)
    xq = _standardised(causal_g["q"], table.ancestral[fx.causal_q])
    xb = _standardised(causal_g["b"], table.ancestral[fx.causal_b])
    quant = xq @ fx.beta_q + QUANT_AGE * age + QUANT_MALE * clin["sex"] + fx.shift_q[k]
    liability = xb @ fx.beta_b + CASE_AGE * age + CASE_MALE * clin["sex"] + fx.shift_b[k]
    return quant + rng.normal(0, 1, n), liability + rng.logistic(0, 1, n)


def write_tables(
    folder: Path,
    names: list[str],
    clin: dict[str, np.ndarray],
    quant: np.ndarray,
    cases: np.ndarray,
) -> tuple[Path, Path]:
    # cases are the type 2 diabetes patients: the binary trait is that diagnosis
    clinical_path = folder / CLINICAL
    with open(clinical_path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["sample_id", "age_band", "sex", "prefecture", "disease_name", "icd10"])
        for i, name in enumerate(names):
            disease = CASE_DISEASE if cases[i] else DISEASES[clin["disease"][i]][:2]
            w.writerow([
                name,
                AGE_BANDS[clin["age_band"][i]],
                "male" if clin["sex"][i] else "female",
                PREFECTURES[clin["prefecture"][i]],
                *disease,
            ])  # fmt: skip
    pheno_path = folder / PHENOTYPES
    with open(pheno_path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["sample_id", "quant_trait", "case_status"])
        for i, name in enumerate(names):
            w.writerow([name, f"{quant[i]:.6f}", int(cases[i])])
    return clinical_path, pheno_path
