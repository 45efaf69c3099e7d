"""Query-set auditing at a site: no sequence of answers singles out one person.

Every federated answer is a sum over a set of people: allele counts over the
people a `where` selects (one set per stratum), a regression's sufficient
statistics over its complete cases, a count the catalogue releases. Each
answer passes the disclosure rules on its own, but answers can be added and
subtracted. A `QuerySetAudit` (one per approval and dataset, shared by every
handler of the approval, kept at the site) holds the sets answered so far,
each as the indices of its people in the dataset's sample order, and is asked
*before* an answer leaves:

    verdict = audit.check(sets)        # refuses, or lets the answer be computed
    ...compute and disclose the answer...
    audit.record(sets, QueryMeta(...)) # before the answer is sent; raises
                                       # QuerySetRefused if another answer
                                       # recorded meanwhile makes it unsafe

It refuses a query when

- `min_count`: one of its sets holds fewer than `min_count` people (and any);
- `small_difference`: one of its sets differs from an answered set (or from
  another set of the same query) by fewer than `min_count` people, one inside
  the other included; the difference of the two answers would be a sum over
  that handful. Identical repeats are answered: they tell nothing new;
- `isolating_combination`: with this query's sets, some person's indicator
  vector e_i lies in the linear span of the answered sets' indicator vectors,
  so that some combination of answers, added and subtracted with any
  coefficients, is that one person's value, whatever the data (exact auditing
  of sum queries, Chin and Ozsoyoglu's criterion);
- `isolating_pair`: with this query's sets, the span would hold a new vector
  with exactly two non-zero entries, e_x + c e_y: a combination of answers that
  is two people's values together. A variant's sums cover only the people
  with a call there, so where y's call is missing that combination is x's
  value (docs/query-audit-notes.md). A history kept before this rule may hold
  such vectors already; they do not refuse every later query, only new ones do.

A refusal (`Verdict`) names its rule and the earlier queries it collides with,
by the time and task of their first answer, never a person nor a count.

`near` lists, for a query's sets, the small symmetric differences with sets
already answered, for the gateway's per-variant rule (a difference whose
called or missing people at a variant are too few is withheld there).
The package, by concern: `verdict` (what is recorded and answered: QueryMeta,
Verdict, the rules), `field` (arithmetic in GF(p) and why p is a large random
prime), `sets` (sets of people as indices and bit rows), `basis` (the
row-reduced basis of the answered sets' span), `span` (how a set is added to
it, and the exposures that refuse it), `history` (the audit on disk) and
`audit` (`QuerySetAudit`, which checks and records).

Nothing here imports a web framework or Dask: the gateway wires it in.
"""

from .audit import HASH_BITS, MAX_PEOPLE, QuerySetAudit
from .field import PRIME_BITS, random_prime
from .history import write_atomically
from .verdict import (
    RULE_ISOLATING,
    RULE_ISOLATING_PAIR,
    RULE_MIN_COUNT,
    RULE_SMALL_DIFFERENCE,
    RULES,
    QueryMeta,
    QuerySetRefused,
    Verdict,
)

__all__ = [
    "HASH_BITS",
    "MAX_PEOPLE",
    "PRIME_BITS",
    "RULES",
    "RULE_ISOLATING",
    "RULE_ISOLATING_PAIR",
    "RULE_MIN_COUNT",
    "RULE_SMALL_DIFFERENCE",
    "QueryMeta",
    "QuerySetAudit",
    "QuerySetRefused",
    "Verdict",
    "random_prime",
    "write_atomically",
]
