"""One approval's section of the report, a module per part, each with `build` (its part
of the document and its figures, with the queries that recount them) and `blocks` (what
a person reads of it):

    approval      the approval, its handlers and their changes, its datasets
    usage         sessions and server, CPU and memory hours
    data_access   files read per dataset
    federation    federated queries by task and site
    downloads     downloads allowed and blocked
    monthly       the monthly series the charts draw
    egress        the egress ledger, alerts, caps and blocks
    query_audit   the query-set audit's answers, refusals and resets
    security      stops, suspensions, refused kernels, period ends
    exports       the export airlock: requests, decisions, releases (when there were any)
    fill_in       publications and the self-assessment checklist

hub/report/build.py makes the figures in one order and assembles the document;
hub/report/layout.py lays the parts out in the order a person reads them.
"""

from hub.report.sections import (
    approval,
    data_access,
    downloads,
    egress,
    exports,
    federation,
    fill_in,
    monthly,
    query_audit,
    security,
    usage,
)

#: the parts in the order a person reads them (the usage part holds data access,
#: federation, downloads and the charts)
READING_ORDER = (
    approval,
    usage,
    data_access,
    federation,
    downloads,
    monthly,
    egress,
    query_audit,
    security,
    exports,
    fill_in,
)
