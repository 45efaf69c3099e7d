"""What the hub side and the containers agree on, defined once.

Both sides import these modules; neither keeps a copy:

- `clock`: where "now" comes from (a clock tests move), Japan time, usage
  periods (Japan-time dates, the end inclusive) and fiscal years (1 April to
  31 March).
- `events`: the schema id of every event the audit store holds;
- `datasets`: the layout of a dataset folder (file names, the store each engine reads);
- `environment`: the variables the hub sets in a researcher's server and a site's gateway.
"""
