"""The federated tasks the gateways may run: name -> Task class (the allow-list's universe)."""

from .allele_frequencies import AlleleFrequencies
from .cohort_counts import CohortCounts
from .gwas_linear import GwasLinear
from .gwas_logistic import GwasLogistic

TASKS: dict = {
    AlleleFrequencies.name: AlleleFrequencies,
    CohortCounts.name: CohortCounts,
    GwasLinear.name: GwasLinear,
    GwasLogistic.name: GwasLogistic,
}
