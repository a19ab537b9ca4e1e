"""Groups as the unit of triage (Sentry's issue stream): the grouped list, group triage applied to
members present and future, regressions, merge/unmerge, and the hourly counts behind sparklines."""
